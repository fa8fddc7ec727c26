"""Notebook source: map a Sentinel-2 L1C tile."""
# %% [markdown]
# # Map a Sentinel-2 L1C tile
#
# The bundled crop of tile T33UUU (16 February 2017) holds all 13 Sentinel-2 bands as
# separate JPEG 2000 files at their native 10, 20 and 60 m. This notebook stacks them onto
# one 10 m grid, classifies the tile window by window with scene classifiers trained on
# the bundled EuroSAT-MS scenes (the same sensor and processing level), writes the map as
# a Cloud-Optimised GeoTIFF in the tile's CRS (EPSG:32633), opens it again with rioxarray
# and compares it with the 30 reference polygons that come with the tile.

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

from pathlib import Path

import geopandas as gpd
import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np
import rasterio
import rioxarray
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader

from geofm.data import SceneFolderDataset, collate_samples, open_raster
from geofm.data.cards import data_dir
from geofm.data.plot import class_colors, rgb_composite
from geofm.data.transforms import Compose, RandomHorizontalFlip, RandomRotate90
from geofm.inference import ScenePredictor, load_predictor, predict
from geofm.tasks.scene import SceneClassificationTask

tile_dir = data_dir() / "samples" / "s2_l1c_t33uuu"
out = Path("outputs") / "s2_t33uuu"
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Thirteen files at three resolutions

# %%
for path in sorted((tile_dir / "IMG_DATA").glob("*.jp2")):
    with rasterio.open(path) as src:
        print(
            f"{path.stem.rsplit('_', 1)[1]:<4} {src.res[0]:3.0f} m  {src.width:5d} x "
            f"{src.height:4d}  {src.crs}"
        )

# %% [markdown]
# `open_raster` reads the folder, names each file's band from its name and resamples every
# band onto the finest grid (bilinear), so all 13 line up at 10 m. The 60 m bands (B01,
# B09, B10) are six times coarser: they carry atmosphere, not detail.

# %%
s2 = open_raster(tile_dir / "IMG_DATA")
print(tuple(s2["image"].shape), s2["bands"], s2["crs"], f"{s2['gsd']:.0f} m")
fig, axes = plt.subplots(1, 3, figsize=(15, 2.9), layout="constrained")
axes[0].imshow(rgb_composite(s2), interpolation="nearest")
axes[0].set_title("B04, B03, B02 (10 m)")
window = (slice(300, 428), slice(700, 956))
for ax, band in zip(axes[1:], ("B08", "B09"), strict=True):
    i = s2["bands"].index(band)
    ax.imshow(s2["image"][i][window].numpy(), cmap="gray", interpolation="nearest")
    ax.set_title(f"{band} on the 10 m grid (a 128 x 256 window)")
for ax in axes:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## Two scene classifiers, trained on the 30 bundled EuroSAT-MS scenes
#
# * a small **LESS ViT** (`SceneClassificationTask`, 64 wide, 2 blocks) on 64 x 64 scenes,
#   flipped and rotated at random;
# * **band statistics**: logistic regression on each band's mean and standard deviation,
#   written as a torch module so that the same tiling runs it.
#
# Notebook 01 measures both by cross-validation on these scenes. Thirty scenes are little
# to map a February tile with (snow and low sun); the maps below are what they support.

# %%
scenes = SceneFolderDataset(data_dir() / "samples" / "eurosat_ms")
augmented = SceneFolderDataset(
    scenes.root, transforms=Compose([RandomHorizontalFlip(), RandomRotate90()])
)
pl.seed_everything(0, verbose=False)
task = SceneClassificationTask(
    "less_vit_tiny",
    num_classes=10,
    lr=2e-3,
    model_kwargs={"embed_dim": 64, "depth": 2, "num_heads": 2},
)
trainer = pl.Trainer(
    max_epochs=25,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(task, DataLoader(augmented, batch_size=10, shuffle=True, collate_fn=collate_samples))
trainer.save_checkpoint(out / "eurosat_less_vit.ckpt")

feats = torch.stack(
    [
        torch.cat([s["image"].mean((1, 2)), s["image"].std((1, 2))])
        for s in (scenes[i] for i in range(len(scenes)))
    ]
)
mean, std = feats.mean(0), feats.std(0)
logreg = LogisticRegression(max_iter=5000).fit(((feats - mean) / std).numpy(), scenes.targets)


class BandStatistics(torch.nn.Module):
    """The logistic regression above as a scene classifier of raw tiles."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(26, 10)
        self.linear.weight.data = torch.tensor(logreg.coef_, dtype=torch.float32)
        self.linear.bias.data = torch.tensor(logreg.intercept_, dtype=torch.float32)

    def forward(self, image, wavelengths, gsd):
        x = torch.cat([image.mean((2, 3)), image.std((2, 3))], 1)
        return self.linear((x - mean) / std)


predictors = {
    "LESS ViT": load_predictor(out / "eurosat_less_vit.ckpt"),
    "band statistics": ScenePredictor(
        BandStatistics(), scenes.classes, task.bands, tile=64, name="band statistics"
    ),
}
for p in predictors.values():
    print(p)

# %% [markdown]
# ## Classify the tile window by window
#
# 64 x 64 pixel windows every 16 pixels: the map has one cell per 16 x 16 pixels (160 m),
# each the blend of the (up to 16) windows over it. The tile's bands are read by window
# and resampled as they are read; the output is a Cloud-Optimised GeoTIFF on the tile's
# grid.

# %%
results = {}
for name, predictor in predictors.items():
    path = out / f"t33uuu_{name.replace(' ', '_').lower()}.tif"
    results[name] = predict(
        predictor, tile_dir / "IMG_DATA", path, stride=16, overwrite=True, progress=False
    )
    print(f"{name}: {results[name].tiles_run} windows -> {path}")

# %% [markdown]
# ## Open the GeoTIFF again with rioxarray

# %%
path = results["band statistics"].paths[0]
da = rioxarray.open_rasterio(path).squeeze("band", drop=True)
print(da.rio.crs, da.shape, da.rio.resolution(), da.rio.bounds())
with rasterio.open(path) as src:
    print(
        "COG layout:",
        src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
        "| classes:",
        src.tags()["classes"].replace("\n", ", "),
    )
assert da.rio.crs.to_epsg() == 32633
assert da.rio.bounds() == (
    s2["transform"].c,
    s2["transform"].f + 768 * s2["transform"].e,
    s2["transform"].c + 1536 * s2["transform"].a,
    s2["transform"].f,
)

# %% [markdown]
# ## The maps, with the reference polygons
#
# Reference polygons with `cid` 1 in white, `cid` 2 in black. The white ones lie on the
# lakes and the river, the black ones on land.

# %%
refs = gpd.read_file(tile_dir / "s2l1c_ref.gpkg")
print(
    f"{len(refs)} polygons in {refs.crs}: cid 1 x {int((refs.cid == 1).sum())}, "
    f"cid 2 x {int((refs.cid == 2).sum())}"
)
colours = class_colors(10)
left, bottom, right, top = da.rio.bounds()
fig, axes = plt.subplots(3, 1, figsize=(11, 12.5), layout="constrained")
axes[0].imshow(rgb_composite(s2), extent=(left, right, bottom, top), interpolation="nearest")
axes[0].set_title("true colour")
for ax, (name, res) in zip(axes[1:], results.items(), strict=True):
    labels = res.labels.values
    rgba = np.zeros(labels.shape + (4,))  # cells without a prediction: clear
    rgba[labels != 255] = colours[labels[labels != 255]]
    ax.imshow(rgba, extent=(left, right, bottom, top), interpolation="nearest")
    shares = np.bincount(labels[labels != 255], minlength=10) / labels.size
    ax.set_title(
        f"{name}: "
        + ", ".join(
            f"{c} {100 * s:.0f}%" for c, s in zip(scenes.classes, shares, strict=True) if s >= 0.02
        ),
        fontsize=9,
    )
for ax in axes:
    refs[refs.cid == 1].boundary.plot(ax=ax, color="white", linewidth=1.5)
    refs[refs.cid == 2].boundary.plot(ax=ax, color="black", linewidth=1.5)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i]) for i in range(10)]
fig.legend(handles, scenes.classes, loc="outside lower center", ncols=5, fontsize=8)
plt.show()

# %% [markdown]
# ## Compared with the reference polygons
#
# The polygons are in the map's CRS and fall on its grid, each in one or a few cells; two
# of them are test fixtures of the package that ships them and lie partly or wholly
# outside the crop, as their comments say. The package names neither class (`cid` 1 and
# 2), so the check is what the classifiers call each: the class of the cell under each
# polygon's centroid. A classifier that has learnt water should call `cid` 1 River or
# SeaLake.

# %%
assert refs.crs == da.rio.crs
transform = results["band statistics"].transform
height, width = da.shape
cells = [~transform * (p.x, p.y) for p in refs.geometry.centroid]
rows = np.array([int(np.floor(r)) for _, r in cells])
cols = np.array([int(np.floor(c)) for c, _ in cells])
on_map = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
print(
    f"{int(on_map.sum())} of {len(refs)} polygons on the map; off it: polygon "
    + ", ".join(
        f"{pid} ({comment})"
        for pid, comment in zip(refs.pid[~on_map], refs.comment[~on_map], strict=True)
    )
)
for name, res in results.items():
    under = res.labels.values[rows[on_map], cols[on_map]]
    cid = refs.cid.values[on_map]
    print(f"\n{name}: class under each polygon's centroid")
    for c in (1, 2):
        counts = np.bincount(under[cid == c], minlength=10)
        print(
            f"  cid {c}: "
            + ", ".join(
                f"{scenes.classes[i]} {counts[i]}" for i in np.argsort(-counts) if counts[i]
            )
        )
    water = np.isin(under, [scenes.classes.index("River"), scenes.classes.index("SeaLake")])
    print(
        f"  water (River or SeaLake): {int(water[cid == 1].sum())} of "
        f"{int((cid == 1).sum())} cid-1 polygons, {int(water[cid == 2].sum())} of "
        f"{int((cid == 2).sum())} cid-2 polygons"
    )
