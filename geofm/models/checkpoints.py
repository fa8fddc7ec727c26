"""Every file geofm writes or reads with weights in it, read without running code.

A checkpoint is a pickle, and unpickling can call any Python function the file names. So
geofm reads every one with ``torch.load(weights_only=True)``, whose unpickler builds
tensors and plain containers only, and writes nothing else into its own files:

========================  =====================  ==============================================
kind                      format tag             written by
========================  =====================  ==============================================
``encoder``               ``geofm-encoder/1``    ``geofm export``, :func:`save_encoder`
``pixel``                 ``geofm-pixel/1``      ``geofm classify-pixels`` (one per seed)
``scene``                 ``geofm-scene/1``      ``geofm classify-scenes`` (a Lightning ``.ckpt``)
``pretraining``           ``geofm-pretraining/1``  ``geofm pretrain`` (a Lightning ``.ckpt``)
========================  =====================  ==============================================

The tag sits under the file's ``"format"`` key; Lightning checkpoints written before the tag
existed are recognised by their ``geofm_scene`` / ``geofm_data`` entries. Metadata beside
the weights is limited to :data:`METADATA_TYPES` (checked when saving, so every file
geofm writes loads under ``weights_only``); the only classes added to torch's allow-list are
the paths of :data:`ALLOWED_GLOBALS`, which Lightning checkpoints hold. A zip checkpoint
with compressed entries (``torch.save`` writes none) is refused unread.

Before a model is allocated from a file, :func:`check_architecture` builds it on the
``meta`` device (shapes, no memory) and refuses a name the registry does not know, sizes
beyond the registry's range, whole numbers above :data:`MAX_INTEGER` and more bytes of
parameters and buffers than :data:`PARAMETER_SLACK` times its largest model's;
:func:`check_shapes` compares the stored tensors' shapes with that model's.
Every problem is one :class:`CheckpointError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import pathlib
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

from .registry import create_model, is_model, list_models

__all__ = [
    "CheckpointError",
    "allowed_globals",
    "ALLOWED_GLOBALS",
    "FORMATS",
    "METADATA_TYPES",
    "build_on_meta",
    "check_architecture",
    "check_config",
    "check_parameters",
    "check_plain",
    "check_shapes",
    "format_tag",
    "load_into",
    "model_bytes",
    "read_checkpoint",
    "read_encoder",
    "read_torch_file",
    "registry_limits",
    "require",
    "save_checkpoint",
    "save_encoder",
    "state_mismatches",
    "tag_lightning_checkpoint",
]

#: kind -> (format family, newest version this geofm reads and writes)
FORMATS: dict[str, tuple[str, int]] = {
    "encoder": ("geofm-encoder", 1),
    "pixel": ("geofm-pixel", 1),
    "scene": ("geofm-scene", 1),
    "pretraining": ("geofm-pretraining", 1),
}

_DESCRIPTIONS = {
    "encoder": "an encoder file (from `geofm export`)",
    "pixel": "a pixel classifier (from `geofm classify-pixels`)",
    "scene": "a scene classifier checkpoint (from `geofm classify-scenes`)",
    "pretraining": "an MAE pretraining checkpoint (from `geofm pretrain`)",
}

#: What a geofm file may hold beside tensors: plain values in plain containers.
METADATA_TYPES = (dict, list, tuple, str, int, float, bool, type(None), torch.Tensor)

#: Classes beyond torch's own that a file may name. Lightning checkpoints keep the data
#: module's hyperparameters, and those are often paths; building a path runs no code of
#: the file's choosing. Nothing else is allowed.
ALLOWED_GLOBALS = (
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    pathlib.PosixPath,
    pathlib.WindowsPath,
)

#: Architecture sizes checked against the registry before anything is built: a file may ask
#: for at most SIZE_SLACK times the largest value any registered model uses (a list, one value
#: per stage, counts as its total).
SIZE_KEYS = ("embed_dim", "depth", "num_heads", "patch_size")
SIZE_SLACK = 2
#: ... and for at most PARAMETER_SLACK times the bytes of parameters and buffers of the
#: largest registered model (room for a ViT-L built from the base sizes; a file asking for
#: more is refused unbuilt).
PARAMETER_SLACK = 4
#: Lists in an architecture hold one entry per stage or layer.
MAX_LIST_LENGTH = 64
#: No count in an architecture may pass this (band counts, windows, PCA components,
#: classes ...; distances in metres, ``*_m``, are not counts): no registered model needs
#: more, and what a constructor computes from such numbers outside its parameters and
#: buffers (a band x band identity, say) stays bounded.
MAX_INTEGER = 4096


class CheckpointError(ValueError):
    """A file geofm will not load: not a checkpoint, truncated, code inside, another kind or
    a newer format, or an architecture that does not fit. The message names the file."""


def format_tag(kind: str) -> str:
    """The format tag geofm writes for ``kind`` (``"geofm-pixel/1"``)."""
    family, version = FORMATS[kind]
    return f"{family}/{version}"


# --------------------------------------------------------------------------- reading
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def allowed_globals():
    """A context in which torch's weights-only loads (Lightning's ``ckpt_path`` loads too)
    accept :data:`ALLOWED_GLOBALS` and nothing else beyond torch's own."""
    return torch.serialization.safe_globals(list(ALLOWED_GLOBALS))


def read_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure one clear error.

    Nothing in the file is executed: a pickle that names a Python function or class is
    refused, whatever it would have done.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (older torch: a pickle of protocol 2 or later)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)"
        )
    if head.startswith(b"PK"):
        _check_stored(path)
    try:
        with allowed_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _GLOBAL.findall(str(err))
        if names:
            raise CheckpointError(
                f"{path} was not loaded: it names {', '.join(sorted(set(names)))}, which "
                "unpickling would import and run. geofm files hold only tensors and plain "
                "values; geofm never runs code from a checkpoint"
            ) from None
        raise CheckpointError(
            f"{path} is not a checkpoint geofm can read: it holds pickle "
            "data other than tensors and plain values"
        ) from err
    except NotImplementedError as err:  # a WindowsPath on Linux, a PosixPath on Windows
        raise CheckpointError(f"{path} cannot be read on this system ({err})") from err
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(err)})") from err


def _check_stored(path: Path) -> None:
    """Refuse a zip checkpoint with compressed entries: ``torch.save`` stores its records
    uncompressed, so what is loaded is never more than the file, and a small file cannot
    inflate into a huge tensor."""
    try:
        with zipfile.ZipFile(path) as zf:
            packed = [
                i.filename
                for i in zf.infolist()
                if i.compress_type != zipfile.ZIP_STORED or i.file_size > i.compress_size
            ]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(err)})") from err
    if packed:
        raise CheckpointError(
            f"{path} holds compressed entries ({', '.join(packed[:3])}), "
            "which torch.save never writes: it was repacked, and is refused "
            "unread (a small file could inflate into a huge tensor)"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def file_kind(payload: Mapping[str, Any]) -> tuple[str | None, int | None, str | None]:
    """``(kind, version, tag)`` of a loaded file; kind ``None`` when it is no geofm file."""
    tag = payload.get("format")
    if isinstance(tag, str):
        family, _, version = tag.rpartition("/")
        for kind, (known, _) in FORMATS.items():
            if family == known:
                return kind, int(version) if version.isdigit() else None, tag
        return None, None, tag
    # Lightning checkpoints of geofm before the tag existed
    if "geofm_scene" in payload:
        return "scene", 1, None
    if "geofm_data" in payload or any(
        str(k).startswith("mae.encoder.") for k in (payload.get("state_dict") or {})
    ):
        return "pretraining", 1, None
    return None, None, None


def read_checkpoint(path: str | os.PathLike, *kinds: str) -> tuple[str, dict[str, Any]]:
    """Read a geofm file of one of ``kinds``; returns ``(kind, contents)``.

    Refuses, with a :class:`CheckpointError` naming the file: anything
    :func:`read_torch_file` refuses, a file of another kind or of no geofm kind, and one
    written by a newer geofm.
    """
    unknown = [k for k in kinds if k not in FORMATS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be among {', '.join(FORMATS)}, got {kinds}")
    wanted = " or ".join(_DESCRIPTIONS[k] for k in kinds)
    payload = read_torch_file(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not {wanted}")
    kind, version, tag = file_kind(payload)
    if kind is None:
        what = f" (format {tag!r})" if tag is not None else ""
        raise CheckpointError(f"{path} is not a geofm file{what}; expected {wanted}")
    if kind not in kinds:
        hint = (
            "; `geofm export` turns it into an encoder file"
            if kind == "pretraining" and "encoder" in kinds
            else ""
        )
        raise CheckpointError(f"{path} is {_DESCRIPTIONS[kind]}, not {wanted}{hint}")
    newest = FORMATS[kind][1]
    if version is None or version > newest:
        raise CheckpointError(
            f"{path} was written by a newer geofm (format {tag!r}; this "
            f"geofm reads {format_tag(kind)} and older): upgrade geofm"
        )
    return kind, payload


def require(
    payload: Mapping[str, Any],
    path: str | os.PathLike,
    fields: Mapping[str, type | tuple[type, ...]],
) -> None:
    """Refuse a file whose ``fields`` are missing or of another type (a damaged or
    hand-edited file), naming the first that is wrong."""
    for key, kind in fields.items():
        if key not in payload:
            raise CheckpointError(f"{path} lacks {key!r}: it is damaged or not written by geofm")
        if not isinstance(payload[key], kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise CheckpointError(
                f"{path}: {key!r} is a {type(payload[key]).__name__}, expected {names}"
            )


# --------------------------------------------------------------------------- writing
def check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` naming the first value in ``value`` that a geofm file cannot hold
    (anything but :data:`METADATA_TYPES` in dicts with str or int keys, lists and tuples)."""
    # exact types: numpy's float64 is a float and a namedtuple a tuple, but both pickle as
    # classes of their own, which a weights-only load refuses
    kind = type(value)
    if kind in (dict, collections.OrderedDict):
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(
                    f"{where}: key {k!r} is a {type(k).__name__}; geofm files hold str or int keys"
                )
            check_plain(v, f"{where}.{k}")
    elif kind in (list, tuple, torch.Size):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
    elif kind not in METADATA_TYPES:
        raise TypeError(
            f"{where} is a {kind.__module__}.{kind.__name__}; geofm files hold "
            "tensors and plain values only (convert it with int(), float(), "
            "str(), .tolist() or torch.as_tensor())"
        )


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike, kind: str) -> Path:
    """Write ``payload`` tagged as ``kind``, atomically (a temporary file renamed onto
    ``path``), after checking that everything in it is a tensor or a plain value."""
    path = Path(path)
    payload = {"format": format_tag(kind), **payload}
    check_plain(payload, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        torch.save(payload, part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def tag_lightning_checkpoint(checkpoint: dict[str, Any], kind: str) -> None:
    """Tag a Lightning checkpoint being saved (``on_save_checkpoint``) as ``kind``."""
    checkpoint["format"] = format_tag(kind)


# --------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class RegistryLimits:
    """The largest sizes, and bytes of parameters and buffers, among the registered
    models' defaults."""

    sizes: dict[str, int]
    max_bytes: int
    largest: str


def registry_limits() -> RegistryLimits:
    """Measured on the ``meta`` device (no memory), once per set of registered models."""
    return _limits(tuple(list_models()))


@functools.cache
def _limits(names: tuple[str, ...]) -> RegistryLimits:
    sizes: dict[str, int] = {}
    most, largest = 0, ""
    for name in names:
        with torch.device("meta"):
            model = create_model(name)
        for key in SIZE_KEYS:
            value = getattr(model, "config", {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                sizes[key] = max(sizes.get(key, 0), value)
        size = model_bytes(model)
        if size > most:
            most, largest = size, name
    return RegistryLimits(sizes, most, largest)


def _integers(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [i for v in value[: MAX_LIST_LENGTH + 1] for i in _integers(v)]
    return []


def _size_total(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return sum(value)
    return None


def check_architecture(
    path: str | os.PathLike,
    name: str,
    config: Mapping[str, Any],
    prepare: Callable[[nn.Module], Any] | None = None,
) -> nn.Module:
    """The model ``create_model(name, **config)`` would build, on the ``meta`` device,
    after refusing what would not fit in memory; shapes only, nothing allocated.

    Refuses what :func:`check_config` refuses, keywords the model does not take and
    (:func:`check_parameters`) too many parameters. ``prepare`` changes the meta model
    before it is counted (adds the LoRA layers the file's weights need).
    """
    check_config(path, name, config)

    def build() -> nn.Module:
        model = create_model(name, **config)
        if prepare is not None:
            prepare(model)
        return model

    return check_parameters(path, build_on_meta(path, build, f"as {name}"))


def check_config(path: str | os.PathLike, name: str, config: Mapping[str, Any]) -> None:
    """Refuse, before anything is built, a model the registry does not know, a size in
    :data:`SIZE_KEYS` beyond :data:`SIZE_SLACK` times the registry's largest and lists
    longer than :data:`MAX_LIST_LENGTH`."""
    if not isinstance(name, str) or not is_model(name):
        raise CheckpointError(
            f"{path} holds a model {name!r} that this geofm does not know "
            f"(registered: {', '.join(list_models())})"
        )
    if not isinstance(config, Mapping):
        raise CheckpointError(
            f"{path}: its architecture is a {type(config).__name__}, not a mapping of keywords"
        )
    limits = registry_limits()
    for key, value in config.items():
        if isinstance(value, (list, tuple)) and len(value) > MAX_LIST_LENGTH:
            raise CheckpointError(
                f"{path}: {key} has {len(value)} entries, more than "
                f"{MAX_LIST_LENGTH} (one per stage or layer)"
            )
        singular = key[:-1] if key.endswith("s") and key not in SIZE_KEYS else key
        total = _size_total(value)
        if singular in limits.sizes and total is not None:
            bound = SIZE_SLACK * limits.sizes[singular]
            if not math.isfinite(total) or total > bound:
                raise CheckpointError(
                    f"{path}: {key} {value} is beyond the registry's range (its largest "
                    f"{singular} is {limits.sizes[singular]}; at most {bound} is accepted)"
                )
        # counts, not distances: perception_radius_m may be 5000 (metres)
        too_large = (
            [] if key.endswith("_m") else [v for v in _integers(value) if abs(v) > MAX_INTEGER]
        )
        if too_large:
            what = "is" if too_large[0] == value else f"holds {too_large[0]},"
            raise CheckpointError(
                f"{path}: {key} {value} {what} more than any architecture "
                f"takes (at most {MAX_INTEGER})"
            )


def build_on_meta(
    path: str | os.PathLike, build: Callable[[], nn.Module], what: str = ""
) -> nn.Module:
    """``build()`` on the ``meta`` device; a constructor's refusal names the file."""
    try:
        with torch.device("meta"):
            return build()
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: the model it describes cannot be built{' ' + what} ({err})"
        ) from err


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (saved or not), on any device."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def check_parameters(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Refuse a (meta) model whose parameters and buffers take more than
    :data:`PARAMETER_SLACK` times the bytes of the largest registered model's."""
    limits = registry_limits()
    size = model_bytes(model)
    allowed = PARAMETER_SLACK * limits.max_bytes
    if size > allowed:
        count = sum(p.numel() for p in model.parameters())
        raise CheckpointError(
            f"{path}: the model it describes takes {size:,} bytes ({count:,} parameters, and "
            f"buffers), more than {allowed:,} ({PARAMETER_SLACK} x the largest registered "
            f"model, {limits.largest})"
        )
    return model


def state_mismatches(
    model: nn.Module, state: Mapping[str, Any], skip: Sequence[str] = ()
) -> list[str]:
    """What keeps ``state`` from loading into ``model`` (any device, ``meta`` included):
    keys it lacks or adds and shapes that differ, ignoring keys starting with ``skip``."""
    own = model.state_dict()
    skipped = tuple(skip)
    problems = []
    for key, value in state.items():
        if skipped and str(key).startswith(skipped):
            continue
        if key not in own:
            problems.append(f"{key} (not in the model)")
        elif not isinstance(value, torch.Tensor):
            problems.append(f"{key}: a {type(value).__name__}, not a tensor")
        elif tuple(own[key].shape) != tuple(value.shape):
            problems.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
            )
    problems += [
        f"{k} (missing from the checkpoint)"
        for k in own
        if k not in state and not (skipped and k.startswith(skipped))
    ]
    return problems


def check_shapes(
    path: str | os.PathLike, model: nn.Module, state: Mapping[str, Any], skip: Iterable[str] = ()
) -> None:
    """Refuse ``state`` unless it loads into ``model`` key for key and shape for shape."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: its weights are a {type(state).__name__}, not a mapping of tensors"
        )
    problems = state_mismatches(model, state, tuple(skip))
    if problems:
        more = f" and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise CheckpointError(
            f"{path}: its weights do not fit the model it describes: "
            + "; ".join(problems[:8])
            + more
        )


# --------------------------------------------------------------------------- encoder files
#: Constructor keywords that do not change the weights' shapes or meaning.
TRAINING_ONLY = frozenset(
    {"num_classes", "drop_rate", "attn_drop_rate", "proj_drop_rate", "drop_path_rate"}
)


def save_encoder(
    model: nn.Module, name: str, path: str | os.PathLike, data: Any = None, source: str = ""
) -> Path:
    """Write ``model``'s weights and configuration (``model.config``) as an encoder file:

    {"format": "geofm-encoder/1", "model": registry name, "config": architecture
     keywords, "state_dict": encoder weights, "data": what the encoder was trained on
     (bands, wavelengths, GSD, normalisation), "source": where the weights came from}
    """
    return save_checkpoint(
        {
            "model": name,
            "config": dict(getattr(model, "config", {})),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "data": data,
            "source": source,
        },
        path,
        "encoder",
    )


def read_encoder(
    path: str | os.PathLike, name: str, overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An encoder file checked against the model ``name`` with ``overrides`` before anything
    is allocated; returns ``(contents, the keywords to build it with)``."""
    _, payload = read_checkpoint(path, "encoder")
    require(payload, path, {"model": str, "config": dict, "state_dict": dict})
    if payload["model"] != name:
        raise CheckpointError(f"{path} holds {payload['model']!r} weights, not {name!r}")
    differ = {
        k: (payload["config"].get(k), v)
        for k, v in overrides.items()
        if k not in TRAINING_ONLY and k in payload["config"] and payload["config"][k] != v
    }
    if differ:
        detail = ", ".join(f"{k}: file {a!r}, model {b!r}" for k, (a, b) in differ.items())
        raise CheckpointError(
            f"{path} was saved from another architecture ({detail}); "
            "build the model without those overrides"
        )
    config = {**payload["config"], **overrides}
    meta = check_architecture(path, name, config)
    check_shapes(path, meta, payload["state_dict"], skip=("head.",))
    return payload, config


def load_into(model: nn.Module, payload: Mapping[str, Any]) -> nn.Module:
    """Load a checked encoder file's weights (the head excepted) into ``model``."""
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("head.")}
    model.load_state_dict(state, strict=False)
    # an attribute nn.Module does not declare (mypy would take it for a submodule)
    cast(Any, model).data_config = payload.get("data")
    return model
