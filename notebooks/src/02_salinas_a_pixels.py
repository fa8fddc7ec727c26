"""Notebook source: hyperspectral pixel classification of Salinas-A."""
# %% [markdown]
# # Hyperspectral pixel classification: Salinas-A with LoLA-SpecViT
#
# Salinas-A is an 83 x 86 pixel crop of an AVIRIS scene over the Salinas Valley (204
# bands, 3.7 m), with six labelled crop classes. This notebook looks at the spectra of
# each class, trains LoLA-SpecViT (Zidi et al., 2025) and an RBF-SVM on about 5% of each
# class's labelled pixels, once drawn at random and once as spatially disjoint blocks, and
# maps the whole scene tile by tile with `geofm.inference`.

# %%
# quiet: Lightning's start-up lines, and warnings about this small CPU set-up
import logging
import warnings

import lightning.pytorch  # noqa: F401  (its import sets its loggers' level: set ours after)

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
for message in (
    ".*IProgress not found.*",
    ".*does not have many workers.*",
    ".*val_dataloader.*",
    ".*LeafSpec.*",
):
    warnings.filterwarnings("ignore", message)

from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import geofm
from geofm.data import open_envi, read_label_mat
from geofm.data.cards import data_dir, load_dataset_card
from geofm.data.plot import plot_class_map, plot_class_spectra, plot_split_layout, rgb_composite
from geofm.inference import NotGeoreferencedWarning, load_predictor, predict
from geofm.tasks.pixel_protocol import load_recipe_scene, make_split, run_protocol
from geofm.tasks.pixel_recipe import load_recipe

samples = data_dir() / "samples" / "salinas_a"
card = load_dataset_card("salinas_a")
cube = open_envi(samples / "SalinasA_corrected.hdr", card="salinas_a")
gt = read_label_mat(samples / "SalinasA_gt.mat", card="salinas_a")
cube["mask"] = torch.from_numpy(gt)
print(
    f"{cube['image'].shape[0]} bands, {cube['wavelengths'][0]:.0f}-"
    f"{cube['wavelengths'][-1]:.0f} nm, {cube['gsd']} m pixels, "
    f"{int((gt != 255).sum())} labelled pixels in {len(card.classes)} classes"
)

# %%
# parameters
EPOCHS = None  # LoLA-SpecViT's training epochs; None keeps the recipe's (the tests use fewer)

# %% [markdown]
# ## The scene, its ground truth and the spectra of each class
#
# Each curve is the mean spectrum of a class, the band around it one standard deviation.
# The classes differ most in the near infrared, where the weeds and the lettuce of
# different ages reflect differently.

# %%
fig, axes = plt.subplots(
    1, 3, figsize=(17, 4.6), layout="constrained", gridspec_kw={"width_ratios": [1, 1.45, 1.9]}
)
axes[0].imshow(rgb_composite(cube))
axes[0].set_title("true colour (AVIRIS bands nearest 640/550/470 nm)", fontsize=9)
axes[0].set_axis_off()
plot_class_map(gt, card.classes, ax=axes[1], title="ground truth")
plot_class_spectra(cube, card.classes, ax=axes[2], ylabel="radiance (scaled DN)")
plt.show()

# %% [markdown]
# ## Random against spatially disjoint training pixels
#
# A random 5% of each class puts training pixels next to almost every test pixel: with a
# 7 x 7 window the model has seen most test pixels' neighbourhoods in training, which can
# inflate accuracy. The disjoint split assigns whole 8 x 8 blocks to training or testing
# and leaves a buffer of the window radius between them (so its training share is only
# about 5%, and its test pixels are fewer). Here is where the pixels go in each:

# %%
recipe_path = (
    Path(geofm.__file__).resolve().parents[1] / "configs" / "classify" / "lola_salinas_a.yaml"
)
recipe = load_recipe(recipe_path)
if EPOCHS is not None:
    # a schedule of EPOCHS epochs, all of them trained
    recipe = replace(recipe, train={**recipe.train, "epochs": EPOCHS, "stop_epoch": None})
scene = load_recipe_scene(recipe, progress=False)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
for ax, split in zip(axes, ("random", "disjoint"), strict=True):
    coords, _ = make_split(
        gt,
        split,
        0.05,
        recipe.split["val_fraction"],
        recipe.radius,
        0,
        recipe.split["block_size"],
        recipe.split["buffer"],
    )
    plot_split_layout(gt, coords, ax=ax, title=f"{split} split, 5% for training")
plt.show()

# %% [markdown]
# Both splits, LoLA-SpecViT and the SVM, seed 0 (the first 75 epochs of the recipe's
# 80-epoch schedule, the last epoch's weights kept; nothing is chosen on the test pixels):

# %%
results = {}
for split in ("random", "disjoint"):
    # the recipe names its split: one recipe per split, the rest of it the same
    runs, classes = run_protocol(
        replace(recipe, split={**recipe.split, "kind": split}),
        0.05,
        [0],
        methods=["lola", "svm"],
        progress=False,
        save_dir=Path("outputs") / "salinas_a",
        scene=scene,
        echo=lambda line: None,
    )
    for r in runs:
        results[(r.method, split)] = r
print(
    f"{'method':<7} {'split':<9} {'OA %':>6} {'AA %':>6} {'kappa':>6} {'train px':>8} "
    f"{'test px':>8}"
)
for (method, split), r in results.items():
    print(
        f"{method:<7} {split:<9} {100 * r.metrics.oa:6.1f} {100 * r.metrics.aa:6.1f} "
        f"{r.metrics.kappa:6.3f} {sum(r.counts['train']):8d} {sum(r.counts['test']):8d}"
    )
for split in ("random", "disjoint"):
    lola, svm = (100 * results[(m, split)].metrics.oa for m in ("lola", "svm"))
    verdict = "beats" if lola > svm else "loses to" if lola < svm else "ties with"
    print(
        f"{split}: LoLA-SpecViT {verdict} the SVM on this seed ({lola:.1f} against {svm:.1f}% OA)"
    )

# %% [markdown]
# One seed says little on the disjoint split: with a few blocks per class for training,
# Salinas-A's lettuce fields (four growth stages of one crop) swing by several points
# between seeds and between recipes, and the SVM, on the spectrum alone, beats the window
# models on some seeds. The recipe is chosen by cross-validation over many seeds, and
# `docs/pixel_classification.md` gives its test results over seeds 0-5 beside the SVM's
# and SSFTT's, with the seeds where it loses.

# %% [markdown]
# ## The whole scene, tile by tile
#
# `geofm.inference.predict` classifies every pixel tile by tile (32 x 32 pixels of core,
# read with the 3-pixel window radius around them), reads the cube block by block (here
# blocks of 32 x 32 output pixels, to show it: the cube is small) and writes a GeoTIFF.
# Salinas-A carries no map coordinates, so the map is on the scene's pixel grid, and geofm
# says so.

# %%
checkpoint = results[("lola", "random")].details["checkpoint"]
predictor = load_predictor(checkpoint, tile=38)
print(predictor)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", NotGeoreferencedWarning)
    result = predict(
        predictor,
        samples / "SalinasA_corrected.hdr",
        Path("outputs") / "salinas_a" / "lola_map.tif",
        card="salinas_a",
        block=32,
        overwrite=True,
        progress=False,
    )
for w in caught:
    print("note:", str(w.message).replace(str(data_dir()), "datasets"))
labels = result.labels.values
labelled = gt != 255
fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
plot_class_map(labels, card.classes, ax=axes[0], title="LoLA-SpecViT (random split, seed 0)")
plot_class_map(gt, card.classes, ax=axes[1], title="ground truth")
plt.show()
print(
    f"{result.tiles_run} tiles in {result.blocks} blocks; agreement with the ground truth on its "
    f"{int(labelled.sum())} labelled pixels: {100 * (labels[labelled] == gt[labelled]).mean():.1f}% "
    "(training pixels included)"
)
