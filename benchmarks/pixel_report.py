"""Markdown tables from ``geofm classify-pixels`` result files, for docs/pixel_classification.md.

    python benchmarks/pixel_report.py docs/pixel_classification/salinas_a_random.csv ...

One table per file: a row per method and seed (OA, AA, kappa in percent, trainable
parameters, training seconds), then mean ± sample standard deviation, then the per-class
accuracy of the means (``-`` for a class the split left out on every seed, the number of
seeds beside a mean over fewer than all), and, paired by seed, on how many seeds the first
method beats each of the others and by how much on average, with a 95% t-interval.
``--against OLD.csv`` (one per CSV, in order) adds each method against itself in an
earlier run of the same protocol, paired the same way: what a change of recipe did.

    python benchmarks/pixel_report.py --group "Salinas-A to Indian Pines, 5%" a.csv b.csv \
        --group ... --plot transfer.png

With ``--group`` (transfer runs), one summary table instead: a row per method of the
group's files (a method that starts from a base is named with how it took the base's PCA,
``matched`` or ``refit``), OA and AA as mean ± sample standard deviation, trainable
parameters and training seconds; ``--plot`` draws the mean OA of each with its spread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from geofm.tasks.pixel_results import mean_interval, read_rows


def _scored(value: str | None) -> bool:
    # a class a disjoint split left out has no test pixel, a single seed no spread: no value
    return value not in ("", None, "nan")


def _pct(value: str) -> str:
    return f"{100 * float(value):.2f}" if _scored(value) else "-"


def table(path: Path, rows: list[dict]) -> str:
    """The results CSV ``path`` (its rows ``rows``) as the docs' tables."""
    classes = [k[4:] for k in rows[0] if k.startswith("acc_")]
    seeds = [r for r in rows if r["seed"] not in ("mean", "std")]
    means = {r["method"]: r for r in rows if r["seed"] == "mean"}
    stds = {r["method"]: r for r in rows if r["seed"] == "std"}
    split, fraction = rows[0]["split"], rows[0]["train_fraction"]
    sizes = list(
        dict.fromkeys(
            "/".join(r[k] for k in ("n_train", "n_val", "n_test"))
            for r in seeds
            if r["method"] == seeds[0]["method"]
        )
    )
    out = [
        f"**{path.name}**: {split} split, train fraction {fraction}; pixels per part "
        f"(train/val/test, by seed) {', '.join(sizes)}.",
        "",
        "| method | seed | OA % | AA % | kappa | trainable params | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in seeds:
        params = f"{int(float(r['trainable_params'])):,}" if r["trainable_params"] else "-"
        out.append(
            f"| {r['method']} ({r['mode']}) | {r['seed']} | {_pct(r['oa'])} | "
            f"{_pct(r['aa'])} | {float(r['kappa']):.4f} | {params} | "
            f"{float(r['train_seconds']):.1f} |"
        )
    for method, m in means.items():
        s = stds[method]
        params = f"{int(float(m['trainable_params'])):,}" if m["trainable_params"] else "-"
        out.append(
            f"| **{method} ({m['mode']})** | mean ± std | **{_pct(m['oa'])} ± "
            f"{_pct(s['oa'])}** | {_pct(m['aa'])} ± {_pct(s['aa'])} | "
            f"{float(m['kappa']):.4f} ± "
            f"{float(s['kappa']) if s['kappa'] else float('nan'):.4f} | {params} | "
            f"{float(m['train_seconds']):.1f} |"
        )
    out += ["", "| class | " + " | ".join(means) + " |", "|---|" + "---|" * len(means)]

    def class_mean(method: str, c: str) -> str:
        # a class a disjoint split left out on some seeds: its mean is over the others
        scored = [r for r in seeds if r["method"] == method]
        have = sum(_scored(r[f"acc_{c}"]) for r in scored)
        text = _pct(means[method][f"acc_{c}"])
        return text if have in (0, len(scored)) else f"{text} ({have} of {len(scored)} seeds)"

    for c in classes:
        out.append(f"| {c} | " + " | ".join(class_mean(m, c) for m in means) + " |")
    methods = list(means)
    by_seed = oa_by_seed(rows)
    a = methods[0]
    if len(methods) >= 2:
        out.append("")
    for b in methods[1:]:
        out.append(f"{a} against {b}: {paired(by_seed.get(a, {}), by_seed.get(b, {}))}")
    return "\n".join(out) + "\n"


def oa_by_seed(rows: list[dict]) -> dict[str, dict[str, float]]:
    """``{method: {seed: OA}}`` of a results file's per-seed rows."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["seed"] not in ("mean", "std"):
            out.setdefault(r["method"], {})[r["seed"]] = float(r["oa"])
    return out


def paired(a: dict[str, float], b: dict[str, float]) -> str:
    """On how many of the seeds both have ``a`` is higher (and on which the two are level),
    and the mean of ``a - b`` over them in points with its 95% t-interval (Student's t
    with n - 1 degrees of freedom; none from one seed)."""
    both = [s for s in a if s in b]
    if not both:
        return "no seed in common."
    wins = [s for s in both if a[s] > b[s]]
    level = [s for s in both if a[s] == b[s]]
    diff = np.array([100 * (a[s] - b[s]) for s in both])

    def points(x: float) -> str:
        return f"{round(x, 2) + 0.0:+.2f}"  # no "-0.00" from rounding error

    ties = f", level on {len(level)} ({', '.join(level)})" if level else ""
    text = (
        f"higher OA on {len(wins)} of {len(both)} seeds ({', '.join(wins) or 'none'}){ties}; "
        f"mean difference {points(diff.mean())} points"
    )
    _, low, high = mean_interval(diff)
    if low is None or high is None:
        return text + "."
    return text + f", 95% t-interval {points(low)} to {points(high)}."


def _parts(rows: list[dict]) -> dict[str, set[str]]:
    """Per seed, the sizes of its parts (``train/val/test`` pixels) in a results file."""
    out: dict[str, set[str]] = {}
    for r in rows:
        if r["seed"] not in ("mean", "std"):
            out.setdefault(r["seed"], set()).add(
                "/".join(r[k] for k in ("n_train", "n_val", "n_test"))
            )
    return out


def against(path: Path, new_rows: list[dict], old: Path) -> str:
    """Each method of ``path`` (its rows ``new_rows``) against the same method in ``old``
    (the same protocol run with an earlier recipe), paired by seed. Files whose splits
    differ are refused."""
    old_rows = read_rows(old)
    for key in ("split", "train_fraction"):
        mine, theirs = {r[key] for r in new_rows}, {r[key] for r in old_rows}
        if mine != theirs:
            raise SystemExit(
                f"{path} and {old} are not the same protocol: {key} {sorted(mine)} "
                f"against {sorted(theirs)}"
            )
    # a seed's parts (train/val/test pixels) must be the same size in both
    new_parts, old_parts = _parts(new_rows), _parts(old_rows)
    differ = sorted(
        f"seed {seed}: {part}"
        for seed in new_parts.keys() & old_parts.keys()
        for part in new_parts[seed] ^ old_parts[seed]
    )
    if differ:
        raise SystemExit(f"{path} and {old} split the same seed differently: {'; '.join(differ)}")
    new_oa, old_oa = oa_by_seed(new_rows), oa_by_seed(old_rows)
    shared = [m for m in new_oa if m in old_oa]
    if not shared:
        raise SystemExit(f"{path} and {old} have no method in common")
    return "\n".join(
        f"{m} of {path} against {m} of {old}: {paired(new_oa[m], old_oa[m])}" for m in shared
    )


def _label(row: dict, entries: list[dict]) -> str:
    """``method (mode)``, with the modules LoRA trains in full beside its factors and the
    base's PCA for a method that starts from a base."""
    mode = row["mode"]
    if mode == "lora":
        trained = {", ".join(e["recipe"]["model"]["lora"].get("train") or []) for e in entries} - {
            ""
        }
        mode += "".join(f" + {t}" for t in sorted(trained))
    label = f"{row['method']} ({mode})"
    if row["mode"] in ("lora", "finetune"):
        pca = {e["recipe"]["model"].get("base_pca", "refit") for e in entries}
        label += f", PCA {'/'.join(sorted(pca))}"
    return label


def summary(groups: list[list[str]]) -> tuple[str, list[tuple[str, list[tuple]]]]:
    """One table over ``groups`` (``[name, csv, ...]`` each) and what :func:`plot` draws:
    per group, ``(label, OA mean, OA std)`` of each method, in percent."""
    out = [
        "| setting | method | OA % | AA % | seeds | trainable params | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    drawn = []
    for name, *paths in groups:
        bars = []
        for path in map(Path, paths):
            rows = read_rows(path)
            entries = json.loads(path.with_suffix(".json").read_text())
            for m in (r for r in rows if r["seed"] == "mean"):
                s = next(r for r in rows if r["seed"] == "std" and r["method"] == m["method"])
                mine = [e for e in entries if e["method"] == m["method"]]
                label = _label(m, mine)
                params = f"{int(float(m['trainable_params'])):,}" if m["trainable_params"] else "-"
                out.append(
                    f"| {name} | {label} | {_pct(m['oa'])} ± {_pct(s['oa'])} | "
                    f"{_pct(m['aa'])} ± {_pct(s['aa'])} | {len(mine)} | {params} | "
                    f"{float(m['train_seconds']):.1f} |"
                )
                std = float(s["oa"]) if _scored(s["oa"]) else 0.0
                bars.append((label, 100 * float(m["oa"]), 100 * std))
        drawn.append((name, bars))
    return "\n".join(out) + "\n", drawn


def plot(drawn: list[tuple[str, list[tuple]]], path: Path) -> None:
    """One panel per group: each method's mean OA, its spread over seeds as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(drawn))
    rows = -(-len(drawn) // cols)
    tall = 0.45 * max(len(b) for _, b in drawn) + 1.3
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, tall * rows), squeeze=False)
    for ax in axes.flat[len(drawn) :]:
        ax.axis("off")
    for ax, (name, bars) in zip(axes.flat, drawn, strict=False):
        y = range(len(bars))
        ax.barh(
            list(y),
            [b[1] for b in bars],
            xerr=[b[2] for b in bars],
            color="#4c72b0",
            ecolor="black",
            capsize=3,
        )
        for i, b in enumerate(bars):
            ax.text(
                b[1] - b[2] - 1.5,
                i,
                f"{b[1]:.1f}",
                va="center",
                ha="right",
                color="white",
                fontsize=8,
            )
        ax.set_yticks(list(y), [b[0] for b in bars], fontsize=8)
        ax.set_ylim(len(bars) - 0.5, -0.5)  # the first method on top
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("test OA % (mean ± std over seeds; the axis may start above 0)", fontsize=8)
        # from a round number below the lowest bar, so that close results stay apart
        low = min(b[1] - b[2] for b in bars)
        ax.set_xlim(max(0.0, 10 * (low // 10) - 10) if low > 60 else 0.0, 100)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="*", type=Path)
    parser.add_argument(
        "--group",
        nargs="+",
        action="append",
        metavar=("NAME", "CSV"),
        help="a setting's name and its result CSVs: one summary table over the groups",
    )
    parser.add_argument("--plot", type=Path, help="with --group: a figure of the summary")
    parser.add_argument(
        "--against",
        type=Path,
        action="append",
        metavar="CSV",
        help="an earlier run of the same protocol, one per CSV in order: each method "
        "compared with itself there, paired by seed",
    )
    args = parser.parse_args(argv)
    if args.group:
        short = [g for g in args.group if len(g) < 2]
        if args.against:
            parser.error("--against pairs result CSVs; it does not go with --group")
        if short or args.csv:
            parser.error("--group takes a name and at least one CSV; no other CSVs beside it")
        text, drawn = summary(args.group)
        print(text)
        if args.plot:
            plot(drawn, args.plot)
        return 0
    if args.plot:
        parser.error("--plot draws a --group summary")
    if not args.csv:
        parser.error("give result CSVs, or --group NAME CSV ...")
    if args.against and len(args.against) != len(args.csv):
        parser.error(
            f"--against takes one earlier CSV per CSV: {len(args.csv)} CSVs, "
            f"{len(args.against)} --against"
        )
    rows = [read_rows(p) for p in args.csv]
    parts = [table(p, r) for p, r in zip(args.csv, rows, strict=True)]
    for i, old in enumerate(args.against or []):
        parts[i] += "\n" + against(args.csv[i], rows[i], old) + "\n"
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
