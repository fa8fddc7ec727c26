"""The data and inspection commands of ``geofm``: demo, stats, info, plot, cards, models."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml


def cmd_stats(args: argparse.Namespace) -> int:
    from geofm.data.outputs import check_outputs, write_atomic
    from geofm.data.stats import compute_statistics

    if args.out:
        check_outputs([args.out], args.paths, args.overwrite)
    stats = compute_statistics(
        args.paths,
        tile=args.tile,
        percentiles=args.percentiles,
        progress=not args.no_progress,
        card=args.card,
    )
    text = yaml.safe_dump(
        {"statistics": stats}, sort_keys=False, default_flow_style=None, width=100
    )
    if args.out:
        write_atomic(args.out, lambda part: part.write_text(text))
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    # metadata, and the valid share from overviews or a bounded sample: never every pixel
    from geofm.data.stats import scene_info

    print(scene_info(args.path, args.card).describe())
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from geofm.data.hyperspectral import open_scene
    from geofm.data.outputs import check_outputs, write_atomic
    from geofm.data.plot import plot_rgb

    out = Path(args.out or Path(args.path).with_suffix(".rgb.png").name)
    check_outputs([out], [args.path], args.overwrite)
    sample = open_scene(args.path, card=args.card)
    figure = plot_rgb(sample, title=Path(args.path).name)
    write_atomic(out, lambda part: figure.savefig(part, dpi=120))
    print(f"wrote {out}")
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from geofm.data.cards import list_dataset_cards, list_sensors, load_dataset_card, load_sensor

    print("sensors:")
    for name in list_sensors():
        s = load_sensor(name)
        print(f"  {name:<22} {len(s.bands):>4} bands  {s.title}")
    print("datasets:")
    for name in list_dataset_cards():
        d = load_dataset_card(name)
        print(f"  {name:<22} {len(d.bands):>4} bands  {len(d.classes):>3} classes  {d.title}")
    return 0


def _shape(sample) -> str:
    return " x ".join(str(n) for n in sample["image"].shape)


def cmd_demo(args: argparse.Namespace) -> int:
    """Statistics and figures for every bundled sample; a summary table on stdout."""
    import torch
    from matplotlib.figure import Figure

    from geofm.data.cards import data_dir, load_dataset_card
    from geofm.data.hyperspectral import open_envi, read_label_mat
    from geofm.data.plot import plot_class_spectra, plot_rgb, plot_sample
    from geofm.data.readers import open_raster
    from geofm.data.stats import compute_statistics

    samples = Path(args.samples) if args.samples else data_dir() / "samples"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    start = time.perf_counter()

    # EuroSAT-MS: statistics over all patches (compared with the card), one patch per class.
    eurosat = load_dataset_card("eurosat_ms")
    stats = compute_statistics(
        [samples / "eurosat_ms"], card="eurosat_ms", progress=not args.no_progress
    )
    (out / "eurosat_ms_stats.yaml").write_text(
        yaml.safe_dump({"statistics": stats}, sort_keys=False, default_flow_style=None)
    )
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    axes = fig.subplots(2, 5).ravel()
    # One stretch for all patches, from the statistics just computed, so that colours
    # compare across classes (a per-patch stretch turns calm water into noise).
    rgb_idx = eurosat.band_indices(eurosat.rgb_bands)
    limits = [(stats["percentiles"]["p2"][i], stats["percentiles"]["p98"][i]) for i in rgb_idx]
    n_files = 0
    for ax, cls in zip(axes, eurosat.classes, strict=True):
        files = sorted((samples / "eurosat_ms" / cls).glob("*.tif"))
        n_files += len(files)
        plot_rgb(open_raster(files[0], card="eurosat_ms"), ax=ax, title=cls, limits=limits)
    fig.suptitle("EuroSAT-MS bundled samples (B04/B03/B02, 2-98% stretch over all patches)")
    fig.savefig(out / "eurosat_ms_classes.png", dpi=110)
    cirrus = eurosat.band_names.index("B10")
    rows.append(
        (
            "EuroSAT-MS",
            f"{n_files} GeoTIFFs, 13 x 64 x 64",
            f"B10 mean {stats['mean'][cirrus]:.1f} DN (card {eurosat.mean[cirrus]:.1f})",
            "eurosat_ms_classes.png, eurosat_ms_stats.yaml",
        )
    )

    # Sentinel-2 L1C tile: 13 JPEG 2000 bands at 10/20/60 m stacked on the 10 m grid.
    s2 = open_raster(samples / "s2_l1c_t33uuu" / "IMG_DATA")
    plot_rgb(s2, title="Sentinel-2 L1C T33UUU 2017-02-16, 13 bands on the 10 m grid").savefig(
        out / "s2_t33uuu_rgb.png", dpi=110
    )
    rows.append(
        ("Sentinel-2 tile", _shape(s2), f"{s2['crs']}, GSD {s2['gsd']:.0f} m", "s2_t33uuu_rgb.png")
    )

    # Landsat-7 subset with nodata borders.
    landsat = open_raster(samples / "landsat_rgb" / "RGB.byte.tif", card="landsat_rgb")
    plot_rgb(landsat, title="Landsat-7 ETM+ subset (nodata in black)").savefig(
        out / "landsat_rgb.png", dpi=110
    )
    valid = float(landsat["valid"].float().mean()) * 100
    rows.append(
        (
            "Landsat-7",
            _shape(landsat),
            f"{valid:.1f}% valid, GSD {landsat['gsd']:.0f} m",
            "landsat_rgb.png",
        )
    )

    # Salinas-A: hyperspectral cube with its ground truth.
    salinas = load_dataset_card("salinas_a")
    cube = open_envi(samples / "salinas_a" / "SalinasA_corrected.hdr", card="salinas_a")
    cube["mask"] = torch.from_numpy(
        read_label_mat(samples / "salinas_a" / "SalinasA_gt.mat", card="salinas_a")
    )
    plot_sample(cube, classes=salinas.classes, title="Salinas-A (AVIRIS, 204 bands)").savefig(
        out / "salinas_a.png", dpi=110
    )
    plot_class_spectra(cube, salinas.classes, ylabel="radiance (scaled DN)").savefig(
        out / "salinas_a_spectra.png", dpi=110
    )
    labelled = int((cube["mask"] != 255).sum())
    rows.append(
        (
            "Salinas-A",
            _shape(cube),
            f"{labelled} labelled px, {len(salinas.classes)} classes",
            "salinas_a.png, salinas_a_spectra.png",
        )
    )

    header = ("sample", "shape", "check", "outputs")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)] + [0]  # last unpadded
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"wrote {len(list(out.iterdir()))} files to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from geofm.models import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(
            f"no registered model matches {args.pattern!r}; registered: {', '.join(list_models())}"
        )
    print(f"{'model':<20} {'params':>8} {'width':>5} {'depth':>5} {'heads':>5}  notes")
    for name in names:
        with torch.device("meta"):  # sizes only: nothing is allocated or initialised
            model = create_model(name)
        cfg = model.config
        notes = ", ".join(
            f"{k} {cfg[k]}"
            for k in ("rank", "perception_radius_m", "bands_per_group", "in_chans")
            if k in cfg
        )
        print(
            f"{name:<20} {model.num_params / 1e6:7.1f}M {cfg['embed_dim']:>5} "
            f"{cfg['depth']:>5} {cfg['num_heads']:>5}  {notes}"
        )
    return 0
