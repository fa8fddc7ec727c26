"""The ``gfm-bench`` command.

    gfm-bench datasets                                  # the registry and where files come from
    gfm-bench run --suite mini --output results.csv     # bundled real data, minutes on a CPU
    gfm-bench run --suite mini --encoder less_vit_tiny:encoder.pt --output results.csv --resume
    gfm-bench run --suite full --data-root /data/gfm-bench --encoder less_vit_base:enc.pt ...
    gfm-bench report results.csv --out report.md --figure report.png
    gfm-bench download eurosat --root /data/gfm-bench/eurosat

``run`` always evaluates a randomly initialised copy of each geofm encoder as well (the
control row) unless ``--no-control``; ``--encoder`` takes ``NAME`` (random init),
``NAME:FILE`` (weights written by ``geofm export``) or ``timm:NAME`` (a timm model taking
the bands stacked; ``--timm-bands`` names them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _encoders(args) -> list:
    from functools import partial

    from .encoders import build_encoder, parse_encoder_spec

    specs = [parse_encoder_spec(s) for s in (args.encoder or ["less_vit_tiny"])]
    out, seen = [], set()
    for spec in specs:
        if spec["kind"] == "timm":
            bands = args.timm_bands
            if not bands:
                raise SystemExit(
                    "gfm-bench: a timm encoder needs --timm-bands (the band names "
                    "it takes, in order, e.g. B02 B03 B04)"
                )
            # the bands are part of the name, so runs on other bands are other rows
            name = f"timm/{spec['model']}[{'+'.join(bands)}]"
            build = partial(
                build_encoder,
                "timm",
                spec["model"],
                spec["checkpoint"],
                bands=bands,
                wavelengths=None,
            )
            out.append((name, build, spec["checkpoint"]))
            continue
        if spec["checkpoint"] is not None and not Path(spec["checkpoint"]).is_file():
            raise SystemExit(f"gfm-bench: encoder weights not found: {spec['checkpoint']}")
        variants = [spec["checkpoint"]]
        if spec["checkpoint"] is not None and not args.no_control:
            variants.append(None)  # the control row: same architecture, random weights
        for ckpt in variants:
            key = (spec["model"], ckpt)
            if key in seen:
                continue
            seen.add(key)
            build = partial(build_encoder, "geofm", spec["model"], ckpt)
            out.append((spec["model"], build, ckpt))
    return out


def _cmd_run(args) -> int:
    from .results import ResultsFile
    from .suites import RunPlan, default_cache_dir, run_suite, suite_entries

    entries = suite_entries(args.suite, args.datasets, args.protocols, args.label_fractions)
    if args.suite == "full" and args.data_root is None:
        raise SystemExit(
            "gfm-bench: --suite full reads the datasets from --data-root (one "
            "folder per dataset; `gfm-bench download NAME --root DIR` fetches one)"
        )
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()

    def load(entry):
        if args.suite == "mini":
            from .mini import load_mini

            return load_mini(entry.dataset, cache)
        from .datasets import load_bench_data

        return load_bench_data(
            entry.dataset, Path(args.data_root) / entry.dataset, modalities=entry.modalities
        )

    plan = RunPlan(
        entries=entries,
        encoders=_encoders(args),
        seeds=args.seeds,
        results=ResultsFile(args.output),
        resume=args.resume,
        lr_sweep=args.lr_sweep,
        device=args.device,
        progress=not args.no_progress,
        log=lambda msg: print(msg, flush=True),
    )
    try:
        counts = run_suite(plan, load)
    except FileExistsError as err:
        print(f"gfm-bench: {err}", file=sys.stderr)
        return 2
    print(
        f"finished: {counts['done']} runs written, {counts['skipped']} skipped "
        f"(already in {args.output})"
    )
    if args.report:
        from .report import write_report

        md = Path(args.report)
        out, fig = write_report(args.output, md, md.with_suffix(".png"))
        print(f"wrote {out} and {fig}")
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    figure = None if args.no_figure else (args.figure or Path(args.out).with_suffix(".png"))
    out, fig = write_report(args.results, args.out, figure, n_boot=args.bootstrap, title=args.title)
    print(f"wrote {out}" + (f" and {fig}" if fig else ""))
    print(Path(out).read_text())
    return 0


def _cmd_datasets(args) -> int:
    from .datasets import DATASETS
    from .mini import MINI_DATASETS

    print(
        "GFM-Bench datasets (read from their GFM-Bench file layout; `gfm-bench download "
        "NAME --root DIR` fetches one):"
    )
    for name, spec in DATASETS.items():
        print(f"  {name:<12} {spec.task:<15} card {spec.card:<22} {spec.url}")
        for layout in spec.layouts:
            mark = "verified" if layout.verified else "UNVERIFIED"
            print(f"      layout {layout.name:<9} [{mark}] {layout.status}")
    print("mini suite (real samples bundled with geofm): " + ", ".join(MINI_DATASETS))
    return 0


def _cmd_download(args) -> int:
    from geofm.data.download import DownloadError

    from .hub import download

    try:
        root = download(
            args.name,
            args.root,
            endpoint=args.endpoint,
            revision=args.revision,
            force=args.force,
            progress=not args.no_progress,
            deadline=args.timeout,
        )
    except DownloadError as err:  # the network's failure, said in one line: no traceback
        print(f"gfm-bench: {err}", file=sys.stderr)
        return 1
    print(f"{args.name} is ready in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .protocols import PROTOCOLS
    from .suites import SUITES

    parser = argparse.ArgumentParser(
        prog="gfm-bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate encoders on a suite, appending to a results CSV")
    run.add_argument("--suite", choices=sorted(SUITES), default="mini")
    run.add_argument(
        "--encoder",
        action="append",
        help="NAME, NAME:ENCODER_FILE or timm:NAME (repeatable; default "
        "less_vit_tiny at random initialisation)",
    )
    run.add_argument(
        "--no-control",
        action="store_true",
        help="do not add the random-initialisation row of each checkpoint",
    )
    run.add_argument("--timm-bands", nargs="+", help="bands a timm encoder takes, in order")
    run.add_argument("--datasets", nargs="+", help="only these datasets of the suite")
    run.add_argument("--protocols", nargs="+", choices=PROTOCOLS, help="only these protocols")
    run.add_argument(
        "--label-fractions", nargs="+", type=float, help="replace the suite's label fractions"
    )
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--output", required=True, help="results CSV (appended under a lock)")
    run.add_argument("--resume", action="store_true", help="skip runs already in --output")
    run.add_argument(
        "--lr-sweep", action="store_true", help="the paper's learning-rate sweeps (chosen on val)"
    )
    run.add_argument("--data-root", help="folder holding one GFM-Bench folder per dataset")
    run.add_argument(
        "--cache-dir",
        help="where the mini suite writes its dataset tree "
        "(default $GFM_BENCH_CACHE or ~/.cache/gfm_bench)",
    )
    run.add_argument("--device", default="cpu")
    run.add_argument("--report", help="also write this Markdown report (and a .png beside it)")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="Markdown table and figure of a results CSV")
    rep.add_argument("results")
    rep.add_argument("--out", required=True, help="Markdown file to write")
    rep.add_argument("--figure", help="figure path (default: --out with .png)")
    rep.add_argument("--no-figure", action="store_true")
    rep.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    rep.add_argument("--title", default="GFM-Bench results")
    rep.set_defaults(func=_cmd_report)

    ds = sub.add_parser("datasets", help="list the datasets")
    ds.set_defaults(func=_cmd_datasets)

    dl = sub.add_parser("download", help="fetch a dataset from the Hugging Face Hub")
    dl.add_argument("name")
    dl.add_argument("--root", required=True)
    dl.add_argument("--endpoint", help="Hub endpoint (default $HF_ENDPOINT or huggingface.co)")
    dl.add_argument(
        "--revision",
        help="branch, tag or commit of the Hub repository (default: the commit "
        "the dataset card pins, else main)",
    )
    dl.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up once the whole download has taken this long (default: no "
        "overall limit, 6 hours per file; a silent server is dropped after "
        "60 s either way)",
    )
    dl.add_argument("--force", action="store_true")
    dl.add_argument("--no-progress", action="store_true")
    dl.set_defaults(func=_cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"gfm-bench: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
