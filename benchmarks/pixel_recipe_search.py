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
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from geofm.tasks.pixel_recipe import merged

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
# scored, n_train the split's training part
FIELDS_CV = [*FIELDS, "folds", "curve_epoch", "curve_oa"]


def read_variants(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, changes)]`` from a YAML list of ``{name, changes}`` (names unique)."""
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and set(e) <= {"name", "changes", "note"} and "name" in e
        for e in entries
    ):
        raise SystemExit(f"{path}: expected a list of {{name, changes, note}} entries")
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: variant names repeat: {names}")
    return [(e["name"], e.get("changes") or {}) for e in entries]


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
    parser.add_argument("--variants", type=Path, required=True)
    parser.add_argument("--scene", action="append", default=[], metavar="CARD:FRACTION[:ROOT]")
    parser.add_argument("--splits", nargs="+", default=["random", "disjoint"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", default=None, help="run these variants only")
    parser.add_argument(
        "--folds", type=int, default=None, help="score by K-fold cross-validation (K >= 2)"
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--report", action="store_true", help="print the table and stop")
    args = parser.parse_args(argv)

    variants = read_variants(args.variants)
    order = [name for name, _ in variants]
    if args.report:
        print(report(read_rows(args.output), order))
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
    done = {(r["variant"], r["scene"], r["split"], int(r["seed"])) for r in read_rows(args.output)}
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
                        if args.folds is None:
                            got = validate_seed(recipe, dict(loaded[card]), fraction, seed)
                        else:
                            got = cross_validate_seed(
                                recipe, dict(loaded[card]), fraction, seed, args.folds
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
    print(report(read_rows(args.output), order))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
