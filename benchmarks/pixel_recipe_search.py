"""Choose the pixel-classification recipe on validation data of several scenes, never on test.

Each variant is the shared recipe (``configs/classify/lola_salinas_a.yaml``; every
``lola_*.yaml`` differs from it only in ``scene``) with some keys replaced. Every variant
is trained on each scene, split kind and seed given and scored on that split's validation
part only (:func:`geofm.tasks.pixel_protocol.validate_seed`): the test parts are never
classified, so the recipe chosen here can be tested once afterwards.

    python benchmarks/pixel_recipe_search.py --variants benchmarks/pixel_recipe_variants.yaml \\
        --scene salinas_a:0.05 --scene indian_pines:0.1:../shared/data/indian_pines \\
        --splits random disjoint --seeds 0 --output docs/pixel_classification/recipe_search.csv

``--folds K`` scores by K-fold cross-validation over each split's train and val parts
instead (:func:`geofm.tasks.pixel_protocol.cross_validate_seed`: whole blocks with the
split's buffer on a disjoint split; each fold's last weights, no epoch chosen on the
pixels scored); its rows add the pooled per-epoch curve's best epoch and OA and go to a
CSV of their own (a CSV holds one kind of score).

Every run's per-epoch curve (the validation part's OA after each epoch, or with
``--folds`` the pooled held-out OA) is appended to ``<output stem>.curves.jsonl`` beside
the CSV, one JSON object per run, for choosing how long to train: ``--curves CSV...``
reads the curves kept beside the CSVs given and prints, per variant, the epoch at which
the mean over the (scene, split) cells of each cell's mean curve over its seeds is
highest (the earliest, on a tie) beside the last epoch (:func:`stop_epochs`;
``--plot PNG`` draws the curves).

``--keep-predictions`` also keeps every held-out pixel's class and loss after every epoch
(``<output stem>.predictions/``, one file per run). ``--selection CSV...`` then does what
``--curves`` does with another curve: the held-out OA when training stops after epoch E
and the epoch is chosen among the first E on half of the held-out pixels and scored on
the other half (:func:`selection_curve`), which is how the protocol's test runs use a
stop epoch; ``--curves`` scores the weights after epoch E, which no test run keeps.
``--against VARIANT --at E`` adds each other variant's cell-by-cell difference from
VARIANT after epoch E, paired by seed, with 95% t-intervals (:func:`paired`): the figures
a round's rule is read from.

``--svm`` scores the RBF SVM instead of the variants, on the same splits, validation parts
and folds (rows named ``svm``; it has no epochs, so its curve has one entry): kept beside
a search's runs, ``--against`` then says on development pixels whether a recipe beats it.

``--scene CARD:FRACTION[:ROOT]``: the card's recipe ``configs/classify/lola_<CARD>.yaml``,
its training share, and where its files are (for scenes that are not bundled). Rows are
appended as each run ends; a rerun skips the (variant, scene, split, seed) runs the CSV
already holds, so an interrupted search resumes. The table printed at the end (and by
``--report``) gives each variant's mean validation OA and AA per scene and split and
their mean over all of them, the number the recipe is chosen by.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from geofm.tasks.pixel_recipe import merged
from geofm.tasks.pixel_results import mean_interval, read_rows

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    "variant",
    "scene",
    "split",
    "train_fraction",
    "seed",
    "val_oa",
    "val_aa",
    "best_epoch",
    "train_seconds",
    "n_train",
    "n_val",
]
# --folds: val_oa / val_aa pool the held-out folds (last weights); n_val counts the pixels
# scored, n_train the split's training part. best_epoch and curve_epoch count from 0 (the
# first epoch is 0, as in the protocol's results); --curves and train.stop_epoch from 1.
FIELDS_CV = [*FIELDS, "folds", "curve_epoch", "curve_oa"]


#: the name of ``--svm``'s rows: a method without epochs, whose one score stands at every
#: epoch when it is paired (:func:`paired`); no variant may take it
SVM = "svm"


def read_variants(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, changes)]`` from a YAML list of ``{name, changes}`` (names unique; not
    :data:`SVM`)."""
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and set(e) <= {"name", "changes", "note"} and "name" in e
        for e in entries
    ):
        raise SystemExit(f"{path}: expected a list of {{name, changes, note}} entries")
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: variant names repeat: {names}")
    if SVM in names:
        raise SystemExit(f"{path}: {SVM!r} names the rows of --svm; call the variant otherwise")
    return [(e["name"], e.get("changes") or {}) for e in entries]


def run_key(entry: dict[str, Any]) -> tuple[str, str, str, int]:
    """(variant, scene, split, seed): what names one run in the CSV and the curves."""
    return entry["variant"], entry["scene"], entry["split"], int(entry["seed"])


def curves_path(output: Path) -> Path:
    """The JSON-lines file of per-epoch curves kept beside the CSV ``output``."""
    return output.with_suffix(".curves.jsonl")


def predictions_path(output: Path, variant: str, scene: str, split: str, seed: int) -> Path:
    """Where ``--keep-predictions`` keeps one run's held-out pixels beside the CSV
    ``output``."""
    return output.with_suffix(".predictions") / f"{variant}__{scene}__{split}__seed{seed}.npz"


def save_predictions(path: Path, got: dict[str, Any]) -> None:
    """One run's held-out pixels (``got["held_out"]``, one entry per fold) as ``fold{j}_``
    ``coords``, ``truth``, ``predictions`` (class ids) and ``losses`` (float32),
    ``(epochs, N)``, with the split's ``block_size`` and ``buffer`` (0 and 0: a random
    split)."""
    grid = got["grid"] or {}
    arrays: dict[str, np.ndarray] = {
        "block_size": np.asarray(grid.get("block_size") or 0),
        "buffer": np.asarray(grid.get("buffer") or 0),
    }
    for j, fold in enumerate(got["held_out"]):
        arrays[f"fold{j}_coords"] = np.asarray(fold["coords"], dtype=np.int32)
        arrays[f"fold{j}_truth"] = np.asarray(fold["truth"], dtype=np.int16)
        arrays[f"fold{j}_predictions"] = np.asarray(fold["predictions"], dtype=np.int16)
        arrays[f"fold{j}_losses"] = np.asarray(fold["losses"], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def read_curves(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curves_of(output: Path) -> list[dict[str, Any]]:
    """The curves of the runs the CSV ``output`` holds, one per row: the last one written
    for a run (a run killed after its curve was written and rerun has two). A row without
    a curve, or no curves file, is refused."""
    path = curves_path(output)
    if not path.is_file():
        raise SystemExit(f"no curves beside {output}: {path} does not exist")
    last = {run_key(e): e for e in read_curves(path)}
    keys = [run_key(r) for r in read_rows(output, missing_ok=True)]
    missing = [k for k in keys if k not in last]
    if missing:
        raise SystemExit(
            f"{output}: {len(missing)} of its {len(keys)} runs have no curve in {path} "
            f"(first: {' '.join(map(str, missing[0]))}); curves are kept from round 11 on"
        )
    pixels = {run_key(r): _pixels_of_row(r) for r in read_rows(output, missing_ok=True)}
    return [{**last[k], **({"pixels": pixels[k]} if pixels[k] else {})} for k in keys]


def _pixels_of_row(row: dict[str, str]) -> str | None:
    """What a CSV row says of the pixels its run trained on and scored, to tell runs that
    cannot be paired (another split or training share); None from a row without the
    counts."""
    if not all(row.get(k) for k in ("train_fraction", "n_train", "n_val")):
        return None
    return (
        f"train fraction {row['train_fraction']}, {row['n_train']} training and "
        f"{row['n_val']} scored pixels"
    )


def stop_epochs(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: each (scene, split) cell's mean curve over its seeds, their mean, and
    the epoch (1-based) where that mean is highest, the earliest on a tie.

    Returns ``{variant: {"cells": {(scene, split): (seeds, curve)}, "mean": curve,
    "epoch": int}}``; the curves of one variant must have one length."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(e["variant"] for e in entries):
        mine = [e for e in entries if e["variant"] == name]
        lengths = {len(e["curve"]) for e in mine}
        if len(lengths) != 1:
            raise SystemExit(
                f"{name}: curves of {sorted(lengths)} epochs; a variant's runs must train "
                "for the same number of epochs to be averaged"
            )
        cells: dict[tuple[str, str], tuple[list[int], np.ndarray]] = {}
        for key in sorted({(e["scene"], e["split"]) for e in mine}):
            got = [e for e in mine if (e["scene"], e["split"]) == key]
            seeds = [int(e["seed"]) for e in got]
            if len(set(seeds)) != len(seeds):
                raise SystemExit(f"{name} {key[0]} {key[1]}: seeds repeat in the curves: {seeds}")
            cells[key] = (sorted(seeds), np.mean([e["curve"] for e in got], axis=0))
        mean = np.mean([c for _, c in cells.values()], axis=0)
        out[name] = {"cells": cells, "mean": mean, "epoch": int(np.argmax(mean)) + 1}
    return out


def read_predictions(path: Path) -> tuple[list[dict[str, np.ndarray]], int, int]:
    """The folds :func:`save_predictions` kept in ``path``, and the split's block size and
    buffer."""
    if not path.is_file():
        raise SystemExit(
            f"no held-out predictions at {path}: the run was not made with --keep-predictions"
        )
    with np.load(path) as z:
        folds = []
        while f"fold{len(folds)}_truth" in z.files:
            j = len(folds)
            folds.append(
                {
                    k: z[f"fold{j}_{k}"].astype(np.float64 if k == "losses" else np.int64)
                    for k in ("coords", "truth", "predictions", "losses")
                }
            )
        return folds, int(z["block_size"]), int(z["buffer"])


def _half(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(N,)`` bool: the pixels of a random half of the groups (the larger half on an odd
    count)."""
    ids, inverse = np.unique(groups, return_inverse=True)
    picked = np.zeros(len(ids), dtype=bool)
    picked[rng.permutation(len(ids))[: (len(ids) + 1) // 2]] = True
    return picked[inverse]


def _away_from(coords: np.ndarray, others: np.ndarray, buffer: int) -> np.ndarray:
    """``(N,)`` bool: which ``coords`` have no pixel of ``others`` in their
    ``(2 * buffer + 1)`` window (all of them for ``buffer`` 0)."""
    if buffer == 0 or not len(others):
        return np.ones(len(coords), dtype=bool)
    from geofm.data.splits import window_contains

    shape = tuple(np.maximum(coords.max(0), others.max(0)) + 1)
    marked = np.zeros(shape, dtype=bool)
    marked[others[:, 0], others[:, 1]] = True
    return ~window_contains(marked, buffer)[coords[:, 0], coords[:, 1]]


def chosen_epochs(correct: np.ndarray, losses: np.ndarray, select: np.ndarray) -> np.ndarray:
    """``(E,)``: for each stop epoch ``E`` (entry ``E - 1``), the epoch among the first ``E``
    whose OA on the pixels ``select`` is highest, ties to the lower mean loss there, then
    to the earlier epoch: what :class:`~geofm.tasks.callbacks.BestWeights` keeps when
    those pixels are the validation part. ``correct``, ``losses``: ``(epochs, N)``."""
    oa = correct[:, select].mean(1)
    loss = losses[:, select].mean(1)
    best, out = 0, np.zeros(len(oa), dtype=np.int64)
    for e in range(len(oa)):
        if (oa[e], -loss[e]) > (oa[best], -loss[best]):
            best = e
        out[e] = best
    return out


def selection_curve(
    folds: list[dict[str, np.ndarray]],
    block_size: int,
    buffer: int = 0,
    repeats: int = 50,
    seed: int = 0,
    choose: bool = True,
) -> np.ndarray:
    """``(E,)``: the held-out OA of a run when training stops after epoch ``E`` and the epoch
    is chosen on validation pixels, as the protocol's test runs do, without choosing on the
    pixels scored.

    Each fold's held-out pixels are halved at random (whole blocks of the split's grid
    when ``block_size`` is set, as the disjoint split gives its parts whole blocks, though
    not balanced by class as it does; single pixels otherwise); the epoch is chosen on
    one half (:func:`chosen_epochs`) and scored on the other half's pixels that have no
    pixel of the first within ``buffer`` (as the split drops test pixels near val
    pixels), then the other way round. Returns the OA pooled over folds and both ways,
    averaged over ``repeats`` halvings drawn from ``seed``. With ``choose=False`` the
    weights after epoch ``E`` are scored on the same pixels instead (no epoch chosen): the
    same halvings, so the two curves compare choosing with not choosing."""
    from geofm.data.splits import _block_ids

    rng = np.random.default_rng(seed)
    epochs = len(folds[0]["predictions"])
    # per fold, what every halving shares: its groups (the split's own blocks) and which
    # pixel is right after which epoch
    prepared = []
    for f in folds:
        c = f["coords"]
        if block_size:
            groups = _block_ids(tuple(c.max(0) + 1), block_size)[c[:, 0], c[:, 1]]
        else:
            groups = np.arange(len(c))
        if len(np.unique(groups)) < 2:
            raise SystemExit(f"a fold of {len(c)} held-out pixels in one block cannot be halved")
        prepared.append((c, groups, f["predictions"] == f["truth"][None], f["losses"]))
    mean = np.zeros(epochs)
    for _ in range(repeats):
        right, scored = np.zeros(epochs), 0
        for c, groups, correct, losses in prepared:
            one = _half(groups, rng)
            for select in (one, ~one):
                score = ~select & _away_from(c, c[select], buffer)
                picks = chosen_epochs(correct, losses, select) if choose else np.arange(epochs)
                right += correct[picks][:, score].sum(1)
                scored += int(score.sum())
        if scored == 0:
            raise SystemExit(f"the buffer of {buffer} pixels leaves no held-out pixel to score")
        mean += right / scored
    return mean / repeats


def selection_entries(output: Path, choose: bool = True) -> list[dict[str, Any]]:
    """One entry per run the CSV ``output`` holds, shaped as :func:`curves_of`'s, whose
    ``curve`` is :func:`selection_curve` of its kept predictions (``choose``: passed on)."""
    if not output.is_file():
        raise SystemExit(f"--selection {output}: no such file")
    entries = []
    for r in read_rows(output):
        key = run_key(r)
        folds, block_size, buffer = read_predictions(predictions_path(output, *key))
        entry = dict(zip(("variant", "scene", "split", "seed"), key, strict=True))
        curve = selection_curve(folds, block_size, buffer, choose=choose)
        digest = hashlib.sha256()
        for f in folds:
            digest.update(np.ascontiguousarray(f["coords"], dtype=np.int64).tobytes())
        pixels = f"{_pixels_of_row(r) or 'no counts'} (held-out pixels {digest.hexdigest()[:12]})"
        entries.append({**entry, "curve": curve.tolist(), "pixels": pixels})
    return entries


def curves_report(chosen: dict[str, dict[str, Any]], at: Sequence[int] = ()) -> str:
    """Per variant, each cell's OA (%) at the chosen epoch, at the epochs ``at`` and at
    the last."""
    lines = []
    for name, got in chosen.items():
        cells = got["cells"]
        head = [
            "variant",
            "epoch",
            *[
                f"{s} {k} (seeds {' '.join(map(str, seeds))})"
                for (s, k), (seeds, _) in cells.items()
            ],
            "mean",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        last = len(got["mean"])
        shown = [(got["epoch"], "best of the mean"), *((e, "given") for e in at), (last, "last")]
        if name == SVM:  # no epochs: its one score
            shown = [(1, "no epochs")]
        for epoch, what in shown:
            if not 1 <= epoch <= last:
                raise SystemExit(f"--at {epoch}: the curves have epochs 1..{last}")
            values = [f"{100 * c[epoch - 1]:.2f}" for _, c in cells.values()]
            row = [name, f"{epoch} ({what})", *values, f"{100 * got['mean'][epoch - 1]:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


@dataclass(frozen=True)
class PairedCell:
    """One (scene, split) cell of :class:`Paired`: the variant's OA minus the base's on each
    seed (points), their mean with its 95% t-interval (none from one seed), and on how
    many seeds the variant is higher."""

    seeds: tuple[int, ...]
    mean: float
    low: float | None
    high: float | None
    higher: int


@dataclass(frozen=True)
class Paired:
    """A variant against a base after one epoch, cell by cell, paired by seed; ``mean`` is
    the mean of the cells' mean differences (the difference of the two means over cells),
    ``not_lower`` how many cells' mean differences are >= 0, ``lowest`` the lowest."""

    variant: str
    base: str
    epoch: int
    cells: dict[tuple[str, str], PairedCell]
    mean: float
    not_lower: int
    lowest: float


def _at(curve: Sequence[float], epoch: int, name: str) -> float:
    """A curve's score after ``epoch`` (1-based); :data:`SVM`'s one score stands at every
    epoch."""
    if name == SVM and len(curve) == 1:
        return float(curve[0])
    if not 1 <= epoch <= len(curve):
        raise SystemExit(f"--at {epoch}: the curves of {name} have epochs 1..{len(curve)}")
    return float(curve[epoch - 1])


def paired(entries: list[dict[str, Any]], base: str, epoch: int) -> list[Paired]:
    """Every variant of the runs ``entries`` (shaped as :func:`curves_of`'s) but ``base``
    against ``base`` after ``epoch`` (1-based; :data:`SVM` by its one score), on the cells
    the variant ran, on the variant's seeds (the base must hold each of those cells and
    seeds, on the same pixels: ``pixels``, where the entries carry it; seeds only the base
    ran are left out), so that every difference is paired."""
    runs: dict[str, dict[tuple[str, str], dict[int, dict[str, Any]]]] = {}
    for e in entries:
        cell = runs.setdefault(e["variant"], {}).setdefault((e["scene"], e["split"]), {})
        if int(e["seed"]) in cell:
            raise SystemExit(f"{e['variant']} {e['scene']} {e['split']}: seed {e['seed']} twice")
        cell[int(e["seed"])] = e
    if base not in runs:
        raise SystemExit(f"--against {base}: no such variant in the curves ({', '.join(runs)})")
    ref = runs[base]
    out = []
    for name, cells in runs.items():
        if name == base:
            continue
        if set(cells) - set(ref):
            raise SystemExit(
                f"{name} ran the cells {sorted(cells)}, {base} only {sorted(ref)}: "
                f"{name} cannot be paired on {sorted(set(cells) - set(ref))}"
            )
        got = {}
        for key in sorted(cells):
            seeds = sorted(cells[key])
            if set(seeds) - set(ref[key]):
                raise SystemExit(
                    f"{name} {key[0]} {key[1]}: seeds {seeds} against {base}'s "
                    f"{sorted(ref[key])}; {base} did not run "
                    f"{sorted(set(seeds) - set(ref[key]))}, which a paired difference needs"
                )
            diffs = []
            for seed in seeds:
                a, b = cells[key][seed], ref[key][seed]
                if "pixels" in a and "pixels" in b and a["pixels"] != b["pixels"]:
                    raise SystemExit(
                        f"{name} {key[0]} {key[1]} seed {seed} scored other pixels than "
                        f"{base}: {a['pixels']} against {b['pixels']}"
                    )
                diffs.append(100 * (_at(a["curve"], epoch, name) - _at(b["curve"], epoch, base)))
            mean, low, high = mean_interval(diffs)
            higher = sum(d > 0 for d in diffs)
            got[key] = PairedCell(tuple(seeds), mean, low, high, higher)
        means = [c.mean for c in got.values()]
        out.append(
            Paired(
                variant=name,
                base=base,
                epoch=epoch,
                cells=got,
                mean=float(np.mean(means)),
                not_lower=sum(m >= 0 for m in means),
                lowest=min(means),
            )
        )
    return out


def paired_report(pairs: Sequence[Paired]) -> str:
    """:func:`paired`'s differences as a table, in OA points: each cell's mean difference,
    its 95% t-interval and on how many seeds the variant is higher."""
    if not pairs:
        return ""
    lines = [
        f"Against {pairs[0].base}, paired by seed (OA points, variant minus base; "
        "95% t-interval; seeds higher):"
    ]
    heads: list[list[str]] = []
    for p in pairs:
        head = [
            "variant",
            "epoch",
            *[f"{s} {k} (seeds {' '.join(map(str, c.seeds))})" for (s, k), c in p.cells.items()],
            "mean",
            "cells not lower",
            "lowest cell",
        ]
        if not heads or head != heads[-1]:  # a table per set of cells and seeds
            heads.append(head)
            lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        cells = []
        for c in p.cells.values():
            interval = "" if c.low is None else f" ({c.low:+.2f} to {c.high:+.2f})"
            cells.append(f"{c.mean:+.2f}{interval}; {c.higher} of {len(c.seeds)}")
        row = [
            p.variant,
            str(p.epoch),
            *cells,
            f"{p.mean:+.2f}",
            f"{p.not_lower} of {len(p.cells)}",
            f"{p.lowest:+.2f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_curves(
    chosen: dict[str, dict[str, Any]], out: Path, ylabel: str = "held-out OA (%)"
) -> None:
    """The mean curve of every cell and their mean, per variant, the chosen epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(chosen), figsize=(7 * len(chosen), 4.5), squeeze=False)
    for ax, (name, got) in zip(axes[0], chosen.items(), strict=True):
        epochs = np.arange(1, len(got["mean"]) + 1)
        for (scene, split), (seeds, curve) in got["cells"].items():
            ax.plot(
                epochs,
                100 * curve,
                lw=1.2,
                marker="o" if len(epochs) == 1 else None,  # the SVM's one score
                label=f"{scene} {split} ({len(seeds)} seeds)",
            )
        ax.plot(epochs, 100 * got["mean"], color="k", lw=2.5, label="mean of the cells")
        ax.axvline(got["epoch"], color="k", ls="--", lw=1)
        ax.set(xlabel="epoch", ylabel=ylabel, title=f"{name}: best mean at {got['epoch']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report(rows: list[dict[str, str]], order: list[str]) -> str:
    """Mean validation OA / AA (%) per variant and (scene, split), and over all cells."""
    cells = sorted({(r["scene"], r["split"]) for r in rows})
    head = ["variant", *[f"{s} {k}" for s, k in cells], "mean OA", "mean AA", "runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [v for v in order if any(r["variant"] == v for r in rows)]:
        mine = [r for r in rows if r["variant"] == name]
        out, oas, aas = [name], [], []
        for scene, split in cells:
            got = [r for r in mine if (r["scene"], r["split"]) == (scene, split)]
            if not got:
                out.append("-")
                continue
            oa = 100 * np.mean([float(r["val_oa"]) for r in got])
            aa = 100 * np.mean([float(r["val_aa"]) for r in got])
            oas.append(oa)
            aas.append(aa)
            out.append(f"{oa:.2f} / {aa:.2f}")
        complete = len(oas) == len(cells)
        out += [
            f"{np.mean(oas):.2f}" if complete else "-",
            f"{np.mean(aas):.2f}" if complete else "-",
            str(len(mine)),
        ]
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=Path)
    parser.add_argument("--scene", action="append", default=[], metavar="CARD:FRACTION[:ROOT]")
    parser.add_argument("--splits", nargs="+", default=["random", "disjoint"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", default=None, help="run these variants only")
    parser.add_argument(
        "--folds", type=int, default=None, help="score by K-fold cross-validation (K >= 2)"
    )
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--keep-predictions",
        action="store_true",
        help="keep every held-out pixel's class and loss after every epoch beside the CSV "
        "(<stem>.predictions/), for --selection",
    )
    parser.add_argument(
        "--svm",
        action="store_true",
        help="score the RBF SVM on the same splits, validation parts and folds instead of "
        "the variants (rows named svm; no --variants needed): the development pixels' "
        "answer to whether a recipe beats it",
    )
    parser.add_argument("--report", action="store_true", help="print the table and stop")
    parser.add_argument(
        "--curves",
        type=Path,
        nargs="+",
        default=None,
        metavar="CSV",
        help="print the epoch each variant's curves (kept beside these CSVs) peak at, and stop",
    )
    parser.add_argument(
        "--selection",
        type=Path,
        nargs="+",
        default=None,
        metavar="CSV",
        help="as --curves, from the predictions kept beside these CSVs: the held-out OA when "
        "the epoch is chosen on half of the held-out pixels and scored on the other half",
    )
    parser.add_argument(
        "--no-choice",
        action="store_true",
        help="with --selection: score the weights after each epoch on the same pixels instead "
        "(no epoch chosen), to compare choosing with not choosing",
    )
    parser.add_argument(
        "--at",
        type=int,
        nargs="+",
        default=[],
        help="with --curves or --selection: these epochs too",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="with --curves or --selection: draw them here"
    )
    parser.add_argument(
        "--against",
        default=None,
        metavar="VARIANT",
        help="with --at: each other variant's cell-by-cell difference from this one at those "
        "epochs, paired on the seeds each variant ran (the base must hold them)",
    )
    args = parser.parse_args(argv)
    if (args.at or args.plot) and not (args.curves or args.selection):
        parser.error("--at and --plot go with --curves or --selection")
    if args.no_choice and not args.selection:
        parser.error("--no-choice goes with --selection")
    if args.against is not None and not args.at:
        parser.error("--against compares at the epochs given with --at")
    if args.curves or args.selection:
        if args.curves and args.selection:
            parser.error("give --curves or --selection, not both")
        if args.curves:
            entries = [e for c in args.curves for e in curves_of(c)]
        else:
            entries = [e for c in args.selection for e in selection_entries(c, not args.no_choice)]
        chosen = stop_epochs(entries)
        print(curves_report(chosen, args.at))
        if args.against is not None:
            for epoch in args.at:
                print("\n" + paired_report(paired(entries, args.against, epoch)))
        if args.plot is not None:
            what = (
                "held-out OA (%), after the epoch"
                if args.curves or args.no_choice
                else "held-out OA (%), epoch chosen on the other half"
            )
            plot_curves(chosen, args.plot, what)
        return 0
    if args.output is None or (args.variants is None and not args.svm):
        parser.error(
            "--variants (or --svm) and --output are required (except with --curves or --selection)"
        )
    if args.svm and (args.variants is not None or args.only):
        parser.error("--svm scores the SVM alone: leave out --variants and --only")

    variants = [(SVM, {})] if args.svm else read_variants(args.variants)
    method = "svm" if args.svm else "lola"
    order = [name for name, _ in variants]
    if args.report:
        print(report(read_rows(args.output, missing_ok=True), order))
        return 0
    fields = FIELDS if args.folds is None else FIELDS_CV
    kind = "validation-part" if args.folds is None else "cross-validation"
    if args.output.is_file() and args.output.stat().st_size > 0:
        with open(args.output, newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields:
            raise SystemExit(
                f"{args.output} holds rows of another kind (columns {header}); write the "
                f"{kind} scores to a new --output"
            )
        if args.folds is not None:
            other = {r["folds"] for r in read_rows(args.output)} - {str(args.folds)}
            if other:
                raise SystemExit(
                    f"{args.output} holds {', '.join(sorted(other))}-fold scores; write the "
                    f"{args.folds}-fold ones to a new --output"
                )
    if args.folds is not None and args.folds < 2:
        raise SystemExit(f"--folds must be >= 2, got {args.folds}")
    sys.path.insert(0, str(ROOT))
    from geofm.tasks.base import quiet_lightning
    from geofm.tasks.pixel_protocol import cross_validate_seed, load_recipe_scene, validate_seed
    from geofm.tasks.pixel_recipe import load_recipe

    scenes = []
    for spec in args.scene:
        card, fraction, *where = spec.split(":", 2)
        config = yaml.safe_load((ROOT / "configs" / "classify" / f"lola_{card}.yaml").read_text())
        if where:
            config["scene"].update({"root": where[0], "download": False})
        scenes.append((card, float(fraction), config))
    if not scenes:
        raise SystemExit("give at least one --scene CARD:FRACTION[:ROOT]")
    done = {run_key(r) for r in read_rows(args.output, missing_ok=True)}
    loaded: dict[str, dict[str, Any]] = {}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for name, changes in variants:
        if args.only and name not in args.only:
            continue
        for card, fraction, config in scenes:
            for split in args.splits:
                for seed in args.seeds:
                    if (name, card, split, seed) in done:
                        continue
                    recipe = load_recipe(
                        merged(
                            config,
                            {**changes, "split": {**changes.get("split", {}), "kind": split}},
                        )
                    )
                    if card not in loaded:
                        loaded[card] = load_recipe_scene(recipe, progress=False)
                    start = time.perf_counter()
                    with quiet_lightning():
                        keep = args.keep_predictions
                        if args.folds is None:
                            got = validate_seed(
                                recipe,
                                dict(loaded[card]),
                                fraction,
                                seed,
                                method,
                                keep_predictions=keep,
                            )
                        else:
                            got = cross_validate_seed(
                                recipe,
                                dict(loaded[card]),
                                fraction,
                                seed,
                                args.folds,
                                method,
                                keep_predictions=keep,
                            )
                    row = {
                        "variant": name,
                        "scene": card,
                        "split": split,
                        "train_fraction": fraction,
                        "seed": seed,
                        "val_oa": round(got["val_oa"], 6),
                        "val_aa": round(got["val_aa"], 6),
                        "best_epoch": got["best_epoch"],
                        "train_seconds": round(got["train_seconds"], 1),
                        "n_train": sum(got["counts"]["train"]),
                        "n_val": sum(got["counts"]["val"]),
                    }
                    if args.folds is not None:
                        row["n_val"] = sum(got["fold_held_out"])
                        row.update(
                            folds=args.folds,
                            curve_epoch=got["curve_epoch"],
                            curve_oa=round(got["curve_oa"], 6),
                        )
                    # the curve (and the pixels) first: a run in the CSV always has them
                    if args.keep_predictions:
                        save_predictions(
                            predictions_path(args.output, name, card, split, seed), got
                        )
                    with open(curves_path(args.output), "a") as f:
                        entry = {k: row[k] for k in ("variant", "scene", "split", "seed")}
                        entry["curve"] = [round(float(v), 6) for v in got["curve"]]
                        f.write(json.dumps(entry) + "\n")
                    new = not args.output.is_file() or args.output.stat().st_size == 0
                    with open(args.output, "a", newline="") as f:
                        writer = csv.DictWriter(f, fieldnames=fields)
                        if new:
                            writer.writeheader()
                        writer.writerow(row)
                    print(
                        f"{name:<24} {card:<13} {split:<8} seed {seed}: val OA "
                        f"{100 * row['val_oa']:6.2f}  AA {100 * row['val_aa']:6.2f}  "
                        f"({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
                    for j, classes in enumerate(got.get("fold_unseen", [])):
                        if classes:
                            print(f"  fold {j} scores classes {classes} it never trained on")
    print(report(read_rows(args.output, missing_ok=True), order))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
