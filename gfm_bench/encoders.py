"""Encoder adapters: one interface in front of every model the benchmark evaluates.

An adapter is an ``nn.Module`` with

* ``features(batch) -> (B, D)``: the global vector (linear probe, kNN, fine-tuning);
* ``feature_maps(batch) -> list of (B, D_i, h, w)``: maps for a dense head (UPerNet);
* ``check_bands(bands, wavelengths)``: raises :class:`BandMatchError`, naming the bands,
  when the encoder cannot take a dataset's bands;
* ``normalisation``: how inputs are scaled before the encoder (``"mae"``: each band's
  ``mean +- 2 std`` onto [0, 1], the LESS ViT pretraining input; ``"standardise"``:
  ``(x - mean) / std``), with the dataset card's statistics.

Adapters:

* :class:`GeofmEncoder`: any geofm registry model (LESS ViT and the baselines), from an
  encoder file written by ``geofm export`` or at random initialisation (the control row).
  Wavelength-aware models take any band set; the stacked ViT takes a fixed band list.
* :class:`TimmEncoder`: a timm model that takes the bands stacked as input channels, built
  for a named band list (or for whatever bands the first dataset has).

Fixed-band encoders match a dataset's bands to theirs by name first and then by wavelength
(within ``wavelength_tolerance_nm``), reorder them, and drop the rest; a band they need and
cannot find raises :class:`BandMatchError` listing what is missing and what the data has.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from geofm.data.cards import BandMatchError, match_bands

__all__ = [
    "BandMatchError",
    "EncoderAdapter",
    "GeofmEncoder",
    "TimmEncoder",
    "match_bands",
    "build_encoder",
    "parse_encoder_spec",
]


class EncoderAdapter(nn.Module):
    """Base class: subclasses set ``embed_dim`` and implement the two feature methods."""

    name: str = "encoder"
    embed_dim: int
    normalisation: str = "standardise"
    #: bands the encoder needs, in its channel order (None: any band set)
    input_bands: tuple[str, ...] | None = None
    input_wavelengths: tuple[float, ...] | None = None
    wavelength_tolerance_nm: float = 15.0

    def check_bands(self, bands: Sequence[str], wavelengths: Sequence[float]) -> list[int] | None:
        """Channel indices to feed the encoder, or None for all of them in order."""
        if self.input_bands is None:
            return None
        found = match_bands(
            self.input_bands,
            self.input_wavelengths,
            bands,
            wavelengths,
            self.wavelength_tolerance_nm,
            who=self.name,
        )
        return [int(i) for i in found if i is not None]  # all found: a miss raises

    def _select(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        wl = torch.as_tensor(batch["wavelengths"], dtype=torch.float32)
        if wl.ndim == 2:
            wl = wl[0]
        idx = self.check_bands(batch["bands"], wl.tolist())
        image = batch["image"]
        if idx is not None:
            image, wl = image[:, idx], wl[idx]
        return image, wl

    def features(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def feature_maps(self, batch: dict) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "normalisation": self.normalisation,
            "input_bands": None if self.input_bands is None else list(self.input_bands),
        }


def _map_indices(depth: int, count: int = 4) -> list[int]:
    """``count`` block indices spread evenly, ending with the last block."""
    count = min(count, depth)
    return sorted({depth - 1 - round(i * depth / count) for i in range(count)})


class GeofmEncoder(EncoderAdapter):
    """A geofm registry encoder, loaded from an exported file or randomly initialised.

    ``num_maps`` intermediate blocks (evenly spaced, the last included) give the channel-CLS
    maps for dense heads. ``seed`` fixes a random initialisation.
    """

    normalisation = "mae"

    def __init__(
        self,
        model: str,
        checkpoint: str | os.PathLike | None = None,
        seed: int | None = 0,
        num_maps: int = 4,
        **overrides,
    ):
        super().__init__()
        from geofm.models import create_model

        self.checkpoint = None if checkpoint is None else str(checkpoint)
        if checkpoint is None and seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = create_model(model, num_classes=0, **overrides)
        else:
            self.model = create_model(model, checkpoint=self.checkpoint, num_classes=0, **overrides)
        from geofm.models.encoder import SpectralEncoder

        if not isinstance(self.model, SpectralEncoder):
            raise ValueError(
                f"{model} is a {type(self.model).__name__}, not an encoder of "
                "images with global and dense features (LESS ViT or a baseline "
                "such as joint_vit, grouped_vit, stacked_vit)"
            )
        self.name = model
        self.embed_dim = int(self.model.embed_dim)
        self.map_indices = _map_indices(len(self.model.blocks), num_maps)
        data = getattr(self.model, "data_config", None)
        in_chans = getattr(self.model, "in_chans", None)
        if in_chans is not None:  # wavelength-blind: a fixed band list
            entry = data[0] if isinstance(data, list) and data else None
            if entry is not None and len(entry.get("bands", ())) == in_chans:
                self.input_bands = tuple(entry["bands"])
                self.input_wavelengths = tuple(float(w) for w in entry["wavelengths_nm"])

    def features(self, batch: dict) -> torch.Tensor:
        image, wl = self._select(batch)
        grid = self.model.forward_features(image, wl, batch["gsd"])
        return self.model.forward_head(grid, pre_logits=True)

    def feature_maps(self, batch: dict) -> list[torch.Tensor]:
        image, wl = self._select(batch)
        return self.model.forward_intermediates(
            image, wl, batch["gsd"], indices=self.map_indices, norm=True, intermediates_only=True
        )

    def check_bands(self, bands, wavelengths):
        in_chans = getattr(self.model, "in_chans", None)
        if in_chans is not None and self.input_bands is None and len(bands) != in_chans:
            raise BandMatchError(
                f"{self.name} is built for {in_chans} stacked bands and knows no band names; "
                f"the data has {len(bands)}: {', '.join(map(str, bands))}"
            )
        return super().check_bands(bands, wavelengths)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "checkpoint": self.checkpoint,
            "params": sum(p.numel() for p in self.model.parameters()),
        }


class TimmEncoder(EncoderAdapter):
    """A timm model with the bands stacked as input channels (wavelength-blind).

    ``bands``/``wavelengths`` name the channels it takes, in order; the dataset's bands are
    matched to them. ``pretrained`` weights come through timm (a network or a local cache is
    needed); with ``in_chans`` other than 3, timm adapts the first convolution.
    """

    def __init__(
        self,
        model: str,
        bands: Sequence[str],
        wavelengths: Sequence[float] | None,
        pretrained: bool = False,
        checkpoint: str | os.PathLike | None = None,
        seed: int | None = 0,
        num_maps: int = 4,
        **kwargs,
    ):
        super().__init__()
        import timm

        if not bands:
            raise ValueError("a timm encoder needs the list of bands it takes")
        self.name = f"timm/{model}"
        self.input_bands = tuple(str(b) for b in bands)
        self.input_wavelengths = (
            None if wavelengths is None else tuple(float(w) for w in wavelengths)
        )
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.model = timm.create_model(
                model,
                pretrained=pretrained,
                num_classes=0,
                in_chans=len(self.input_bands),
                **kwargs,
            )
        if checkpoint is not None:
            from geofm.models.checkpoints import read_torch_file

            state = read_torch_file(checkpoint)
            if not isinstance(state, dict):
                raise ValueError(f"{checkpoint} holds a {type(state).__name__}, not a state dict")
            state = state.get("state_dict", state)
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith(("head", "fc."))]:
                raise ValueError(
                    f"{checkpoint} does not fit timm model {model}: missing "
                    f"{missing[:5]}, unexpected {unexpected[:5]}"
                )
        self.embed_dim = int(self.model.num_features)
        self.num_maps = num_maps

    def features(self, batch: dict) -> torch.Tensor:
        image, _ = self._select(batch)
        return self.model(image)

    def feature_maps(self, batch: dict) -> list[torch.Tensor]:
        image, _ = self._select(batch)
        if not hasattr(self.model, "forward_intermediates"):
            raise NotImplementedError(
                f"{self.name} has no forward_intermediates in this timm "
                "version; it cannot feed a dense head"
            )
        return self.model.forward_intermediates(
            image, indices=self.num_maps, intermediates_only=True
        )


def parse_encoder_spec(spec: str) -> dict[str, Any]:
    """``"less_vit_tiny"``, ``"less_vit_tiny:encoder.pt"``, ``"timm:resnet18"`` ->
    keyword arguments of :func:`build_encoder`."""
    name, _, ckpt = spec.removeprefix("timm:").partition(":")
    return {
        "kind": "timm" if spec.startswith("timm:") else "geofm",
        "model": name,
        "checkpoint": ckpt or None,
    }


def build_encoder(
    kind: str,
    model: str,
    checkpoint=None,
    bands=None,
    wavelengths=None,
    seed: int | None = 0,
    **kwargs,
) -> EncoderAdapter:
    """An adapter by kind (``geofm`` or ``timm``); timm models take ``bands``."""
    if kind == "geofm":
        return GeofmEncoder(model, checkpoint=checkpoint, seed=seed, **kwargs)
    if kind == "timm":
        return TimmEncoder(
            model, bands=bands, wavelengths=wavelengths, checkpoint=checkpoint, seed=seed, **kwargs
        )
    raise ValueError(f"unknown encoder kind {kind!r}; use 'geofm' or 'timm'")
