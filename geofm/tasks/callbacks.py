"""Callbacks: reconstruction figures, a loss curve and throughput for pretraining runs; the
cyclical LoRA scale, a moving average of the weights and best-on-validation weights for
fine-tuning."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from matplotlib.figure import Figure

from geofm.models.less_mae import unpatchify
from geofm.models.lora import lora_layers

__all__ = [
    "BestWeights",
    "CyclicLoRAScale",
    "LossCurve",
    "MAEReconstructionFigures",
    "SamplesPerSecond",
    "ValidationRecord",
    "WeightAverage",
    "cosine_restarts",
    "run_dir",
]


def run_dir(trainer: pl.Trainer) -> Path:
    """Where a run's files go: the first logger's version folder, else the root dir."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class MAEReconstructionFigures(pl.Callback):
    """After each validation epoch, one figure per band set seen in validation.

    Panels: the input as RGB (bands nearest the RGB wavelengths), the masked input (removed
    positions grey), the reconstruction (kept tokens from the input, removed ones from the
    model), and the spectrum of one pixel of a removed patch, truth against model, with the
    removed bands marked. Written to ``<run>/reconstructions/epoch<NNN>_<C>bands.png``.
    """

    def __init__(self, every_n_epochs: int = 1, seed: int = 0) -> None:
        self.every_n_epochs, self.seed = every_n_epochs, seed
        self._batches: dict[int, dict[str, Any]] = {}

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        bands = int(batch["image"].shape[1])
        if bands not in self._batches:
            self._batches[bands] = {
                k: (
                    v[:1].detach().cpu()
                    if torch.is_tensor(v) and v.ndim and v.shape[0] == batch["image"].shape[0]
                    else v
                )
                for k, v in batch.items()
            }

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        out_dir = run_dir(trainer) / "reconstructions"
        out_dir.mkdir(parents=True, exist_ok=True)
        for bands, batch in sorted(self._batches.items()):
            fig = self.figure(pl_module, batch, f"epoch {trainer.current_epoch}")
            fig.savefig(out_dir / f"epoch{trainer.current_epoch:03d}_{bands}bands.png", dpi=90)

    @torch.no_grad()
    def figure(self, pl_module, batch: dict[str, Any], title: str) -> Figure:
        from geofm.data.plot import RGB_NM, nearest_band_indices, rgb_composite

        device = pl_module.device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        generator = torch.Generator(device=device).manual_seed(self.seed)
        was_training = pl_module.training
        pl_module.eval()
        out = pl_module(batch, generator=generator)
        pl_module.train(was_training)
        image = batch["image"][0].float()
        C, H, W = image.shape
        p = pl_module.mae.patch_size
        grid = (H // p, W // p)
        pred = out.pred[:1].float()
        if pl_module.mae.norm_pix_loss:  # back to pixel units with the input's patch stats
            from geofm.models.less_mae import patchify

            patches = patchify(image[None], p)
            pred = pred * (patches.var(-1, keepdim=True) + 1e-6).sqrt() + patches.mean(-1, True)
        recon = unpatchify(pred, grid)[0]
        removed_pos = out.removed_positions[0].reshape(grid)
        removed_band = out.removed_bands[0]
        pixel_mask = removed_pos.repeat_interleave(p, 0).repeat_interleave(p, 1)  # (H, W)
        token_removed = pixel_mask[None] | removed_band[:, None, None]  # (C, H, W)
        shown = torch.where(token_removed, recon, image)
        wavelengths = batch["wavelengths"].float().cpu()

        names = tuple(batch.get("bands") or (f"band {i}" for i in range(C)))

        def sample(img):
            return {"image": img.cpu(), "wavelengths": wavelengths, "gsd": 1.0, "bands": names}

        rgb_in = rgb_composite(sample(image))
        idx = [int(i) for i in nearest_band_indices(wavelengths, RGB_NM)]
        limits = [tuple(np.percentile(image[i].cpu().numpy(), (2, 98))) for i in idx]
        rgb_rec = rgb_composite(sample(shown), limits=limits)
        masked = rgb_in.copy()
        masked[pixel_mask.cpu().numpy()] = 0.5

        fig = Figure(figsize=(13, 3.4), layout="constrained")
        axes = fig.subplots(1, 4, width_ratios=[1, 1, 1, 1.6])
        for ax, img, name in zip(
            axes[:3],
            (rgb_in, masked, rgb_rec),
            ("input", "masked input", "reconstruction"),
            strict=True,
        ):
            ax.imshow(img)
            ax.set_title(name)
            ax.axis("off")
        removed_rgb = [int(i) for i in idx if bool(removed_band[i])]
        if removed_rgb:
            axes[1].set_title(f"masked input ({len(removed_rgb)} of the RGB bands removed)")
        ax = axes[3]
        if bool(removed_pos.any()):
            n = int(removed_pos.flatten().nonzero()[0])
            r, c = (n // grid[1]) * p + p // 2, (n % grid[1]) * p + p // 2
            where = f"removed patch {n}"
        else:
            r, c, where = H // 2, W // 2, "centre"
        order = torch.argsort(wavelengths)
        truth = image[:, r, c].cpu()[order]
        model = recon[:, r, c].cpu()[order]
        wl = wavelengths[order]
        ax.plot(wl, truth, color="0.2", lw=1.2, label="truth")
        ax.plot(wl, model, color="tab:red", lw=1.0, label="reconstruction")
        gone = removed_band.cpu()[order]
        ax.scatter(wl[gone], model[gone], s=10, color="tab:red", zorder=3, label="removed bands")
        ax.set_xlabel("wavelength (nm)")
        ax.set_title(f"pixel ({r}, {c}) of the {where}")
        ax.legend(fontsize=8, loc="best")
        fig.suptitle(f"{title}: {C} bands, loss {float(out.loss):.4f}")
        return fig


class LossCurve(pl.Callback):
    """Per-epoch training and validation loss, as ``<run>/loss_curve.png``, redrawn each epoch
    (so an interrupted run still has it)."""

    def __init__(self, train_key: str = "train/loss_epoch", val_key: str = "val/loss") -> None:
        self.train_key, self.val_key = train_key, val_key
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"train": self.train, "val": self.val}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train, self.val = list(state["train"]), list(state["val"])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.val_key)
        if value is not None:
            self.val.append((trainer.current_epoch, float(value)))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.train_key)
        if value is not None:
            self.train.append((trainer.current_epoch, float(value)))
        if trainer.is_global_zero:
            self.figure().savefig(run_dir(trainer) / "loss_curve.png", dpi=100)

    def figure(self) -> Figure:
        fig = Figure(figsize=(5.5, 3.5), layout="constrained")
        ax = fig.subplots()
        for points, name in ((self.train, "train"), (self.val, "validation")):
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("masked reconstruction loss")
        ax.legend()
        return fig


class SamplesPerSecond(pl.Callback):
    """Training throughput in the progress bar and the log (``train/samples_per_s``),
    averaged over the last ``window`` steps."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._times: list[tuple[float, int]] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._times.append((time.perf_counter() - self._start, int(batch["image"].shape[0])))
        self._times = self._times[-self.window :]
        seconds = sum(t for t, _ in self._times)
        if seconds > 0:
            pl_module.log(
                "train/samples_per_s",
                sum(n for _, n in self._times) / seconds,
                prog_bar=True,
                on_step=True,
                on_epoch=False,
            )


# --------------------------------------------------------------------------------------------
# Fine-tuning


def cosine_restarts(
    step: int, period: int, period_mult: int = 1, low: float = 0.0, high: float = 1.0
) -> float:
    """A cosine cycle with warm restarts (SGDR, Loshchilov and Hutter, ICLR 2017).

    Cycle ``i`` lasts ``T_i = period * period_mult**i`` steps; at ``t`` steps into it the
    value is ``low + (high - low) * (1 + cos(pi * t / T_i)) / 2``: ``high`` at each restart,
    falling to ``low`` at the end of the cycle.
    """
    if period < 1:
        raise ValueError(f"period must be >= 1 step, got {period}")
    if period_mult < 1:
        raise ValueError(f"period_mult must be >= 1, got {period_mult}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    t, length = step, period
    while t >= length:
        t -= length
        length *= period_mult
    return low + (high - low) * 0.5 * (1.0 + math.cos(math.pi * t / length))


class CyclicLoRAScale(pl.Callback):
    """Modulate the strength of every LoRA update with a cosine cycle (warm restarts).

    Before each training step the multiplier ``m`` of each
    :class:`~geofm.models.lora.LoRALinear` (output ``W x + m (alpha / r) B A x``) is set to
    :func:`cosine_restarts` of the optimiser step, the cyclical LoRA schedule of LoLA-SpecViT
    (Zidi et al., 2025). Validation, test and prediction use ``eval_multiplier`` (default
    ``high``), so a model is selected and used at the strength it is deployed with.

    Args:
        period_epochs: length of the first cycle in epochs (steps = epochs x batches).
        period_mult: each cycle is this many times longer than the one before.
        low, high: the range of the multiplier.
        eval_multiplier: the multiplier outside training (default ``high``).

    ``history`` keeps ``(step, multiplier)`` of every training step, for plots and tests.
    """

    def __init__(
        self,
        period_epochs: float = 10.0,
        period_mult: int = 1,
        low: float = 0.5,
        high: float = 1.0,
        eval_multiplier: float | None = None,
    ) -> None:
        if period_epochs <= 0:
            raise ValueError(f"period_epochs must be > 0, got {period_epochs}")
        if not 0.0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
        self.period_epochs, self.period_mult = period_epochs, period_mult
        self.low, self.high = low, high
        self.eval_multiplier = high if eval_multiplier is None else eval_multiplier
        self.history: list[tuple[int, float]] = []
        self._period_steps = 1

    def _set(self, pl_module: pl.LightningModule, value: float) -> None:
        for _, layer in lora_layers(pl_module):
            layer.set_multiplier(value)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not lora_layers(pl_module):
            raise ValueError("CyclicLoRAScale needs a model with LoRA layers (lora mode)")
        batches = trainer.num_training_batches
        if not isinstance(batches, int) or batches < 1:
            batches = 1
        self._period_steps = max(1, round(self.period_epochs * batches))

    def multiplier(self, step: int) -> float:
        return cosine_restarts(step, self._period_steps, self.period_mult, self.low, self.high)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        value = self.multiplier(trainer.global_step)
        self._set(pl_module, value)
        self.history.append((trainer.global_step, value))

    def _evaluate(self, trainer, pl_module) -> None:
        self._set(pl_module, self.eval_multiplier)

    on_validation_start = on_test_start = on_predict_start = on_fit_end = _evaluate


class BestWeights(pl.Callback):
    """Keep, in memory, the weights of the best validation epoch and restore them at the end.

    Best = highest ``monitor`` (default ``val/oa``); ties go to the lower ``tie_break``
    (default ``val/loss``), then to the earlier epoch. Model selection thus uses the
    validation part only; no checkpoint files are written. ``history`` holds the monitored
    value of every validation of the fit, in order. With ``restore=False`` the best epoch
    is found and recorded but the module keeps the weights training ended with.
    """

    def __init__(
        self, monitor: str = "val/oa", tie_break: str | None = "val/loss", restore: bool = True
    ) -> None:
        self.monitor, self.tie_break, self.restore = monitor, tie_break, restore
        self.best: tuple[float, float] | None = None
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.history: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise KeyError(
                f"BestWeights monitors {self.monitor!r}, which the task does not log"
                f"; logged: {sorted(metrics)}"
            )
        score = float(metrics[self.monitor])
        self.history.append(score)
        tie = float(metrics[self.tie_break]) if self.tie_break in metrics else 0.0
        key = (score, -tie)
        if self.best is None or key > self.best:
            self.best, self.best_epoch = key, trainer.current_epoch
            if self.restore:
                self.state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
                )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore and self.state is not None:
            pl_module.load_state_dict(self.state)


class ValidationRecord(pl.Callback):
    """Keep every validation pixel's predicted class and loss after every epoch.

    For choosing how long to train by what the protocol does with the curve (the epoch
    chosen on some validation pixels, scored on others;
    ``benchmarks/pixel_recipe_search.py --selection``), which one OA per epoch cannot
    show. The task's ``validation_step`` must return the batch's ``(B, C)`` logits and the
    batches must carry ``label``; the validation loader must not shuffle, so column ``i``
    is the ``i``-th validation sample. It records the validations of a fit, one per epoch
    on one process (as :mod:`geofm.tasks.pixel_protocol` trains); a later
    ``trainer.validate`` adds nothing.

    ``predictions()``: ``(epochs, N)`` int64 class ids; ``losses()``: ``(epochs, N)``
    float32 cross-entropy of each sample (unsmoothed, as the task's ``val/loss``).
    """

    def __init__(self) -> None:
        self._preds: list[np.ndarray] = []
        self._losses: list[np.ndarray] = []
        self._batch_preds: list[torch.Tensor] = []
        self._batch_losses: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batch_preds, self._batch_losses = [], []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
            raise TypeError(
                "ValidationRecord needs validation_step to return (B, C) logits, got "
                f"{type(outputs).__name__}"
                + (f" of shape {tuple(outputs.shape)}" if isinstance(outputs, torch.Tensor) else "")
            )
        logits = outputs.detach().float()
        self._batch_preds.append(logits.argmax(1).cpu())
        loss = torch.nn.functional.cross_entropy(logits, batch["label"], reduction="none")
        self._batch_losses.append(loss.cpu())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not self._batch_preds:
            return
        self._preds.append(torch.cat(self._batch_preds).numpy().astype(np.int64))
        self._losses.append(torch.cat(self._batch_losses).numpy().astype(np.float32))

    def predictions(self) -> np.ndarray:
        return np.stack(self._preds) if self._preds else np.zeros((0, 0), dtype=np.int64)

    def losses(self) -> np.ndarray:
        return np.stack(self._losses) if self._losses else np.zeros((0, 0), dtype=np.float32)


class WeightAverage(pl.Callback):
    """A moving average of the weights, validated and kept instead of them.

    After training step ``t`` each averaged tensor (the trainable parameters and the
    floating-point buffers, such as batch-norm statistics; frozen weights do not change)
    moves toward the trained one: ``avg = d * avg + (1 - d) * w`` with
    ``d = min(1 - 1 / t, 1 - 1 / (epochs * steps per epoch))``: the plain mean of the
    weights of every step so far until ``epochs`` epochs of steps have passed, then an
    exponential moving average over about that many. Each validation of the fit runs on the
    average (swapped in, and the trained weights swapped back when training resumes), so
    the epoch :class:`BestWeights` keeps is an average too; when training ends the module
    holds the average (or, with :class:`BestWeights`, the chosen epoch's).

    Iterate averaging (Polyak and Juditsky, "Acceleration of Stochastic Approximation by
    Averaging", SIAM J. Control Optim. 1992), in the moving-average form that smooths the
    epoch-to-epoch swings of a short run.
    """

    def __init__(self, epochs: float) -> None:
        if not epochs > 0:
            raise ValueError(f"the average spans a positive number of epochs, got {epochs}")
        self.epochs = float(epochs)
        self.steps = 0
        self.horizon = 1.0
        self.average: dict[str, torch.Tensor] = {}
        self._live: dict[str, torch.Tensor] = {}
        self._held: dict[str, torch.Tensor] | None = None  # trained weights while swapped

    def decay(self) -> float:
        """``d`` of the step just taken (``self.steps``)."""
        return min(1.0 - 1.0 / max(self.steps, 1), 1.0 - 1.0 / self.horizon)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainable = {name for name, p in pl_module.named_parameters() if p.requires_grad}
        buffers = {name for name, b in pl_module.named_buffers() if b.is_floating_point()}
        self._live = {
            k: v
            for k, v in pl_module.state_dict(keep_vars=True).items()
            if k in trainable or k in buffers
        }
        self.average = {k: v.detach().clone() for k, v in self._live.items()}
        self.horizon = max(self.epochs * max(trainer.num_training_batches, 1), 1.0)
        self.steps, self._held = 0, None

    @torch.no_grad()
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any
    ) -> None:
        self._swap_back()

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any
    ) -> None:
        self.steps += 1
        if self.average:
            live = [v.detach() for v in self._live.values()]
            torch._foreach_lerp_(list(self.average.values()), live, 1.0 - self.decay())

    @torch.no_grad()
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # only the fit's own validations: a later trainer.validate() scores the model as is
        if trainer.state.fn != "fit" or trainer.sanity_checking or self._held is not None:
            return
        if self.average:
            self._held = {k: v.detach().clone() for k, v in self._live.items()}
            self._load(self.average)

    @torch.no_grad()
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before BestWeights restores its epoch in on_fit_end
        self._held = None
        if self.average:
            self._load(self.average)

    @torch.no_grad()
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._swap_back()  # an interrupted run keeps its trained weights

    def _swap_back(self) -> None:
        if self._held is not None:
            self._load(self._held)
            self._held = None

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        for key, live in self._live.items():
            live.detach().copy_(state[key])
