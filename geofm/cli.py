"""The ``geofm`` command.

Subcommands:

* ``geofm demo``: reads every bundled real sample, writes their statistics and figures.
* ``geofm stats PATH...``: per-band statistics streamed by windows, as card-format YAML.
* ``geofm info PATH``: what a raster or cube holds (bands, wavelengths, GSD, CRS).
* ``geofm plot PATH``: an RGB composite of a raster or cube, as PNG.
* ``geofm cards``: the sensor and dataset cards geofm knows.
* ``geofm models [PATTERN]``: the registered encoders with their sizes.
* ``geofm export CHECKPOINT OUT``: the encoder of a pretraining checkpoint with its data
  configuration, for ``create_model(name, checkpoint=OUT)``.
* ``geofm pretrain --config CONFIG [--trainer.max_epochs N ...] [--ckpt_path CKPT]``:
  masked-autoencoder pretraining through LightningCLI (``--print_config`` shows the
  resolved configuration).
* ``geofm classify-pixels --config CONFIG [--split.kind random|disjoint] [--train.epochs N
  ...] --train-fraction F --seeds 0 1 2 --output results.csv``: the hyperspectral
  pixel-classification protocol (LoLA-SpecViT and the RBF-SVM baseline), one row per method
  and seed plus mean and std; any recipe key can be set with a dotted option, and
  ``--print_config`` shows the recipe as it will run.
* ``geofm classify-scenes --config CONFIG``: fine-tune an encoder (fully or with LoRA) on a
  folder of labelled scenes through LightningCLI, then test the epoch chosen on validation.
* ``geofm map IN OUT.tif --checkpoint CKPT [--png] [--netcdf] [--gt GT]``: the class map
  of a raster of any size from any classifier (pixel or scene), tile by tile in bounded
  memory, into a Cloud-Optimised GeoTIFF on the input's grid and CRS (``--training-scene
  OUT.tif`` maps the scene a pixel classifier was trained on). ``geofm predict`` and ``geofm predict-scene``
  are its deprecated names, kept for one release.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import yaml


def _samples_dir() -> Path:
    from geofm.data.cards import data_dir

    return data_dir() / "samples"


def _open_any(path: str, card: str | None):
    from geofm.data.hyperspectral import open_cube
    from geofm.data.readers import open_raster

    p = Path(path)
    envi = p.suffix.lower() == ".hdr" or (p.suffix.lower() == ".img"
                                          and p.with_suffix(".hdr").is_file())
    if envi or p.suffix.lower() == ".mat":
        return open_cube(p, card=card)
    return open_raster(p, card=card)


def cmd_stats(args: argparse.Namespace) -> int:
    from geofm.data.outputs import check_outputs, write_atomic
    from geofm.data.stats import compute_statistics

    if args.out:
        check_outputs([args.out], args.paths, args.overwrite)
    stats = compute_statistics(args.paths, tile=args.tile, percentiles=args.percentiles,
                               progress=not args.no_progress, card=args.card)
    text = yaml.safe_dump({"statistics": stats}, sort_keys=False, default_flow_style=None,
                          width=100)
    if args.out:
        write_atomic(args.out, lambda part: part.write_text(text))
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    # metadata, and the valid share from overviews or a bounded sample: never every pixel
    from geofm.data.stats import scene_info

    print(scene_info(args.path, args.card).describe())
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from geofm.data.outputs import check_outputs, write_atomic
    from geofm.data.plot import plot_rgb

    out = Path(args.out or Path(args.path).with_suffix(".rgb.png").name)
    check_outputs([out], [args.path], args.overwrite)
    sample = _open_any(args.path, args.card)
    figure = plot_rgb(sample, title=Path(args.path).name)
    write_atomic(out, lambda part: figure.savefig(part, dpi=120))
    print(f"wrote {out}")
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from geofm.data.cards import list_dataset_cards, list_sensors, load_dataset_card, load_sensor

    print("sensors:")
    for name in list_sensors():
        s = load_sensor(name)
        print(f"  {name:<22} {len(s.bands):>4} bands  {s.title}")
    print("datasets:")
    for name in list_dataset_cards():
        d = load_dataset_card(name)
        print(f"  {name:<22} {len(d.bands):>4} bands  {len(d.classes):>3} classes  {d.title}")
    return 0


def _shape(sample) -> str:
    return " x ".join(str(n) for n in sample["image"].shape)


def cmd_demo(args: argparse.Namespace) -> int:
    """Statistics and figures for every bundled sample; a summary table on stdout."""
    import torch
    from matplotlib.figure import Figure

    from geofm.data.cards import load_dataset_card
    from geofm.data.hyperspectral import open_envi, read_label_mat
    from geofm.data.plot import plot_class_spectra, plot_rgb, plot_sample
    from geofm.data.readers import open_raster
    from geofm.data.stats import compute_statistics

    samples = Path(args.samples) if args.samples else _samples_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    start = time.perf_counter()

    # EuroSAT-MS: statistics over all patches (compared with the card), one patch per class.
    eurosat = load_dataset_card("eurosat_ms")
    stats = compute_statistics([samples / "eurosat_ms"], card="eurosat_ms",
                               progress=not args.no_progress)
    (out / "eurosat_ms_stats.yaml").write_text(
        yaml.safe_dump({"statistics": stats}, sort_keys=False, default_flow_style=None))
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    axes = fig.subplots(2, 5).ravel()
    # One stretch for all patches, from the statistics just computed, so that colours
    # compare across classes (a per-patch stretch turns calm water into noise).
    rgb_idx = eurosat.band_indices(eurosat.rgb_bands)
    limits = [(stats["percentiles"]["p2"][i], stats["percentiles"]["p98"][i]) for i in rgb_idx]
    n_files = 0
    for ax, cls in zip(axes, eurosat.classes, strict=True):
        files = sorted((samples / "eurosat_ms" / cls).glob("*.tif"))
        n_files += len(files)
        plot_rgb(open_raster(files[0], card="eurosat_ms"), ax=ax, title=cls, limits=limits)
    fig.suptitle("EuroSAT-MS bundled samples (B04/B03/B02, 2-98% stretch over all patches)")
    fig.savefig(out / "eurosat_ms_classes.png", dpi=110)
    cirrus = eurosat.band_names.index("B10")
    rows.append(("EuroSAT-MS", f"{n_files} GeoTIFFs, 13 x 64 x 64",
                 f"B10 mean {stats['mean'][cirrus]:.1f} DN (card {eurosat.mean[cirrus]:.1f})",
                 "eurosat_ms_classes.png, eurosat_ms_stats.yaml"))

    # Sentinel-2 L1C tile: 13 JPEG 2000 bands at 10/20/60 m stacked on the 10 m grid.
    s2 = open_raster(samples / "s2_l1c_t33uuu" / "IMG_DATA")
    plot_rgb(s2, title="Sentinel-2 L1C T33UUU 2017-02-16, 13 bands on the 10 m grid").savefig(
        out / "s2_t33uuu_rgb.png", dpi=110)
    rows.append(("Sentinel-2 tile", _shape(s2), f"{s2['crs']}, GSD {s2['gsd']:.0f} m",
                 "s2_t33uuu_rgb.png"))

    # Landsat-7 subset with nodata borders.
    landsat = open_raster(samples / "landsat_rgb" / "RGB.byte.tif", card="landsat_rgb")
    plot_rgb(landsat, title="Landsat-7 ETM+ subset (nodata in black)").savefig(
        out / "landsat_rgb.png", dpi=110)
    valid = float(landsat["valid"].float().mean()) * 100
    rows.append(("Landsat-7", _shape(landsat), f"{valid:.1f}% valid, GSD {landsat['gsd']:.0f} m",
                 "landsat_rgb.png"))

    # Salinas-A: hyperspectral cube with its ground truth.
    salinas = load_dataset_card("salinas_a")
    cube = open_envi(samples / "salinas_a" / "SalinasA_corrected.hdr", card="salinas_a")
    cube["mask"] = torch.from_numpy(read_label_mat(samples / "salinas_a" / "SalinasA_gt.mat",
                                                   card="salinas_a"))
    plot_sample(cube, classes=salinas.classes, title="Salinas-A (AVIRIS, 204 bands)").savefig(
        out / "salinas_a.png", dpi=110)
    plot_class_spectra(cube, salinas.classes, ylabel="radiance (scaled DN)").savefig(
        out / "salinas_a_spectra.png", dpi=110)
    labelled = int((cube["mask"] != 255).sum())
    rows.append(("Salinas-A", _shape(cube), f"{labelled} labelled px, "
                 f"{len(salinas.classes)} classes", "salinas_a.png, salinas_a_spectra.png"))

    header = ("sample", "shape", "check", "outputs")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row[:3], widths, strict=True))
              + "  " + row[3])
    print(f"wrote {len(list(out.iterdir()))} files to {out} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from geofm.models import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}; "
                         f"registered: {', '.join(list_models())}")
    print(f"{'model':<20} {'params':>8} {'width':>5} {'depth':>5} {'heads':>5}  notes")
    for name in names:
        with torch.device("meta"):  # sizes only: nothing is allocated or initialised
            model = create_model(name)
        cfg = model.config
        notes = ", ".join(f"{k} {cfg[k]}" for k in ("rank", "perception_radius_m",
                                                    "bands_per_group", "in_chans") if k in cfg)
        print(f"{name:<20} {model.num_params / 1e6:7.1f}M {cfg['embed_dim']:>5} "
              f"{cfg['depth']:>5} {cfg['num_heads']:>5}  {notes}")
    return 0


def prepare_pretrain(argv: Sequence[str]):
    """LightningCLI over :class:`MAEPretrainTask` and any data module the config names
    (``data.class_path``: :class:`~geofm.data.datamodules.PretrainDataModule` for files,
    :class:`~geofm.data.torchgeo_io.TorchGeoPretrainDataModule` for torchgeo datasets)."""
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningCLI

    from geofm.tasks.mae import MAEPretrainTask

    class PretrainCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--ckpt_path", default=None,
                                help="checkpoint to resume from (same run, same step count)")

    with warnings.catch_warnings():
        # `geofm pretrain ...` passes its own arguments on; Lightning warns when sys.argv
        # holds more than the args given, which is always the case here
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = PretrainCLI(
            MAEPretrainTask, LightningDataModule, subclass_mode_data=True, args=list(argv),
            run=False,
            seed_everything_default=0, save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "geofm pretrain",
                           "description": "Masked-autoencoder pretraining of LESS ViT."},
        )
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"--ckpt_path {ckpt_path} does not exist")
    if ckpt_path:
        from geofm.models.checkpoints import read_checkpoint

        # refused here with one message naming it (code inside, truncated, another kind)
        # rather than mid-start by Lightning
        read_checkpoint(ckpt_path, "pretraining")
    _check_writable(cli.trainer)
    cli.datamodule.setup("fit")  # missing or unusable data is reported before training
    return cli, ckpt_path


def prepare_classify_scenes(argv: Sequence[str]):
    """LightningCLI over :class:`SceneClassificationTask` and the data module the config
    names (:class:`~geofm.data.datamodules.SceneFolderDataModule` for a folder per class)."""
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningCLI

    from geofm.tasks.scene import SceneClassificationTask

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = LightningCLI(
            SceneClassificationTask, LightningDataModule, subclass_mode_data=True,
            args=list(argv), run=False, seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "geofm classify-scenes",
                           "description": "Fine-tune an encoder on labelled scenes."},
        )
    _check_writable(cli.trainer)
    cli.datamodule.setup("fit")
    num_classes = getattr(cli.datamodule, "num_classes", None)
    if num_classes is not None and num_classes != cli.model.hparams.num_classes:
        raise ValueError(f"the data has {num_classes} classes but model.num_classes is "
                         f"{cli.model.hparams.num_classes}")
    return cli


def run_classify_scenes(cli) -> int:
    """Fit, test the checkpoint chosen on validation, print the test table."""
    from geofm.models.checkpoints import allowed_globals

    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=data)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    with allowed_globals():   # the checkpoint is read without running code
        trainer.test(model, datamodule=data, ckpt_path=best or None, verbose=False,
                     weights_only=True)
    cm = model.test_confusion
    if cm is None:
        print("no test scenes: nothing to report", file=sys.stderr)
        return 0
    classes = model.classes
    total = int(cm.sum())
    acc = float(cm.diag().sum()) / max(total, 1)
    width = max(len(c) for c in classes)
    print(f"\ntest accuracy {100 * acc:.1f}% on {total} scenes "
          f"(checkpoint {best or 'of the last epoch'})")
    print("confusion matrix (rows: true class, columns: predicted, in the same order)")
    for name, row in zip(classes, cm.tolist(), strict=True):
        print(f"  {name:<{width}} " + " ".join(f"{v:3d}" for v in row))
    if best:
        print(f"map a raster of any size with: geofm map IN OUT.tif --checkpoint {best}")
    return 0


def _ground_truth(path: str, key: str | None, predictor):
    """A pixel classifier's ground truth: class ids (255 unlabelled) as its training read
    them: through its card, or (a scene without one) through its raw label values."""
    from geofm.data.hyperspectral import apply_label_lookup, read_label_mat

    if predictor.kind != "pixel":
        raise ValueError("--gt compares a pixel classifier's map with a labelled scene; a "
                         "scene classifier labels cells of many pixels")
    gt = read_label_mat(path, key, predictor.card)
    if not predictor.card and predictor.label_values:
        gt = apply_label_lookup(gt, {v: k for k, v in enumerate(predictor.label_values)})
    return gt


def cmd_map(args: argparse.Namespace) -> int:
    import warnings as _warnings

    import numpy as np

    from geofm.data.outputs import check_outputs
    from geofm.inference import NotGeoreferencedWarning, load_predictor, open_source, predict
    from geofm.inference.maps import agreement, companion_paths, write_netcdf, write_png
    from geofm.inference.writers import probabilities_path

    if hasattr(args, "paths"):           # `geofm map [IN] OUT`
        want = 1 if args.training_scene else 2
        if len(args.paths) != want:
            raise ValueError("give the scene to map and the map to write (IN OUT), or "
                             "--training-scene and OUT" if want == 2 else
                             "with --training-scene give only the map to write (OUT)")
        args.input, args.output = ([None] if want == 1 else []) + list(args.paths)
    out = Path(args.output)
    extras = companion_paths(out, png=args.png or args.gt is not None, netcdf=args.netcdf)
    outputs = [out, probabilities_path(out), *extras.values()]
    # before the model is read: no output may be an input or replace a file unasked
    check_outputs(outputs, [args.input, args.checkpoint, args.gt], args.overwrite)
    predictor = load_predictor(args.checkpoint, args.model, tile=args.tile,
                               device=args.device, batch_size=args.window_batch)
    scene, cube_key = args.input, args.cube_key
    if scene is None:
        if predictor.training_scene is None:
            raise ValueError(f"{args.checkpoint} records no scene it was trained on; give the "
                             "scene to map before OUTPUT")
        scene, recorded_key = predictor.training_scene
        cube_key = cube_key or recorded_key
        check_outputs(outputs, [scene], args.overwrite)     # the recorded scene is an input
    out.parent.mkdir(parents=True, exist_ok=True)            # checked: not under a file
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always", NotGeoreferencedWarning)
        try:
            source = open_source(scene, card=args.card if args.card is not None else
                                 predictor.card, gsd=args.gsd, cube_key=cube_key,
                                 wavelengths=predictor.wavelengths)
            gt = _ground_truth(args.gt, args.gt_key, predictor) if args.gt else None
            if gt is not None and gt.shape != (source.height, source.width):
                raise ValueError(f"the ground truth {args.gt} is {gt.shape[0]} x {gt.shape[1]} "
                                 f"pixels, the scene {source.height} x {source.width}")
            result = predict(predictor, source, out, stride=args.stride, overlap=args.overlap,
                             probabilities=args.probabilities, memory_mb=args.memory_mb,
                             batch_size=args.batch_size, card=args.card, gsd=args.gsd,
                             cube_key=cube_key, overwrite=args.overwrite,
                             progress=not args.no_progress)
        except ValueError as err:
            if "card=" in str(err) and args.card is None:
                raise ValueError(f"{err} (on the command line: --card NAME; `geofm cards` "
                                 "lists them)") from None
            raise
    for w in caught:
        if issubclass(w.category, NotGeoreferencedWarning):
            print(f"note: {w.message}", file=sys.stderr)
        else:
            _warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    counts = result.counts                  # counted block by block: the map is not loaded
    shown = ", ".join(f"{result.classes[i]} {int(counts[i])}"
                      for i in np.argsort(-counts[:-1], kind="stable") if counts[i])
    kind = "cells" if result.labels.attrs.get("kind") == "scene" else "pixels"
    h, w = result.labels.shape
    print(f"{predictor!r}: {result.tiles_run} tiles in {result.blocks} blocks")
    print(f"{h} x {w} {kind}; {int(counts[-1])} without a prediction; classes: {shown}")
    paths = list(result.paths)
    if "png" in extras:
        title = getattr(args, "title", None) or Path(args.checkpoint).stem
        paths.append(write_png(result.labels, result.classes, extras["png"],
                               ground_truth=gt, title=title))
    if "netcdf" in extras:
        result.labels.attrs["checkpoint"] = str(args.checkpoint)
        paths.append(write_netcdf(result.labels, result.classes, extras["netcdf"]))
    if gt is not None:
        agree, n = agreement(np.asarray(result.labels.values), gt)
        print(f"agreement with the ground truth on its {n} labelled pixels (training pixels "
              f"included): {100 * agree:.2f}%")
    for path in paths:
        print(f"wrote {path}")
    return 0


def _deprecated(old: str, new: str) -> None:
    print(f"note: `geofm {old}` is deprecated and will be removed in the next release; use "
          f"`geofm {new}`", file=sys.stderr)


def cmd_predict_scene(args: argparse.Namespace) -> int:
    _deprecated("predict-scene IN OUT --checkpoint CKPT", "map IN OUT --checkpoint CKPT")
    return cmd_map(args)


def cmd_predict(args: argparse.Namespace) -> int:
    _deprecated("predict CKPT", "map SCENE OUT.tif --checkpoint CKPT --png --netcdf (or "
                "--training-scene OUT.tif)")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or Path(args.checkpoint).stem
    mapped = argparse.Namespace(**{**vars(_map_defaults()), **{
        "input": args.cube, "output": str(out_dir / f"{name}.tif"), "title": name,
        "checkpoint": args.checkpoint, "cube_key": args.cube_key, "gt": args.gt,
        "gt_key": args.gt_key, "png": True, "netcdf": True, "overwrite": args.overwrite,
        "no_progress": args.no_progress, "window_batch": args.batch_size}})
    return cmd_map(mapped)


def _check_writable(trainer) -> None:
    """Fail before training, not after the first epoch, when outputs cannot be written."""
    folders = {Path(trainer.default_root_dir)}
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "dirpath", None):
            folders.add(Path(cb.dirpath))
    for logger in trainer.loggers:
        if getattr(logger, "save_dir", None):
            folders.add(Path(logger.save_dir))
    for folder in sorted(folders):
        probe = folder / ".geofm-write-test"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"x" * 4096)
            probe.unlink()
        except OSError as err:
            raise PermissionError(f"cannot write run outputs to {folder}: {err.strerror or err}; "
                                  "choose another --trainer.default_root_dir") from None


def cmd_export(args: argparse.Namespace) -> int:
    from geofm.tasks.export import export_encoder

    out = export_encoder(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


#: classify-pixels options of earlier releases -> their place in the recipe dialect
PIXEL_ALIASES = {"--cube": "--scene.cube", "--gt": "--scene.gt", "--cube-key": "--scene.cube_key",
                 "--gt-key": "--scene.gt_key", "--card": "--scene.card",
                 "--epochs": "--train.epochs", "--split": "--split.kind"}


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
            configs += [arg] if eq else argv[i:i + 2]
            i += 1 if eq else 2
            continue
        if name == "--split" and following not in ("random", "disjoint"):
            rest.append(arg)          # the recipe's split section, given whole
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
        print("note: renamed options of geofm classify-pixels (the old names go in the next "
              f"release): {', '.join(renamed)}", file=sys.stderr)
    given = {a.partition("=")[0] for a in rest if a.startswith("--")}
    scene = given & {"--scene.cube", "--scene.gt"}
    if legacy & {"--card", "--cube-key", "--gt-key"} and not scene:
        raise ValueError("--card, --cube-key and --gt-key describe a scene given by --cube and "
                         "--gt (to change the recipe's own scene: --scene.card ...)")
    resets = []
    if scene:
        if len(scene) == 1:
            raise ValueError("--scene.cube and --scene.gt go together: the cube and its "
                             "ground truth")
        resets = [f"--scene.{key}={value}" for key, value in (
            ("card", "null"), ("cube_key", "null"), ("gt_key", "null"), ("root", "null"),
            ("download", "false")) if f"--scene.{key}" not in given]
    return configs + resets + rest


def prepare_classify_pixels(argv: Sequence[str]):
    """The parsed command (recipe dialect plus the run's options) and its checked recipe."""
    from geofm.tasks.pixel_recipe import add_run_options, recipe_from_namespace, recipe_parser

    parser = recipe_parser(prog="geofm classify-pixels",
                           description="Hyperspectral pixel classification: LoLA-SpecViT and "
                                       "the RBF-SVM baseline on the same splits and seeds.")
    add_run_options(parser)
    args = parser.parse_args(classify_pixels_argv(argv))
    configs = [str(c) for c in (args.get("config") or []) if c is not None]
    recipe = recipe_from_namespace(args, configs[-1] if configs else "<command line>")
    if {"--train-fraction", "--train-per-class"} <= {a.partition("=")[0] for a in argv}:
        raise ValueError("give --train-fraction or --train-per-class, not both")
    return args, recipe


def cmd_classify_pixels(args, recipe) -> int:
    from geofm.data.outputs import check_outputs
    from geofm.tasks.pixel_protocol import checkpoint_name, run_protocol
    from geofm.tasks.pixel_recipe import recipe_inputs
    from geofm.tasks.pixel_results import read_results, summarise, write_results

    train = args.train_per_class if args.train_per_class is not None else args.train_fraction
    output = Path(args.output)
    save_dir = Path(args.save_dir) if args.save_dir else output.parent / "models"
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the runs in --output; --overwrite replaces them: "
                         "pass one of them")
    # what an interrupted run of the same command finished (refused if it is another run)
    split = recipe.split["kind"]
    done = read_results(output.with_suffix(".json"), recipe, split, train) \
        if args.resume else []
    if args.resume and output.with_suffix(".json").exists() != output.exists():
        raise FileNotFoundError(f"--resume needs both {output} and "
                                f"{output.with_suffix('.json')}; one of them is missing")
    finished = {(r.method, r.seed) for r in done}
    models = [save_dir / checkpoint_name(recipe, split, train, s) for s in args.seeds
              if "lola" in (args.methods or ["lola"]) and ("lola", s) not in finished]
    # every output checked before any work: none is an input, none is replaced unasked (a
    # resumed run replaces its own results files and the models of seeds it had not ended)
    check_outputs([output, output.with_suffix(".json"), *models], recipe_inputs(recipe),
                  args.overwrite or args.resume)
    start = time.perf_counter()
    results, classes = run_protocol(
        recipe, split, train, args.seeds, methods=args.methods,
        progress=not args.no_progress, save_dir=save_dir, done=done,
        # each seed's rows are written as soon as it ends: an interruption loses no seed
        on_seed=lambda so_far, names: write_results(output, so_far, names, recipe))
    rows = summarise(results, classes)
    print(f"\n{'method':<6} {'mode':<5} {'split':<9} {'OA %':>14} {'AA %':>14} "
          f"{'kappa':>15} {'trainable':>10} {'train s':>8}")
    means = [r for r in rows if r["seed"] == "mean"]
    stds = {(r["method"], r["mode"]): r for r in rows if r["seed"] == "std"}
    def spread(value, scale: float, digits: int) -> str:
        return "-" if value is None else f"{scale * value:.{digits}f}"

    for m in means:
        s = stds[(m["method"], m["mode"])]
        params = "-" if m["trainable_params"] is None else f"{int(m['trainable_params']):,}"
        print(f"{m['method']:<6} {m['mode']:<5} {m['split']:<9} "
              f"{100 * m['oa']:7.2f} ± {spread(s['oa'], 100, 2):>4} {100 * m['aa']:7.2f} ± "
              f"{spread(s['aa'], 100, 2):>4} {m['kappa']:7.4f} ± {spread(s['kappa'], 1, 4):>6} "
              f"{params:>10} {m['train_seconds']:8.1f}")
    models = (f" and the models in {save_dir}" if any(r.method == "lola" for r in results)
              else "")
    seeds = sorted({r.seed for r in results})
    print(f"mean ± sample std over seeds {' '.join(map(str, seeds))}; wrote {output} and "
          f"{output.with_suffix('.json')}{models} ({time.perf_counter() - start:.0f} s)")
    return 0


def _add_map_options(p: argparse.ArgumentParser) -> None:
    """The options of ``geofm map`` (shared with the deprecated alias)."""
    p.add_argument("--checkpoint", required=True,
                   help="a `geofm classify-scenes` .ckpt or a `geofm classify-pixels` .pt")
    p.add_argument("--model", help="registry name the checkpoint must hold (a check)")
    p.add_argument("--card", help="card naming the input's bands, e.g. eurosat_ms")
    p.add_argument("--png", action="store_true",
                   help="also draw OUT.png (with --gt: beside the ground truth)")
    p.add_argument("--netcdf", action="store_true", help="also write OUT.nc for xarray")
    p.add_argument("--gt", help="pixel classifiers: ground-truth .mat to compare with "
                                "(implies --png)")
    p.add_argument("--gt-key", help="array name in the ground-truth .mat")
    p.add_argument("--stride", type=int,
                   help="scene classifiers: pixels between tiles, the output cell size "
                        "(divides the tile; default: the tile, one label per tile)")
    p.add_argument("--overlap", type=int, default=0,
                   help="pixel classifiers: pixels by which tiles overlap and are blended")
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument("--probabilities", action="store_true",
                   help="also write OUT.probabilities.tif, one float32 band per class")
    p.add_argument("--memory-mb", type=float, default=512,
                   help="bound on the raster buffers (default: %(default)s MiB)")
    p.add_argument("--batch-size", type=int, help="tiles per model call")
    p.add_argument("--window-batch", type=int, default=1024,
                   help="pixel classifiers: windows per model call (default: %(default)s)")
    p.add_argument("--gsd", type=float,
                   help="resample a georeferenced input to this GSD (m) as it is read; for "
                        "an input without map coordinates, its GSD (default: the card's)")
    p.add_argument("--cube-key", help="array name in a .mat cube")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true")


def _map_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _add_map_options(parser)
    return parser.parse_args(["--checkpoint", "CKPT"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geofm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="statistics and figures for the bundled real samples")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--samples", default=None, help="samples folder (default: datasets/samples)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("stats", help="per-band statistics as card-format YAML")
    p.add_argument("paths", nargs="+", help="rasters, ENVI headers or folders of them")
    p.add_argument("--card", default=None, help="card naming the bands, e.g. eurosat_ms")
    p.add_argument("--tile", type=int, default=512, help="window size in pixels")
    p.add_argument("--percentiles", type=float, nargs="+", default=[1, 2, 50, 98, 99])
    p.add_argument("--out", default=None, help="YAML file to write (default: stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("info", help="describe a raster or cube")
    p.add_argument("path")
    p.add_argument("--card", default=None, help="dataset or sensor card for the band names")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("plot", help="RGB composite of a raster or cube as PNG")
    p.add_argument("path")
    p.add_argument("--card", default=None)
    p.add_argument("--out", default=None,
                   help="PNG to write (default: <input name>.rgb.png in this folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("cards", help="list sensor and dataset cards")
    p.set_defaults(func=cmd_cards)

    p = sub.add_parser("models", help="list the registered encoders and their sizes")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'less_vit_*'")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("export", help="encoder weights and data config from a checkpoint")
    p.add_argument("checkpoint", help="a `geofm pretrain` checkpoint (.ckpt)")
    p.add_argument("out", help="encoder file to write (.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_export)

    # listed for --help only: `geofm classify-pixels ...` goes to the recipe parser first
    sub.add_parser("classify-pixels", add_help=False,
                   help="hyperspectral pixel classification: splits, seeds, metrics (recipe "
                        "YAML with dotted overrides; see --help)")

    p = sub.add_parser("map", help="class map of a raster of any size from any classifier "
                                   "(COG; PNG and NetCDF on request)")
    p.add_argument("paths", nargs="+", metavar="IN OUT",
                   help="the raster to map (GeoTIFF, JPEG 2000, folder of band files, ENVI "
                        "or .mat) and the class map to write (Cloud-Optimised GeoTIFF); with "
                        "--training-scene, OUT only")
    p.add_argument("--training-scene", action="store_true",
                   help="pixel classifiers: map the scene the model was trained on")
    _add_map_options(p)
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("predict-scene", help="deprecated: `geofm map`")
    p.add_argument("input")
    p.add_argument("output")
    _add_map_options(p)
    p.set_defaults(func=cmd_predict_scene)

    p = sub.add_parser("predict", help="deprecated: `geofm map ... --png --netcdf`")
    p.add_argument("checkpoint", help="a model written by `geofm classify-pixels`")
    p.add_argument("--cube", help="scene to map (default: the one the model was trained on)")
    p.add_argument("--cube-key", help="array name in a .mat cube")
    p.add_argument("--gt", help="ground-truth .mat to show beside the map")
    p.add_argument("--gt-key", help="array name in the ground-truth .mat")
    p.add_argument("--out-dir", default="outputs/predict")
    p.add_argument("--name", help="file name stem (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=1024, help="windows per model call")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    # listed for --help only: these go to LightningCLI before this parser
    sub.add_parser("classify-scenes", add_help=False,
                   help="fine-tune an encoder on scenes (LightningCLI; see --help)")
    # listed for --help only: `geofm pretrain ...` goes to LightningCLI before this parser
    sub.add_parser("pretrain", add_help=False,
                   help="masked-autoencoder pretraining (LightningCLI; see --help)")
    return parser


#: what a command reports without a traceback: the input or its configuration is wrong
USER_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, ValueError, KeyError,
               OSError, argparse.ArgumentError)


def _error(command: str, err: BaseException) -> int:
    # KeyError's str() quotes its message; show the message itself
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    print(f"geofm {command}: error: {message}", file=sys.stderr)
    return 2


def _configured(command: str, prepare, run) -> int:
    """Run a command configured by a parser that may exit (``--help``, ``--print_config``):
    its exit code passes through; errors in the configuration or the input are one line."""
    try:
        prepared = prepare()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    except USER_ERRORS as err:
        return _error(command, err)
    return run(prepared)


def _fit_pretraining(prepared) -> int:
    from geofm.models.checkpoints import allowed_globals

    cli, ckpt_path = prepared
    # errors from here on come with their traceback: they are not configuration errors
    # (data problems at setup still raise FileNotFoundError/ValueError naming the file)
    with allowed_globals():   # a resumed checkpoint is read without running code
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path,
                        weights_only=True)
    return 0


def _classify_pixels(prepared) -> int:
    try:
        return cmd_classify_pixels(*prepared)
    except USER_ERRORS as err:
        return _error("classify-pixels", err)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "pretrain":
        return _configured(command, lambda: prepare_pretrain(rest), _fit_pretraining)
    if command == "classify-scenes":
        return _configured(command, lambda: prepare_classify_scenes(rest),
                           run_classify_scenes)
    if command == "classify-pixels":
        return _configured(command, lambda: prepare_classify_pixels(rest), _classify_pixels)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        return _error(args.command, err)


if __name__ == "__main__":
    raise SystemExit(main())
