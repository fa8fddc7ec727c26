"""WeightAverage: the moving average of the weights that validation sees and training keeps."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from geofm.tasks.callbacks import BestWeights, WeightAverage


class Regression(pl.LightningModule):
    """A batch-normed linear model; records what each training and validation step saw."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 1))
        self.seen_in_validation: list[dict[str, torch.Tensor]] = []
        self.seen_in_training: list[dict[str, torch.Tensor]] = []

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def training_step(self, batch, batch_idx):
        self.seen_in_training.append(self.state())
        x, y = batch
        return ((self.net(x)[:, 0] - y) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        self.seen_in_validation.append(self.state())
        x, y = batch
        # the validation score rises and falls with the epoch: epoch 1 is best
        self.log("val/oa", float(self.current_epoch == 1))
        self.log("val/loss", ((self.net(x)[:, 0] - y) ** 2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class AfterEachStep(pl.Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *_):
        self.states.append(pl_module.state())


def _fit(
    *callbacks: pl.Callback, epochs: int = 3, model: Regression | None = None
) -> tuple[Regression, AfterEachStep, pl.Trainer]:
    torch.manual_seed(0)
    x = torch.randn(40, 3) * 3 + 1
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(data, batch_size=10, shuffle=False)
    val = torch.utils.data.DataLoader(data, batch_size=40)
    model, after = model or Regression(), AfterEachStep()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, after],
    )
    trainer.fit(model, train, val)
    return model, after, trainer


def _expected(states: list[dict], horizon: int) -> list[dict]:
    """The average after each step, computed by hand: the mean of the steps so far for the
    first ``horizon`` steps, then ``avg + (w - avg) / horizon`` (the step counter, an
    integer buffer, is the trained one's)."""
    out = []
    for t in range(1, len(states) + 1):
        if t <= horizon:
            avg = {k: sum(s[k].double() for s in states[:t]) / t for k in states[0]}
        else:
            avg = {
                k: out[-1][k] + (states[t - 1][k].double() - out[-1][k]) / horizon
                for k in states[0]
            }
        out.append(avg)
    return [
        {
            k: v.to(states[t][k].dtype) if states[t][k].is_floating_point() else states[t][k]
            for k, v in avg.items()
        }
        for t, avg in enumerate(out)
    ]


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_validation_sees_the_average_training_continues_from_the_weights_and_keeps_the_average():
    model, after, _ = _fit(WeightAverage(epochs=2.0))
    steps = len(after.states)
    assert steps == 12  # 4 batches a epoch, 3 epochs
    expected = _expected(after.states, horizon=2 * 4)
    # each epoch's validation ran on the average of the steps so far, batch-norm
    # statistics included
    for epoch, seen in enumerate(model.seen_in_validation):
        _close(seen, expected[4 * epoch + 3])
    assert not torch.equal(expected[3]["net.0.running_mean"], after.states[3]["net.0.running_mean"])
    # the next epoch trained on from the trained weights, not from the average
    _close(model.seen_in_training[4], after.states[3])
    assert not torch.equal(after.states[3]["net.1.weight"], expected[3]["net.1.weight"])
    # and the model ends holding the average
    _close(model.state(), expected[-1])


def test_with_best_weights_the_chosen_epochs_average_is_kept():
    model, after, _ = _fit(BestWeights(), WeightAverage(epochs=1.0))
    expected = _expected(after.states, horizon=1 * 4)
    _close(model.state(), expected[7])  # epoch 1's validation scored best
    # the callbacks' order does not matter
    model, after, _ = _fit(WeightAverage(epochs=1.0), BestWeights())
    _close(model.state(), _expected(after.states, 4)[7])


def test_frozen_weights_are_not_averaged_and_a_later_validate_sees_the_model_as_is():
    average, frozen = WeightAverage(epochs=1.0), Regression()
    frozen.net[1].weight.requires_grad_(False)
    _, _, trainer = _fit(average, epochs=2, model=frozen)
    assert "net.1.weight" not in average.average
    assert {"net.1.bias", "net.0.weight", "net.0.running_mean"} <= set(average.average)
    frozen.net[1].bias.data.fill_(7.0)  # changed after the fit: validate must see it
    frozen.seen_in_validation.clear()
    trainer.validate(frozen, trainer.val_dataloaders, verbose=False)
    assert frozen.seen_in_validation[0]["net.1.bias"].item() == 7.0
    assert frozen.net[1].bias.item() == 7.0


def test_the_average_spans_a_positive_number_of_epochs():
    for epochs in (0, -1.0):
        with pytest.raises(ValueError, match="positive number of epochs"):
            WeightAverage(epochs)


def test_best_weights_records_every_validation_and_can_leave_the_last_weights():
    best = BestWeights(restore=False)
    model, after, _ = _fit(best)
    assert best.history == [0.0, 1.0, 0.0] and best.best_epoch == 1
    _close(model.state(), after.states[-1])  # the last step's weights, not epoch 1's
    kept = BestWeights()
    model, after, _ = _fit(kept)
    assert kept.history == [0.0, 1.0, 0.0]
    _close(model.state(), after.states[7])
    # left with the last weights, a weight average is what the module keeps
    model, after, _ = _fit(BestWeights(restore=False), WeightAverage(epochs=1.0))
    _close(model.state(), _expected(after.states, 4)[-1])
