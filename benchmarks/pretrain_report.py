"""Report on a `geofm pretrain` run: did the masked-reconstruction loss fall, and did the
encoder learn features a kNN probe can use on EuroSAT scenes it never saw?

1. Loss: first and last epoch of ``val/loss`` and ``train/loss_epoch`` from the run's
   ``metrics.csv``.
2. kNN probe: global-CLS features of labelled EuroSAT-MS scenes, leave-one-out cosine kNN
   (k = 5, votes weighted by similarity), for the pretrained encoder (``last.ckpt``) and for the same architecture at
   random initialisation (seed 0). Scenes the run pretrained on (the bundled samples) are
   excluded, so the probe set is held out.

Usage:
    python benchmarks/pretrain_report.py --run outputs/pretrain/quickstart/logs/version_0 \
        --eurosat ../shared/data/eurosat_ms --record docs/pretraining.md
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geofm.data.datasets import SceneFolderDataset  # noqa: E402
from geofm.data.sample import collate_samples  # noqa: E402
from geofm.data.transforms import MAEScaleNormalize  # noqa: E402
from geofm.models import create_model  # noqa: E402
from geofm.tasks.export import encoder_from_checkpoint  # noqa: E402
from geofm.tasks.probe import extract_features, knn_leave_one_out  # noqa: E402


def epoch_losses(metrics: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {"val/loss": [], "train/loss_epoch": []}
    with metrics.open() as f:
        for row in csv.DictReader(f):
            for key, points in out.items():
                if row.get(key):
                    points.append((int(row["epoch"]), float(row[key])))
    return out


def held_out_eurosat(folder: Path) -> tuple[SceneFolderDataset, list[int], int]:
    ds = SceneFolderDataset(
        folder, card="eurosat_ms", transforms=MAEScaleNormalize.from_card("eurosat_ms")
    )
    bundled = {p.name for p in (REPO / "datasets" / "samples" / "eurosat_ms").rglob("*.tif")}
    keep = [i for i, p in enumerate(ds.files) if Path(p).name not in bundled]
    return ds, keep, len(ds) - len(keep)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run's version folder")
    parser.add_argument("--eurosat", type=Path, default=REPO / "datasets/samples/eurosat_ms")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args(argv)

    losses = epoch_losses(args.run / "metrics.csv")
    name, kwargs, pretrained, ckpt = encoder_from_checkpoint(args.run / "checkpoints" / "last.ckpt")
    torch.manual_seed(0)
    random_init = create_model(name, **kwargs)

    dataset, keep, excluded = held_out_eurosat(args.eurosat)
    if not keep:
        raise SystemExit(
            f"every scene under {args.eurosat} was used in pretraining; point "
            "--eurosat at other EuroSAT-MS scenes"
        )
    loader = DataLoader(Subset(dataset, keep), batch_size=16, collate_fn=collate_samples)
    scores = {}
    for label, model in (("pretrained", pretrained), ("random init", random_init)):
        feats, labels = extract_features(model, loader)
        scores[label] = knn_leave_one_out(feats, labels, k=args.k)

    lines = [
        "# Pretraining: the quickstart run",
        "",
        f"`python benchmarks/pretrain_report.py --run {args.run} --eurosat {args.eurosat}` on "
        f"{time.strftime('%Y-%m-%d')}; model `{name}` {kwargs}, "
        f"{ckpt['epoch'] + 1} epochs, {ckpt['global_step']} steps.",
        "",
        "## Masked-reconstruction loss",
        "",
        "| loss | first epoch | last epoch | last / first |",
        "|---|---|---|---|",
    ]
    for key, points in losses.items():
        if points:
            (e0, v0), (e1, v1) = points[0], points[-1]
            lines.append(
                f"| {key} | {v0:.4f} (epoch {e0}) | {v1:.4f} (epoch {e1}) | {v1 / v0:.2f} |"
            )
    lines += [
        "",
        f"## kNN probe on held-out EuroSAT-MS scenes (k = {args.k}, cosine, similarity-weighted"
        " votes, leave-one-out)",
        "",
        f"{len(keep)} labelled scenes from `{args.eurosat}` ({excluded} excluded because the "
        "run pretrained on them); global-CLS features of the frozen encoder.",
        "",
        "| encoder | top-1 |",
        "|---|---|",
    ]
    for label, acc in scores.items():
        lines.append(f"| {label} | {100 * acc:.1f}% |")
    chance = 100 / dataset.num_classes
    gain = 100 * (scores["pretrained"] - scores["random init"])
    lines += [
        "",
        f"Chance is {chance:.0f}%. The pretrained encoder is {gain:+.1f} points from "
        "the same architecture at random initialisation; with "
        f"{len(keep)} scenes one scene is {100 / len(keep):.1f} points, so read "
        "differences of a few points as noise.",
    ]
    figures = []
    if args.record:
        folder = args.record.parent / args.record.stem
        folder.mkdir(parents=True, exist_ok=True)
        for src in [
            args.run / "loss_curve.png",
            *sorted((args.run / "reconstructions").glob("*.png"))[-2:],
        ]:
            if src.is_file():
                shutil.copy(src, folder / src.name)
                figures.append(f"![{src.stem}]({folder.name}/{src.name})")
    if figures:
        lines += ["", "## Figures", "", *figures]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        args.record.write_text(text)
        print(f"recorded in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
