"""What a sliding-window prediction runs on each batch of tiles.

A predictor knows the bands it needs (by name, in its order), its class names, and how to
turn a batch of raw tiles into class probabilities:

* :class:`ScenePredictor`: a scene classifier (any module called as
  ``model(image, wavelengths, gsd) -> logits``, such as a registry encoder with a head or
  :class:`~geofm.tasks.scene.SceneClassificationTask`): ``(B, C, T, T) -> (B, K)``.
* :class:`CentrePixelPredictor`: a window classifier that labels the centre pixel of each
  ``patch x patch`` window (LoLA-SpecViT): every pixel of a tile's core is classified from
  the window around it, ``(B, C, T, T) -> (B, K, T - 2r, T - 2r)`` with ``r = patch // 2``.
* :class:`DensePredictor`: a model that labels every pixel of its input
  (``(B, C, T, T) -> (B, K, T, T)`` logits, a segmenter); the ``margin`` pixels at each
  side of a tile, where the model lacks context, are dropped.

:func:`load_predictor` builds one from a file written by ``geofm classify-scenes`` or
``geofm classify-pixels``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

from geofm.models.checkpoints import read_checkpoint
from geofm.models.lola_specvit import window_logits

__all__ = [
    "CentrePixelPredictor",
    "DensePredictor",
    "Predictor",
    "ScenePredictor",
    "load_predictor",
]


class Predictor:
    """Base: ``kind`` is ``"scene"`` or ``"pixel"``; ``tile`` the input tile in pixels;
    ``margin`` context pixels each side (pixel predictors); ``bands`` the band names needed
    (``None``: any bands, in the scene's order); ``classes`` the class names."""

    kind: str = "scene"
    margin: int = 0
    #: the card that names the bands of the scenes this model was trained on, used to read
    #: a scene that does not name them itself (a hyperspectral cube); ``None``: no default
    card: str | None = None
    #: the file the model was read from (:func:`load_predictor`): predictions never write
    #: over it
    checkpoint: Path | None = None
    #: ``(path, array key)`` of the scene a pixel classifier was trained on, as its file
    #: records it (what ``geofm map`` maps when given no scene); ``None``: not recorded
    training_scene: tuple[str, str | None] | None = None
    #: a pixel classifier of a scene without a card: the raw ground-truth value of each
    #: class, in class order (to read a ground truth of that scene); ``None`` otherwise
    label_values: list[int] | None = None

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        bands: Sequence[str] | None,
        tile: int,
        wavelengths: Sequence[float] | None = None,
        name: str = "",
        cardless: bool = False,
    ) -> None:
        if tile < 1:
            raise ValueError(f"tile must be a positive number of pixels, got {tile}")
        if not classes:
            raise ValueError("a predictor needs its class names")
        self.model = model.eval()
        self.classes = [str(c) for c in classes]
        self.bands = None if bands is None else [str(b) for b in bands]
        self.wavelengths = None if wavelengths is None else [float(w) for w in wavelengths]
        self.tile = int(tile)
        self.name = name or type(model).__name__
        #: the bands are generic names (a scene read without a card): match them by count
        self.cardless = cardless

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def __call__(
        self, image: torch.Tensor, valid: torch.Tensor, wavelengths: torch.Tensor, gsd: float
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        bands = "any bands" if self.bands is None else f"{len(self.bands)} bands"
        return (
            f"{type(self).__name__}({self.name}, {self.kind} classifier, {bands}, "
            f"{self.num_classes} classes, tile {self.tile})"
        )


class ScenePredictor(Predictor):
    """A scene classifier on ``tile x tile`` windows: probabilities ``(B, K)``.

    ``model(image, wavelengths, gsd)`` gets the raw tiles; normalisation belongs to the
    model (as in :class:`~geofm.tasks.scene.SceneClassificationTask`) or to ``preprocess``,
    a function of ``(image, wavelengths)`` applied first.
    """

    kind = "scene"

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        bands: Sequence[str] | None,
        tile: int,
        *,
        preprocess: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        **kwargs,
    ):
        super().__init__(model, classes, bands, tile, **kwargs)
        self.preprocess = preprocess

    @torch.no_grad()
    def __call__(self, image, valid, wavelengths, gsd):
        if self.preprocess is not None:
            image = self.preprocess(image, wavelengths)
        logits = self.model(image, wavelengths, gsd)
        return logits.float().softmax(-1)


class CentrePixelPredictor(Predictor):
    """A centre-pixel window classifier with a spectral reduction (LoLA-SpecViT: the model
    has ``reduction``, ``forward_reduced``, ``head`` and ``patch``).

    Each tile is reduced once; the ``patch x patch`` windows of the reduced scores around
    every core pixel are classified ``batch_size`` at a time. Pixels outside the scene
    (and nodata pixels) enter as zero scores, as in training and in
    :func:`geofm.tasks.pixel.classify_pixels`.
    """

    kind = "pixel"

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        bands: Sequence[str] | None,
        tile: int = 64,
        *,
        batch_size: int = 1024,
        **kwargs,
    ):
        for attr in ("reduction", "forward_reduced", "head", "patch"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"{type(model).__name__} is not a centre-pixel window "
                    f"classifier (it has no {attr!r})"
                )
        self.margin = int(cast(Any, model).patch) // 2  # duck-typed: checked above
        if tile <= 2 * self.margin:
            raise ValueError(
                f"a tile of {tile} pixels leaves no core around the "
                f"{model.patch} x {model.patch} windows of this model; use a "
                f"tile of at least {2 * self.margin + 1}"
            )
        super().__init__(model, classes, bands, tile, **kwargs)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def __call__(self, image, valid, wavelengths, gsd):
        model: Any = self.model  # a window classifier (checked in __init__)
        p, r = int(model.patch), self.margin
        scores = model.reduction(image.float(), valid)  # (B, K', T, T)
        B, Kr, T, _ = scores.shape
        core = T - 2 * r
        out = torch.empty(B, self.num_classes, core, core, device=scores.device)
        # a few core rows at a time: only their windows are ever copied out of the tile
        rows = max(1, self.batch_size // core)
        for b in range(B):
            for r0 in range(0, core, rows):
                r1 = min(r0 + rows, core)
                band = scores[b, :, r0 : r1 + p - 1]  # (K', n + p - 1, T)
                windows = band.unfold(1, p, 1).unfold(2, p, 1)  # (K', n, core, p, p)
                windows = windows.permute(1, 2, 0, 3, 4).reshape(-1, Kr, p, p)
                logits = window_logits(model, windows).float()
                out[b, :, r0:r1] = logits.softmax(-1).reshape(r1 - r0, core, -1).permute(2, 0, 1)
        return out


class DensePredictor(Predictor):
    """A per-pixel model ``(B, C, T, T) -> (B, K, T, T)`` logits; the ``margin`` pixels
    at each side of a tile are context only. ``call`` adapts models with another
    signature (default: ``model(image)``)."""

    kind = "pixel"

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        bands: Sequence[str] | None,
        tile: int,
        margin: int = 0,
        *,
        call: Callable[..., torch.Tensor] | None = None,
        **kwargs,
    ):
        if margin < 0 or tile <= 2 * margin:
            raise ValueError(f"a tile of {tile} pixels leaves no core inside a margin of {margin}")
        super().__init__(model, classes, bands, tile, **kwargs)
        self.margin = int(margin)
        self.call = call

    @torch.no_grad()
    def __call__(self, image, valid, wavelengths, gsd):
        out = (
            self.call(self.model, image, wavelengths, gsd)
            if self.call is not None
            else self.model(image)
        )
        m = self.margin
        if m:
            out = out[..., m : out.shape[-2] - m, m : out.shape[-1] - m]
        return out.float().softmax(1)


# --------------------------------------------------------------------------------------------
# From files


def load_predictor(
    checkpoint: str | os.PathLike,
    model: str | None = None,
    *,
    tile: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
) -> Predictor:
    """A predictor from a ``geofm classify-scenes`` checkpoint (``.ckpt``) or a
    ``geofm classify-pixels`` model (``.pt``).

    ``model``, when given, must be the registry name the checkpoint was trained as (a
    check that the right file was passed). ``tile`` overrides the tile size (scene
    classifiers: default the size they were trained on; pixel classifiers: 64).
    """
    path = Path(checkpoint)
    kind, payload = read_checkpoint(path, "pixel", "scene")
    if kind == "pixel":
        from geofm.tasks.pixel_models import load_classifier

        _check_name(path, model, payload.get("model"))
        net, ckpt = load_classifier(path, ckpt=payload)
        predictor: Predictor = CentrePixelPredictor(
            net.to(device),
            ckpt["classes"],
            ckpt["bands"],
            tile=tile or 64,
            batch_size=batch_size,
            wavelengths=ckpt.get("wavelengths"),
            name=ckpt["model"],
            cardless=not ckpt.get("card"),
        )
        predictor.card = ckpt.get("card") or None
        predictor.checkpoint = path
        # raw ground-truth values of a scene without a card, in class order
        predictor.label_values = ckpt.get("label_values")
        cube = (ckpt.get("source_files") or {}).get("cube")
        if cube:
            key = ((ckpt.get("recipe") or {}).get("scene") or {}).get("cube_key")
            predictor.training_scene = (str(cube), key)
        return predictor
    from geofm.tasks.scene import SceneClassificationTask

    task = SceneClassificationTask.from_checkpoint(path, payload=payload)
    meta = payload["geofm_scene"]
    _check_name(path, model, meta.get("model"))
    predictor = ScenePredictor(
        task.to(device),
        meta["classes"],
        meta["bands"],
        tile=tile or int(meta["tile"]),
        wavelengths=meta["wavelengths"],
        name=meta["model"],
    )
    predictor.checkpoint = path
    return predictor


def _check_name(path: Path, wanted: str | None, found: str | None) -> None:
    if wanted is not None and wanted != found:
        raise ValueError(
            f"--model {wanted!r} does not match {path}, which holds a {found!r} classifier"
        )
