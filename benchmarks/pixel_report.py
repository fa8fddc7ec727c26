"""Markdown tables from ``geofm classify-pixels`` result files, for docs/pixel_classification.md.

    python benchmarks/pixel_report.py docs/pixel_classification/salinas_a_random.csv ...

One table per file: a row per method and seed (OA, AA, kappa in percent, trainable
parameters, training seconds), then mean ± sample standard deviation, then the per-class
accuracy of the means (``-`` for a class the split left out on every seed, the number of
seeds beside a mean over fewer than all), and on how many seeds the first method beats
each of the others.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _pct(value: str) -> str:
    # a class a disjoint split left out has no test pixel: no accuracy
    return "-" if value in ("", None, "nan") else f"{100 * float(value):.2f}"


def table(path: Path) -> str:
    rows = list(csv.DictReader(open(path)))
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
        have = sum(r[f"acc_{c}"] not in ("", None, "nan") for r in scored)
        text = _pct(means[method][f"acc_{c}"])
        return text if have in (0, len(scored)) else f"{text} ({have} of {len(scored)} seeds)"

    for c in classes:
        out.append(f"| {c} | " + " | ".join(class_mean(m, c) for m in means) + " |")
    methods = list(means)
    by_seed: dict[str, dict[str, float]] = {}
    for r in seeds:
        by_seed.setdefault(r["seed"], {})[r["method"]] = float(r["oa"])
    a = methods[0]
    if len(methods) >= 2:
        out.append("")
    for b in methods[1:]:
        both = {s: v for s, v in by_seed.items() if a in v and b in v}
        wins = [s for s, v in both.items() if v[a] > v[b]]
        out.append(
            f"{a} has a higher OA than {b} on {len(wins)} of {len(both)} seeds "
            f"({', '.join(wins) or 'none'})."
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("\n".join(table(p) for p in args.csv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
