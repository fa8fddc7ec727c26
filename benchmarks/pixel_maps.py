"""Class maps of every method of a ``geofm classify-pixels`` run, beside the ground truth.

For one seed of a run (its results JSON and saved models), draws in one figure: the ground
truth, where the split put its parts, and the map of the whole scene by each method the
run holds (the saved LoLA-SpecViT and SSFTT models; the SVM is refitted on the same
training pixels with the hyper-parameters the run chose). Each map's title gives the
method's test OA and AA from the run's JSON.

    python benchmarks/pixel_maps.py docs/pixel_classification/indian_pines_random.json \\
        --seed 0 --out docs/pixel_classification/indian_pines_random_seed0.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a classify-pixels results JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from matplotlib.figure import Figure

    from geofm.data.plot import plot_class_map, plot_split_layout
    from geofm.data.sample import IGNORE_INDEX
    from geofm.tasks.metrics import confusion_metrics
    from geofm.tasks.pixel import classify_pixels, svm_baseline
    from geofm.tasks.pixel_models import load_classifier
    from geofm.tasks.pixel_protocol import load_recipe_scene, make_split, split_radius
    from geofm.tasks.pixel_recipe import load_recipe

    entries = [e for e in json.loads(args.results.read_text()) if e["seed"] == args.seed]
    if not entries:
        raise SystemExit(f"{args.results} holds no run of seed {args.seed}")
    first = entries[0]
    recipe = load_recipe(first["recipe"])
    methods = [e["method"] for e in entries]
    scene = load_recipe_scene(recipe, progress=False)
    mask = torch.as_tensor(scene["mask"]).numpy()
    image = torch.as_tensor(scene["image"]).float()
    classes = first["classes"]
    # the run's split: its recorded radius (results before it was recorded: the radius the
    # run's methods give), checked against the pixel counts the run recorded
    radius = first["details"].get("split_radius", split_radius(recipe, methods))
    coords, info = make_split(
        mask,
        first["split"],
        first["train_fraction"],
        recipe.split["val_fraction"],
        radius,
        args.seed,
        recipe.split["block_size"],
        recipe.split["buffer"],
        recipe.split["unsplittable"],
    )
    if info["counts"] != first["counts"]:
        raise SystemExit(
            f"the split rebuilt for seed {args.seed} is not the run's: pixels per class "
            f"{info['counts']} against the recorded {first['counts']}"
        )
    H, W = mask.shape
    every = np.argwhere(np.ones((H, W), dtype=bool))
    panels = []
    for e in entries:
        m = confusion_metrics(np.asarray(e["confusion"]))
        title = f"{e['method']}: test OA {100 * m.oa:.2f}%, AA {100 * m.aa:.2f}%"
        if e["method"] == "svm":
            tr = coords["train"]
            pixels = image.numpy().reshape(image.shape[0], -1).T
            labels, _ = svm_baseline(
                pixels[tr[:, 0] * W + tr[:, 1]],
                mask[tr[:, 0], tr[:, 1]],
                pixels,
                seed=args.seed,
                C_grid=[e["details"]["C"]],
                gamma_grid=[e["details"]["gamma"]],
            )
        else:
            checkpoint = e["details"].get("checkpoint")
            if not checkpoint or not Path(checkpoint).is_file():
                raise SystemExit(f"the {e['method']} model of seed {args.seed} is not saved")
            model, _ = load_classifier(checkpoint)
            labels, _ = classify_pixels(model, image, every, scene.get("valid"))
        panels.append((labels.reshape(H, W), title))

    n = 2 + len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(5.2 * cols, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    plot_class_map(mask, classes, ax=axes[0], title="ground truth (white: unlabelled)")
    plot_split_layout(mask, coords, ax=axes[1], title=f"{first['split']} split, seed {args.seed}")
    for ax, (labels, title) in zip(axes[2:], panels, strict=False):
        plot_class_map(labels, classes, ax=ax, title=title, ignore_index=IGNORE_INDEX)
    for ax in axes[n:]:
        ax.set_axis_off()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
