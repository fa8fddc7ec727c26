"""The pixel-classification recipe: one YAML dialect, typed, for files, dicts and commands.

A recipe (``configs/classify/lola_*.yaml``) fixes the scene, the split's validation share,
the model and the training. Its sections are the dataclasses below; they are read by a
jsonargparse parser (the library LightningCLI uses for ``geofm pretrain``), so a recipe file,
a dict and ``geofm classify-pixels --config FILE --train.epochs 3 --scene.cube X`` are one
dialect: values are checked against the types, unknown keys are errors that name them,
``--print_config`` shows the resolved recipe. Every key is optional except the scene::

    scene:   {card, cube, gt, cube_key, gt_key, root, download, ignore_values}
    split:   {kind: random|disjoint, val_fraction: 0.05, block_size: null, buffer: null,
              unsplittable: error|exclude}
    model:   {name: lola_specvit, mode: full|lora|finetune, pca: train|transductive,
              kwargs: {...}, base_checkpoint: null, base_pca: refit|matched,
              lora: {rank, alpha, dropout, train},
              lora_schedule: {period_epochs, period_mult, low, high} | null}
    train:   {epochs, batch_size, lr, weight_decay, warmup_epochs, min_lr_factor,
              label_smoothing, augment, context_dropout, brightness, num_workers,
              accelerator, precision: 32-true|bf16-mixed, ema_epochs, stop_epoch,
              keep: best|last, class_weight_power}
    baselines: [svm, ssftt, scratch, finetune]

``baselines`` run beside the recipe's model on the same splits: ``svm`` an RBF SVM on the
spectra, ``ssftt`` the SSFTT transformer trained with its published settings
(:data:`BASELINE_RECIPES`, :func:`baseline_recipe`). A recipe that starts from a base model
(``mode: lora`` or ``finetune``) may also list the comparisons of transfer learning
(:data:`TRANSFER_BASELINES`): ``scratch``, the same architecture and training from random
weights, and ``finetune``, the base with every weight trained.

``cube``/``gt`` may start with ``{data}``, the geofm ``datasets/`` folder. Without them, the
scene's files are looked up under ``root`` by the card's file names and, with
``download: true``, downloaded from the card's sources and checked against its checksums.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from geofm.data.cards import expand_data_path
from geofm.models.checkpoints import check_plain

__all__ = [
    "BASELINES",
    "BASELINE_RECIPES",
    "LoRASchedule",
    "LoRASettings",
    "ModelSection",
    "PixelRecipe",
    "RecipeError",
    "SceneSection",
    "SplitSection",
    "TRANSFER_BASELINES",
    "TrainSection",
    "add_run_options",
    "baseline_recipe",
    "transfer_recipe",
    "load_recipe",
    "merged",
    "recipe_from_namespace",
    "recipe_inputs",
    "recipe_parser",
]


class RecipeError(ValueError):
    """A recipe that cannot be run as written; the message names the key."""


@dataclass
class SceneSection:
    """The labelled scene: a card (class names, band metadata, files) and/or the cube and
    ground truth files (``.mat`` or ENVI), their array keys, a ``root`` to find or download
    the card's files in, and the raw ground-truth values that mean unlabelled (scenes
    without a card)."""

    card: str | None = None
    cube: str | None = None
    gt: str | None = None
    cube_key: str | None = None
    gt_key: str | None = None
    root: str | None = None
    download: bool = False
    ignore_values: list[int] = field(default_factory=lambda: [0])


@dataclass
class SplitSection:
    """Which split ``geofm classify-pixels`` runs (random stratified pixels, or spatially
    disjoint blocks with a buffer), the validation share of each class (for choosing the
    epoch; never the test part), the disjoint split's block size and buffer in pixels
    (default: from the window), and what it does with a class the blocks of a seed leave
    without training or test pixels: ``error``, or ``exclude`` it from that seed's split
    (listed in the results; the random split keeps every class)."""

    kind: Literal["random", "disjoint"] = "random"
    val_fraction: float = 0.05
    block_size: int | None = None
    buffer: int | None = None
    unsplittable: Literal["error", "exclude"] = "error"


@dataclass
class LoRASettings:
    """LoRA of a ``lora``-mode model (Hu et al., ICLR 2022); ``train``: modules trained in
    full beside the LoRA factors, the norms and the head (for example ``[frontend,
    patch_embed]``, LoLA-SpecViT's convolutional stem)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    train: list[str] = field(default_factory=list)


@dataclass
class LoRASchedule:
    """The cyclical LoRA strength (:class:`~geofm.tasks.callbacks.CyclicLoRAScale`)."""

    period_epochs: float = 10.0
    period_mult: int = 1
    low: float = 0.5
    high: float = 1.0


@dataclass
class ModelSection:
    """The registry model and its architecture (``kwargs``). ``mode``: ``full`` trains it
    from random weights; ``lora`` adapts the ``base_checkpoint`` (whose architecture it
    takes) with LoRA, frozen but for the LoRA factors, the norms, the head and
    ``lora.train``; ``finetune`` trains every weight of the base. ``pca``: fitted on
    the training pixels or on every pixel of the scene. ``base_pca``: what a base's PCA
    becomes on this scene: ``refit`` (a new PCA, whose components need not mean what the
    base's did), or ``matched`` (the base's components, each band of this scene matched to
    the base's by name, then by wavelength; only the mean and scale are fitted here)."""

    name: str = "lola_specvit"
    mode: Literal["full", "lora", "finetune"] = "full"
    pca: Literal["train", "transductive"] = "train"
    kwargs: dict[str, Any] = field(default_factory=dict)
    base_checkpoint: str | None = None
    base_pca: Literal["refit", "matched"] = "refit"
    lora: LoRASettings = field(default_factory=LoRASettings)
    lora_schedule: LoRASchedule | None = None


@dataclass
class TrainSection:
    """The training of :class:`~geofm.tasks.pixel.PixelClassificationTask`: AdamW, a linear
    warm-up, then a cosine from ``lr`` to ``min_lr_factor * lr`` (1 keeps it constant).
    ``precision`` is Lightning's: ``bf16-mixed`` trains under bfloat16 autocast (weights and
    optimiser state stay float32), and the per-epoch validation that chooses the epoch runs
    under it too; the test part, :func:`~geofm.tasks.pixel_protocol.validate_seed` and class
    maps are scored in float32. ``ema_epochs`` > 0 validates and keeps a moving average of
    the weights over about that many epochs of steps instead of the weights themselves
    (:class:`~geofm.tasks.callbacks.WeightAverage`); 0 turns it off. ``stop_epoch``
    trains only the first that many epochs of the ``epochs``-long schedule (the warm-up
    and cosine still span ``epochs``; ``None`` trains them all); the epoch is then chosen
    on the validation part among those trained. ``keep``: the model a run ends with, the
    epoch ``best`` on the validation part (``BestWeights``) or the ``last`` trained (the
    validation part then only reports; cross-validation folds always keep the last).
    ``class_weight_power`` weighs each class's pixels in the training loss by their count
    to the power ``-p`` (:func:`~geofm.tasks.pixel.class_weights`): 0 weighs every pixel
    alike, 1 every class."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    min_lr_factor: float = 0.0
    label_smoothing: float = 0.1
    augment: bool = True
    context_dropout: float = 0.0
    brightness: float = 0.0
    num_workers: int = 0
    accelerator: str = "auto"
    precision: Literal["32-true", "bf16-mixed"] = "32-true"
    ema_epochs: float = 0.0
    stop_epoch: int | None = None
    keep: Literal["best", "last"] = "best"
    class_weight_power: float = 0.0


#: The comparisons of a recipe that starts from a base model, on the same splits and with
#: the recipe's training: ``scratch`` (``mode: full``, random weights) and ``finetune``
#: (``mode: finetune``, the base with every weight trained); :func:`transfer_recipe`.
TRANSFER_BASELINES = {"scratch": "full", "finetune": "finetune"}

#: what a recipe's ``baselines`` may name
BASELINES = ("svm", "ssftt", *TRANSFER_BASELINES)

#: The model and train sections of the baselines the protocol trains like the recipe's own
#: model, on the same scene and splits (:func:`baseline_recipe`): each as published.
#: SSFTT (Sun et al., "Spectral-Spatial Feature Tokenization Transformer for Hyperspectral
#: Image Classification", IEEE TGRS 2022, and its public code): PCA to 30 whitened
#: components fitted on every pixel of the scene (no labels), 13 x 13 windows, Adam at a
#: constant 1e-3, batch 64, 100 epochs, plain cross-entropy, no augmentation, float32. The
#: protocol adds what it gives every model: the epoch is chosen on the validation part.
BASELINE_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "ssftt": {
        "model": {
            "name": "ssftt",
            "pca": "transductive",
            "kwargs": {"patch": 13, "components": 30, "whiten": True},
        },
        "train": {
            "epochs": 100,
            "batch_size": 64,
            "lr": 1e-3,
            "weight_decay": 0.0,
            "warmup_epochs": 0.0,
            "min_lr_factor": 1.0,
            "label_smoothing": 0.0,
            "augment": False,
            "context_dropout": 0.0,
            "brightness": 0.0,
            "precision": "32-true",
        },
    },
}

SECTIONS = {
    "scene": SceneSection,
    "split": SplitSection,
    "model": ModelSection,
    "train": TrainSection,
}


@dataclass
class PixelRecipe:
    """A checked recipe, its sections as plain dicts (what checkpoints and results files
    record); ``source`` is the file it came from."""

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
        # the fields themselves, not copies (dataclasses.asdict would deep-copy them)
        fields = dataclasses.fields(self)
        return {f.name: getattr(self, f.name) for f in fields if f.name != "source"}


def recipe_parser(**kwargs: Any):
    """The jsonargparse parser of a recipe: ``--config FILE``, one group per section
    (``--train.epochs``, ``--scene.cube`` ...), ``--baselines``. ``kwargs`` go to the
    parser (``prog``, ``description``); a command adds its own options to it."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    kwargs.setdefault("exit_on_error", False)
    kwargs.setdefault("allow_abbrev", False)  # a typo is an error, not a guess
    parser = ArgumentParser(**kwargs)
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="recipe YAML, e.g. configs/classify/lola_salinas_a.yaml",
    )
    for name, section in SECTIONS.items():
        parser.add_class_arguments(section, name, help=section.__doc__)
    parser.add_argument(
        "--baselines",
        type=list[Literal["svm", "ssftt", "scratch", "finetune"]],
        default=[],
        help="baselines run beside the model on the same splits",
    )
    return parser


def add_run_options(parser) -> None:
    """The options of ``geofm classify-pixels`` beside the recipe (how much of the split
    for training, which seeds and methods, where results go). A configuration printed
    by ``--print_config`` holds them too; :func:`load_recipe` reads such a file's recipe."""
    from jsonargparse.typing import PositiveInt

    parser.add_argument(
        "--train-fraction",
        type=float,
        default=0.05,
        help="share of each class's labelled pixels for training",
    )
    parser.add_argument(
        "--train-per-class",
        type=PositiveInt | None,
        default=None,
        help="pixels of each class for training (random split only), instead of --train-fraction",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--output",
        type=str,
        default="outputs/classify/results.csv",
        help="results CSV; a JSON with confusion matrices goes beside it",
    )
    parser.add_argument(
        "--methods",
        type=Literal["lola", "svm", "ssftt", "scratch", "finetune"],
        nargs="+",
        default=None,
        help="default: lola (the recipe's model) and the recipe's baselines",
    )
    parser.add_argument(
        "--save-dir",
        type=str | None,
        default=None,
        help="where the trained models go (default: models/ beside --output)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output and saved models of the same runs",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: keep the seeds --output already "
        "holds and run the others (same recipe and options)",
    )
    parser.add_argument("--no-progress", action="store_true")


def _plain(value: Any) -> Any:
    """A parsed section as plain dicts and lists (jsonargparse gives namespaces)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def recipe_from_namespace(ns: Any, source: str = "<dict>") -> PixelRecipe:
    """The checked recipe of a parsed namespace (of :func:`recipe_parser`)."""
    recipe = PixelRecipe(
        **{name: _plain(ns[name]) for name in SECTIONS},
        baselines=list(ns["baselines"] or []),
        source=source,
    )
    where = recipe.source
    mode = recipe.model["mode"]
    if mode != "full" and not recipe.model["base_checkpoint"]:
        raise RecipeError(
            f"{where}: {mode} mode starts from a base model: set "
            "model.base_checkpoint to a checkpoint written by classify-pixels"
        )
    if mode == "full" and recipe.model["base_pca"] != "refit":
        raise RecipeError(
            f"{where}: model.base_pca {recipe.model['base_pca']!r} says what a base "
            "model's PCA becomes; mode full has no base (use mode lora or finetune)"
        )
    for name in recipe.baselines:
        if name in TRANSFER_BASELINES:
            try:
                _check_transfer(mode, name)
            except RecipeError as err:
                raise RecipeError(f"{where}: {err}") from None
    if mode != "full":
        from geofm.tasks.pixel_models import architecture_from_base

        try:
            recipe.model["kwargs"] = architecture_from_base(recipe.model)
        except ValueError as err:
            raise RecipeError(f"{where}: {err}") from None
    if recipe.patch < 1 or recipe.patch % 2 == 0:
        raise RecipeError(f"{where}: model.kwargs.patch must be odd, got {recipe.patch}")
    if recipe.train["ema_epochs"] < 0:
        raise RecipeError(
            f"{where}: train.ema_epochs is the span of the weights' moving average in "
            f"epochs, 0 to turn it off; got {recipe.train['ema_epochs']}"
        )
    power = recipe.train["class_weight_power"]
    if not 0.0 <= power <= 1.0:
        raise RecipeError(
            f"{where}: train.class_weight_power weighs each class by its training pixels "
            f"to the power -p: 0 (no weighting) to 1 (every class alike); got {power}"
        )
    stop = recipe.train["stop_epoch"]
    if stop is not None and not 1 <= stop <= recipe.train["epochs"]:
        raise RecipeError(
            f"{where}: train.stop_epoch must lie in 1..train.epochs ({recipe.train['epochs']}), "
            f"got {stop}: give a shorter train.stop_epoch with a shorter schedule, or null to "
            "train every epoch (--train.stop_epoch null)"
        )
    try:  # the recipe is saved with every model: refused now, not after training
        check_plain(recipe.as_dict(), "recipe")
    except TypeError as err:
        raise RecipeError(f"{where}: {err}") from None
    return recipe


def load_recipe(source: str | Path | dict[str, Any]) -> PixelRecipe:
    """Read and check a recipe from a YAML file or a dict (:func:`recipe_parser`)."""
    parser = recipe_parser()
    add_run_options(parser)  # a printed command configuration holds them too
    try:
        if isinstance(source, dict):
            where = "<dict>"
            ns = parser.parse_object(source)
        else:
            where = str(source)
            if not Path(source).is_file():
                raise FileNotFoundError(f"recipe not found: {source}")
            ns = parser.parse_args(["--config", where])
    except argparse.ArgumentError as err:
        raise RecipeError(f"{where}: {err}") from None
    return recipe_from_namespace(ns, where)


def baseline_recipe(recipe: PixelRecipe, name: str) -> PixelRecipe:
    """The recipe the protocol trains baseline ``name`` (a key of :data:`BASELINE_RECIPES`)
    with: ``recipe``'s scene and split, where it runs (``accelerator``, ``num_workers``),
    and the baseline's own model and training."""
    if name not in BASELINE_RECIPES:
        raise RecipeError(
            f"{name!r} is not a trained baseline; choose one of {', '.join(BASELINE_RECIPES)}"
        )
    spec = BASELINE_RECIPES[name]
    where = {k: recipe.train[k] for k in ("accelerator", "num_workers")}
    return load_recipe(
        {
            "scene": recipe.scene,
            "split": recipe.split,
            "model": spec["model"],
            "train": {**spec["train"], **where},
        }
    )


def _check_transfer(mode: str, name: str) -> None:
    """A :class:`RecipeError` unless transfer baseline ``name`` can run beside a recipe of
    ``model.mode`` ``mode``: it needs a base, and must not be the recipe's own model."""
    if name not in TRANSFER_BASELINES:
        raise RecipeError(
            f"{name!r} is not a transfer baseline; choose one of {', '.join(TRANSFER_BASELINES)}"
        )
    if mode == "full":
        raise RecipeError(
            f"the {name!r} baseline compares against a base model; it needs "
            "model.mode lora or finetune and model.base_checkpoint"
        )
    if TRANSFER_BASELINES[name] == mode:
        raise RecipeError(
            f"the {name!r} baseline is the recipe's own model (mode {mode}); leave it out "
            "of the baselines and --methods"
        )


def transfer_recipe(recipe: PixelRecipe, name: str) -> PixelRecipe:
    """The recipe of transfer baseline ``name`` (a key of :data:`TRANSFER_BASELINES`): the
    recipe itself with the baseline's ``model.mode``, so the architecture, the scene, the
    split and the training are the recipe's."""
    _check_transfer(recipe.model["mode"], name)
    model = {**recipe.model, "mode": TRANSFER_BASELINES[name]}
    if model["mode"] != "lora":
        model["lora_schedule"] = None  # the LoRA strength schedule has nothing to act on
    if model["mode"] == "full":  # random weights: nothing of the base is used
        model.update(base_checkpoint=None, base_pca="refit")
    return load_recipe(
        {"scene": recipe.scene, "split": recipe.split, "model": model, "train": recipe.train}
    )


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` written over it, nested dicts merged key by key (a recipe
    variant over its file, a recorded recipe over the defaults of today's keys)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_inputs(recipe: PixelRecipe) -> list[Path]:
    """The files a recipe reads (its YAML, cube, ground truth, download root, base
    model): what no output may be."""
    sc, m = recipe.scene, recipe.model
    paths = [
        None if recipe.source.startswith("<") else recipe.source,
        sc["cube"],
        sc["gt"],
        sc["root"],
        m.get("base_checkpoint"),
    ]
    return [expand_data_path(p) for p in paths if p]
