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
from collections.abc import Sequence

from geofm.cli import data, mapping, train
from geofm.cli.errors import configured, reported

#: commands configured by a parser of their own (LightningCLI, the recipe's): prepare, run
CONFIGURED = {
    "pretrain": (train.prepare_pretrain, train.fit_pretraining),
    "classify-scenes": (train.prepare_classify_scenes, train.run_classify_scenes),
    "classify-pixels": (train.prepare_classify_pixels, train.run_classify_pixels),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geofm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="statistics and figures for the bundled real samples")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--samples", default=None, help="samples folder (default: datasets/samples)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=data.cmd_demo)

    p = sub.add_parser("stats", help="per-band statistics as card-format YAML")
    p.add_argument("paths", nargs="+", help="rasters, ENVI headers or folders of them")
    p.add_argument("--card", default=None, help="card naming the bands, e.g. eurosat_ms")
    p.add_argument("--tile", type=int, default=512, help="window size in pixels")
    p.add_argument("--percentiles", type=float, nargs="+", default=[1, 2, 50, 98, 99])
    p.add_argument("--out", default=None, help="YAML file to write (default: stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=data.cmd_stats)

    p = sub.add_parser("info", help="describe a raster or cube")
    p.add_argument("path")
    p.add_argument("--card", default=None, help="dataset or sensor card for the band names")
    p.set_defaults(func=data.cmd_info)

    p = sub.add_parser("plot", help="RGB composite of a raster or cube as PNG")
    p.add_argument("path")
    p.add_argument("--card", default=None)
    p.add_argument(
        "--out", default=None, help="PNG to write (default: <input name>.rgb.png in this folder)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=data.cmd_plot)

    p = sub.add_parser("cards", help="list sensor and dataset cards")
    p.set_defaults(func=data.cmd_cards)

    p = sub.add_parser("models", help="list the registered encoders and their sizes")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'less_vit_*'")
    p.set_defaults(func=data.cmd_models)

    p = sub.add_parser("export", help="encoder weights and data config from a checkpoint")
    p.add_argument("checkpoint", help="a `geofm pretrain` checkpoint (.ckpt)")
    p.add_argument("out", help="encoder file to write (.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=train.cmd_export)

    # listed for --help only: `geofm classify-pixels ...` goes to the recipe parser first
    sub.add_parser(
        "classify-pixels",
        add_help=False,
        help="hyperspectral pixel classification: splits, seeds, metrics (recipe "
        "YAML with dotted overrides; see --help)",
    )

    p = sub.add_parser(
        "map",
        help="class map of a raster of any size from any classifier "
        "(COG; PNG and NetCDF on request)",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="IN OUT",
        help="the raster to map (GeoTIFF, JPEG 2000, folder of band files, ENVI "
        "or .mat) and the class map to write (Cloud-Optimised GeoTIFF); with "
        "--training-scene, OUT only",
    )
    p.add_argument(
        "--training-scene",
        action="store_true",
        help="pixel classifiers: map the scene the model was trained on",
    )
    mapping.add_map_options(p)
    p.set_defaults(func=mapping.cmd_map)

    p = sub.add_parser("predict-scene", help="deprecated: `geofm map`")
    p.add_argument("input")
    p.add_argument("output")
    mapping.add_map_options(p)
    p.set_defaults(func=mapping.cmd_predict_scene)

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
    p.set_defaults(func=mapping.cmd_predict)

    # listed for --help only: these go to LightningCLI before this parser
    for name, text in (
        ("classify-scenes", "fine-tune an encoder on scenes (LightningCLI; see --help)"),
        ("pretrain", "masked-autoencoder pretraining (LightningCLI; see --help)"),
    ):
        sub.add_parser(name, add_help=False, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CONFIGURED:
        prepare, run = CONFIGURED[argv[0]]
        return configured(argv[0], lambda: prepare(argv[1:]), run)
    args = build_parser().parse_args(argv)
    return reported(args.command, args.func, args)
