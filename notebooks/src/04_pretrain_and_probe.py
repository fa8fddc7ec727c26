"""Notebook source: pretrain LESS ViT as a masked autoencoder, then probe it."""
# %% [markdown]
# # Pretrain and probe
#
# A short hyperspectral masked-autoencoder run of LESS ViT-Ti (Si et al., 2025) on the
# bundled samples: 13-band EuroSAT-MS scenes and 204-band Salinas-A windows in one run, one
# band set per batch. Then what it reconstructs, and a k-nearest-neighbour probe of its
# features on the EuroSAT-MS scenes against the same architecture with random weights.
#
# The quick-start recipe (12 epochs over 54 windows, a minute or two on two CPU cores) is a
# demonstration, not a pretrained model: `configs/pretrain/less_vit_b_ssl4eo.yaml` is the
# paper's recipe on SSL4EO-S12.

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

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, display

import geofm
from geofm.cli import main as geofm_cli
from geofm.data import SceneFolderDataset, collate_samples, open_envi
from geofm.data.cards import data_dir
from geofm.data.datamodules import mae_transforms
from geofm.models import create_model
from geofm.models.checkpoints import read_torch_file
from geofm.tasks.callbacks import MAEReconstructionFigures
from geofm.tasks.export import export_encoder
from geofm.tasks.mae import MAEPretrainTask
from geofm.tasks.probe import extract_features, knn_leave_one_out

config = Path(geofm.__file__).resolve().parents[1] / "configs" / "pretrain" / "quickstart.yaml"
run = Path("outputs") / "pretrain"

# %% [markdown]
# ## `geofm pretrain`
#
# The command line, called from Python: the quick-start configuration (what `make demo`
# runs), with the run's files under `outputs/pretrain/`.

# %%
logger = (
    '{"class_path": "lightning.pytorch.loggers.CSVLogger", '
    f'"init_args": {{"save_dir": "{run}", "name": "logs"}}}}'
)
code = geofm_cli(
    [
        "pretrain",
        "--config",
        str(config),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(run),
        "--trainer.logger",
        logger,
    ]
)
assert code == 0
versions = sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
log_dir = versions[-1]
checkpoint = log_dir / "checkpoints" / "last.ckpt"
print("run:", log_dir)

# %% [markdown]
# The losses, epoch by epoch (reconstruction error of the removed positions and the
# removed bands):

# %%
rows = list(csv.DictReader(open(log_dir / "metrics.csv")))
epochs = [r for r in rows if r.get("val/loss")]
train = [r for r in rows if r.get("train/loss_epoch")]
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(
    [int(r["epoch"]) for r in train],
    [float(r["train/loss_epoch"]) for r in train],
    "o-",
    label="train",
)
ax.plot(
    [int(r["epoch"]) for r in epochs],
    [float(r["val/loss"]) for r in epochs],
    "s-",
    label="validation",
)
ax.set_xlabel("epoch")
ax.set_ylabel("MAE loss")
ax.legend()
plt.show()
for r in epochs:
    print(f"epoch {r['epoch']}: val/loss {float(r['val/loss']):.4f}")

# %% [markdown]
# ## Reconstructions
#
# One EuroSAT-MS scene and one Salinas-A window, with 75% of the positions and half of the
# bands removed: the input, what the encoder saw, the reconstruction, and the spectrum of
# one removed pixel.

# %%
task = MAEPretrainTask.load_from_checkpoint(checkpoint, map_location="cpu").eval()
epochs_done = read_torch_file(checkpoint)["epoch"] + 1  # read without running code
samples = data_dir() / "samples"
scene = SceneFolderDataset(samples / "eurosat_ms")[0]
window = open_envi(
    samples / "salinas_a" / "SalinasA_corrected.hdr", window=(20, 20, 32, 32), card="salinas_a"
)
figures = MAEReconstructionFigures(seed=1)
for sample, card in ((scene, "eurosat_ms"), (window, "salinas_a")):
    sample = {k: v for k, v in sample.items() if k != "label"}
    batch = collate_samples([mae_transforms([card], flips=False)(sample)])
    fig = figures.figure(task, batch, f"{card}, after {epochs_done} epochs")
    fig.savefig(run / f"reconstruction_{card}.png", dpi=90)
    display(Image(filename=run / f"reconstruction_{card}.png"))

# %% [markdown]
# ## A kNN probe of the features
#
# `geofm export` keeps the encoder and what it was trained on. Its global features of the
# 30 EuroSAT-MS scenes (same input scaling as in pretraining) are classified by their
# nearest neighbours (k = 3, weighted by similarity, leave one out), beside the same
# architecture with random weights. The pretraining saw these scenes, without their labels.

# %%
encoder_file = export_encoder(checkpoint, run / "encoder.pt", overwrite=True)
pretrained = create_model("less_vit_tiny", checkpoint=str(encoder_file)).eval()
torch.manual_seed(0)
random_init = create_model(
    "less_vit_tiny", **{k: v for k, v in pretrained.config.items() if k != "num_classes"}
).eval()
prep = mae_transforms(["eurosat_ms"], flips=False)
data = SceneFolderDataset(samples / "eurosat_ms", transforms=prep)
batch = collate_samples([data[i] for i in range(len(data))])
scores = {}
for name, model in (("pretrained", pretrained), ("random weights", random_init)):
    features, labels = extract_features(model, [batch])
    scores[name] = knn_leave_one_out(features, labels, k=3)
    print(f"{name:<22} kNN (k=3, leave one out) accuracy {100 * scores[name]:.1f}% (chance 10%)")
print("data the encoder was trained on:", [d["card"] for d in pretrained.data_config])

# %% [markdown]
# A minute of pretraining on 54 windows is not expected to give features that beat random
# ones on these 30 scenes: the two lines above say whether it did. The same probe, with
# fine-tuning and segmentation beside it and the published numbers for comparison, is
# `gfm-bench run --suite mini --encoder less_vit_tiny:encoder.pt` on an encoder from a
# real run.
