"""``geofm map`` (a class map from any classifier) and its deprecated names."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def add_map_options(p: argparse.ArgumentParser) -> None:
    """The options of ``geofm map`` (shared with its deprecated names)."""
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a `geofm classify-scenes` .ckpt or a `geofm classify-pixels` .pt",
    )
    p.add_argument("--model", help="registry name the checkpoint must hold (a check)")
    p.add_argument("--card", help="card naming the input's bands, e.g. eurosat_ms")
    p.add_argument(
        "--png", action="store_true", help="also draw OUT.png (with --gt: beside the ground truth)"
    )
    p.add_argument("--netcdf", action="store_true", help="also write OUT.nc for xarray")
    p.add_argument(
        "--gt", help="pixel classifiers: ground-truth .mat to compare with (implies --png)"
    )
    p.add_argument("--gt-key", help="array name in the ground-truth .mat")
    p.add_argument(
        "--stride",
        type=int,
        help="scene classifiers: pixels between tiles, the output cell size "
        "(divides the tile; default: the tile, one label per tile)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=0,
        help="pixel classifiers: pixels by which tiles overlap and are blended",
    )
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also write OUT.probabilities.tif, one float32 band per class",
    )
    p.add_argument(
        "--memory-mb",
        type=float,
        default=512,
        help="bound on the raster buffers (default: %(default)s MiB)",
    )
    p.add_argument("--batch-size", type=int, help="tiles per model call")
    p.add_argument(
        "--window-batch",
        type=int,
        default=1024,
        help="pixel classifiers: windows per model call (default: %(default)s)",
    )
    p.add_argument(
        "--gsd",
        type=float,
        help="resample a georeferenced input to this GSD (m) as it is read; for "
        "an input without map coordinates, its GSD (default: the card's)",
    )
    p.add_argument("--cube-key", help="array name in a .mat cube")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true")


def _ground_truth(path: str, key: str | None, predictor):
    """A pixel classifier's ground truth: class ids (255 unlabelled) as its training read
    them: through its card, or (a scene without one) through its raw label values."""
    from geofm.data.hyperspectral import read_label_mat
    from geofm.data.sample import apply_label_lookup

    if predictor.kind != "pixel":
        raise ValueError(
            "--gt compares a pixel classifier's map with a labelled scene; a "
            "scene classifier labels cells of many pixels"
        )
    gt = read_label_mat(path, key, predictor.card)
    if not predictor.card and predictor.label_values:
        gt = apply_label_lookup(gt, {v: k for k, v in enumerate(predictor.label_values)})
    return gt


def cmd_map(args: argparse.Namespace) -> int:
    import numpy as np

    from geofm.data.outputs import check_outputs
    from geofm.inference import NotGeoreferencedWarning, load_predictor, open_source, predict
    from geofm.inference.maps import agreement, companion_paths, write_netcdf, write_png
    from geofm.inference.writers import probabilities_path

    if hasattr(args, "paths"):  # `geofm map [IN] OUT`
        want = 1 if args.training_scene else 2
        if len(args.paths) != want:
            raise ValueError(
                "give the scene to map and the map to write (IN OUT), or --training-scene and OUT"
                if want == 2
                else "with --training-scene give only the map to write (OUT)"
            )
        args.input, args.output = ([None] if want == 1 else []) + list(args.paths)
    out = Path(args.output)
    extras = companion_paths(out, png=args.png or args.gt is not None, netcdf=args.netcdf)
    outputs = [out, probabilities_path(out), *extras.values()]
    # before the model is read: no output may be an input or replace a file unasked
    check_outputs(outputs, [args.input, args.checkpoint, args.gt], args.overwrite)
    predictor = load_predictor(
        args.checkpoint,
        args.model,
        tile=args.tile,
        device=args.device,
        batch_size=args.window_batch,
    )
    scene, cube_key = args.input, args.cube_key
    if scene is None:
        if predictor.training_scene is None:
            raise ValueError(
                f"{args.checkpoint} records no scene it was trained on; give the "
                "scene to map before OUTPUT"
            )
        scene, recorded_key = predictor.training_scene
        cube_key = cube_key or recorded_key
        check_outputs(outputs, [scene], args.overwrite)  # the recorded scene is an input
    out.parent.mkdir(parents=True, exist_ok=True)  # checked: not under a file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NotGeoreferencedWarning)
        try:
            source = open_source(
                scene,
                card=args.card if args.card is not None else predictor.card,
                gsd=args.gsd,
                cube_key=cube_key,
                wavelengths=predictor.wavelengths,
            )
            gt = _ground_truth(args.gt, args.gt_key, predictor) if args.gt else None
            if gt is not None and gt.shape != (source.height, source.width):
                raise ValueError(
                    f"the ground truth {args.gt} is {gt.shape[0]} x {gt.shape[1]} "
                    f"pixels, the scene {source.height} x {source.width}"
                )
            result = predict(
                predictor,
                source,
                out,
                stride=args.stride,
                overlap=args.overlap,
                probabilities=args.probabilities,
                memory_mb=args.memory_mb,
                batch_size=args.batch_size,
                card=args.card,
                gsd=args.gsd,
                cube_key=cube_key,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
        except ValueError as err:
            if "card=" in str(err) and args.card is None:
                raise ValueError(
                    f"{err} (on the command line: --card NAME; `geofm cards` lists them)"
                ) from None
            raise
    for w in caught:
        if issubclass(w.category, NotGeoreferencedWarning):
            print(f"note: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    counts = result.counts  # counted block by block: the map is not loaded
    shown = ", ".join(
        f"{result.classes[i]} {int(counts[i])}"
        for i in np.argsort(-counts[:-1], kind="stable")
        if counts[i]
    )
    kind = "cells" if result.labels.attrs.get("kind") == "scene" else "pixels"
    h, w = result.labels.shape
    print(f"{predictor!r}: {result.tiles_run} tiles in {result.blocks} blocks")
    print(f"{h} x {w} {kind}; {int(counts[-1])} without a prediction; classes: {shown}")
    paths = list(result.paths)
    if "png" in extras:
        title = getattr(args, "title", None) or Path(args.checkpoint).stem
        paths.append(
            write_png(result.labels, result.classes, extras["png"], ground_truth=gt, title=title)
        )
    if "netcdf" in extras:
        result.labels.attrs["checkpoint"] = str(args.checkpoint)
        paths.append(write_netcdf(result.labels, result.classes, extras["netcdf"]))
    if gt is not None:
        agree, n = agreement(np.asarray(result.labels.values), gt)
        print(
            f"agreement with the ground truth on its {n} labelled pixels (training pixels "
            f"included): {100 * agree:.2f}%"
        )
    for path in paths:
        print(f"wrote {path}")
    return 0


def _deprecated(old: str, new: str) -> None:
    print(
        f"note: `geofm {old}` is deprecated and will be removed in the next release; use "
        f"`geofm {new}`",
        file=sys.stderr,
    )


def cmd_predict_scene(args: argparse.Namespace) -> int:
    _deprecated("predict-scene IN OUT --checkpoint CKPT", "map IN OUT --checkpoint CKPT")
    return cmd_map(args)


def cmd_predict(args: argparse.Namespace) -> int:
    _deprecated(
        "predict CKPT",
        "map SCENE OUT.tif --checkpoint CKPT --png --netcdf (or --training-scene OUT.tif)",
    )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or Path(args.checkpoint).stem
    parser = argparse.ArgumentParser()
    add_map_options(parser)
    mapped = parser.parse_args(["--checkpoint", "CKPT"])  # the defaults of `geofm map`
    shared = ("checkpoint", "cube_key", "gt", "gt_key", "overwrite", "no_progress")
    vars(mapped).update(
        {key: getattr(args, key) for key in shared},
        input=args.cube,
        output=str(out_dir / f"{name}.tif"),
        title=name,
        png=True,
        netcdf=True,
        window_batch=args.batch_size,
    )
    return cmd_map(mapped)
