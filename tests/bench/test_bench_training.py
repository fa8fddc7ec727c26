"""The one training stack under the GFM-Bench protocols: BenchTask's scores, the best
epoch it keeps, and the loaders of cached features."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn as nn

from gfm_bench.metrics import micro_map, miou, top1
from gfm_bench.training import (
    BenchTask,
    EpochBatches,
    LinearOnFeatures,
    evaluate,
    feature_loader,
    fit,
)


class Fixed(nn.Module):
    """Returns the logits stored for each row index (``batch["features"]`` holds indices)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return self.logits[batch["features"].long().flatten()] + 0 * self.w


def _rows(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None]


def test_epoch_batches_are_one_permutation_per_epoch():
    sampler = EpochBatches(10, 4, 3, torch.Generator().manual_seed(5))
    batches = list(sampler)
    assert len(sampler) == len(batches) == 9  # 3 batches (4, 4, 2) per epoch
    g = torch.Generator().manual_seed(5)
    for e in range(3):
        order = torch.randperm(10, generator=g)
        assert torch.equal(torch.cat(batches[3 * e : 3 * e + 3]), order)
    with pytest.raises(ValueError, match="got 0, 4, 3"):
        EpochBatches(0, 4, 3, g)


def test_classification_score_is_top1_of_the_whole_part():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(23, 4, generator=g), torch.randint(0, 4, (23,), generator=g)
    task = BenchTask(Fixed(logits), "classification", 4, lr=0.1)
    # batches of 5 rows: the score is over all 23, not a mean over batches
    loader = torch.utils.data.DataLoader(
        [{"features": _rows(23)[i], "label": y[i]} for i in range(23)], batch_size=5
    )
    score = evaluate(task, loader, "test")
    expected = top1(y, logits, 4)
    assert score.name == "top1" and score.value == pytest.approx(expected.value)
    np.testing.assert_allclose(score.per_class, expected.per_class)
    assert score.count == 23


def test_segmentation_score_is_miou_without_ignored_pixels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, 4, 4, generator=g)
    mask = torch.randint(0, 3, (6, 4, 4), generator=g)
    mask[:, 0] = 255  # unlabelled pixels
    model = Fixed(logits)
    task = BenchTask(model, "segmentation", 3, lr=0.1)
    loader = torch.utils.data.DataLoader(
        [{"features": _rows(6)[i], "mask": mask[i]} for i in range(6)], batch_size=4
    )
    score = evaluate(task, loader, "val")
    expected = miou(mask, logits.argmax(1), 3)
    assert score.name == "miou" and score.value == pytest.approx(expected.value)
    assert score.count == 6 * 12


def test_multilabel_score_is_micro_map_of_every_sigmoid_score():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(9, 5, generator=g)
    y = (torch.rand(9, 5, generator=g) > 0.5).float()
    task = BenchTask(Fixed(logits), "multilabel", 5, lr=0.1)
    score = evaluate(task, feature_loader(_rows(9), y), "test")
    assert score.value == pytest.approx(micro_map(y, torch.sigmoid(logits)).value)


class Snapshots(pl.Callback):
    def __init__(self):
        self.states, self.scores = [], []

    def on_validation_end(self, trainer, pl_module):
        self.states.append({k: v.clone() for k, v in pl_module.state_dict().items()})
        self.scores.append(float(trainer.callback_metrics["val/score"]))


def test_fit_ends_with_the_weights_of_the_best_validation_epoch(monkeypatch):
    g = torch.Generator().manual_seed(3)
    y = torch.arange(60) % 3
    x = torch.randn(60, 8, generator=g) + 1.5 * nn.functional.one_hot(y, 8).float()
    xv = torch.randn(30, 8, generator=g) + 0.5 * nn.functional.one_hot(y[:30], 8).float()
    task = BenchTask(LinearOnFeatures(8, 3), "classification", 3, lr=0.5, optimizer="sgd")
    snaps = Snapshots()
    import gfm_bench.training as training

    real = training._trainer
    monkeypatch.setattr(
        training,
        "_trainer",
        lambda *a, **k: real(*a, **{**k, "callbacks": k["callbacks"] + [snaps]}),
    )
    best = fit(
        task, feature_loader(x, y, batch_size=8, epochs=1), feature_loader(xv, y[:30]), epochs=6
    )
    assert len(snaps.scores) == 6 and len(set(snaps.scores)) > 1
    assert best == int(np.argmax(snaps.scores))  # the earliest of equal best scores
    for k, v in task.state_dict().items():
        torch.testing.assert_close(v, snaps.states[best][k])


def test_bench_task_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="task must be one of .* got 'regression'"):
        BenchTask(nn.Linear(2, 2), "regression", 2, lr=0.1)
    with pytest.raises(ValueError, match="no submodule 'adapter'"):
        BenchTask(nn.Linear(2, 2), "classification", 2, lr=0.1, frozen="adapter")
    with pytest.raises(ValueError, match="'cpu' or 'cuda"):
        fit(
            BenchTask(LinearOnFeatures(2, 2), "classification", 2, lr=0.1),
            feature_loader(torch.zeros(2, 2), torch.tensor([0, 1])),
            device="meta",
        )


class Modes(nn.Module):
    """Records, at each training step, whether its adapter and head are in training mode."""

    def __init__(self):
        super().__init__()
        self.adapter = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        self.head = nn.Linear(2, 2)
        self.seen: set[tuple[bool, bool]] = set()

    def forward(self, batch):
        if torch.is_grad_enabled():
            self.seen.add((self.adapter.training, self.head.training))
        return self.head(self.adapter(batch["features"]))


@pytest.mark.parametrize("frozen", [None, "adapter"])
def test_training_modes_are_set_whatever_mode_the_model_arrives_in(frozen):
    x, y = torch.randn(8, 2), torch.arange(8) % 2
    model = Modes().eval()  # e.g. after its maps were sized or cached
    task = BenchTask(model, "classification", 2, lr=0.1, frozen=frozen)
    fit(task, feature_loader(x, y, batch_size=4, epochs=1), feature_loader(x, y), epochs=2)
    # a frozen adapter stays in eval mode (its dropout off) while the head trains
    assert model.seen == {(frozen is None, True)}
