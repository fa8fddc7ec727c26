"""The pixel-classification protocol: recipe, splits, seeds, training, testing, results.

One recipe (a YAML file, see ``configs/classify/``) fixes the scene, the model and the
training; :func:`run_protocol` runs it on a random stratified split or a spatially disjoint
split with a buffer (:mod:`geofm.data.splits`), for several seeds, and returns one result
per method and seed: OA, AA, kappa, per-class accuracy, the confusion matrix, trainable
and total parameters, and training seconds. The model is selected on the validation part;
the test part is touched once, after training.

The spatially disjoint split is reported beside the random one because random pixel splits
let test windows overlap training pixels (``docs/design_notes.md``, "Pixel-classification
protocol").

Recipe keys (every key optional except ``scene``; unknown keys are errors)::

    scene:   {card, cube, gt, cube_key, gt_key, root, download, ignore_values}
    split:   {val_fraction: 0.05, block_size: null, buffer: null}
    model:   {name: lola_specvit, mode: full|lora, pca: train|transductive, kwargs: {...},
              base_checkpoint: null, lora: {rank, alpha, dropout},
              lora_schedule: {period_epochs, period_mult, low, high} | null}
    train:   {epochs, batch_size, lr, weight_decay, warmup_epochs, label_smoothing,
              augment, context_dropout, brightness, num_workers, accelerator}
    baselines: [svm]

``cube``/``gt`` may start with ``{data}``, the geofm ``datasets/`` folder. Without them, the
scene's files are looked up under ``root`` by the card's file names and, with
``download: true``, downloaded from the card's sources and checked against its checksums.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from geofm.data.cards import as_dataset_card, data_dir
from geofm.data.datasets import read_scene
from geofm.data.outputs import write_atomic
from geofm.data.sample import IGNORE_INDEX
from geofm.data.splits import labelled_pixels, spatially_disjoint_split, stratified_split
from geofm.models import create_model
from geofm.models.checkpoints import (
    CheckpointError,
    check_architecture,
    check_plain,
    check_shapes,
    read_checkpoint,
    require,
    save_checkpoint,
    state_mismatches,
)
from geofm.models.lora import parameter_counts
from geofm.tasks.base import quiet_lightning
from geofm.tasks.metrics import ClassificationMetrics, classification_metrics, confusion_metrics

__all__ = [
    "PixelRecipe",
    "SeedResult",
    "build_classifier",
    "load_classifier",
    "read_classifier",
    "load_recipe",
    "load_recipe_scene",
    "read_results",
    "recipe_inputs",
    "make_split",
    "run_protocol",
    "run_seed",
    "summarise",
    "write_results",
]

SPLITS = ("random", "disjoint")
METHODS = ("lola", "svm")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "scene": {"card": None, "cube": None, "gt": None, "cube_key": None, "gt_key": None,
              "root": None, "download": False, "ignore_values": [0]},
    "split": {"val_fraction": 0.05, "block_size": None, "buffer": None},
    "model": {"name": "lola_specvit", "mode": "full", "pca": "train", "kwargs": {},
              "base_checkpoint": None, "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.0},
              "lora_schedule": None},
    "train": {"epochs": 60, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.05,
              "warmup_epochs": 5.0, "label_smoothing": 0.1, "augment": True,
              "context_dropout": 0.0, "brightness": 0.0, "num_workers": 0,
              "accelerator": "auto"},
}


class RecipeError(ValueError):
    """A recipe that cannot be run as written; the message names the key."""


@dataclass
class PixelRecipe:
    """A parsed recipe; see the module docstring for the keys."""

    scene: dict[str, Any]
    split: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    baselines: list[str] = field(default_factory=list)
    source: str = "<dict>"

    @property
    def patch(self) -> int:
        return int(self.model["kwargs"].get("patch", 15))

    @property
    def radius(self) -> int:
        return self.patch // 2

    def as_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "split": self.split, "model": self.model,
                "train": self.train, "baselines": self.baselines}


def _merge(section: str, given: Any, where: str) -> dict[str, Any]:
    defaults = copy.deepcopy(_DEFAULTS[section])
    if given is None:
        return defaults
    if not isinstance(given, dict):
        raise RecipeError(f"{where}: '{section}' must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown} in '{section}'; known: "
                          f"{sorted(defaults)}")
    for key, value in given.items():
        if isinstance(defaults.get(key), dict) and isinstance(value, dict):
            defaults[key].update(value)
        else:
            defaults[key] = value
    return defaults


def load_recipe(source: str | Path | dict[str, Any]) -> PixelRecipe:
    """Read and check a recipe from a YAML file or a dict."""
    if isinstance(source, dict):
        raw, where = source, "<dict>"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"recipe not found: {path}")
        raw, where = yaml.safe_load(path.read_text()) or {}, str(path)
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a recipe is a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {*_DEFAULTS, "baselines"})
    if unknown:
        raise RecipeError(f"{where}: unknown section(s) {unknown}; sections: "
                          f"{sorted([*_DEFAULTS, 'baselines'])}")
    recipe = PixelRecipe(**{s: _merge(s, raw.get(s), where) for s in _DEFAULTS},
                         baselines=list(raw.get("baselines") or []), source=where)
    if recipe.model["mode"] not in ("full", "lora"):
        raise RecipeError(f"{where}: model.mode must be 'full' or 'lora', got "
                          f"{recipe.model['mode']!r}")
    if recipe.model["pca"] not in ("train", "transductive"):
        raise RecipeError(f"{where}: model.pca must be 'train' (fitted on training pixels) or "
                          f"'transductive' (every pixel of the scene), got {recipe.model['pca']!r}")
    if recipe.model["mode"] == "lora" and not recipe.model["base_checkpoint"]:
        raise RecipeError(f"{where}: lora mode adapts a frozen base model: set "
                          "model.base_checkpoint to a checkpoint written by classify-pixels")
    if recipe.model["mode"] == "lora":
        _architecture_from_base(recipe)
    bad = [b for b in recipe.baselines if b != "svm"]
    if bad:
        raise RecipeError(f"{where}: unknown baselines {bad}; available: ['svm']")
    if recipe.patch < 1 or recipe.patch % 2 == 0:
        raise RecipeError(f"{where}: model.kwargs.patch must be odd, got {recipe.patch}")
    try:   # the recipe is saved with every model: refused now, not after training
        check_plain(recipe.as_dict(), "recipe")
    except TypeError as err:
        raise RecipeError(f"{where}: {err}") from None
    return recipe


# --------------------------------------------------------------------------------------------
# Scene and split


def _expand(path: str | None) -> Path | None:
    if path is None:
        return None
    return Path(str(path).replace("{data}", str(data_dir())))


def load_recipe_scene(recipe: PixelRecipe, progress: bool = True) -> dict[str, Any]:
    """Read the recipe's scene (cube + ground truth) as a sample with ``mask``."""
    sc = recipe.scene
    card = as_dataset_card(sc["card"]) if sc["card"] else None
    cube, gt = _expand(sc["cube"]), _expand(sc["gt"])
    cube_key, gt_key = sc["cube_key"], sc["gt_key"]
    if cube is None or gt is None:
        if card is None or not sc["root"]:
            raise RecipeError(f"{recipe.source}: give scene.cube and scene.gt, or scene.card "
                              "and scene.root (where the card's files are or will be "
                              "downloaded)")
        from geofm.data.download import fetch_card_files

        files = fetch_card_files(card, _expand(sc["root"]), download=bool(sc["download"]),
                                 progress=progress)
        cube, gt = cube or files.image, gt or files.labels
        cube_key = cube_key or files.image_key
        gt_key = gt_key or files.labels_key
    if card is not None:
        scene = read_scene(cube, gt, card, cube_key=cube_key, gt_key=gt_key)
    else:
        scene = _read_uncarded(Path(cube), Path(gt), cube_key, gt_key,
                               recipe.scene.get("ignore_values", [0]))
    scene["source_files"] = {"cube": str(Path(cube).resolve()), "gt": str(Path(gt).resolve())}
    return scene


def _read_uncarded(cube: Path, gt: Path, cube_key: str | None, gt_key: str | None,
                   ignore_values: Sequence[int]) -> dict[str, Any]:
    """A scene geofm has no card for (``--cube``/``--gt`` without ``--card``).

    Ground truth: ``ignore_values`` (default 0, the convention of the public scenes) are
    unlabelled; the other raw values, sorted, become classes ``0..K-1`` named ``"class <raw
    value>"``. Band metadata: from an ENVI header when it has it; a ``.mat`` file has none,
    so the bands are numbered 1..C in place of wavelengths and the GSD is left at 1 m, and
    the scene says so (``wavelengths_known`` False). LoLA-SpecViT and the SVM use neither.
    """
    from geofm.data.hyperspectral import (
        apply_label_lookup,
        envi_gsd,
        envi_memmap,
        mat_key,
        mat_variables,
        open_cube,
        read_mat_array,
    )

    if cube.suffix.lower() == ".mat":            # .mat files carry no band metadata
        variables = mat_variables(cube)            # headers only: nothing else is read
        bands = variables[mat_key(variables, cube_key, 3, cube)][-1]
        scene = open_cube(cube, key=cube_key,
                          wavelengths=[float(b) for b in range(1, bands + 1)], gsd=1.0)
        known = False
    else:
        _, header = envi_memmap(cube)
        known = "wavelength" in header
        wavelengths = None if known else [float(b) for b in range(1, header["bands"] + 1)]
        gsd = None if envi_gsd(header) is not None else 1.0
        scene = open_cube(cube, wavelengths=wavelengths, gsd=gsd)
    raw = read_mat_array(gt, mat_key(mat_variables(gt), gt_key, 2, gt))
    values = sorted(int(v) for v in np.unique(raw) if int(v) not in set(ignore_values))
    if not values:
        raise ValueError(f"{gt} has no labelled pixels (all values in {list(ignore_values)})")
    mask = apply_label_lookup(raw, {v: k for k, v in enumerate(values)})
    if mask.shape != tuple(scene["image"].shape[1:]):
        raise ValueError(f"labels in {gt} are {mask.shape[0]} x {mask.shape[1]} but the cube in "
                         f"{cube} is {scene['image'].shape[1]} x {scene['image'].shape[2]}")
    scene["mask"] = torch.from_numpy(mask)
    scene["classes"] = [f"class {v}" for v in values]
    scene["label_values"] = values
    scene["ignore_values"] = [int(v) for v in ignore_values]
    scene["wavelengths_known"] = known
    return scene


def check_window_fits(scene: dict[str, Any], patch: int) -> None:
    _, H, W = scene["image"].shape
    if patch > min(H, W):
        raise ValueError(f"the model's {patch} x {patch} pixel window is larger than the "
                         f"{H} x {W} scene")


def make_split(mask: np.ndarray, kind: str, train_fraction: float | int, val_fraction: float,
               radius: int, seed: int, block_size: int | None = None,
               buffer: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Coordinates ``{"train", "val", "test"}`` (each ``(N, 2)``) and a description.

    ``train_fraction``: a share of each class (float), or for the random split a number of
    pixels per class (int).
    ``random``: stratified by class. ``disjoint``: whole blocks per part with a buffer of
    ``buffer`` (default ``radius``) pixels (:func:`~geofm.data.splits.spatially_disjoint_split`).
    Every class of the scene must get at least one training and one test pixel; otherwise a
    ``ValueError`` names the classes and their counts.
    """
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; choose one of {', '.join(SPLITS)}")
    per_class = isinstance(train_fraction, int | np.integer) and not isinstance(train_fraction,
                                                                                 bool)
    if per_class:
        if kind != "random":
            raise ValueError(f"the {kind} split gives whole blocks to each part, so it takes a "
                             f"train fraction, not {train_fraction} pixels per class")
        if train_fraction < 1:
            raise ValueError(f"pixels per class must be >= 1, got {train_fraction}")
    elif not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must lie in (0, 1), got {train_fraction}")
    info: dict[str, Any] = {"split": kind}
    if kind == "random":
        coords, labels = labelled_pixels(mask)
        parts = stratified_split(labels, train=train_fraction if per_class
                                 else float(train_fraction), val=float(val_fraction), seed=seed)
        out = {p: coords[getattr(parts, p)] for p in ("train", "val", "test")}
    else:
        sp = spatially_disjoint_split(mask, radius, train=float(train_fraction),
                                      val=float(val_fraction), block_size=block_size,
                                      seed=seed, buffer=buffer)
        out = {p: sp.coords(p) for p in ("train", "val", "test")}
        info["dropped_by_buffer"] = sp.dropped
    num_classes = int(mask[mask != IGNORE_INDEX].max()) + 1
    counts = {p: np.bincount(mask[c[:, 0], c[:, 1]], minlength=num_classes)
              for p, c in out.items()}
    present = np.bincount(mask[mask != IGNORE_INDEX], minlength=num_classes) > 0
    short = [(k, int(counts["train"][k]), int(counts["test"][k]))
             for k in np.flatnonzero(present) if counts["train"][k] == 0 or counts["test"][k] == 0]
    if short:
        listed = "; ".join(f"class {k}: {tr} train, {te} test pixels" for k, tr, te in short)
        total = np.bincount(mask[mask != IGNORE_INDEX], minlength=num_classes)
        raise ValueError(f"the {kind} split with train {'count' if per_class else 'fraction'} "
                         f"{train_fraction} leaves a class without training or test pixels "
                         f"({listed}; labelled pixels per class: {total.tolist()})")
    info["counts"] = {p: c.tolist() for p, c in counts.items()}
    return out, info


# --------------------------------------------------------------------------------------------
# Models and checkpoints


def _architecture_from_base(recipe: PixelRecipe) -> None:
    """In lora mode the architecture is the base checkpoint's: copy it into the recipe
    (``model.kwargs`` may be left out, or must equal it)."""
    m = recipe.model
    base_path = _expand(m["base_checkpoint"])
    base = read_classifier(base_path)
    if base["model"] != m["name"]:
        raise RecipeError(f"{recipe.source}: base checkpoint {base_path} holds a "
                          f"{base['model']!r}, the recipe asks for {m['name']!r}")
    if m["kwargs"] and m["kwargs"] != base["kwargs"]:
        raise RecipeError(f"{recipe.source}: in lora mode the architecture comes from the base "
                          f"checkpoint; the recipe's model.kwargs {m['kwargs']} differ from the "
                          f"base's {base['kwargs']}: remove them or make them equal")
    m["kwargs"] = dict(base["kwargs"])


def build_classifier(recipe: PixelRecipe, bands: int, num_classes: int
                     ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The recipe's model for a scene with ``bands`` bands and ``num_classes`` classes.

    ``lora`` mode: the architecture and weights come from ``model.base_checkpoint``; the
    PCA is refitted on this scene and a head with another class count is re-initialised.
    Returns the model and its construction record (for the checkpoint).
    """
    m = recipe.model
    kwargs = dict(m["kwargs"])
    if m["mode"] == "full":
        model = create_model(m["name"], bands=bands, num_classes=num_classes, **kwargs)
        return model, {"name": m["name"], "kwargs": kwargs, "lora": None}
    base_path = _expand(m["base_checkpoint"])
    base = read_classifier(base_path)
    if kwargs != base["kwargs"]:
        raise ValueError(f"the recipe's model.kwargs {kwargs} are not the architecture of the "
                         f"base checkpoint {base_path} ({base['kwargs']})")
    skip = ["reduction."]
    if base["num_classes"] != num_classes:
        skip.append("head.")
    # checked on the meta device before the model is allocated
    meta = check_architecture(base_path, m["name"], {"bands": bands, "num_classes": num_classes,
                                                     **kwargs})
    problems = state_mismatches(meta, base["state_dict"], skip)
    if problems:
        raise CheckpointError(f"base checkpoint {base_path} does not fit this model: "
                              + "; ".join(problems[:8]) + (" ..." if len(problems) > 8 else ""))
    model = create_model(m["name"], bands=bands, num_classes=num_classes, **kwargs)
    state = {k: v for k, v in base["state_dict"].items()
             if not any(k.startswith(s) for s in skip)}
    model.load_state_dict(state, strict=False)
    lora = dict(m["lora"])
    model.to_lora(rank=int(lora["rank"]), alpha=float(lora["alpha"]),
                  dropout=float(lora.get("dropout", 0.0)))
    return model, {"name": m["name"], "kwargs": kwargs, "lora": lora,
                   "base_checkpoint": str(base_path)}


def _warn_if_base_saw_this_scene(record: dict[str, Any], scene: dict[str, Any]) -> None:
    """A base trained on the scene being classified has seen pixels that may be in this
    split's test part (another seed or split puts them elsewhere): say so."""
    base = read_classifier(record["base_checkpoint"])
    mine = (scene.get("source_files") or {}).get("cube")
    theirs = (base.get("source_files") or {}).get("cube")
    if mine and theirs and Path(mine).resolve() == Path(theirs).resolve():
        warnings.warn(f"the base checkpoint {record['base_checkpoint']} was trained on this "
                      f"scene ({mine}); pixels it learned from may be test pixels of this "
                      "split, so the test scores can be optimistic. Use a base trained on "
                      "another scene for an honest evaluation.", UserWarning, stacklevel=3)


def read_classifier(path: Path | str) -> dict[str, Any]:
    """A pixel classifier's file, read without running code (:mod:`geofm.models.checkpoints`)."""
    _, ckpt = read_checkpoint(path, "pixel")
    _require_fields(ckpt, path)
    return ckpt


def _require_fields(ckpt: dict[str, Any], path: Path | str) -> None:
    require(ckpt, path, {"model": str, "kwargs": dict, "num_classes": int, "classes": list,
                         "bands": list, "state_dict": dict, "lora": (dict, type(None))})


def save_classifier(path: Path, model: torch.nn.Module, record: dict[str, Any],
                    scene: dict[str, Any], classes: Sequence[str], extra: dict[str, Any]
                    ) -> Path:
    return save_checkpoint({
        "model": record["name"], "kwargs": record["kwargs"],
        "lora": record["lora"], "num_classes": len(classes), "classes": list(classes),
        "bands": list(scene["bands"]),
        "wavelengths": torch.as_tensor(scene["wavelengths"]).tolist(),
        "wavelengths_known": bool(scene.get("wavelengths_known", True)),
        "label_values": scene.get("label_values"), "ignore_values": scene.get("ignore_values"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }, path, "pixel")


def load_classifier(path: Path | str, merge: bool = True,
                    ckpt: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict]:
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

    def add_lora(model: torch.nn.Module) -> None:
        model.to_lora(rank=int(lora["rank"]), alpha=float(lora["alpha"]),
                      dropout=float(lora.get("dropout", 0.0)))

    # shapes and size checked on the meta device before anything is allocated
    check_shapes(path, check_architecture(path, ckpt["model"], config,
                                          prepare=add_lora if lora else None),
                 ckpt["state_dict"])
    model = create_model(ckpt["model"], **config)
    if lora:
        add_lora(model)
    model.load_state_dict(ckpt["state_dict"])
    if ckpt["lora"]:
        # the strength the model was validated and tested at (the schedule's eval value)
        set_lora_multiplier(model, float(ckpt["lora"].get("eval_multiplier", 1.0)))
        if merge:
            merge_lora(model)
    return model.eval(), ckpt


# --------------------------------------------------------------------------------------------
# One seed


@dataclass
class SeedResult:
    """One method on one split and seed."""

    method: str
    mode: str
    split: str
    train_fraction: float
    seed: int
    metrics: ClassificationMetrics
    trainable_params: int | None
    total_params: int | None
    train_seconds: float
    counts: dict[str, list[int]]
    details: dict[str, Any] = field(default_factory=dict)

    def row(self, classes: Sequence[str]) -> dict[str, Any]:
        row = {"method": self.method, "mode": self.mode, "split": self.split,
               "train_fraction": self.train_fraction, "seed": self.seed}
        row.update({k: round(v, 6) for k, v in self.metrics.as_dict(classes).items()})
        row.update({"trainable_params": self.trainable_params, "total_params":
                    self.total_params, "train_seconds": round(self.train_seconds, 2),
                    "n_train": sum(self.counts["train"]), "n_val": sum(self.counts["val"]),
                    "n_test": sum(self.counts["test"])})
        return row


def _loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       num_workers=num_workers,
                                       generator=g, drop_last=False)


def _train_lola(recipe: PixelRecipe, scene: dict[str, Any], coords: dict[str, np.ndarray],
                num_classes: int, seed: int, progress: bool, log_dir: Path | None
                ) -> tuple[torch.nn.Module, dict[str, Any], float, dict[str, Any]]:
    import lightning.pytorch as pl

    from geofm.tasks.callbacks import BestWeights, CyclicLoRAScale
    from geofm.tasks.pixel import PixelClassificationTask, ReducedWindows

    pl.seed_everything(seed, workers=True, verbose=False)
    image = torch.as_tensor(scene["image"]).float()
    model, record = build_classifier(recipe, image.shape[0], num_classes)
    valid = scene.get("valid")
    if recipe.model["pca"] == "train":
        tr = coords["train"]
        pixels = image[:, tr[:, 0], tr[:, 1]].T
    else:
        v = torch.ones(image.shape[1:], dtype=torch.bool) if valid is None else valid
        pixels = image[:, v].T
    model.fit_reduction(pixels)

    t = recipe.train
    with torch.no_grad():
        scores = model.reduction(image[None], None if valid is None else valid[None])[0]
    mask = torch.as_tensor(scene["mask"]).numpy()

    def windows(part: str) -> ReducedWindows:
        c = coords[part]
        return ReducedWindows(scores, c, mask[c[:, 0], c[:, 1]], recipe.patch)

    task = PixelClassificationTask(model, num_classes, lr=float(t["lr"]),
                                   weight_decay=float(t["weight_decay"]),
                                   warmup_epochs=float(t["warmup_epochs"]),
                                   label_smoothing=float(t["label_smoothing"]),
                                   augment=bool(t["augment"]), reduced_inputs=True,
                                   context_dropout=float(t["context_dropout"]),
                                   brightness=float(t["brightness"]))
    best = BestWeights()
    callbacks: list[pl.Callback] = [best]
    if recipe.model["mode"] == "lora":
        _warn_if_base_saw_this_scene(record, scene)
        if recipe.model["lora_schedule"]:
            schedule = CyclicLoRAScale(**recipe.model["lora_schedule"])
            callbacks.append(schedule)
            record["lora"]["eval_multiplier"] = schedule.eval_multiplier
    logger: Any = False
    if log_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(str(log_dir), name="", version=None)
    trainer = pl.Trainer(max_epochs=int(t["epochs"]), accelerator=t["accelerator"], devices=1,
                         logger=logger, enable_checkpointing=False, callbacks=callbacks,
                         enable_model_summary=False, enable_progress_bar=progress,
                         num_sanity_val_steps=0, log_every_n_steps=1, deterministic=False)
    bs, nw = int(t["batch_size"]), int(t["num_workers"])
    start = time.perf_counter()
    with quiet_lightning():
        trainer.fit(task, _loader(windows("train"), bs, True, nw, seed),
                    _loader(windows("val"), 4 * bs, False, nw, seed))
    seconds = time.perf_counter() - start
    details = {"best_epoch": best.best_epoch,
               "best_val_oa": None if best.best is None else best.best[0],
               "epochs": int(t["epochs"]),
               "pca_explained": float(model.reduction.explained.sum())}
    return model.eval(), record, seconds, details


def run_seed(recipe: PixelRecipe, scene: dict[str, Any], split: str, train_fraction: float,
             seed: int, methods: Sequence[str] = ("lola",), num_classes: int | None = None,
             progress: bool = True, save_dir: Path | None = None) -> list[SeedResult]:
    """Split the scene with ``seed``, train and test each method; one result per method."""
    from geofm.tasks.pixel import classify_pixels, svm_baseline

    check_window_fits(scene, recipe.patch)
    mask = torch.as_tensor(scene["mask"]).numpy()
    coords, info = make_split(mask, split, train_fraction,
                              float(recipe.split["val_fraction"]), recipe.radius, seed,
                              recipe.split["block_size"], recipe.split["buffer"])
    if num_classes is None:
        num_classes = int(mask[mask != IGNORE_INDEX].max()) + 1
    if save_dir is not None:
        from geofm.data.plot import plot_split_layout

        save_dir.mkdir(parents=True, exist_ok=True)
        plot_split_layout(mask, coords, title=f"{split} split, train fraction "
                          f"{train_fraction:g}, seed {seed}").savefig(
            save_dir / f"split_{split}_f{train_fraction:g}_seed{seed}.png", dpi=110)
    test = coords["test"]
    y_test = mask[test[:, 0], test[:, 1]]
    results = []
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if method == "svm":
            image = torch.as_tensor(scene["image"]).float().numpy()
            tr = coords["train"]
            start = time.perf_counter()
            preds, svm_info = svm_baseline(image[:, tr[:, 0], tr[:, 1]].T,
                                           mask[tr[:, 0], tr[:, 1]],
                                           image[:, test[:, 0], test[:, 1]].T, seed=seed)
            seconds = time.perf_counter() - start
            results.append(SeedResult("svm", "rbf", split, train_fraction, seed,
                                      classification_metrics(y_test, preds, num_classes),
                                      None, None, seconds, info["counts"], svm_info))
            continue
        log_dir = None if save_dir is None else save_dir / "logs" / f"{split}_seed{seed}"
        model, record, seconds, details = _train_lola(recipe, scene, coords, num_classes,
                                                       seed, progress, log_dir)
        preds, _ = classify_pixels(model, torch.as_tensor(scene["image"]), test,
                                   scene.get("valid"))
        counts = parameter_counts(model)
        metrics = classification_metrics(y_test, preds, num_classes)
        details.update({k: v for k, v in info.items() if k != "counts"})
        if save_dir is not None:
            classes = _class_names(scene, num_classes)
            name = checkpoint_name(recipe, split, train_fraction, seed)
            details["checkpoint"] = str(save_classifier(
                save_dir / name, model, record, scene, classes,
                {"split": split, "seed": seed, "train_fraction": train_fraction,
                 "card": scene.get("card"), "recipe": recipe.as_dict(),
                 "source_files": scene.get("source_files"),
                 "test_oa": metrics.oa}))
        results.append(SeedResult("lola", recipe.model["mode"], split, train_fraction, seed,
                                  metrics, counts.trainable, counts.total, seconds,
                                  info["counts"], details))
    return results


def checkpoint_name(recipe: PixelRecipe, split: str, train_fraction: float | int,
                    seed: int) -> str:
    """File name of the model :func:`run_seed` saves for this run."""
    return f"lola_{recipe.model['mode']}_{split}_f{train_fraction:g}_seed{seed}.pt"


def _class_names(scene: dict[str, Any], num_classes: int) -> list[str]:
    names = scene.get("classes")
    if names and len(names) == num_classes:
        return list(names)
    return [str(k) for k in range(num_classes)]


# --------------------------------------------------------------------------------------------
# Many seeds


def run_protocol(recipe: PixelRecipe, split: str, train_fraction: float, seeds: Sequence[int],
                 methods: Sequence[str] | None = None, progress: bool = True,
                 save_dir: Path | None = None, scene: dict[str, Any] | None = None,
                 echo=print, done: Sequence[SeedResult] = (),
                 on_seed: Callable[[list[SeedResult], list[str]], Any] | None = None
                 ) -> tuple[list[SeedResult], list[str]]:
    """Every method on every seed; returns the results and the class names.

    ``done``: results of an earlier, interrupted run of the same protocol (see
    :func:`read_results`): the (method, seed) pairs they hold are not run again, and they
    come first in the results. ``on_seed(results so far, class names)`` is called as each
    seed ends (to write them at once).
    """
    if not seeds:
        raise ValueError("give at least one seed")
    methods = list(methods) if methods is not None else ["lola", *recipe.baselines]
    scene = scene if scene is not None else load_recipe_scene(recipe, progress)
    check_window_fits(scene, recipe.patch)
    card = as_dataset_card(recipe.scene["card"]) if recipe.scene["card"] else None
    mask = torch.as_tensor(scene["mask"]).numpy()
    if card is not None:
        num_classes = card.num_classes
        scene["classes"] = list(card.classes)
        scene["card"] = card.name
    else:
        num_classes = len(scene.get("classes") or []) or int(mask[mask != IGNORE_INDEX].max()) + 1
    classes = _class_names(scene, num_classes)
    results: list[SeedResult] = list(done)
    finished = {(r.method, r.seed) for r in done}
    for seed in seeds:
        todo = [m for m in methods if (m, seed) not in finished]
        if not todo:
            echo(f"seed {seed}: {', '.join(methods)} done in the earlier run, kept")
            continue
        for res in run_seed(recipe, scene, split, train_fraction, seed, todo, num_classes,
                            progress, save_dir):
            results.append(res)
            m = res.metrics
            echo(f"{res.method:<5} {res.split:<8} seed {seed}: OA {100 * m.oa:6.2f}%  AA "
                 f"{100 * m.aa:6.2f}%  kappa {m.kappa:.4f}  ({res.train_seconds:.0f} s, "
                 f"{sum(res.counts['train'])} train / {sum(res.counts['val'])} val / "
                 f"{sum(res.counts['test'])} test pixels)")
        if on_seed is not None:
            on_seed(list(results), classes)
    return results, classes


def summarise(results: Sequence[SeedResult], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Per-seed rows, then a ``mean`` and a ``std`` (sample standard deviation; empty with a
    single seed) row per (method, mode, split, train fraction)."""
    rows = [r.row(classes) for r in results]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["mode"], row["split"], row["train_fraction"]),
                          []).append(row)
    out = list(rows)
    numeric = [k for k in rows[0] if k not in ("method", "mode", "split", "train_fraction",
                                               "seed")] if rows else []
    for (method, mode, split, fraction), members in groups.items():
        for stat in ("mean", "std"):
            row: dict[str, Any] = {"method": method, "mode": mode, "split": split,
                                   "train_fraction": fraction, "seed": stat}
            for key in numeric:
                values = [m[key] for m in members if m[key] is not None]
                if not values:
                    row[key] = None
                    continue
                arr = np.asarray(values, dtype=np.float64)
                if stat == "mean":
                    row[key] = round(float(np.nanmean(arr)), 6)
                else:
                    finite = arr[~np.isnan(arr)]
                    # one seed has no spread: left empty rather than a misleading 0
                    row[key] = (round(float(np.std(finite, ddof=1)), 6) if len(finite) > 1
                                else None)
            out.append(row)
    return out


def write_results(path: Path, results: Sequence[SeedResult], classes: Sequence[str],
                  recipe: PixelRecipe | None = None) -> list[dict[str, Any]]:
    """The CSV (per seed, then mean and std) and a JSON beside it with the confusion
    matrices, per-run details and (``recipe``) the recipe, from which :func:`read_results`
    can rebuild the results. Each file is replaced atomically. Returns the rows."""
    rows = summarise(results, classes)

    def write_csv(part: Path) -> None:
        with open(part, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    recipe_dict = None if recipe is None else _jsonable(recipe.as_dict())
    detail = [{"method": r.method, "mode": r.mode, "split": r.split, "seed": r.seed,
               "train_fraction": r.train_fraction, "classes": list(classes),
               "confusion": r.metrics.confusion.tolist(), "counts": r.counts,
               "trainable_params": r.trainable_params, "total_params": r.total_params,
               "train_seconds": r.train_seconds, "recipe": recipe_dict,
               "details": _jsonable(r.details)} for r in results]
    write_atomic(path, write_csv)
    write_atomic(path.with_suffix(".json"),
                 lambda part: part.write_text(json.dumps(detail, indent=1)))
    return rows


def read_results(path: Path, recipe: PixelRecipe, split: str, train_fraction: float
                 ) -> list[SeedResult]:
    """The results a :func:`write_results` JSON holds, to resume that run; refused unless
    they were made with this recipe, split and training share."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a classify-pixels results JSON ({err}); move it "
                         "away or run without --resume") from err
    mine = _jsonable(recipe.as_dict())
    out = []
    for i, e in enumerate(entries if isinstance(entries, list) else [None]):
        if not isinstance(e, dict) or "trainable_params" not in e or "recipe" not in e:
            raise ValueError(f"{path}: entry {i} lacks what resuming needs (written by an "
                             "older geofm?); run without --resume, with --overwrite")
        if e["recipe"] != mine:
            raise ValueError(f"{path} holds runs of another recipe; resume with the same "
                             "recipe and options, or write to another --output")
        if e["split"] != split or float(e["train_fraction"]) != float(train_fraction):
            raise ValueError(f"{path} holds runs of split {e['split']!r} with training share "
                             f"{e['train_fraction']}, not {split!r} with {train_fraction}; "
                             "resume with the same options, or write to another --output")
        out.append(SeedResult(e["method"], e["mode"], e["split"], e["train_fraction"],
                              int(e["seed"]), confusion_metrics(np.asarray(e["confusion"])),
                              e["trainable_params"], e["total_params"],
                              float(e["train_seconds"]), e["counts"], e["details"]))
    return out


def recipe_inputs(recipe: PixelRecipe) -> list[Path]:
    """The files a recipe reads (its YAML, cube, ground truth, download root, base
    model): what no output may be."""
    sc, m = recipe.scene, recipe.model
    paths = [None if recipe.source.startswith("<") else recipe.source, sc["cube"], sc["gt"],
             sc["root"], m.get("base_checkpoint")]
    return [_expand(p) for p in paths if p]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
