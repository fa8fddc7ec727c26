"""LoLA-SpecViT training and prediction on a CUDA device (skipped without one).

Shapes and devices only: the scene is synthetic (six classes of random spectra), since the
device machine has no rasterio to read the bundled cube with.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geofm.models.lola_specvit import LoLASpecViT
from geofm.models.lora import lora_layers, merge_lora
from geofm.tasks.pixel import PixelClassificationTask, ReducedWindows, classify_pixels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(6).repeat_interleave(8)[:, None].expand(48, 40).clone()  # stripes
    means = torch.rand(6, 40, generator=g) * 1000
    image = means[labels].permute(2, 0, 1) + torch.randn(40, 48, 40, generator=g) * 20
    return image, labels.numpy()


def _model():
    return LoLASpecViT(
        40,
        6,
        patch=7,
        components=8,
        conv_channels=(4, 8),
        conv_kernels=((3, 3, 3), (3, 3, 3)),
        conv_padding="same",
        embed_dims=(16, 32),
        depths=(2, 1),
        num_heads=(2, 2),
        window=4,
    )


def test_training_with_augmentations_and_prediction_on_cuda(tmp_path):
    import lightning.pytorch as pl

    torch.manual_seed(0)
    image, labels = _scene()
    coords = np.argwhere(np.ones_like(labels, dtype=bool))[::5]
    model = _model()
    model.fit_reduction(image[:, coords[:, 0], coords[:, 1]].T)
    with torch.no_grad():
        scores = model.reduction(image[None])[0]
    ds = ReducedWindows(scores, coords, labels[coords[:, 0], coords[:, 1]], 7)
    task = PixelClassificationTask(
        model, 6, reduced_inputs=True, context_dropout=0.5, brightness=0.1
    )
    devices = set()

    class Where(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            devices.add((batch["image"].device.type, next(pl_module.parameters()).device.type))

    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        max_epochs=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[Where()],
    )
    trainer.fit(
        task,
        torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True),
        torch.utils.data.DataLoader(ds, batch_size=64),
    )
    assert devices == {("cuda", "cuda")}  # augmentations ran on the GPU
    every = np.argwhere(np.ones(labels.shape, dtype=bool))
    gpu_map, gpu_prob = classify_pixels(model.cuda(), image, every, probabilities=True)
    assert (gpu_map == labels.reshape(-1)).mean() > 0.5  # six well-separated spectra
    cpu_map, cpu_prob = classify_pixels(model.cpu(), image, every, probabilities=True)
    np.testing.assert_allclose(gpu_prob, cpu_prob, atol=1e-3)
    assert (gpu_map == cpu_map).mean() > 0.999


def test_lora_merge_on_cuda():
    torch.manual_seed(0)
    model = _model()
    model.fit_reduction(torch.randn(100, 40))
    model = model.cuda().eval()
    model.to_lora(rank=2)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.normal_(std=0.05)
        x = torch.randn(4, 40, 7, 7, device="cuda")
        before = model(x)
        merge_lora(model)
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
