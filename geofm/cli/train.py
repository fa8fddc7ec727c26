"""The training commands of ``geofm``: pretrain and classify-scenes (LightningCLI front
ends), classify-pixels (the hyperspectral recipe and protocol) and export (an encoder)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from geofm.cli.errors import reported


def _lightning_cli(cli_class, task, argv: Sequence[str], prog: str, description: str):
    """``cli_class`` (a LightningCLI) over ``task`` and any data module the config names,
    configured from ``argv``, not run."""
    from lightning.pytorch import LightningDataModule

    with warnings.catch_warnings():
        # `geofm pretrain|classify-scenes ...` passes its own arguments on; Lightning warns
        # when sys.argv holds more than the args given, which is always the case here
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        return cli_class(
            task,
            LightningDataModule,
            subclass_mode_data=True,
            args=list(argv),
            run=False,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": prog, "description": description},
        )


def prepare_pretrain(argv: Sequence[str]):
    """LightningCLI over :class:`MAEPretrainTask` and any data module the config names
    (``data.class_path``: :class:`~geofm.data.datamodules.PretrainDataModule` for files,
    :class:`~geofm.data.torchgeo_io.TorchGeoPretrainDataModule` for torchgeo datasets)."""
    from lightning.pytorch.cli import LightningCLI

    from geofm.tasks.mae import MAEPretrainTask

    class PretrainCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--ckpt_path",
                default=None,
                help="checkpoint to resume from (same run, same step count)",
            )

    cli = _lightning_cli(
        PretrainCLI,
        MAEPretrainTask,
        argv,
        "geofm pretrain",
        "Masked-autoencoder pretraining of LESS ViT.",
    )
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path:
        from geofm.models.checkpoints import read_checkpoint

        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path} does not exist")

        # refused here with one message naming it (code inside, truncated, another kind)
        # rather than mid-start by Lightning
        read_checkpoint(ckpt_path, "pretraining")
    _check_writable(cli.trainer)
    cli.datamodule.setup("fit")  # missing or unusable data is reported before training
    return cli, ckpt_path


def fit_pretraining(prepared) -> int:
    from geofm.models.checkpoints import allowed_globals

    cli, ckpt_path = prepared
    # errors from here on come with their traceback: they are not configuration errors
    # (data problems at setup still raise FileNotFoundError/ValueError naming the file)
    with allowed_globals():  # a resumed checkpoint is read without running code
        cli.trainer.fit(
            cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True
        )
    return 0


def prepare_classify_scenes(argv: Sequence[str]):
    """LightningCLI over :class:`SceneClassificationTask` and the data module the config
    names (:class:`~geofm.data.datamodules.SceneFolderDataModule` for a folder per class)."""
    from lightning.pytorch.cli import LightningCLI

    from geofm.tasks.scene import SceneClassificationTask

    cli = _lightning_cli(
        LightningCLI,
        SceneClassificationTask,
        argv,
        "geofm classify-scenes",
        "Fine-tune an encoder on labelled scenes.",
    )
    _check_writable(cli.trainer)
    cli.datamodule.setup("fit")
    num_classes = getattr(cli.datamodule, "num_classes", None)
    if num_classes is not None and num_classes != cli.model.hparams.num_classes:
        raise ValueError(
            f"the data has {num_classes} classes but model.num_classes is "
            f"{cli.model.hparams.num_classes}"
        )
    return cli


def run_classify_scenes(cli) -> int:
    """Fit, test the checkpoint chosen on validation, print the test table."""
    from geofm.models.checkpoints import allowed_globals

    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=data)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    with allowed_globals():  # the checkpoint is read without running code
        trainer.test(
            model, datamodule=data, ckpt_path=best or None, verbose=False, weights_only=True
        )
    cm = model.test_confusion
    if cm is None:
        print("no test scenes: nothing to report", file=sys.stderr)
        return 0
    classes = model.classes
    total = int(cm.sum())
    acc = float(cm.diag().sum()) / max(total, 1)
    width = max(len(c) for c in classes)
    print(
        f"\ntest accuracy {100 * acc:.1f}% on {total} scenes "
        f"(checkpoint {best or 'of the last epoch'})"
    )
    print("confusion matrix (rows: true class, columns: predicted, in the same order)")
    for name, row in zip(classes, cm.tolist(), strict=True):
        print(f"  {name:<{width}} " + " ".join(f"{v:3d}" for v in row))
    if best:
        print(f"map a raster of any size with: geofm map IN OUT.tif --checkpoint {best}")
    return 0


def _check_writable(trainer) -> None:
    """Fail before training, not after the first epoch, when outputs cannot be written."""
    folders = {Path(trainer.default_root_dir)}
    folders |= {
        Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)
    }
    folders |= {Path(lg.save_dir) for lg in trainer.loggers if getattr(lg, "save_dir", None)}
    for folder in sorted(folders):
        probe = folder / ".geofm-write-test"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"x" * 4096)
            probe.unlink()
        except OSError as err:
            raise PermissionError(
                f"cannot write run outputs to {folder}: {err.strerror or err}; "
                "choose another --trainer.default_root_dir"
            ) from None


#: classify-pixels options of earlier releases -> their place in the recipe dialect
PIXEL_ALIASES = {
    "--cube": "--scene.cube",
    "--gt": "--scene.gt",
    "--cube-key": "--scene.cube_key",
    "--gt-key": "--scene.gt_key",
    "--card": "--scene.card",
    "--epochs": "--train.epochs",
    "--split": "--split.kind",
}


def classify_pixels_argv(argv: Sequence[str]) -> list[str]:
    """``geofm classify-pixels`` arguments in the recipe dialect.

    Earlier options are renamed (with a note). Recipe files come first, whatever the order
    given, so that an option on the command line always wins over a file. A scene given on
    the command line replaces the recipe's whole scene section: its card, array keys, root
    and download go back to their defaults unless given too.
    """
    configs, rest, renamed, legacy = [], [], [], set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        following = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        if name == "--config":
            configs += [arg] if eq else argv[i : i + 2]
            i += 1 if eq else 2
            continue
        if name == "--split" and following not in ("random", "disjoint"):
            rest.append(arg)  # the recipe's split section, given whole
        elif name in PIXEL_ALIASES:
            renamed.append(f"{name} -> {PIXEL_ALIASES[name]}")
            legacy.add(name)
            rest.append(PIXEL_ALIASES[name] + eq + value)
        elif arg == "--download":
            renamed.append("--download -> --scene.download true")
            rest.append("--scene.download=true")
        else:
            rest.append(arg)
        i += 1
    if renamed:
        print(
            "note: renamed options of geofm classify-pixels (the old names go in the next "
            f"release): {', '.join(renamed)}",
            file=sys.stderr,
        )
    given = {a.partition("=")[0] for a in rest if a.startswith("--")}
    scene = given & {"--scene.cube", "--scene.gt"}
    if legacy & {"--card", "--cube-key", "--gt-key"} and not scene:
        raise ValueError(
            "--card, --cube-key and --gt-key describe a scene given by --cube and "
            "--gt (to change the recipe's own scene: --scene.card ...)"
        )
    if len(scene) == 1:
        raise ValueError("--scene.cube and --scene.gt go together: the cube and its ground truth")
    resets = [
        f"--scene.{key}={'false' if key == 'download' else 'null'}"
        for key in ("card", "cube_key", "gt_key", "root", "download")
        if scene and f"--scene.{key}" not in given
    ]
    return configs + resets + rest


def prepare_classify_pixels(argv: Sequence[str]):
    """The parsed command (recipe dialect plus the run's options) and its checked recipe."""
    from geofm.tasks.pixel_recipe import add_run_options, recipe_from_namespace, recipe_parser

    parser = recipe_parser(
        prog="geofm classify-pixels",
        description="Hyperspectral pixel classification: LoLA-SpecViT and "
        "the RBF-SVM baseline on the same splits and seeds.",
    )
    add_run_options(parser)
    args = parser.parse_args(classify_pixels_argv(argv))
    configs = [str(c) for c in (args.get("config") or []) if c is not None]
    recipe = recipe_from_namespace(args, configs[-1] if configs else "<command line>")
    if {"--train-fraction", "--train-per-class"} <= {a.partition("=")[0] for a in argv}:
        raise ValueError("give --train-fraction or --train-per-class, not both")
    return args, recipe


def cmd_classify_pixels(args, recipe) -> int:
    from geofm.data.outputs import check_outputs
    from geofm.tasks.pixel_protocol import checkpoint_name, method_recipes, run_protocol
    from geofm.tasks.pixel_recipe import recipe_inputs
    from geofm.tasks.pixel_results import read_results, summarise, write_results

    # plain numbers: they are saved in every model file (jsonargparse gives PositiveInt)
    train = (
        int(args.train_per_class)
        if args.train_per_class is not None
        else float(args.train_fraction)
    )
    if args.resume and args.overwrite:
        raise ValueError(
            "--resume continues the runs in --output; --overwrite replaces them: pass one of them"
        )
    output = Path(args.output)
    record = output.with_suffix(".json")
    save_dir = Path(args.save_dir) if args.save_dir else output.parent / "models"
    # what an interrupted run of the same command finished (refused if it is another run)
    done = read_results(record, recipe, train) if args.resume else []
    if args.resume and record.exists() != output.exists():
        raise FileNotFoundError(
            f"--resume needs both {output} and {record}; one of them is missing"
        )
    finished = {(r.method, r.seed) for r in done}
    methods = args.methods or ["lola", *recipe.baselines]
    models = [
        save_dir / checkpoint_name(recipe, train, s, m)
        for s in args.seeds
        for m in method_recipes(recipe, methods)
        if (m, s) not in finished
    ]
    # every output checked before any work: none is an input, none is replaced unasked (a
    # resumed run replaces its own results files and the models of seeds it had not ended)
    check_outputs(
        [output, record, *models],
        recipe_inputs(recipe),
        args.overwrite or args.resume,
    )
    start = time.perf_counter()
    results, classes = run_protocol(
        recipe,
        train,
        args.seeds,
        methods=args.methods,
        progress=not args.no_progress,
        save_dir=save_dir,
        done=done,
        # each seed's rows are written as soon as it ends: an interruption loses no seed
        on_seed=lambda so_far, names: write_results(output, so_far, names, recipe),
    )
    rows = summarise(results, classes)
    print(
        f"\n{'method':<8} {'mode':<8} {'split':<9} {'OA %':>14} {'AA %':>14} "
        f"{'kappa':>15} {'trainable':>10} {'train s':>8}"
    )
    means = [r for r in rows if r["seed"] == "mean"]
    stds = {(r["method"], r["mode"]): r for r in rows if r["seed"] == "std"}

    def spread(value, scale: float, digits: int) -> str:
        return "-" if value is None else f"{scale * value:.{digits}f}"

    for m in means:
        s = stds[(m["method"], m["mode"])]
        params = "-" if m["trainable_params"] is None else f"{int(m['trainable_params']):,}"
        print(
            f"{m['method']:<8} {m['mode']:<8} {m['split']:<9} "
            f"{100 * m['oa']:7.2f} ± {spread(s['oa'], 100, 2):>4} {100 * m['aa']:7.2f} ± "
            f"{spread(s['aa'], 100, 2):>4} {m['kappa']:7.4f} ± {spread(s['kappa'], 1, 4):>6} "
            f"{params:>10} {m['train_seconds']:8.1f}"
        )
    saved = any("checkpoint" in r.details for r in results)
    models = f" and the models in {save_dir}" if saved else ""
    seeds = sorted({r.seed for r in results})
    print(
        f"mean ± sample std over seeds {' '.join(map(str, seeds))}; wrote {output} and "
        f"{record}{models} ({time.perf_counter() - start:.0f} s)"
    )
    return 0


def run_classify_pixels(prepared) -> int:
    """The protocol, once configured; what it finds wrong with the input is one line too."""
    return reported("classify-pixels", cmd_classify_pixels, *prepared)


def cmd_export(args: argparse.Namespace) -> int:
    from geofm.tasks.export import export_encoder

    out = export_encoder(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
