"""The one training stack: parameter groups, the schedule and the metrics of BaseTask."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from geofm.models import create_model
from geofm.tasks.base import BaseTask, Optimisation, warmup_cosine
from geofm.tasks.mae import MAEPretrainTask
from geofm.tasks.metrics import classification_metrics
from geofm.tasks.pixel import PixelClassificationTask
from geofm.tasks.scene import SceneClassificationTask

SMALL = {"depth": 1, "embed_dim": 32, "num_heads": 2, "rank": 2}
TINY_LOLA = {
    "patch": 5,
    "components": 4,
    "conv_channels": [4],
    "conv_kernels": [[3, 3, 3]],
    "conv_padding": "same",
    "embed_dims": [16],
    "depths": [1],
    "num_heads": [2],
    "window": 4,
}


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        logger=False,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _split(task: BaseTask) -> tuple[set[str], set[str]]:
    """Names of the decayed and of the not-decayed parameters of the task's optimiser."""
    names = {id(p): n for n, p in task.named_parameters()}
    task.trainer = _trainer(max_steps=10)
    optimizer = task.configure_optimizers()["optimizer"]
    decay = {
        names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]
    }
    plain = {
        names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]
    }
    return decay, plain


def test_one_weight_decay_rule_for_every_task():
    scene = SceneClassificationTask("less_vit_tiny", num_classes=10, model_kwargs=SMALL)
    decay, plain = _split(scene)
    assert decay.isdisjoint(plain)
    assert decay | plain == {n for n, p in scene.named_parameters() if p.requires_grad}
    # 1-D parameters (biases, norms) and the tokens the encoder lists are not decayed ...
    assert all(scene.get_parameter(n).ndim <= 1 for n in plain if not n.endswith("token"))
    assert {"encoder.tokenizer.grid.cls_token"} <= plain
    # ... every matrix is, the patch embedding included
    assert "encoder.tokenizer.patch_embed.fc1.weight" in decay
    assert "encoder.head.weight" in decay

    mae = MAEPretrainTask(
        "less_vit_tiny", model_kwargs=SMALL, decoder_dim=32, decoder_depth=1, decoder_heads=2
    )
    decay, plain = _split(mae)
    assert all(mae.get_parameter(n).ndim >= 2 for n in decay)
    assert "mae.mask_token" in plain and "mae.encoder.tokenizer.grid.cls_token" in plain

    pixel = PixelClassificationTask(
        create_model("lola_specvit", bands=20, num_classes=3, **TINY_LOLA), num_classes=3
    )
    decay, plain = _split(pixel)
    tables = {n for n, _ in pixel.named_parameters() if n.endswith("relative_bias")}
    assert tables and tables <= plain


def test_configure_optimizers_uses_the_groups_and_the_schedule():
    task = SceneClassificationTask(
        "less_vit_tiny",
        num_classes=10,
        model_kwargs=SMALL,
        lr=2e-3,
        weight_decay=0.1,
        warmup_fraction=0.25,
    )
    task.trainer = _trainer(max_steps=40)
    conf = task.configure_optimizers()
    optimizer, schedule = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    # the decayed group first, as before the base task: older checkpoints resume
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert [g["lr"] for g in optimizer.param_groups] == [2e-3 * warmup_cosine(0, 40, 10)] * 2
    for _ in range(10):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)  # warm-up over


def test_warmup_cosine_and_the_pixel_tasks_epoch_warmup():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10, 0.2) == pytest.approx(0.2)
    model = nn.Sequential(nn.Linear(4, 3))
    task = PixelClassificationTask(model, 3, warmup_epochs=5)
    task.trainer = _trainer(max_epochs=20)
    assert task.warmup_steps(200) == 50  # 5 epochs of 10 steps
    task.trainer = _trainer(max_epochs=4)
    assert task.warmup_steps(40) == 20  # a short run warms up over half of it


def test_optimisation_errors_name_the_value():
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        Optimisation(0.0, 0.1)
    with pytest.raises(ValueError, match="warmup_fraction .* got 1.5"):
        Optimisation(1e-3, 0.1, warmup_fraction=1.5)
    with pytest.raises(ValueError, match="betas"):
        Optimisation(1e-3, 0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        BaseTask(lr=1e-3, weight_decay=0.0, num_classes=1)
    task = BaseTask(lr=1e-3, weight_decay=0.0)
    with pytest.raises(ValueError, match="without num_classes"):
        task.update_confusion(
            "val", torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
        )


class _Fixed(BaseTask):
    """Predicts the class stored for each input index, to test the metrics exactly."""

    def __init__(self, preds: torch.Tensor):
        super().__init__(lr=1e-3, weight_decay=0.0, num_classes=4)
        self.preds = preds
        self.w = nn.Parameter(torch.zeros(1))

    def validation_step(self, batch, batch_idx):
        index, target = batch
        self.update_confusion("val", self.preds[index], target)


def test_epoch_metrics_are_those_of_the_whole_part_not_a_mean_of_batches():
    target = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 2])
    preds = torch.tensor([0, 1, 0, 1, 2, 2, 3, 0, 3, 3, 2])
    task = _Fixed(preds)
    # batches of unequal size: a mean of per-batch accuracies would differ
    loader = DataLoader(list(zip(range(len(target)), target.tolist(), strict=True)), batch_size=4)
    trainer = _trainer()
    metrics = trainer.validate(task, loader, verbose=False)[0]
    whole = classification_metrics(target, preds, 4)
    assert metrics["val/oa"] == pytest.approx(whole.oa)
    assert metrics["val/aa"] == pytest.approx(whole.aa)
    assert metrics["val/kappa"] == pytest.approx(whole.kappa)
    assert task.confusions["val"].tolist() == whole.confusion.tolist()
    # the matrix starts afresh each epoch
    trainer.validate(task, loader, verbose=False)
    assert int(task.confusions["val"].sum()) == len(target)
