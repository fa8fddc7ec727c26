"""Notebook source: classify EuroSAT-MS scenes (built by notebooks/build_notebooks.py)."""
# %% [markdown]
# # Classify EuroSAT-MS scenes
#
# The bundled sample holds 30 real EuroSAT-MS patches (Sentinel-2 L1C, 13 bands, 64 x 64
# pixels at 10 m), three per class. This notebook opens them with rasterio and geofm, looks
# at them in true and false colour, trains scene classifiers with three-fold
# cross-validation (each fold tests one scene per class it never trained on) and shows the
# confusion matrix and the scenes it got wrong.
#
# Thirty scenes are far too few to train a vision transformer: the point is the workflow,
# and the numbers below say how far a small model and a simple spectral baseline get on
# them. For the full dataset point `root` at a EuroSAT-MS folder.

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

import time

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np
import rasterio
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, Subset

from geofm.data import SceneFolderDataset, collate_samples, open_raster
from geofm.data.cards import data_dir
from geofm.data.plot import rgb_composite
from geofm.data.transforms import Compose, RandomHorizontalFlip, RandomRotate90
from geofm.tasks.metrics import confusion_matrix
from geofm.tasks.scene import SceneClassificationTask

root = data_dir() / "samples" / "eurosat_ms"

# %% [markdown]
# ## One scene, as rasterio and as geofm see it
#
# rasterio gives the raw file: 13 unnamed uint16 bands with a CRS and a 10 m grid. geofm's
# reader adds what the file does not say, from the `eurosat_ms` card: the band names in
# file order (B01 ... B12, then B8A) and their centre wavelengths.

# %%
path = root / "Forest" / "Forest_1.tif"
with rasterio.open(path) as src:
    print(
        f"rasterio: {src.count} bands x {src.height} x {src.width} {src.dtypes[0]}, "
        f"{src.crs}, {src.res[0]:.0f} m pixels"
    )
scene = open_raster(path, card="eurosat_ms")
print("geofm:   ", tuple(scene["image"].shape), scene["image"].dtype)
for name, wl in zip(scene["bands"], scene["wavelengths"].tolist(), strict=True):
    print(f"  {name:<4} {wl:7.1f} nm")

# %% [markdown]
# ## Every class in true colour (B04, B03, B02) and false colour (B08, B04, B03)
#
# In false colour vegetation is red: near-infrared is bright over leaves.

# %%
data = SceneFolderDataset(root)
fig, axes = plt.subplots(2, 10, figsize=(14, 3.6), layout="constrained")
for j, name in enumerate(data.classes):
    sample = data[data.targets.index(j)]
    axes[0, j].imshow(rgb_composite(sample), interpolation="nearest")
    axes[1, j].imshow(
        rgb_composite(sample, targets_nm=(842.0, 665.0, 560.0)), interpolation="nearest"
    )
    axes[0, j].set_title(name, fontsize=8)
for ax in axes.flat:
    ax.set_axis_off()
axes[0, 0].text(-8, 32, "true", rotation=90, va="center", ha="right")
axes[1, 0].text(-8, 32, "false", rotation=90, va="center", ha="right")
plt.show()

# %% [markdown]
# ## Three-fold cross-validation
#
# Fold *k* tests scene *k* of every class and trains on the other two (20 scenes), so
# every scene is predicted once by a model that never saw it. Two classifiers:
#
# * **LESS ViT** (`SceneClassificationTask`): a small LESS ViT (64 wide, 2 blocks) trained
#   from scratch, scenes flipped and rotated at random, normalised with the card's
#   statistics, 60 epochs (there is no data left to choose the epoch on);
# * **band statistics**: logistic regression on each band's mean and standard deviation
#   over the scene, which is what 20 scenes can support.

# %%
augmented = SceneFolderDataset(root, transforms=Compose([RandomHorizontalFlip(), RandomRotate90()]))
targets = np.array(data.targets)
fold_of = np.array([int(p.stem.rsplit("_", 1)[1]) - 1 for p in data.files])
stats = np.stack(
    [
        torch.cat([s["image"].mean((1, 2)), s["image"].std((1, 2))]).numpy()
        for s in (data[i] for i in range(len(data)))
    ]
)

predicted = {"LESS ViT": np.zeros(len(data), int), "band statistics": np.zeros(len(data), int)}
start = time.perf_counter()
for k in range(3):
    train, test = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
    pl.seed_everything(k, verbose=False)
    task = SceneClassificationTask(
        "less_vit_tiny",
        num_classes=10,
        lr=2e-3,
        model_kwargs={"embed_dim": 64, "depth": 2, "num_heads": 2},
    )
    trainer = pl.Trainer(
        max_epochs=60,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        task,
        DataLoader(
            Subset(augmented, train), batch_size=10, shuffle=True, collate_fn=collate_samples
        ),
    )
    batch = collate_samples([data[i] for i in test])
    with torch.no_grad():
        predicted["LESS ViT"][test] = task.eval()(batch["image"]).argmax(1).numpy()
    baseline = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    predicted["band statistics"][test] = baseline.fit(stats[train], targets[train]).predict(
        stats[test]
    )
print(f"3 folds in {time.perf_counter() - start:.0f} s")
for method, pred in predicted.items():
    print(
        f"{method:<16} accuracy {100 * (pred == targets).mean():5.1f}% "
        f"({(pred == targets).sum()} of {len(targets)} scenes; chance is 10%)"
    )

# %% [markdown]
# ## Confusion matrices

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 6), layout="constrained")
for ax, (method, pred) in zip(axes, predicted.items(), strict=True):
    cm = confusion_matrix(np.asarray(targets), np.asarray(pred), 10)
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=3)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, v, ha="center", va="center", color="white" if v > 1 else "black")
    ax.set_xticks(range(10), data.classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(10), data.classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{method}: {100 * (pred == targets).mean():.0f}% of 30 scenes")
plt.show()

# %% [markdown]
# ## The scenes the band-statistics classifier got wrong

# %%
pred = predicted["band statistics"]
wrong = np.flatnonzero(pred != targets)
cols = max(len(wrong), 1)
fig, axes = plt.subplots(1, cols, figsize=(1.5 * cols, 2.0), layout="constrained", squeeze=False)
for ax, i in zip(axes[0], wrong, strict=False):
    ax.imshow(rgb_composite(data[i]), interpolation="nearest")
    ax.set_title(f"{data.classes[targets[i]]}\nas {data.classes[pred[i]]}", fontsize=7)
for ax in axes[0]:
    ax.set_axis_off()
plt.show()
print(f"{len(wrong)} of 30 scenes misclassified")

# %%
vit, base = ((predicted[m] == targets).mean() for m in ("LESS ViT", "band statistics"))
better = "the band statistics" if base > vit else "LESS ViT" if vit > base else "neither"
print(
    f"on these 30 scenes {better} did better ({100 * vit:.0f}% LESS ViT, "
    f"{100 * base:.0f}% band statistics)"
)

# %% [markdown]
# Twenty labelled scenes are very little to train a transformer from scratch, while a
# class's typical spectrum is something a linear model on band statistics can pick up from
# a few examples; the lines above say how the two compared in this run. A LESS ViT is
# meant to start from weights pretrained on many unlabelled scenes (notebook 04,
# `geofm pretrain`) and be fine-tuned on a real training set: `geofm classify-scenes
# --config configs/classify/eurosat_less_vit.yaml --model.encoder_checkpoint encoder.pt`.
