"""The pixel-classification protocol: the scene, its splits, and each method on each seed.

A recipe (:mod:`geofm.tasks.pixel_recipe`) fixes the scene, the model and the training;
:func:`run_protocol` runs it on a random stratified split or a spatially disjoint split with
a buffer (:mod:`geofm.data.splits`), for several seeds, and returns one result per method
and seed (:mod:`geofm.tasks.pixel_results`): OA, AA, kappa, per-class accuracy, the
confusion matrix, trainable and total parameters, and training seconds. The model is
selected on the validation part; the test part is touched once, after training, and the
model is saved (:mod:`geofm.tasks.pixel_models`). :func:`run_split` runs the same protocol
on a split given as pixel coordinates (one published with a benchmark, for example).

The spatially disjoint split is reported beside the random one because random pixel splits
let test windows overlap training pixels (``docs/design_notes.md``, "Pixel-classification
protocol").
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geofm.data.cards import as_dataset_card, expand_data_path
from geofm.data.datasets import read_scene
from geofm.data.sample import IGNORE_INDEX, apply_label_lookup, sample_loader
from geofm.data.splits import labelled_pixels, spatially_disjoint_split, stratified_split
from geofm.models.lora import parameter_counts
from geofm.tasks.base import quiet_lightning
from geofm.tasks.metrics import classification_metrics
from geofm.tasks.pixel_models import build_classifier, save_classifier, warn_if_base_saw_scene
from geofm.tasks.pixel_recipe import (
    BASELINE_RECIPES,
    BASELINES,
    TRANSFER_BASELINES,
    PixelRecipe,
    RecipeError,
    baseline_recipe,
    transfer_recipe,
)
from geofm.tasks.pixel_results import SeedResult

__all__ = [
    "METHODS",
    "SPLITS",
    "check_split",
    "check_window_fits",
    "checkpoint_name",
    "load_recipe_scene",
    "make_split",
    "method_recipes",
    "run_protocol",
    "run_seed",
    "run_split",
    "split_radius",
    "validate_seed",
]

SPLITS = ("random", "disjoint")
#: ``lola``: the recipe's own model; then the baselines a recipe may list
METHODS = ("lola", *BASELINES)


# --------------------------------------------------------------------------------------------
# Scene and split


def load_recipe_scene(recipe: PixelRecipe, progress: bool = True) -> dict[str, Any]:
    """Read the recipe's scene (cube + ground truth) as a sample with ``mask``."""
    sc = recipe.scene
    card = as_dataset_card(sc["card"]) if sc["card"] else None
    cube, gt = expand_data_path(sc["cube"]), expand_data_path(sc["gt"])
    cube_key, gt_key = sc["cube_key"], sc["gt_key"]
    if cube is None or gt is None:
        if card is None or not sc["root"]:
            raise RecipeError(
                f"{recipe.source}: give scene.cube and scene.gt, or scene.card "
                "and scene.root (where the card's files are or will be "
                "downloaded)"
            )
        from geofm.data.download import fetch_card_files

        files = fetch_card_files(
            card, expand_data_path(sc["root"]), download=bool(sc["download"]), progress=progress
        )
        cube, gt = cube or files.image, gt or files.labels
        cube_key = cube_key or files.image_key
        gt_key = gt_key or files.labels_key
    if card is not None:
        scene = read_scene(cube, gt, card, cube_key=cube_key, gt_key=gt_key)
    else:
        scene = _read_uncarded(
            Path(cube), Path(gt), cube_key, gt_key, recipe.scene.get("ignore_values", [0])
        )
    scene["source_files"] = {"cube": str(Path(cube).resolve()), "gt": str(Path(gt).resolve())}
    return scene


def _read_uncarded(
    cube: Path, gt: Path, cube_key: str | None, gt_key: str | None, ignore_values: Sequence[int]
) -> dict[str, Any]:
    """A scene geofm has no card for (``--cube``/``--gt`` without ``--card``).

    Ground truth: ``ignore_values`` (default 0, the convention of the public scenes) are
    unlabelled; the other raw values, sorted, become classes ``0..K-1`` named ``"class <raw
    value>"``. Band metadata: from an ENVI header when it has it; a ``.mat`` file has none,
    so the bands are numbered 1..C in place of wavelengths and the GSD is left at 1 m, and
    the scene says so (``wavelengths_known`` False). LoLA-SpecViT and the SVM use neither.
    """
    from geofm.data.hyperspectral import (
        envi_gsd,
        envi_memmap,
        mat_key,
        mat_variables,
        open_cube,
        read_mat_array,
    )

    if cube.suffix.lower() == ".mat":  # .mat files carry no band metadata
        variables = mat_variables(cube)  # headers only: nothing else is read
        bands = variables[mat_key(variables, cube_key, 3, cube)][-1]
        scene = open_cube(
            cube, key=cube_key, wavelengths=[float(b) for b in range(1, bands + 1)], gsd=1.0
        )
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
        raise ValueError(
            f"labels in {gt} are {mask.shape[0]} x {mask.shape[1]} but the cube in "
            f"{cube} is {scene['image'].shape[1]} x {scene['image'].shape[2]}"
        )
    scene["mask"] = torch.from_numpy(mask)
    scene["classes"] = [f"class {v}" for v in values]
    scene["label_values"] = values
    scene["ignore_values"] = [int(v) for v in ignore_values]
    scene["wavelengths_known"] = known
    return scene


def check_window_fits(scene: dict[str, Any], patch: int, method: str = "lola") -> None:
    """A ``ValueError`` naming the scene's size if ``method``'s window does not fit it."""
    _, H, W = scene["image"].shape
    if patch > min(H, W):
        name = f"scene {scene['card']!r}" if scene.get("card") else "scene"
        largest = min(H, W) - (min(H, W) + 1) % 2
        who, fix = (
            ("the model", f"use model.kwargs.patch <= {largest}")
            if method == "lola"
            else (method, f"leave {method} out of the baselines and --methods")
        )
        raise ValueError(
            f"{who}'s {patch} x {patch} pixel window is larger than the {H} x {W} {name}; {fix}"
        )


def method_recipes(recipe: PixelRecipe, methods: Sequence[str]) -> dict[str, PixelRecipe]:
    """The recipe each trained method among ``methods`` uses: ``lola`` the recipe itself, a
    baseline of :data:`~geofm.tasks.pixel_recipe.BASELINE_RECIPES` its own
    (:func:`~geofm.tasks.pixel_recipe.baseline_recipe`), a transfer baseline the recipe in
    another mode (:func:`~geofm.tasks.pixel_recipe.transfer_recipe`); the SVM trains no
    window model."""
    out = {}
    for m in methods:
        if m == "lola":
            out[m] = recipe
        elif m in BASELINE_RECIPES:
            out[m] = baseline_recipe(recipe, m)
        elif m in TRANSFER_BASELINES:
            out[m] = transfer_recipe(recipe, m)
    return out


def split_radius(recipe: PixelRecipe, methods: Sequence[str] = ()) -> int:
    """The window radius a split's buffer keeps test pixels clear of: the widest window of
    the recipe's model, its trained baselines and any other trained method of the run, so
    that one split serves every method and no method's test window reaches a training
    pixel."""
    names = ["lola", *recipe.baselines, *methods]
    return max(r.radius for r in method_recipes(recipe, names).values())


def make_split(
    mask: np.ndarray,
    kind: str,
    train_fraction: float | int,
    val_fraction: float,
    radius: int,
    seed: int,
    block_size: int | None = None,
    buffer: int | None = None,
    unsplittable: str = "error",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Coordinates ``{"train", "val", "test"}`` (each ``(N, 2)``) and a description.

    ``train_fraction``: a share of each class (float), or for the random split a number of
    pixels per class (int).
    ``random``: stratified by class. ``disjoint``: whole blocks per part with a buffer of
    ``buffer`` (default ``radius``) pixels (:func:`~geofm.data.splits.spatially_disjoint_split`).
    Every class of the scene must get at least one training and one test pixel; otherwise a
    ``ValueError`` names the classes and their counts. ``unsplittable="exclude"`` leaves
    such classes out of a disjoint split instead (``info["excluded_classes"]``); a disjoint
    split's ``info["grid"]`` holds the block size and buffer it used.
    """
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; choose one of {', '.join(SPLITS)}")
    per_class = isinstance(train_fraction, int | np.integer) and not isinstance(
        train_fraction, bool
    )
    if per_class:
        if kind != "random":
            raise ValueError(
                f"the {kind} split gives whole blocks to each part, so it takes a "
                f"train fraction, not {train_fraction} pixels per class"
            )
        if train_fraction < 1:
            raise ValueError(f"pixels per class must be >= 1, got {train_fraction}")
    elif not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must lie in (0, 1), got {train_fraction}")
    info: dict[str, Any] = {"split": kind}
    if kind == "random":
        coords, labels = labelled_pixels(mask)
        parts = stratified_split(
            labels,
            train=train_fraction if per_class else float(train_fraction),
            val=float(val_fraction),
            seed=seed,
        )
        out = {p: coords[getattr(parts, p)] for p in ("train", "val", "test")}
    else:
        sp = spatially_disjoint_split(
            mask,
            radius,
            train=float(train_fraction),
            val=float(val_fraction),
            block_size=block_size,
            seed=seed,
            buffer=buffer,
            exclude_unsplittable=unsplittable == "exclude",
        )
        out = {p: sp.coords(p) for p in ("train", "val", "test")}
        info["dropped_by_buffer"] = sp.dropped
        info["excluded_classes"] = list(sp.excluded)
        info["grid"] = {"block_size": sp.block_size, "buffer": sp.buffer}
    num_classes = int(mask[mask != IGNORE_INDEX].max()) + 1
    counts = {p: np.bincount(mask[c[:, 0], c[:, 1]], minlength=num_classes) for p, c in out.items()}
    present = np.bincount(mask[mask != IGNORE_INDEX], minlength=num_classes) > 0
    present[info.get("excluded_classes", [])] = False
    short = [
        (k, int(counts["train"][k]), int(counts["test"][k]))
        for k in np.flatnonzero(present)
        if counts["train"][k] == 0 or counts["test"][k] == 0
    ]
    if short:
        listed = "; ".join(f"class {k}: {tr} train, {te} test pixels" for k, tr, te in short)
        total = np.bincount(mask[mask != IGNORE_INDEX], minlength=num_classes)
        raise ValueError(
            f"the {kind} split with train {'count' if per_class else 'fraction'} "
            f"{train_fraction} leaves a class without training or test pixels "
            f"({listed}; labelled pixels per class: {total.tolist()})"
        )
    info["counts"] = {p: c.tolist() for p, c in counts.items()}
    return out, info


# --------------------------------------------------------------------------------------------
# Models and checkpoints


def cpu_bf16_flags() -> list[str] | None:
    """The bfloat16 flags ``/proc/cpuinfo``'s ``flags`` line lists (``avx512_bf16``,
    ``amx_bf16``); ``None`` where there is no such line (not Linux, not x86): unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        None,
    )  # x86; other CPUs (ARM's "Features") are not read: unknown
    return None if flags is None else sorted(f for f in flags if "bf16" in f)


def warn_if_bf16_is_emulated(precision: str, device: torch.device) -> None:
    """Warn when ``bf16-mixed`` is to train on a CPU known to lack bfloat16 arithmetic:
    autocast then emulates it, about 11 times slower than float32 on one such CPU (a
    2-core AMD EPYC without AVX-512 BF16, the recipe's Indian Pines model)."""
    if precision == "bf16-mixed" and device.type == "cpu" and cpu_bf16_flags() == []:
        warnings.warn(
            "train.precision bf16-mixed on a CPU without bfloat16 arithmetic (/proc/cpuinfo "
            "lists no avx512_bf16 or amx_bf16): it is emulated, many times slower than "
            "float32; pass --train.precision 32-true (benchmarks/pixel_step_time.py times "
            "both on this machine)",
            stacklevel=3,
        )


def _train_window_model(
    recipe: PixelRecipe,
    scene: dict[str, Any],
    coords: dict[str, np.ndarray],
    num_classes: int,
    seed: int,
    progress: bool,
    log_dir: Path | None,
    keep_best: bool | None = None,
    keep_val: bool = False,
    every_epoch: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any], float, dict[str, Any]]:
    """Train the recipe's window model on ``coords["train"]``, validating on
    ``coords["val"]`` after every epoch; it ends holding the best validation epoch's
    weights, or with ``keep_best=False`` the last epoch's (the moving average's, with
    ``train.ema_epochs``); ``keep_best=None``: as the recipe's ``train.keep`` says.
    ``details["val_history"]``: the validation OA of every epoch (of the last alone when
    the last weights are kept and neither ``keep_val`` nor ``every_epoch`` asks for the
    curve: nothing is chosen on it); with
    ``keep_val``, also ``details["val_predictions"]`` and ``details["val_losses"]``,
    ``(epochs, N)``: each validation pixel's class and loss after every epoch
    (:class:`~geofm.tasks.callbacks.ValidationRecord`)."""
    import lightning.pytorch as pl

    from geofm.tasks.callbacks import (
        BestWeights,
        CyclicLoRAScale,
        ValidationRecord,
        WeightAverage,
    )
    from geofm.tasks.pixel import PixelClassificationTask, ReducedWindows, class_weights

    pl.seed_everything(seed, workers=True, verbose=False)
    image = torch.as_tensor(scene["image"]).float()
    model, record = build_classifier(recipe, image.shape[0], num_classes, scene)
    valid = scene.get("valid")
    if recipe.model["pca"] == "train":
        tr = coords["train"]
        pixels = image[:, tr[:, 0], tr[:, 1]].T
    else:
        v = torch.ones(image.shape[1:], dtype=torch.bool) if valid is None else valid
        pixels = image[:, v].T
    # a base's components matched to this scene's bands keep their directions
    model.fit_reduction(pixels, keep_basis="pca_match" in record)

    t = recipe.train
    with torch.no_grad():
        scores = model.reduction(image[None], None if valid is None else valid[None])[0]
    mask = torch.as_tensor(scene["mask"]).numpy()

    def windows(part: str) -> ReducedWindows:
        c = coords[part]
        return ReducedWindows(scores, c, mask[c[:, 0], c[:, 1]], recipe.patch)

    power = t["class_weight_power"]
    tr = coords["train"]
    weights = class_weights(mask[tr[:, 0], tr[:, 1]], num_classes, power) if power else None
    # the recipe's types are checked when it is read (geofm.tasks.pixel_recipe)
    task = PixelClassificationTask(
        model,
        num_classes,
        lr=t["lr"],
        weight_decay=t["weight_decay"],
        warmup_epochs=t["warmup_epochs"],
        min_lr_factor=t["min_lr_factor"],
        label_smoothing=t["label_smoothing"],
        augment=t["augment"],
        reduced_inputs=True,
        context_dropout=t["context_dropout"],
        brightness=t["brightness"],
        schedule_epochs=t["epochs"],
        class_weights=weights,
    )
    if keep_best is None:
        keep_best = t["keep"] == "best"
    best = BestWeights(restore=keep_best)
    callbacks: list[pl.Callback] = [best]
    if t["ema_epochs"]:
        callbacks.append(WeightAverage(t["ema_epochs"]))
    kept = ValidationRecord()
    if keep_val:
        callbacks.append(kept)
    if recipe.model["mode"] != "full":
        warn_if_base_saw_scene(record, scene)
    if recipe.model["mode"] == "lora":
        if recipe.model["lora_schedule"]:
            schedule = CyclicLoRAScale(**recipe.model["lora_schedule"])
            callbacks.append(schedule)
            record["lora"]["eval_multiplier"] = schedule.eval_multiplier
    logger: Any = False
    if log_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(str(log_dir), name="", version=None)
    epochs = t["epochs"] if t["stop_epoch"] is None else t["stop_epoch"]
    # Keeping the last weights with no record asked for, the validation part chooses
    # nothing: it is scored once, after the last epoch. What is trained is the same (the
    # validation loader has its own generator and validation draws no random numbers);
    # each epoch saves a pass over the validation part.
    val_every = 1 if keep_best or keep_val or every_epoch else epochs
    trainer = pl.Trainer(
        max_epochs=epochs,
        check_val_every_n_epoch=val_every,
        accelerator=t["accelerator"],
        precision=t["precision"],
        devices=1,
        logger=logger,
        enable_checkpointing=False,
        callbacks=callbacks,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=False,
    )
    warn_if_bf16_is_emulated(t["precision"], trainer.strategy.root_device)
    bs = t["batch_size"]
    # windows in torch's default collation, workers (if any) restarted every epoch
    loading: dict[str, Any] = dict(
        num_workers=t["num_workers"], seed=seed, collate_fn=None, persistent_workers=False
    )
    # A last training batch of a few windows would set the batch-norm statistics from a
    # handful of samples at the end of every epoch (1,026 Indian Pines windows leave 2 in
    # batches of 64): the remainder is dropped whenever a full batch exists. The windows
    # are reshuffled every epoch, so every one is still trained on.
    drop_last = len(coords["train"]) > bs
    start = time.perf_counter()
    with quiet_lightning():
        trainer.fit(
            task,
            sample_loader(windows("train"), bs, True, drop_last=drop_last, **loading),
            sample_loader(windows("val"), 4 * bs, False, **loading),
        )
    seconds = time.perf_counter() - start
    details = {
        "best_epoch": best.best_epoch,
        "best_val_oa": None if best.best is None else best.best[0],
        "val_history": list(best.history),
        "epochs": t["epochs"],  # of the schedule; trained: stop_epoch where it is set
        "stop_epoch": t["stop_epoch"],
        "kept": "best" if keep_best else "last",  # the weights it ends with
        "pca_explained": float(model.reduction.explained.sum()),
    }
    if "pca_match" in record:
        details["pca_match"] = record["pca_match"]
    if keep_val:
        details["val_predictions"], details["val_losses"] = kept.predictions(), kept.losses()
    return model.eval(), record, seconds, details


def run_seed(
    recipe: PixelRecipe,
    scene: dict[str, Any],
    train_fraction: float,
    seed: int,
    methods: Sequence[str] = ("lola",),
    num_classes: int | None = None,
    progress: bool = True,
    save_dir: Path | None = None,
    radius: int | None = None,
) -> list[SeedResult]:
    """Split the scene with ``seed`` as the recipe's ``split.kind`` says, train and test each
    method (:func:`run_split`); one result per method. One split serves every method: its
    buffer covers ``radius`` pixels, by default the widest window among them
    (:func:`split_radius`)."""
    radius = split_radius(recipe, methods) if radius is None else radius
    coords, info = _seed_split(recipe, scene, train_fraction, seed, methods, radius)
    info["split_radius"] = radius  # recorded: maps and reruns rebuild this split
    if save_dir is not None:
        from geofm.data.plot import plot_split_layout

        split = recipe.split["kind"]
        save_dir.mkdir(parents=True, exist_ok=True)
        plot_split_layout(
            torch.as_tensor(scene["mask"]).numpy(),
            coords,
            title=f"{split} split, train fraction {train_fraction:g}, seed {seed}",
        ).savefig(save_dir / f"split_{split}_f{train_fraction:g}_seed{seed}.png", dpi=110)
    return run_split(
        recipe,
        scene,
        coords,
        seed,
        methods,
        num_classes,
        progress,
        save_dir,
        train_fraction=train_fraction,
        info=info,
    )


def check_split(mask: np.ndarray, coords: dict[str, Any]) -> dict[str, np.ndarray]:
    """``coords`` (``{"train", "val", "test"}``, each ``(N, 2)`` (row, col) pairs) checked
    against the scene's label ``mask``: every pixel inside the scene and labelled, none listed
    twice or in two parts, training and test pixels present, and every class of the test
    part present in the training part. The validation part may be empty (the window models
    then train to their last epoch, as with ``split.val_fraction: 0``). Returns the parts as
    int64 arrays; a ``ValueError`` names the part, how many pixels break a rule and one of
    them."""
    H, W = mask.shape
    parts = ("train", "val", "test")
    if set(coords) != set(parts):
        raise ValueError(f"a split has the parts {list(parts)}, got {sorted(coords)}")
    out = {}
    for p in parts:
        c = np.asarray(coords[p])
        if c.ndim == 1 and c.size == 0:  # an empty list is float
            c = np.zeros((0, 2), dtype=np.int64)
        if c.ndim != 2 or c.shape[1] != 2 or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(
                f"split part {p!r} must be (N, 2) integer (row, col) pairs, "
                f"got shape {c.shape} of {c.dtype}"
            )
        c = c.astype(np.int64)
        outside = np.flatnonzero((c < 0).any(1) | (c[:, 0] >= H) | (c[:, 1] >= W))
        if outside.size:
            r, col = c[outside[0]]
            raise ValueError(
                f"{outside.size} pixels of split part {p!r} lie outside the {H} x {W} scene, "
                f"the first at row {r}, column {col}"
            )
        unlabelled = np.flatnonzero(mask[c[:, 0], c[:, 1]] == IGNORE_INDEX)
        if unlabelled.size:
            r, col = c[unlabelled[0]]
            raise ValueError(
                f"{unlabelled.size} pixels of split part {p!r} have no label, the first at "
                f"row {r}, column {col}"
            )
        _, first, times = np.unique(c[:, 0] * W + c[:, 1], return_index=True, return_counts=True)
        if (times > 1).any():
            r, col = c[first[np.argmax(times > 1)]]
            raise ValueError(
                f"split part {p!r} lists {int((times > 1).sum())} pixels more than once, "
                f"for example row {r}, column {col}"
            )
        out[p] = c
    for p in ("train", "test"):
        if not len(out[p]):
            raise ValueError(
                f"split part {p!r} is empty ({', '.join(f'{len(out[q])} {q}' for q in parts)} "
                "pixels): a split needs training and test pixels"
            )
    flat = {p: c[:, 0] * W + c[:, 1] for p, c in out.items()}
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            both = np.intersect1d(flat[a], flat[b])
            if both.size:
                r, col = divmod(int(both[0]), W)
                raise ValueError(
                    f"{both.size} pixels are in both split parts {a!r} and {b!r}, for "
                    f"example row {r}, column {col}"
                )
    classes = {p: np.unique(mask[c[:, 0], c[:, 1]]) for p, c in out.items()}
    untrained = np.setdiff1d(classes["test"], classes["train"])
    if untrained.size:
        raise ValueError(
            f"classes {untrained.tolist()} have test pixels but no training pixels "
            f"(the training part holds classes {classes['train'].tolist()}): no method "
            "can learn them; give them training pixels or leave them out of the test part"
        )
    return out


def run_split(
    recipe: PixelRecipe,
    scene: dict[str, Any],
    coords: dict[str, Any],
    seed: int,
    methods: Sequence[str] = ("lola",),
    num_classes: int | None = None,
    progress: bool = True,
    save_dir: Path | None = None,
    *,
    split: str | None = None,
    train_fraction: float | None = None,
    info: dict[str, Any] | None = None,
) -> list[SeedResult]:
    """Train each method on a split given as pixel coordinates and test it once; one result
    per method. This is :func:`run_seed` without the drawing of the split: for a split
    published with a benchmark, or drawn by other code.

    ``coords``: ``{"train", "val", "test"}``, each ``(N, 2)`` (row, col) pairs of labelled
    pixels (:func:`check_split`); the epoch is chosen on ``val``. ``seed`` fixes the
    initialisation and the batches. ``split`` names the split in the results and the saved
    models' names (default: the recipe's ``split.kind``); ``train_fraction`` is recorded as
    given (default: the training part's share of the split's pixels). ``info``: more of the
    split's description, recorded in each result's details beside its name and its counts
    per class. The split is not checked for windows that reach across parts: a random
    split's do.
    """
    from geofm.tasks.pixel import classify_pixels

    mask = torch.as_tensor(scene["mask"]).numpy()
    coords = check_split(mask, coords)
    trained = _checked_methods(recipe, scene, methods)
    split = recipe.split["kind"] if split is None else split
    if num_classes is None:
        num_classes = int(mask[mask != IGNORE_INDEX].max()) + 1
    counts = {
        p: np.bincount(mask[c[:, 0], c[:, 1]], minlength=num_classes).tolist()
        for p, c in coords.items()
    }
    info = {"split": split, "counts": counts, **(info or {})}
    if train_fraction is None:
        total = sum(len(c) for c in coords.values())
        train_fraction = round(len(coords["train"]) / total, 4)
    test = coords["test"]
    y_test = mask[test[:, 0], test[:, 1]]
    results = []
    for method in methods:
        if method == "svm":
            preds, details, seconds = _fit_svm(scene, coords["train"], test, seed)
            mode, trainable, total = "rbf", None, None
            metrics = classification_metrics(y_test, preds, num_classes)
        else:
            own = trained[method]
            logs = f"{split}_seed{seed}" if method == "lola" else f"{method}_{split}_seed{seed}"
            log_dir = None if save_dir is None else save_dir / "logs" / logs
            model, record, seconds, details = _train_window_model(
                own, scene, coords, num_classes, seed, progress, log_dir
            )
            preds, _ = classify_pixels(
                model, torch.as_tensor(scene["image"]), test, scene.get("valid")
            )
            mode, (trainable, total) = own.model["mode"], parameter_counts(model)
            metrics = classification_metrics(y_test, preds, num_classes)
            if save_dir is not None:
                classes = _class_names(scene, num_classes)
                name = checkpoint_name(recipe, train_fraction, seed, method, split)
                save_dir.mkdir(parents=True, exist_ok=True)
                details["checkpoint"] = str(
                    save_classifier(
                        save_dir / name,
                        model,
                        record,
                        scene,
                        classes,
                        {
                            "split": split,
                            "seed": seed,
                            "train_fraction": train_fraction,
                            "card": scene.get("card"),
                            "recipe": own.as_dict(),
                            "source_files": scene.get("source_files"),
                            "test_oa": metrics.oa,
                        },
                    )
                )
        details.update({k: v for k, v in info.items() if k != "counts"})
        results.append(
            SeedResult(
                method,
                mode,
                split,
                train_fraction,
                seed,
                metrics,
                trainable,
                total,
                seconds,
                info["counts"],
                details,
            )
        )
    return results


def _fit_svm(
    scene: dict[str, Any], train: np.ndarray, scored: np.ndarray, seed: int
) -> tuple[np.ndarray, dict[str, Any], float]:
    """The RBF SVM (:func:`~geofm.tasks.pixel.svm_baseline`) fitted on the spectra of the
    labelled pixels ``train`` and applied to the pixels ``scored`` (both ``(N, 2)``):
    its predictions ``(len(scored),)``, its details and its seconds."""
    from geofm.tasks.pixel import svm_baseline

    image = torch.as_tensor(scene["image"]).float().numpy()
    mask = torch.as_tensor(scene["mask"]).numpy()
    start = time.perf_counter()
    preds, details = svm_baseline(
        image[:, train[:, 0], train[:, 1]].T,
        mask[train[:, 0], train[:, 1]],
        image[:, scored[:, 0], scored[:, 1]].T,
        seed=seed,
    )
    return preds, details, time.perf_counter() - start


def _score_held_out(
    method: str,
    recipe: PixelRecipe,
    scene: dict[str, Any],
    coords: dict[str, np.ndarray],
    num_classes: int,
    seed: int,
    progress: bool,
    keep_best: bool | None,
    keep_val: bool,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """``method`` trained on ``coords["train"]`` and applied to ``coords["val"]``: the
    predictions, the training seconds and :func:`_train_window_model`'s details
    (``val_history`` and, with ``keep_val``, ``val_predictions`` and ``val_losses``). The
    SVM has no epochs: one entry each, its losses NaN (it has none), ``best_epoch`` None."""
    val = coords["val"]
    if method == "svm":
        preds, details, seconds = _fit_svm(scene, coords["train"], val, seed)
        mask = torch.as_tensor(scene["mask"]).numpy()
        oa = float(np.mean(preds == mask[val[:, 0], val[:, 1]]))
        details.update(val_history=[oa], best_epoch=None)
        if keep_val:
            details["val_predictions"] = np.asarray(preds)[None]
            details["val_losses"] = np.full((1, len(val)), np.nan, dtype=np.float32)
        return np.asarray(preds), seconds, details
    from geofm.tasks.pixel import classify_pixels

    own = method_recipes(recipe, [method])[method]
    model, _, seconds, details = _train_window_model(
        own,
        scene,
        coords,
        num_classes,
        seed,
        progress,
        None,
        keep_best=keep_best,
        keep_val=keep_val,
        every_epoch=True,  # the curve is what a search reads
    )
    preds, _ = classify_pixels(model, torch.as_tensor(scene["image"]), val, scene.get("valid"))
    return np.asarray(preds), seconds, details


def _checked_methods(
    recipe: PixelRecipe, scene: dict[str, Any], methods: Sequence[str]
) -> dict[str, PixelRecipe]:
    """:func:`method_recipes` of ``methods``, each method known and its window fitting the
    scene."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    trained = method_recipes(recipe, methods)
    for method, r in trained.items():
        check_window_fits(scene, r.patch, method)
    return trained


def _seed_split(
    recipe: PixelRecipe,
    scene: dict[str, Any],
    train_fraction: float | int,
    seed: int,
    methods: Sequence[str],
    radius: int | None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The split of ``seed`` that serves every method in ``methods`` (checked to exist and to
    fit the scene)."""
    _checked_methods(recipe, scene, methods)
    return make_split(
        torch.as_tensor(scene["mask"]).numpy(),
        recipe.split["kind"],
        train_fraction,
        recipe.split["val_fraction"],
        split_radius(recipe, methods) if radius is None else radius,
        seed,
        recipe.split["block_size"],
        recipe.split["buffer"],
        recipe.split["unsplittable"],
    )


def validate_seed(
    recipe: PixelRecipe,
    scene: dict[str, Any],
    train_fraction: float | int,
    seed: int,
    method: str = "lola",
    num_classes: int | None = None,
    progress: bool = False,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Train ``method`` on the split of ``seed`` (the one :func:`run_seed` makes) and score
    it on the validation part only: what recipes are chosen by. The test part is never
    classified.

    Returns ``{"val_oa", "val_aa", "val_kappa", "val_per_class", "best_epoch",
    "train_seconds", "counts"}`` (the scores of the weights the run ends with: with
    ``train.keep: best`` those chosen on the same validation part, so optimistic by the
    choice of epoch, equally for every recipe compared; with ``last`` the last epoch's) and
    ``"curve"``, the validation OA after each epoch (as logged in training, under the
    recipe's precision). With ``keep_predictions``, ``"held_out"`` (:func:`_held_out`, the
    validation part as one fold) and ``"grid"``, the split's ``{"block_size", "buffer"}``
    (None for a random split). ``method="svm"`` scores the RBF SVM instead, on the same
    split: it has no epochs, so its curve has one entry.
    """
    coords, info = _seed_split(recipe, scene, train_fraction, seed, [method], None)
    mask = torch.as_tensor(scene["mask"]).numpy()
    if num_classes is None:
        num_classes = int(mask[mask != IGNORE_INDEX].max()) + 1
    preds, seconds, details = _score_held_out(
        method, recipe, scene, coords, num_classes, seed, progress, None, keep_predictions
    )
    val = coords["val"]
    m = classification_metrics(mask[val[:, 0], val[:, 1]], preds, num_classes)
    return {
        "val_oa": m.oa,
        "val_aa": m.aa,
        "val_kappa": m.kappa,
        "val_per_class": m.per_class.tolist(),
        "best_epoch": details["best_epoch"],
        "curve": details["val_history"],
        "train_seconds": seconds,
        "counts": info["counts"],
        **(
            {"held_out": [_held_out(val, mask, details)], "grid": info.get("grid")}
            if keep_predictions
            else {}
        ),
    }


def _held_out(coords: np.ndarray, mask: np.ndarray, details: dict[str, Any]) -> dict[str, Any]:
    """One fold's scored pixels for ``keep_predictions``: ``coords`` ``(N, 2)``, ``truth``
    ``(N,)``, and each pixel's class and loss after every epoch, ``predictions`` and
    ``losses`` ``(epochs, N)``."""
    return {
        "coords": coords,
        "truth": mask[coords[:, 0], coords[:, 1]].astype(np.int64),
        "predictions": details["val_predictions"],
        "losses": details["val_losses"],
    }


def cross_validate_seed(
    recipe: PixelRecipe,
    scene: dict[str, Any],
    train_fraction: float | int,
    seed: int,
    folds: int = 3,
    method: str = "lola",
    num_classes: int | None = None,
    progress: bool = False,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Score ``method`` by cross-validation over the development pixels (train and val
    parts) of the split of ``seed``, the one :func:`run_seed` makes; the test part is never
    classified. A stronger guide than :func:`validate_seed` where the validation part is a
    few blocks: every development pixel the buffer keeps is scored once, by a model that
    did not train on it, and no epoch is chosen on the pixels scored.

    Folds: :func:`~geofm.data.splits.cross_validation_folds`, of whole blocks with the
    split's block size and buffer for a disjoint split, stratified by class for a random
    one. Each fold's model trains for the recipe's epochs and keeps its last weights (the
    moving average's, with ``train.ema_epochs``); ``method="svm"`` fits the RBF SVM once
    per fold on the same pixels (no epochs: its curve has one entry). Returns ``{"val_oa", "val_aa",
    "val_kappa", "val_per_class"}`` of the pooled held-out predictions, ``"curve"`` (the
    pooled held-out OA after each epoch, as logged in training, under the recipe's
    precision) with its best ``"curve_epoch"`` and ``"curve_oa"`` (optimistic: one epoch
    chosen on the pixels scored), ``"best_epoch"`` (None: none is chosen),
    ``"train_seconds"`` (all folds), ``"counts"`` (the split's) and per fold
    ``"fold_train"`` and ``"fold_held_out"`` pixel counts and ``"fold_unseen"``, the
    classes it scores but never trained on (a class in few blocks can fall in one fold;
    its pixels there are then wrong for every recipe alike, and lower the scores). With
    ``keep_predictions``, ``"held_out"`` (one :func:`_held_out` per fold: every held-out
    pixel's class and loss after every epoch) and ``"grid"``, the split's
    ``{"block_size", "buffer"}`` (the folds keep its blocks whole; None for a random
    split).
    """
    from geofm.data.splits import cross_validation_folds

    coords, info = _seed_split(recipe, scene, train_fraction, seed, [method], None)
    mask = torch.as_tensor(scene["mask"]).numpy()
    if num_classes is None:
        num_classes = int(mask[mask != IGNORE_INDEX].max()) + 1
    development = np.concatenate([coords["train"], coords["val"]])
    # a disjoint split's own grid and buffer (info["grid"]); none for a random split
    parts = cross_validation_folds(mask, development, folds, seed, **info.get("grid", {}))
    truth, predicted, curves, sizes, seconds = [], [], [], [], 0.0
    kept: list[dict[str, Any]] = []
    unseen = [
        sorted(set(mask[tuple(f.held_out.T)].tolist()) - set(mask[tuple(f.train.T)].tolist()))
        for f in parts
    ]
    for fold in parts:
        fold_coords = {"train": fold.train, "val": fold.held_out}
        preds, took, details = _score_held_out(
            method, recipe, scene, fold_coords, num_classes, seed, progress, False, keep_predictions
        )
        if keep_predictions:
            kept.append(_held_out(fold.held_out, mask, details))
        truth.append(mask[fold.held_out[:, 0], fold.held_out[:, 1]])
        predicted.append(preds)
        curves.append(np.asarray(details["val_history"], dtype=np.float64))
        sizes.append(len(fold.held_out))
        seconds += took
    m = classification_metrics(np.concatenate(truth), np.concatenate(predicted), num_classes)
    curve = np.average(np.stack(curves), axis=0, weights=np.asarray(sizes, dtype=np.float64))
    return {
        "val_oa": m.oa,
        "val_aa": m.aa,
        "val_kappa": m.kappa,
        "val_per_class": m.per_class.tolist(),
        "curve": curve.tolist(),
        "curve_epoch": int(np.argmax(curve)),
        "curve_oa": float(curve.max()),
        "best_epoch": None,
        "train_seconds": seconds,
        "counts": info["counts"],
        "fold_train": [len(f.train) for f in parts],
        "fold_held_out": sizes,
        "fold_unseen": unseen,
        **({"held_out": kept, "grid": info.get("grid")} if keep_predictions else {}),
    }


def checkpoint_name(
    recipe: PixelRecipe,
    train_fraction: float | int,
    seed: int,
    method: str = "lola",
    split: str | None = None,
) -> str:
    """File name of the model :func:`run_seed` (or :func:`run_split`, with its ``split``
    name) saves for ``method`` (the recipe's model, ``lola``, or a trained baseline)."""
    mode = method_recipes(recipe, [method])[method].model["mode"]
    split = recipe.split["kind"] if split is None else split
    return f"{method}_{mode}_{split}_f{train_fraction:g}_seed{seed}.pt"


def _class_names(scene: dict[str, Any], num_classes: int) -> list[str]:
    names = scene.get("classes")
    if names and len(names) == num_classes:
        return list(names)
    return [str(k) for k in range(num_classes)]


# --------------------------------------------------------------------------------------------
# Many seeds


def run_protocol(
    recipe: PixelRecipe,
    train_fraction: float,
    seeds: Sequence[int],
    methods: Sequence[str] | None = None,
    progress: bool = True,
    save_dir: Path | None = None,
    scene: dict[str, Any] | None = None,
    echo=print,
    done: Sequence[SeedResult] = (),
    on_seed: Callable[[list[SeedResult], list[str]], Any] | None = None,
) -> tuple[list[SeedResult], list[str]]:
    """Every method on every seed, on the recipe's ``split.kind``; returns the results and
    the class names.

    ``done``: results of an earlier, interrupted run of the same protocol (see
    :func:`read_results`): the (method, seed) pairs they hold are not run again, and they
    come first in the results. ``on_seed(results so far, class names)`` is called as each
    seed ends (to write them at once).
    """
    if not seeds:
        raise ValueError("give at least one seed")
    if recipe.split["kind"] not in SPLITS:
        raise ValueError(f"split.kind must be one of {SPLITS}, got {recipe.split['kind']!r}")
    methods = list(methods) if methods is not None else ["lola", *recipe.baselines]
    scene = scene if scene is not None else load_recipe_scene(recipe, progress)
    card = as_dataset_card(recipe.scene["card"]) if recipe.scene["card"] else None
    mask = torch.as_tensor(scene["mask"]).numpy()
    if card is not None:
        num_classes = card.num_classes
        scene["classes"] = list(card.classes)
        scene["card"] = card.name
    else:
        num_classes = len(scene.get("classes") or []) or int(mask[mask != IGNORE_INDEX].max()) + 1
    classes = _class_names(scene, num_classes)
    # the split of a seed is the same whichever of its methods are left to run
    radius = split_radius(recipe, methods)
    results: list[SeedResult] = list(done)
    finished = {(r.method, r.seed) for r in done}
    for seed in seeds:
        todo = [m for m in methods if (m, seed) not in finished]
        if not todo:
            echo(f"seed {seed}: {', '.join(methods)} done in the earlier run, kept")
            continue
        ran = run_seed(
            recipe, scene, train_fraction, seed, todo, num_classes, progress, save_dir, radius
        )
        left_out = ran[0].details.get("excluded_classes")
        if left_out:
            echo(
                f"seed {seed}: the {ran[0].split} split leaves out {len(left_out)} classes "
                f"({', '.join(classes[k] for k in left_out)}): this seed's blocks gave "
                "them no training or no test pixels"
            )
        for res in ran:
            results.append(res)
            m = res.metrics
            echo(
                f"{res.method:<8} {res.split:<8} seed {seed}: OA {100 * m.oa:6.2f}%  AA "
                f"{100 * m.aa:6.2f}%  kappa {m.kappa:.4f}  ({res.train_seconds:.0f} s, "
                f"{sum(res.counts['train'])} train / {sum(res.counts['val'])} val / "
                f"{sum(res.counts['test'])} test pixels)"
            )
        if on_seed is not None:
            on_seed(list(results), classes)
    return results, classes
