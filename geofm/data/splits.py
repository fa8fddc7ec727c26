"""Train / validation / test splits for scene and pixel classification.

Two protocols, reported side by side for pixel classification:

* :func:`stratified_split`: a random split of labelled items, stratified by class, with the
  size of each part given per class as a fraction or as a count. For pixel maps this is the
  usual "random pixel" protocol.
* :func:`spatially_disjoint_split`: the scene is cut into square blocks, whole blocks go to
  train, val or test, and every val/test pixel whose window of ``2 * radius + 1`` pixels
  contains a training pixel is then dropped (the buffer).

Why the second exists: with a random pixel split, a test pixel's window (the input of a
patch classifier) covers training pixels, and the test pixel itself lies inside training
windows, so test accuracy measures interpolation between neighbours more than
generalisation. The released code of LoLA-SpecViT (Zidi et al., "LoLA-SpecViT: Local
Attention SwiGLU Vision Transformer with LoRA for Hyperspectral Imaging", 2025) evaluates on
such random splits, as most hyperspectral papers do; geofm reports a spatially disjoint,
buffered split next to it (``docs/design_notes.md``, "Pixel-classification protocol").
:func:`check_no_leakage` verifies the buffer.

Coordinates are ``(row, col)`` integer pairs, arrays of shape ``(N, 2)``; label maps are
``(H, W)`` int arrays with :data:`~geofm.data.sample.IGNORE_INDEX` (255) for unlabelled pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import maximum_filter

from geofm.data.sample import IGNORE_INDEX

PARTS = ("train", "val", "test")


class Split(NamedTuple):
    """Index arrays (int64, sorted) into the labels that were split; disjoint."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class LeakageError(AssertionError):
    """A test (or val) window contains a training pixel."""


# --------------------------------------------------------------------------------------------
# Random stratified split


def _as_label_array(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    arr = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(
            f"labels must be 1-D, got shape {arr.shape}; for a label map pass "
            "mask.ravel() or use labelled_pixels(mask)"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_part_size(size: float | int, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int | float | np.integer | np.floating):
        raise TypeError(
            f"{name} must be a fraction (float) or a per-class count (int), got {size!r}"
        )
    if isinstance(size, float | np.floating) and not 0.0 <= size <= 1.0:
        raise ValueError(f"{name} as a fraction must lie in [0, 1], got {size}")
    if isinstance(size, int | np.integer) and size < 0:
        raise ValueError(f"{name} as a count must be >= 0, got {size}")


def _is_count(size: float | int) -> bool:
    return isinstance(size, int | np.integer)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    """Whole shares of ``n`` for ``fractions`` (summing to 1), each within 1 of exact."""
    exact = [f * n for f in fractions]
    sizes = [int(math.floor(x)) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: sizes[i] - exact[i])
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _part_sizes(n: int, train: float | int, val: float | int) -> tuple[int, int]:
    """Members of a class of size ``n`` that go to train and val (test gets the rest).

    Fractions for both: largest-remainder rounding, so every part is within one member of
    its exact share. Otherwise counts are taken as they are and fractions rounded half up.
    Train gets at least one member.
    """
    if not _is_count(train) and not _is_count(val):
        n_train, n_val, _ = _largest_remainder(n, [train, val, max(0.0, 1.0 - train - val)])
        n_train = min(max(n_train, 1), n)
        return n_train, min(n_val, n - n_train)
    # With a count, test keeps at least one member (checked by _check_counts_fit).
    n_train = int(train) if _is_count(train) else _round_half_up(train * n)
    n_val = int(val) if _is_count(val) else _round_half_up(val * n)
    n_train = min(max(n_train, 1), n - 1)
    return n_train, max(0, min(n_val, n - n_train - 1))


def _check_counts_fit(counts: dict[int, int], train: float | int, val: float | int) -> None:
    """Asked counts must leave every part at least one member of every class."""
    need_train = int(train) if _is_count(train) else 1
    need_val = int(val) if _is_count(val) else 0
    need = need_train + need_val + 1
    small = {c: n for c, n in counts.items() if n < need}
    if small:
        listed = ", ".join(f"class {c}: {n}" for c, n in sorted(small.items()))
        raise ValueError(
            f"too few members to give train {need_train}, val {need_val} and test at least 1 "
            f"per class (needs {need}); {listed}"
        )


def stratified_split(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    train: float | int = 0.6,
    val: float | int = 0.2,
    seed: int = 0,
) -> Split:
    """Split items at random, class by class.

    Args:
        labels: ``(N,)`` class ids; items labelled 255 are left out of every part.
        train: per class, a fraction of its members (float) or a count of members (int);
            at least one member per class.
        val: the same for the validation part. Test gets the rest of every class.
        seed: the same seed gives the same split.

    Returns:
        :class:`Split` of sorted int64 index arrays into ``labels``: disjoint and together
        covering every labelled item.

    Fractions give every part of every class within one member of its exact share
    (largest-remainder rounding); they need ``train + val <= 1``. Counts (ints) raise
    ``ValueError`` naming every class too small to give train and val their counts and test
    at least one member.
    """
    _check_part_size(train, "train")
    _check_part_size(val, "val")
    if not _is_count(train) and not _is_count(val) and train + val > 1.0 + 1e-9:
        raise ValueError(f"train + val fractions must be <= 1, got {train} + {val}")
    arr = _as_label_array(labels)
    classes, counts = np.unique(arr[arr != IGNORE_INDEX], return_counts=True)
    if classes.size == 0:
        raise ValueError(f"no labelled items to split ({arr.size} items, all {IGNORE_INDEX})")
    if _is_count(train) or _is_count(val):
        _check_counts_fit(dict(zip(classes.tolist(), counts.tolist(), strict=True)), train, val)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for c in classes:
        members = rng.permutation(np.flatnonzero(arr == c))
        n_train, n_val = _part_sizes(members.size, train, val)
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train : n_train + n_val])
        parts["test"].append(members[n_train + n_val :])
    split = Split(*(np.sort(np.concatenate(parts[p])).astype(np.int64) for p in PARTS))
    wanted = {
        "val": _is_count(val) or val > 0,
        "test": _is_count(train) or _is_count(val) or train + val < 1.0 - 1e-9,
    }
    empty = [p for p in ("val", "test") if wanted[p] and getattr(split, p).size == 0]
    if empty:
        raise ValueError(
            f"the {' and '.join(empty)} part would be empty: per-class sizes "
            f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))} with train={train}, "
            f"val={val} round to nothing; use larger fractions or per-class counts"
        )
    return split


def labelled_pixels(mask: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (N, 2) int64 row-major, labels (N,) int64)`` of the pixels not 255."""
    arr = _as_mask(mask)
    coords = np.argwhere(arr != IGNORE_INDEX).astype(np.int64)
    return coords, arr[coords[:, 0], coords[:, 1]]


# --------------------------------------------------------------------------------------------
# Spatially disjoint split with a buffer


def _as_mask(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be an (H, W) label map, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def window_contains(points: np.ndarray, radius: int) -> np.ndarray:
    """For each pixel, whether its ``(2r+1) x (2r+1)`` window holds a True of ``points``
    (``(H, W)`` bool; a square dilation, the window clipped at the scene edge)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    return maximum_filter(points.astype(bool), size=2 * radius + 1, mode="constant", cval=False)


@dataclass(frozen=True)
class SpatialSplit:
    """Result of :func:`spatially_disjoint_split`.

    Attributes:
        train, val, test: ``(N, 2)`` int64 ``(row, col)`` of labelled pixels, row-major.
        block_part: ``(H, W)`` int8, the part (0 train, 1 val, 2 test) of the block each
            pixel lies in, -1 for blocks without labels; for plotting the layout.
        dropped: pixels removed by the buffer: ``"val"`` (val pixels near train),
            ``"test"`` (test pixels near train or val).
        class_counts: ``(3, K)`` int64, labelled pixels of class k kept in each part.
        target_fractions: ``(3,)`` the fractions asked for.
        block_size, buffer: the block side and buffer radius used, in pixels (the
            defaults resolved).
        excluded: classes left out of every part (``exclude_unsplittable``).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    block_part: np.ndarray
    dropped: dict[str, int]
    class_counts: np.ndarray
    block_size: int
    buffer: int
    target_fractions: np.ndarray = field(repr=False)
    excluded: tuple[int, ...] = ()

    def coords(self, part: str) -> np.ndarray:
        if part not in PARTS:
            raise KeyError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
        return getattr(self, part)

    def summary(self) -> str:
        """A short table: pixels per class in each part and what the buffer dropped."""
        lines = ["class " + " ".join(f"{p:>7}" for p in PARTS)]
        for k in range(self.class_counts.shape[1]):
            lines.append(f"{k:>5} " + " ".join(f"{n:>7}" for n in self.class_counts[:, k]))
        lines.append(
            f"buffer dropped {self.dropped['val']} val and {self.dropped['test']} test pixels"
        )
        return "\n".join(lines)


def _block_ids(shape: tuple[int, int], block_size: int) -> np.ndarray:
    """``(H, W)`` id of the ``block_size`` square block (row-major) each pixel lies in."""
    h, w = shape
    per_row = -(-w // block_size)
    return (np.arange(h)[:, None] // block_size) * per_row + np.arange(w)[None, :] // block_size


def _block_class_counts(mask: np.ndarray, blocks: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_blocks, K)`` labelled pixels of each class in each block."""
    labelled = mask != IGNORE_INDEX
    flat = blocks[labelled] * num_classes + mask[labelled]
    counts = np.bincount(flat, minlength=(blocks.max() + 1) * num_classes)
    return counts.reshape(-1, num_classes)


def _assign_blocks(
    block_counts: np.ndarray, fractions: np.ndarray, rng: np.random.Generator, max_passes: int = 20
) -> np.ndarray:
    """Assign blocks to parts so each part gets close to its share of every class.

    The objective is ``sum_{p, k} ((A[p, k] - f_p * N_k) / N_k) ** 2``, with ``A[p, k]`` the
    labelled pixels of class k in part p, ``f_p`` the part's fraction and ``N_k`` the class
    total; dividing by ``N_k`` weighs small classes like large ones. Greedy, then local
    search: blocks are visited in an order drawn from ``rng``; each joins the part that least
    increases the objective; then single blocks are moved between parts while a move lowers
    it (at most ``max_passes`` sweeps). Blocks without labels are left unassigned (-1).

    Args:
        block_counts: ``(num_blocks, K)`` labelled pixels per class in each block.
        fractions: ``(P,)`` target fraction of each part (the three parts of a split, or
            the folds of :func:`cross_validation_folds`); a part with 0 gets no block.

    Returns:
        ``(num_blocks,)`` int64 part of each block.
    """
    totals = np.maximum(block_counts.sum(0), 1).astype(np.float64)
    rel = block_counts / totals  # (num_blocks, K) share of each class
    deficit = -fractions[:, None] * np.ones_like(totals)[None, :]  # (3, K): A/N - f
    closed = fractions == 0
    part_of = np.full(block_counts.shape[0], -1, dtype=np.int64)
    order = [b for b in rng.permutation(block_counts.shape[0]) if block_counts[b].sum() > 0]
    for b in order:
        increase = ((deficit + rel[b]) ** 2 - deficit**2).sum(1)
        increase[closed] = np.inf
        p = int(np.argmin(increase))
        part_of[b] = p
        deficit[p] += rel[b]
    for _ in range(max_passes):
        moved = False
        for b in order:
            p = part_of[b]
            removal = ((deficit[p] - rel[b]) ** 2 - deficit[p] ** 2).sum()
            addition = ((deficit + rel[b]) ** 2 - deficit**2).sum(1)
            addition[closed] = np.inf
            addition[p] = -removal  # staying put changes nothing
            q = int(np.argmin(addition))
            if q != p and removal + addition[q] < -1e-12:
                deficit[p] -= rel[b]
                deficit[q] += rel[b]
                part_of[b] = q
                moved = True
        if not moved:
            break
    return part_of


def _check_fractions(train: float, val: float) -> np.ndarray:
    for name, f in (("train", train), ("val", val)):
        if isinstance(f, bool) or not isinstance(f, float | np.floating):
            raise TypeError(
                f"{name} must be a fraction of each class's pixels (float) for a "
                f"spatial split, got {f!r}; blocks cannot give exact counts"
            )
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {f}")
    if train <= 0.0 or train + val >= 1.0:
        raise ValueError(f"need train > 0 and train + val < 1, got train {train}, val {val}")
    return np.array([train, val, 1.0 - train - val])


def _check_spatial_parts(
    kept: np.ndarray, present: np.ndarray, fractions: np.ndarray, block_size: int, buffer: int
) -> None:
    """Refuse a split with an empty part or a class that training never sees."""
    hint = (
        f"try a smaller block_size (now {block_size} px) or buffer (now {buffer} px); "
        "a scene this small may not allow a disjoint split at this window size"
    )
    totals = kept.sum(axis=1)
    empty = [PARTS[p] for p in range(3) if fractions[p] > 0 and totals[p] == 0]
    if empty:
        raise ValueError(
            f"the spatial split leaves {' and '.join(empty)} empty (kept pixels "
            f"train/val/test: {totals.tolist()}); {hint}"
        )
    unseen = [c for c in np.flatnonzero(present) if kept[0, c] == 0]
    if unseen:
        raise ValueError(
            f"classes {[int(c) for c in unseen]} have no training pixel in the "
            f"spatial split; {hint}"
        )


def spatially_disjoint_split(
    mask: np.ndarray | torch.Tensor,
    radius: int,
    train: float = 0.5,
    val: float = 0.1,
    block_size: int | None = None,
    seed: int = 0,
    buffer: int | None = None,
    exclude_unsplittable: bool = False,
) -> SpatialSplit:
    """Split a label map into spatially disjoint train / val / test pixels with a buffer.

    Method:

    1. Cut the ``(H, W)`` scene into ``block_size`` x ``block_size`` blocks (row-major; the
       last row and column of blocks may be smaller).
    2. Assign whole blocks to train, val or test so that each part gets close to its
       fraction of the labelled pixels *of every class*: a greedy pass in an order drawn
       from ``seed``, then moves of single blocks while they improve the balance (see
       :func:`_assign_blocks`). Fractions are met approximately: a block is indivisible,
       and the buffer then takes pixels from val and test.
    3. Buffer: drop every val pixel whose ``(2 * buffer + 1)`` window contains a training
       pixel, then every test pixel whose window contains a training pixel *or a kept val
       pixel*. The val--test buffer is applied too because val selects the checkpoint: a
       test window that covers val pixels would make the test score depend on the pixels
       that chose the model. ``buffer`` defaults to ``radius``, so no val or test window
       contains a labelled training pixel and no training window contains a val or test
       centre. Windows may still share unlabelled border pixels; ``buffer=2 * radius``
       makes the windows of different parts fully disjoint.
    4. With ``exclude_unsplittable``, a class this assignment leaves without training or
       test pixels (a field inside one block, a field too thin for the buffer, or one the
       greedy assignment of this seed put in one part) is left out of every part and the
       blocks are assigned again without it, until every remaining class has both; the
       classes left out are listed in ``excluded``.

    Args:
        mask: ``(H, W)`` class ids, 255 = unlabelled.
        radius: the classifier's window radius (window ``2 * radius + 1`` pixels wide).
        train, val: fractions of each class's labelled pixels (before the buffer); test gets
            the rest.
        block_size: side of a block in pixels, default ``4 * (2 * buffer + 1)``: several
            windows wide, so that the buffer takes a small part of a val or test block.
        seed: the same seed gives the same split.
        buffer: buffer radius in pixels, default ``radius``.
        exclude_unsplittable: leave out the classes this split cannot give both training
            and test pixels (step 4) instead of raising.

    Returns:
        :class:`SpatialSplit` with ``(N, 2)`` coordinates per part, the block layout, the
        per-class counts kept and how many pixels the buffer dropped.

    Raises:
        ValueError: a part with a non-zero fraction ends up empty, or a class of the scene
            gets no training pixel; the message gives the counts and what to change.
    """
    arr = _as_mask(mask)
    fractions = _check_fractions(train, val)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    buffer = radius if buffer is None else buffer
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    block_size = 4 * (2 * buffer + 1) if block_size is None else block_size
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1 pixel, got {block_size}")
    labelled = arr != IGNORE_INDEX
    if not labelled.any():
        raise ValueError(f"the label map {arr.shape} has no labelled pixels (all {IGNORE_INDEX})")
    num_classes = int(arr[labelled].max()) + 1
    blocks = _block_ids(arr.shape, block_size)
    excluded: list[int] = []
    while True:
        labelled = (arr != IGNORE_INDEX) & ~np.isin(arr, excluded)
        if not labelled.any():
            raise ValueError(
                f"no class of the label map can be given both training and test pixels "
                f"by blocks of {block_size} px with a {buffer} px buffer"
            )
        work = np.where(labelled, arr, IGNORE_INDEX)
        part_of_block = _assign_blocks(
            _block_class_counts(work, blocks, num_classes), fractions, np.random.default_rng(seed)
        )
        block_part = part_of_block[blocks]
        in_part = [labelled & (block_part == p) for p in range(3)]
        near_train = window_contains(in_part[0], buffer)
        val_kept = in_part[1] & ~near_train
        near_val = window_contains(val_kept, buffer)
        test_kept = in_part[2] & ~near_train & ~near_val
        kept = [in_part[0], val_kept, test_kept]
        class_counts = np.stack([np.bincount(arr[k], minlength=num_classes) for k in kept])
        present = np.bincount(arr[labelled], minlength=num_classes) > 0
        short = present & ((class_counts[0] == 0) | (class_counts[2] == 0))
        if not exclude_unsplittable or not short.any():
            break
        excluded += [int(c) for c in np.flatnonzero(short)]
    _check_spatial_parts(
        class_counts,
        present,
        fractions,
        block_size,
        buffer,
    )
    return SpatialSplit(
        train=np.argwhere(kept[0]).astype(np.int64),
        val=np.argwhere(kept[1]).astype(np.int64),
        test=np.argwhere(kept[2]).astype(np.int64),
        block_part=block_part.astype(np.int8),
        dropped={
            "val": int(in_part[1].sum() - val_kept.sum()),
            "test": int(in_part[2].sum() - test_kept.sum()),
        },
        class_counts=class_counts.astype(np.int64),
        block_size=block_size,
        buffer=buffer,
        target_fractions=fractions,
        excluded=tuple(sorted(excluded)),
    )


# --------------------------------------------------------------------------------------------
# Cross-validation folds of the pixels a split gives for development


class Fold(NamedTuple):
    """One cross-validation fold: ``(N, 2)`` int64 ``(row, col)`` to train on and to score."""

    train: np.ndarray
    held_out: np.ndarray


def cross_validation_folds(
    mask: np.ndarray | torch.Tensor,
    coords: np.ndarray,
    folds: int,
    seed: int = 0,
    block_size: int | None = None,
    buffer: int | None = None,
) -> list[Fold]:
    """Split development pixels (a split's train and val parts) into ``folds`` folds.

    Without ``block_size`` the folds are random and stratified: each class's pixels are
    shuffled (``seed``) and dealt in turn, so fold sizes per class differ by at most one.
    With ``block_size`` they are spatial, as :func:`spatially_disjoint_split` makes its
    parts: the blocks of that grid holding development pixels are assigned whole to folds,
    balanced per class (:func:`_assign_blocks`, equal fractions, order drawn from
    ``seed``), and a held-out pixel whose ``(2 * buffer + 1)`` window holds a pixel of
    another fold is dropped, so no held-out window contains a pixel trained on. Fold ``j``
    trains on every pixel of the other folds and is scored on its own kept pixels; each
    kept pixel is scored once over the folds. Spatial cross-validation (Roberts et al.,
    "Cross-validation strategies for data with temporal, spatial, hierarchical, or
    phylogenetic structure", Ecography 2017): the validation parts of a disjoint split are
    a few blocks, too few to choose a recipe by.

    Args:
        mask: ``(H, W)`` class ids, 255 = unlabelled.
        coords: ``(N, 2)`` labelled pixels to fold.
        folds: number of folds, >= 2.
        seed: the same seed gives the same folds.
        block_size, buffer: the spatial grid and buffer (``buffer`` defaults to 0).

    Raises:
        ValueError: fewer than 2 folds, an unlabelled pixel in ``coords``, or a fold left
            with no pixel to score (the message gives each fold's kept and dropped counts).
    """
    arr = _as_mask(mask)
    pts = _as_coords(coords, "coords")
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise ValueError(f"cross-validation needs an integer number of folds >= 2, got {folds!r}")
    if len(pts) < folds:
        raise ValueError(f"{len(pts)} pixels cannot fill {folds} folds")
    labels = arr[pts[:, 0], pts[:, 1]]
    if (labels == IGNORE_INDEX).any():
        raise ValueError(
            f"{int((labels == IGNORE_INDEX).sum())} of the {len(pts)} pixels to fold are "
            f"unlabelled ({IGNORE_INDEX})"
        )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(pts), dtype=np.int64)
    if block_size is None:
        for k in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == k))
            fold_of[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
        held = [fold_of == j for j in range(folds)]
        dropped = [0] * folds
    else:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1 pixel, got {block_size}")
        buffer = 0 if buffer is None else buffer
        if buffer < 0:
            raise ValueError(f"buffer must be >= 0, got {buffer}")
        work = np.full(arr.shape, IGNORE_INDEX, dtype=arr.dtype)
        work[pts[:, 0], pts[:, 1]] = labels
        blocks = _block_ids(arr.shape, block_size)
        num_classes = int(labels.max()) + 1
        part_of_block = _assign_blocks(
            _block_class_counts(work, blocks, num_classes), np.full(folds, 1.0 / folds), rng
        )
        fold_of = part_of_block[blocks[pts[:, 0], pts[:, 1]]]
        held, dropped = [], []
        for j in range(folds):
            others = np.zeros(arr.shape, dtype=bool)
            others[tuple(pts[fold_of != j].T)] = True
            near = window_contains(others, buffer)[pts[:, 0], pts[:, 1]]
            held.append((fold_of == j) & ~near)
            dropped.append(int(((fold_of == j) & near).sum()))
    empty = [j for j in range(folds) if not held[j].any()]
    if empty:
        counts = ", ".join(
            f"fold {j}: {int(held[j].sum())} kept, {dropped[j]} dropped" for j in range(folds)
        )
        hint = (
            "use fewer folds"
            if block_size is None
            else f"use fewer folds, a smaller buffer (now {buffer}) or smaller blocks "
            f"(now {block_size})"
        )
        raise ValueError(f"folds {empty} have no pixel to score ({counts}); {hint}")
    return [Fold(train=pts[fold_of != j], held_out=pts[held[j]]) for j in range(folds)]


# --------------------------------------------------------------------------------------------
# Leakage check


def _as_coords(coords: np.ndarray | Sequence[Sequence[int]], name: str) -> np.ndarray:
    arr = np.asarray(coords, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be (N, 2) (row, col) pairs, got shape {arr.shape}")
    return arr


def find_leaks(train_coords: np.ndarray, test_coords: np.ndarray, radius: int) -> np.ndarray:
    """Indices into ``test_coords`` of pixels whose ``(2r+1)`` window holds a training pixel."""
    train = _as_coords(train_coords, "train_coords")
    test = _as_coords(test_coords, "test_coords")
    if len(train) == 0 or len(test) == 0:
        return np.zeros(0, dtype=np.int64)
    origin = np.minimum(train.min(0), test.min(0))
    shape = tuple(np.maximum(train.max(0), test.max(0)) - origin + 1)
    occupied = np.zeros(shape, dtype=bool)
    occupied[tuple((train - origin).T)] = True
    near = window_contains(occupied, radius)
    return np.flatnonzero(near[tuple((test - origin).T)])


def check_no_leakage(train_coords: np.ndarray, test_coords: np.ndarray, radius: int) -> None:
    """Raise :class:`LeakageError` if any test window ``(2r+1)`` wide holds a training pixel.

    The message gives how many test pixels leak and the first of them with a training pixel
    inside its window.
    """
    leaks = find_leaks(train_coords, test_coords, radius)
    if leaks.size == 0:
        return
    train = _as_coords(train_coords, "train_coords")
    r, c = (int(v) for v in np.asarray(test_coords)[leaks[0]])
    inside = train[(np.abs(train[:, 0] - r) <= radius) & (np.abs(train[:, 1] - c) <= radius)]
    raise LeakageError(
        f"{leaks.size} of {len(test_coords)} test pixels have a training pixel in their "
        f"{2 * radius + 1} x {2 * radius + 1} window; e.g. test pixel ({r}, {c}) and training "
        f"pixel ({int(inside[0, 0])}, {int(inside[0, 1])})"
    )
