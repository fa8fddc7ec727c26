"""SSFTT (and LoLA-SpecViT) on the training pixels of SSFTT's public Indian Pines split.

SSFTT's public code (Sun et al., IEEE TGRS 2022) draws one split: the labelled pixels in
row-major order, ``sklearn.model_selection.train_test_split(..., test_size=0.9,
random_state=345, stratify=labels)``. geofm's own random splits (seeds 0-2) put SSFTT 0.3-0.5
points below the 98.62% that code reports. This script trains geofm's SSFTT (the
baseline recipe of ``configs/classify/lola_indian_pines.yaml``) on exactly that code's
training pixels, chooses the epoch on 5% of each class drawn from the other 90% (seed 0),
and tests on the rest, for each initialisation seed given: if the gap is the luck of one
split's draw, these scores land near 98.6%. ``--methods ssftt lola`` also trains the
recipe's LoLA-SpecViT on the same pixels; ``--random-states`` draws other splits the same
way, to tell the luck of the public draw from a difference in how splits are drawn.

    OMP_NUM_THREADS=1 python benchmarks/ssftt_split_check.py ../shared/data/indian_pines \\
        --methods ssftt lola --lola-variant pca30_epochs80 --seeds 0 1 2 \\
        --output docs/pixel_classification/ssftt_split_check.csv
    OMP_NUM_THREADS=1 python benchmarks/ssftt_split_check.py ../shared/data/indian_pines \\
        --methods lola --lola-variant pca60_bf16 --seeds 0 1 2 --output new.csv  # its rows then
        # added to ssftt_split_check.csv (round 7's recipe on the public split)
    OMP_NUM_THREADS=1 python benchmarks/ssftt_split_check.py ../shared/data/indian_pines \\
        --random-states 0 1 2 --seeds 0 --output docs/pixel_classification/ssftt_split_draws.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def published_split(
    labels: np.ndarray, val_fraction: float = 0.05, random_state: int = 345
) -> dict[str, np.ndarray]:
    """Indices into the row-major labelled pixels: ``train`` as the public code draws it
    (with its ``random_state``, 345, or another to draw another split the same way),
    ``val`` ``val_fraction`` of each class's labelled pixels from the rest (at least one,
    leaving one for test; seed 0), ``test`` the others."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, rest = train_test_split(index, test_size=0.9, random_state=random_state, stratify=labels)
    rng = np.random.default_rng(0)
    val = []
    for k in np.unique(labels):
        mine = rest[labels[rest] == k]
        n = min(max(1, round(val_fraction * int((labels == k).sum()))), len(mine) - 1)
        val.append(rng.choice(mine, size=max(n, 0), replace=False))
    val_idx = np.sort(np.concatenate(val))
    return {"train": np.sort(train), "val": val_idx, "test": np.setdiff1d(rest, val_idx)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder with Indian_pines_corrected.mat and _gt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--random-states",
        type=int,
        nargs="+",
        default=[345],
        help="scikit-learn random_state of each split drawn (345: the public code's)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["ssftt"],
        choices=["ssftt", "lola"],
        help="ssftt, and lola: the recipe's LoLA-SpecViT on the same pixels",
    )
    parser.add_argument(
        "--lola-variant",
        default=None,
        help="train lola as this variant of benchmarks/pixel_recipe_variants.yaml "
        "(default: the recipe the configs hold)",
    )
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch
    import yaml

    from geofm.data.splits import labelled_pixels
    from geofm.tasks.base import quiet_lightning
    from geofm.tasks.pixel_protocol import load_recipe_scene, method_recipes, run_split
    from geofm.tasks.pixel_recipe import load_recipe, merged

    config = yaml.safe_load((ROOT / "configs/classify/lola_indian_pines.yaml").read_text())
    if args.lola_variant:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from pixel_recipe_search import read_variants

        variants = dict(read_variants(ROOT / "benchmarks" / "pixel_recipe_variants.yaml"))
        if args.lola_variant not in variants:
            raise SystemExit(f"no variant {args.lola_variant!r} in pixel_recipe_variants.yaml")
        config = merged(config, variants[args.lola_variant])
    recipe = load_recipe(merged(config, {"scene": {"root": str(args.root), "download": False}}))
    scene = load_recipe_scene(recipe, progress=False)
    # row-major, as the public code's cubes
    pixels, labels = labelled_pixels(torch.as_tensor(scene["mask"]).numpy())
    splits = {state: published_split(labels, random_state=state) for state in args.random_states}
    rows = []
    runs = [(r, s, m) for r in args.random_states for s in args.seeds for m in args.methods]
    for state, seed, method in runs:
        coords = {k: pixels[v] for k, v in splits[state].items()}
        with quiet_lightning():
            (res,) = run_split(
                recipe, scene, coords, seed, [method], progress=False, split=f"sklearn{state}"
            )
        rows.append(
            {
                "random_state": state,
                "method": method,
                "recipe": "published" if method == "ssftt" else args.lola_variant or "configs",
                "precision": method_recipes(recipe, [method])[method].train["precision"],
                "seed": seed,
                "oa": round(100 * res.metrics.oa, 2),
                "aa": round(100 * res.metrics.aa, 2),
                "best_epoch": res.details["best_epoch"],
                **{f"n_{p}": sum(res.counts[p]) for p in ("train", "val", "test")},
                "train_seconds": round(res.train_seconds, 1),
            }
        )
        print(rows[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for state in args.random_states:
        for method in args.methods:
            oas = [r["oa"] for r in rows if (r["method"], r["random_state"]) == (method, state)]
            print(
                f"random_state {state}, {method}: mean OA {np.mean(oas):.2f} (seeds {args.seeds})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
