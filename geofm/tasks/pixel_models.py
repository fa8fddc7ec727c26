"""Pixel classifiers as files: build one from a recipe, save it, read it back.

A ``geofm classify-pixels`` model file (kind ``pixel`` of :mod:`geofm.models.checkpoints`,
read without running code) holds the registry model and its ``kwargs``, LoRA settings, the
class names, bands and wavelengths of its scene, the raw label values of a scene without a
card, the recipe, split and seed it was trained with, and the weights.
:func:`load_classifier` rebuilds the model (checked on the meta device first);
:func:`geofm.inference.load_predictor` maps scenes with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from geofm.data.cards import expand_data_path
from geofm.models import create_model
from geofm.models.checkpoints import (
    CheckpointError,
    check_architecture,
    check_shapes,
    read_checkpoint,
    require,
    save_checkpoint,
    state_mismatches,
)

if TYPE_CHECKING:
    from geofm.tasks.pixel_recipe import PixelRecipe

__all__ = [
    "architecture_from_base",
    "MATCH_TOLERANCE_NM",
    "build_classifier",
    "load_classifier",
    "matched_basis",
    "read_classifier",
    "save_classifier",
    "warn_if_base_saw_scene",
]


def architecture_from_base(model: dict[str, Any]) -> dict[str, Any]:
    """In lora and finetune modes the architecture is the base checkpoint's: the ``kwargs``
    of a recipe's ``model`` section (which may leave them out, or must give the base's own).

    Raises ``ValueError`` naming the base when it holds another model or other kwargs.
    """
    base_path = expand_data_path(model["base_checkpoint"])
    base = read_classifier(base_path)
    if base["model"] != model["name"]:
        raise ValueError(
            f"base checkpoint {base_path} holds a {base['model']!r}, the recipe "
            f"asks for {model['name']!r}"
        )
    if model["kwargs"] and model["kwargs"] != base["kwargs"]:
        raise ValueError(
            f"in {model['mode']} mode the architecture comes from the base checkpoint; the "
            f"recipe's model.kwargs {model['kwargs']} differ from the base's "
            f"{base['kwargs']}: remove them or make them equal"
        )
    return dict(base["kwargs"])


#: How far apart in wavelength a scene's band and a base's band may be to count as the same
#: band when their names differ (half the ~10 nm band spacing of AVIRIS-class sensors).
MATCH_TOLERANCE_NM = 5.0


def build_classifier(
    recipe: PixelRecipe, bands: int, num_classes: int, scene: dict[str, Any] | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The recipe's model for a scene with ``bands`` bands and ``num_classes`` classes.

    ``lora`` and ``finetune`` modes: the architecture and weights come from
    ``model.base_checkpoint``, and a head with another class count is re-initialised. The
    PCA is refitted on this scene (``base_pca: refit``) or keeps the base's components on
    this ``scene``'s bands (``base_pca: matched``, :func:`matched_basis`; the record's
    ``pca_match`` then says what matched, and the caller fits only the mean and scale).
    ``lora`` adds LoRA layers and freezes the rest. Returns the model and its construction
    record (for the checkpoint).
    """
    m = recipe.model
    kwargs = dict(m["kwargs"])
    if m["mode"] == "full":
        model = create_model(m["name"], bands=bands, num_classes=num_classes, **kwargs)
        return model, {"name": m["name"], "kwargs": kwargs, "lora": None}
    base_path = expand_data_path(m["base_checkpoint"])
    base = read_classifier(base_path)
    if kwargs != base["kwargs"]:
        raise ValueError(
            f"the recipe's model.kwargs {kwargs} are not the architecture of the "
            f"base checkpoint {base_path} ({base['kwargs']})"
        )
    skip = ["reduction."]
    if base["num_classes"] != num_classes:
        skip.append("head.")
    # checked on the meta device before the model is allocated
    meta = check_architecture(
        base_path, m["name"], {"bands": bands, "num_classes": num_classes, **kwargs}
    )
    problems = state_mismatches(meta, base["state_dict"], skip)
    if problems:
        raise CheckpointError(
            f"base checkpoint {base_path} does not fit this model: "
            + "; ".join(problems[:8])
            + (" ..." if len(problems) > 8 else "")
        )
    model = create_model(m["name"], bands=bands, num_classes=num_classes, **kwargs)
    state = {k: v for k, v in base["state_dict"].items() if not any(k.startswith(s) for s in skip)}
    model.load_state_dict(state, strict=False)
    record: dict[str, Any] = {
        "name": m["name"],
        "kwargs": kwargs,
        "lora": None,
        "base_checkpoint": str(base_path),
    }
    if m["base_pca"] == "matched":
        if scene is None:
            raise ValueError("base_pca: matched needs the scene's bands and wavelengths")
        basis, record["pca_match"] = matched_basis(base, scene, base_path)
        if tuple(basis.shape) != tuple(model.reduction.basis.shape):
            raise CheckpointError(
                f"base checkpoint {base_path}: its PCA basis is {tuple(basis.shape)} on this "
                f"scene's bands, the model's {tuple(model.reduction.basis.shape)}"
            )
        model.reduction.basis.copy_(basis)
    if m["mode"] == "lora":
        record["lora"] = dict(m["lora"])
        add_lora(model, record["lora"])
    return model, record


def matched_basis(
    base: dict[str, Any], scene: dict[str, Any], where: Path | str = "the base checkpoint"
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A base classifier's PCA components on ``scene``'s bands: ``(scene bands, K)``.

    Each band of the scene takes the loadings of the base's band of the same name, else of
    the base's band nearest in wavelength within :data:`MATCH_TOLERANCE_NM`
    (:func:`~geofm.data.cards.match_bands`); a scene band with no counterpart gets zero
    loadings (it is ignored). The base's components are unit vectors, so the squared
    loadings of its bands the scene lacks are the share of each component that is lost.
    Both need known wavelengths, and bands matched by name must agree in wavelength too.

    Returns the basis and a record: ``matched`` (scene bands with a counterpart),
    ``ignored_scene_bands``, ``unmatched_base_bands``, ``lost_share`` (the largest share
    of a component's loadings on unmatched base bands) and ``lost_variance_share`` (those
    shares weighted by the variance each component explained on the base's scene: a weak
    component that leaned on a missing band counts little). Raises
    :class:`~geofm.data.cards.BandMatchError` when no band matches.
    """
    from geofm.data.cards import BandMatchError, match_bands

    for who, known in (
        ("the base", base.get("wavelengths_known", True)),
        ("this scene", scene.get("wavelengths_known", True)),
    ):
        if not known:  # the names of a cube without a card are made up: nothing to match
            raise BandMatchError(
                f"{who} has no known wavelengths, so the bands of {where} and this scene "
                "cannot be matched; use model.base_pca: refit (or give the scene a card)"
            )
    basis = base["state_dict"]["reduction.basis"].to(torch.float64)
    mine = [str(b) for b in scene["bands"]]
    wl = [float(w) for w in torch.as_tensor(scene["wavelengths"]).tolist()]
    theirs = [float(w) for w in base["wavelengths"]]
    found = match_bands(
        mine, wl, base["bands"], theirs, MATCH_TOLERANCE_NM, who="this scene", missing="none"
    )
    if all(i is None for i in found):
        raise BandMatchError(
            f"none of this scene's {len(found)} bands matches a band of {where} "
            f"({len(base['bands'])} bands, by name or by wavelength within "
            f"{MATCH_TOLERANCE_NM:g} nm): its PCA components cannot be carried over; "
            "use model.base_pca: refit"
        )
    # a name can mean another band on another sensor (Landsat 7's B4 is near infrared,
    # Landsat 8's red): a name match must agree in wavelength too
    apart = [
        f"{mine[j]} ({wl[j]:g} nm here, {theirs[i]:g} nm in the base)"
        for j, i in enumerate(found)
        if i is not None and abs(wl[j] - theirs[i]) > MATCH_TOLERANCE_NM
    ]
    if apart:
        raise BandMatchError(
            f"bands of the same name lie more than {MATCH_TOLERANCE_NM:g} nm apart in "
            f"this scene and {where}: {', '.join(apart)}; they are not the same bands, "
            "so the base's PCA cannot be matched (use model.base_pca: refit)"
        )
    out = torch.zeros(len(found), basis.shape[1], dtype=torch.float64)
    for j, i in enumerate(found):
        if i is not None:
            out[j] = basis[i]
    used = {i for i in found if i is not None}
    unmatched = [k for k in range(len(base["bands"])) if k not in used]
    lost = basis[unmatched].pow(2).sum(0) if unmatched else torch.zeros(basis.shape[1])
    explained = base["state_dict"]["reduction.explained"].to(torch.float64)
    return out, {
        "matched": len(used),
        "ignored_scene_bands": [str(scene["bands"][j]) for j, i in enumerate(found) if i is None],
        "unmatched_base_bands": [str(base["bands"][k]) for k in unmatched],
        "lost_share": float(lost.max()),
        "lost_variance_share": float((lost * explained).sum() / explained.sum().clamp_min(1e-300)),
    }


def add_lora(model: torch.nn.Module, lora: dict[str, Any]) -> None:
    """LoRA layers as a recipe's or a checkpoint's ``lora`` settings give them."""
    model.to_lora(
        rank=int(lora["rank"]),
        alpha=float(lora["alpha"]),
        dropout=float(lora.get("dropout", 0.0)),
        train=list(lora.get("train") or []),
    )


def warn_if_base_saw_scene(record: dict[str, Any], scene: dict[str, Any]) -> None:
    """A base trained on the scene being classified has seen pixels that may be in this
    split's test part (another seed or split puts them elsewhere): say so."""
    base = read_classifier(record["base_checkpoint"])
    mine = (scene.get("source_files") or {}).get("cube")
    theirs = (base.get("source_files") or {}).get("cube")
    if mine and theirs and Path(mine).resolve() == Path(theirs).resolve():
        warnings.warn(
            f"the base checkpoint {record['base_checkpoint']} was trained on this "
            f"scene ({mine}); pixels it learned from may be test pixels of this "
            "split, so the test scores can be optimistic. Use a base trained on "
            "another scene for an honest evaluation.",
            UserWarning,
            stacklevel=3,
        )


def read_classifier(path: Path | str) -> dict[str, Any]:
    """A pixel classifier's file, read without running code (:mod:`geofm.models.checkpoints`)."""
    _, ckpt = read_checkpoint(path, "pixel")
    _require_fields(ckpt, path)
    return ckpt


def _require_fields(ckpt: dict[str, Any], path: Path | str) -> None:
    require(
        ckpt,
        path,
        {
            "model": str,
            "kwargs": dict,
            "num_classes": int,
            "classes": list,
            "bands": list,
            "state_dict": dict,
            "lora": (dict, type(None)),
        },
    )


def save_classifier(
    path: Path,
    model: torch.nn.Module,
    record: dict[str, Any],
    scene: dict[str, Any],
    classes: Sequence[str],
    extra: dict[str, Any],
) -> Path:
    return save_checkpoint(
        {
            "model": record["name"],
            "kwargs": record["kwargs"],
            "lora": record["lora"],
            "num_classes": len(classes),
            "classes": list(classes),
            "bands": list(scene["bands"]),
            "wavelengths": torch.as_tensor(scene["wavelengths"]).tolist(),
            "wavelengths_known": bool(scene.get("wavelengths_known", True)),
            "label_values": scene.get("label_values"),
            "ignore_values": scene.get("ignore_values"),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **extra,
        },
        path,
        "pixel",
    )


def load_classifier(
    path: Path | str, merge: bool = True, ckpt: dict[str, Any] | None = None
) -> tuple[torch.nn.Module, dict]:
    """A classifier written by :func:`run_protocol` and its checkpoint record.

    LoRA models are rebuilt with their LoRA layers; with ``merge`` the updates are folded
    into the weights (same outputs, the base model's cost). ``ckpt``: the file's contents
    when the caller has already read them.
    """
    from geofm.models.lora import merge_lora, set_lora_multiplier

    if ckpt is None:
        ckpt = read_classifier(path)
    else:
        _require_fields(ckpt, path)
    config = {"bands": len(ckpt["bands"]), "num_classes": ckpt["num_classes"], **ckpt["kwargs"]}
    lora = ckpt["lora"]
    prepare = partial(add_lora, lora=lora) if lora else None
    # shapes and size checked on the meta device before anything is allocated
    check_shapes(
        path, check_architecture(path, ckpt["model"], config, prepare=prepare), ckpt["state_dict"]
    )
    model = create_model(ckpt["model"], **config)
    if lora:
        add_lora(model, lora)
    model.load_state_dict(ckpt["state_dict"])
    if ckpt["lora"]:
        # the strength the model was validated and tested at (the schedule's eval value)
        set_lora_multiplier(model, float(ckpt["lora"].get("eval_multiplier", 1.0)))
        if merge:
            merge_lora(model)
    return model.eval(), ckpt
