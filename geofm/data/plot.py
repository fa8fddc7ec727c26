"""Plots a person would rather look at than read: RGB composites, spectra and class maps.

The RGB composite picks, for each of red, green and blue, the band whose centre wavelength
is nearest (640, 550 and 470 nm by default), so a Sentinel-2 tile, a Landsat scene and a
204-band AVIRIS cube all plot the same way, then applies a per-channel percentile stretch
over the valid pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from geofm.data.sample import IGNORE_INDEX, Sample, check_sample

RGB_NM = (640.0, 550.0, 470.0)


def nearest_band_indices(
    wavelengths: Sequence[float] | torch.Tensor, targets_nm: Sequence[float] = RGB_NM
) -> list[int]:
    """Index of the band nearest in wavelength to each target."""
    wl = np.asarray(torch.as_tensor(wavelengths, dtype=torch.float64))
    return [int(np.argmin(np.abs(wl - t))) for t in targets_nm]


def rgb_composite(
    sample: Sample,
    targets_nm: Sequence[float] = RGB_NM,
    stretch: tuple[float, float] = (2.0, 98.0),
    limits: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """An ``(H, W, 3)`` float array in [0, 1]: nearest-wavelength bands, percentile stretch.

    ``limits`` gives fixed ``(low, high)`` values for red, green and blue instead of this
    image's percentiles, so that several images (a dataset's patches) share one stretch.
    Invalid pixels (``sample["valid"]`` False) are black and do not count in the stretch.
    """
    if limits is not None and len(limits) != 3:
        raise ValueError(f"limits needs (low, high) for 3 channels, got {len(limits)}")
    check_sample(sample)
    idx = nearest_band_indices(sample["wavelengths"], targets_nm)
    rgb = sample["image"][idx].detach().cpu().numpy().astype(np.float64)
    valid = (
        np.ones(rgb.shape[1:], bool)
        if sample.get("valid") is None
        else torch.as_tensor(sample["valid"]).cpu().numpy()
    )
    out = np.zeros(rgb.shape[1:] + (3,))
    for c in range(3):
        values = rgb[c][valid]
        if values.size == 0:
            continue
        lo, hi = limits[c] if limits is not None else np.percentile(values, stretch)
        scaled = (rgb[c] - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb[c])
        out[..., c] = np.clip(scaled, 0.0, 1.0)
    out[~valid] = 0.0
    return out


def _axes(ax: Axes | None, figsize=(5, 5)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_rgb(
    sample: Sample,
    ax: Axes | None = None,
    title: str | None = None,
    targets_nm: Sequence[float] = RGB_NM,
    limits: Sequence[tuple[float, float]] | None = None,
) -> Figure:
    """Show the RGB composite (see :func:`rgb_composite`); the title names the bands used."""
    _, h, w = sample["image"].shape
    fig, ax = _axes(ax, figsize=(7.0, min(7.0 * h / w, 10.0) + 0.5))
    ax.imshow(rgb_composite(sample, targets_nm, limits=limits))
    idx = nearest_band_indices(sample["wavelengths"], targets_nm)
    used = ", ".join(
        f"{sample['bands'][i]} ({float(sample['wavelengths'][i]):.0f} nm)" for i in idx
    )
    ax.set_title(title or f"RGB: {used}", fontsize=9)
    ax.set_axis_off()
    return fig


def plot_spectra(
    sample: Sample,
    pixels: Sequence[tuple[int, int]],
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    ylabel: str = "value",
) -> Figure:
    """Spectra (value against wavelength) of the pixels ``(row, col)``."""
    check_sample(sample)
    fig, ax = _axes(ax, figsize=(7, 4))
    wl = sample["wavelengths"].detach().cpu().numpy()
    order = np.argsort(wl)
    _, h, w = sample["image"].shape
    for i, (r, c) in enumerate(pixels):
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"pixel ({r}, {c}) is outside the {h} x {w} image")
        values = sample["image"][:, r, c].detach().cpu().numpy()
        label = labels[i] if labels is not None else f"pixel ({r}, {c})"
        ax.plot(wl[order], values[order], marker="." if len(wl) < 30 else None, label=label)
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def class_colors(num_classes: int) -> np.ndarray:
    """``(K, 4)`` RGBA colours, distinct for up to 20 classes (tab20, then hsv)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if num_classes <= 20 else colormaps["hsv"]
    return cmap(
        np.linspace(0, 1, num_classes, endpoint=num_classes > 20)
        if num_classes > 20
        else np.arange(num_classes) / 20 + 1 / 40
    )


def class_colour_table(num_classes: int) -> dict[int, tuple[int, int, int, int]]:
    """:func:`class_colors` as a GeoTIFF colour table: class id -> 0-255 RGBA."""
    colours = (class_colors(num_classes)[:, :3] * 255).round().astype(int)
    return {i: (*map(int, c), 255) for i, c in enumerate(colours)}


def _check_class_ids(mask: np.ndarray, classes: Sequence[str], ignore_index: int) -> None:
    k = len(classes)
    bad = np.unique(mask[(mask != ignore_index) & ((mask < 0) | (mask >= k))])
    if bad.size:
        raise ValueError(f"class ids {bad.tolist()} in the map but only {k} class names")


def _show_classes(
    ax: Axes, image: np.ndarray, hidden: int, colours, legend: dict[int, str], title: str
) -> None:
    """Show ``image`` (values ``0..len(colours) - 1``, ``hidden`` left white) in ``colours``
    with a legend of ``{value: label}`` beside it and ``title`` above, axes hidden."""
    ax.imshow(
        np.ma.masked_equal(image, hidden),
        cmap=mcolors.ListedColormap(colours),
        vmin=-0.5,
        vmax=len(colours) - 0.5,
        interpolation="nearest",
    )
    ax.legend(
        handles=[Patch(color=colours[i], label=label) for i, label in legend.items()],
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_class_map(
    mask: torch.Tensor | np.ndarray,
    classes: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Figure:
    """A class map with a legend; ``ignore_index`` pixels are left white."""
    m = np.asarray(torch.as_tensor(mask).cpu())
    _check_class_ids(m, classes, ignore_index)
    fig, ax = _axes(ax, figsize=(6, 5))
    legend = {int(v): classes[int(v)] for v in np.unique(m) if v != ignore_index}  # np.unique sorts
    _show_classes(ax, m, ignore_index, class_colors(len(classes)), legend, title or "classes")
    return fig


def plot_sample(
    sample: Sample, classes: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """RGB composite, and beside it the class map when the sample has a ``mask``."""
    has_mask = sample.get("mask") is not None and classes is not None
    fig = Figure(figsize=(10 if has_mask else 5, 5), layout="constrained")
    axes = fig.subplots(1, 2 if has_mask else 1, squeeze=False)[0]
    plot_rgb(sample, ax=axes[0])
    if has_mask:
        plot_class_map(sample["mask"], classes, ax=axes[1])
    if "label" in sample and classes is not None and torch.as_tensor(sample["label"]).ndim == 0:
        fig.suptitle(title or classes[int(sample["label"])])
    elif title:
        fig.suptitle(title)
    return fig


def plot_class_spectra(
    sample: Sample,
    classes: Sequence[str],
    ax: Axes | None = None,
    ignore_index: int = IGNORE_INDEX,
    ylabel: str = "value",
) -> Figure:
    """Mean spectrum of each class in ``sample["mask"]``, with a band of one standard deviation."""
    check_sample(sample)
    if sample.get("mask") is None:
        raise ValueError("plot_class_spectra needs a sample with a 'mask'")
    fig, ax = _axes(ax, figsize=(8, 4.5))
    wl = sample["wavelengths"].detach().cpu().numpy()
    order = np.argsort(wl)
    image = sample["image"].detach().cpu().numpy().reshape(len(wl), -1)
    mask = np.asarray(torch.as_tensor(sample["mask"]).cpu()).reshape(-1)
    _check_class_ids(mask, classes, ignore_index)
    colours = class_colors(len(classes))
    for k in sorted(int(v) for v in np.unique(mask) if v != ignore_index):
        values = image[:, mask == k]
        mean, std = values.mean(axis=1)[order], values.std(axis=1)[order]
        ax.plot(wl[order], mean, color=colours[k], label=f"{classes[k]} (n={values.shape[1]})")
        ax.fill_between(wl[order], mean - std, mean + std, color=colours[k], alpha=0.2, lw=0)
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_split_layout(
    mask: torch.Tensor | np.ndarray,
    coords: dict[str, np.ndarray],
    ax: Axes | None = None,
    title: str | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Figure:
    """Where the train, val and test pixels of a split lie; labelled pixels in no part (the
    buffer of a spatially disjoint split) are grey, unlabelled pixels white."""
    m = np.asarray(torch.as_tensor(mask).cpu())
    layout = np.full(m.shape, -1, dtype=np.int64)
    layout[m != ignore_index] = 3
    parts = ("train", "val", "test")
    for k, part in enumerate(parts):
        c = np.asarray(coords[part]).reshape(-1, 2)
        layout[c[:, 0], c[:, 1]] = k
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#b0b0b0"]
    fig, ax = _axes(ax, figsize=(6, 5))
    counts = [int((layout == k).sum()) for k in range(4)]
    labels = [f"{p} ({n})" for p, n in zip(parts, counts, strict=False)] + [f"buffer ({counts[3]})"]
    _show_classes(ax, layout, -1, colours, dict(enumerate(labels)), title or "split")
    return fig
