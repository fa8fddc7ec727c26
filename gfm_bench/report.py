"""``gfm-bench report``: the results file as a Markdown table and a figure.

Each cell is the mean over seeds of a run's headline metric, with a 95% bootstrap interval
(percentile method: the seeds' values resampled with replacement, ``n_boot`` times, the
2.5th and 97.5th percentiles of the resampled means). With three seeds the interval shows
the spread of those seeds and little more; the number of seeds is printed beside it. Rows
of the same encoder built from different checkpoints are kept apart (the checkpoint hash is
part of the row name), and a random initialisation is marked as such.

Published numbers (Si et al., 2025, GFM-Bench project page; :data:`PUBLISHED`) are printed beside
the datasets they belong to. They come from ViT-B models pretrained at scale, so they set
the scale of a full-suite result and are not comparable with the mini suite.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .results import HEADLINES, ResultsFile

__all__ = ["PUBLISHED", "Cell", "aggregate", "bootstrap_ci", "markdown", "figure", "write_report"]

#: (dataset, protocol) -> {model: published value}; fine-tune and linear-probe columns of
#: the GFM-Bench table (project page; arXiv v2 may differ slightly). BigEarthNet and So2Sat
#: use 10% of the training labels. Segmentation numbers are mIoU of UPerNet fine-tuning.
PUBLISHED: dict[tuple[str, str], dict[str, float]] = {
    ("eurosat", "finetune"): {
        "SatMAE ViT-B": 98.78,
        "CROMA ViT-B": 98.83,
        "SpectralGPT ViT-B": 97.94,
        "LESS ViT-B": 98.06,
    },
    ("eurosat", "linear_probe"): {
        "SatMAE ViT-B": 96.04,
        "CROMA ViT-B": 95.87,
        "SpectralGPT ViT-B": 90.57,
        "LESS ViT-B": 95.12,
    },
    ("bigearthnet", "finetune"): {
        "SatMAE ViT-B": 85.84,
        "CROMA ViT-B": 87.57,
        "SpectralGPT ViT-B": 83.78,
        "LESS ViT-B": 86.08,
    },
    ("bigearthnet", "linear_probe"): {
        "SatMAE ViT-B": 78.69,
        "CROMA ViT-B": 84.90,
        "SpectralGPT ViT-B": 73.29,
        "LESS ViT-B": 82.94,
    },
    ("so2sat", "finetune"): {
        "SatMAE ViT-B": 64.97,
        "CROMA ViT-B": 66.53,
        "SpectralGPT ViT-B": 61.63,
        "LESS ViT-B": 63.25,
    },
    ("so2sat", "linear_probe"): {
        "SatMAE ViT-B": 64.65,
        "CROMA ViT-B": 65.04,
        "SpectralGPT ViT-B": 57.49,
        "LESS ViT-B": 64.66,
    },
    ("segmunich", "upernet_finetune"): {
        "SatMAE ViT-B": 44.87,
        "CROMA ViT-B": 39.61,
        "SpectralGPT ViT-B": 44.73,
        "LESS ViT-B": 42.29,
    },
    ("dfc2020", "upernet_finetune"): {
        "SatMAE ViT-B": 52.84,
        "CROMA ViT-B": 49.48,
        "SpectralGPT ViT-B": 48.23,
        "LESS ViT-B": 45.60,
    },
    ("marida", "upernet_finetune"): {
        "SatMAE ViT-B": 54.33,
        "CROMA ViT-B": 43.04,
        "SpectralGPT ViT-B": 44.72,
        "LESS ViT-B": 55.64,
    },
}


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; one value gives ``(v, v)``."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


@dataclass(frozen=True)
class Cell:
    encoder: str
    dataset: str
    protocol: str
    label_fraction: float
    metric: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    ci: tuple[float, float]
    config_hash: str = ""

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))


def encoder_label(model: str, checkpoint_hash: str) -> str:
    if checkpoint_hash == "random-init":
        return f"{model} (random init)"
    return f"{model} @{checkpoint_hash[:8]}"


def aggregate(rows: Sequence[dict[str, str]], n_boot: int = 10000) -> list[Cell]:
    """Headline rows grouped by encoder, dataset, protocol and label fraction."""
    groups: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r["metric"] not in HEADLINES:
            continue
        key = (
            encoder_label(r["model"], r["checkpoint_hash"]),
            r["dataset"],
            r["protocol"],
            float(r["label_fraction"]),
            r["metric"],
            r["config_hash"],
        )
        groups[key].append((int(r["seed"]), float(r["value"])))
    cells = []
    for (enc, ds, proto, frac, metric, cfg), items in groups.items():
        items.sort()
        values = tuple(v for _, v in items)
        cells.append(
            Cell(
                enc,
                ds,
                proto,
                frac,
                metric,
                values,
                tuple(s for s, _ in items),
                bootstrap_ci(values, n_boot),
                cfg,
            )
        )
    cells.sort(key=lambda c: (c.dataset, c.protocol, c.label_fraction, c.encoder))
    return cells


_METRIC_NAMES = {"top1": "top-1 %", "micro_map": "micro mAP %", "miou": "mIoU %"}


def markdown(cells: Sequence[Cell]) -> str:
    """One table per dataset: encoder x (protocol, label fraction), mean [95% CI] (n)."""
    out = []
    for dataset in sorted({c.dataset for c in cells}):
        mine = [c for c in cells if c.dataset == dataset]
        metric = _METRIC_NAMES.get(mine[0].metric, mine[0].metric)
        out.append(f"### {dataset} ({metric})\n")
        out.append("| encoder | protocol | labels | config | seeds | mean | 95% CI (bootstrap) |")
        out.append("|---|---|---|---|---|---|---|")
        for c in mine:
            lo, hi = c.ci
            out.append(
                f"| {c.encoder} | {c.protocol} | {c.label_fraction:g} | "
                f"{c.config_hash[:6]} | {len(c.values)} | {c.mean:.2f} | "
                f"[{lo:.2f}, {hi:.2f}] |"
            )
        published = [
            (proto, PUBLISHED[(dataset, proto)])
            for proto in sorted({c.protocol for c in mine})
            if (dataset, proto) in PUBLISHED
        ]
        if published:
            out.append("")
            out.append("Published (Si et al. 2025, GFM-Bench; ViT-B, pretrained at scale):")
            out.append("")
            for proto, values in published:
                out.append(f"- {proto}: " + ", ".join(f"{m} {v:.2f}" for m, v in values.items()))
        out.append("")
    return "\n".join(out)


def figure(cells: Sequence[Cell], path: str | os.PathLike) -> Path:
    """Horizontal bars (mean, 95% CI whiskers, seeds as dots), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({c.dataset for c in cells})
    encoders = sorted({c.encoder for c in cells})
    colours = {e: plt.cm.tab10(i % 10) for i, e in enumerate(encoders)}
    heights = [
        len({(c.protocol, c.label_fraction, c.config_hash) for c in cells if c.dataset == d})
        for d in datasets
    ]
    fig, axes = plt.subplots(
        len(datasets),
        1,
        squeeze=False,
        layout="constrained",
        figsize=(8, 1.2 + sum(0.55 * h * len(encoders) for h in heights)),
        gridspec_kw={"height_ratios": [max(h, 1) for h in heights]},
    )
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        mine = [c for c in cells if c.dataset == dataset]
        groups = sorted({(c.protocol, c.label_fraction, c.config_hash) for c in mine})
        bar = 0.8 / len(encoders)
        # reversed: the first of cells with the same key is the one drawn
        by_key = {(c.protocol, c.label_fraction, c.config_hash, c.encoder): c for c in mine[::-1]}
        for gi, (proto, frac, cfg) in enumerate(groups):
            for ei, enc in enumerate(encoders):
                cell = by_key.get((proto, frac, cfg, enc))
                if cell is None:
                    continue
                y = gi + (ei - (len(encoders) - 1) / 2) * bar
                lo, hi = cell.ci
                ax.barh(
                    y,
                    cell.mean,
                    height=bar * 0.9,
                    color=colours[enc],
                    alpha=0.7,
                    label=enc if gi == 0 else None,
                )
                ax.errorbar(
                    cell.mean,
                    y,
                    xerr=[[cell.mean - lo], [hi - cell.mean]],
                    color="black",
                    capsize=3,
                    lw=1,
                )
                ax.scatter(cell.values, [y] * len(cell.values), s=10, color="black", zorder=3)
        several = len({(p, f) for p, f, _ in groups}) < len(groups)
        ax.set_yticks(
            range(len(groups)),
            [f"{p}\n{f:g} labels" + (f" ({c[:6]})" if several else "") for p, f, c in groups],
        )
        ax.set_xlabel(_METRIC_NAMES.get(mine[0].metric, mine[0].metric))
        ax.set_title(dataset)
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(encoders)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    results: str | os.PathLike,
    out: str | os.PathLike,
    figure_path: str | os.PathLike | None = None,
    n_boot: int = 10000,
    title: str = "GFM-Bench results",
) -> tuple[Path, Path | None]:
    """Write ``out`` (Markdown) and, unless ``figure_path`` is None, the figure."""
    rows = ResultsFile(results).rows()
    cells = aggregate(rows, n_boot)
    if not cells:
        raise ValueError(f"{results} holds no finished run to report")
    out = Path(out)
    fig = None
    if figure_path is not None:
        fig = figure(cells, figure_path)
    commits = sorted({r["git_commit"] for r in rows})
    text = [
        f"# {title}\n",
        f"From `{Path(results).name}`: {len(cells)} cells, "
        f"{sum(len(c.values) for c in cells)} runs; geofm commit(s) {', '.join(commits)}.",
        "Cells: mean over seeds, 95% percentile-bootstrap interval of that mean "
        f"({n_boot} resamples of the seeds). `config`: the first digits of the hash of "
        "the run's settings (rows with different settings are kept apart). A zero-width "
        "interval means the seeds agreed exactly: that protocol has no randomness at "
        "that label fraction (kNN on all labels).\n",
    ]
    if fig is not None:
        rel = os.path.relpath(fig, out.parent)
        text.append(f"![results]({rel})\n")
    text.append(markdown(cells))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text))
    return out, fig
