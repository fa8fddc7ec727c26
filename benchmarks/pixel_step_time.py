"""Time one training step of a pixel recipe's model in float32 and under bfloat16 autocast.

What ``train.precision: bf16-mixed`` buys on this machine's CPU, before a whole run is spent
on it: the recipe's model (``configs/classify/lola_*.yaml``) trained on one batch of random
``components x patch x patch`` PCA windows, AdamW and cross-entropy, at the recipe's batch
size, on the CPU. Only the model's step is timed (forward, backward, optimiser): a run also
crops, augments and loads windows and validates every epoch, so it gains somewhat less
(about 1.7 times on one thread for Indian Pines in docs/pixel_classification.md, against
1.8 times here). The two precisions alternate, ``--repeats`` times each, and the fastest
mean of each is printed. bfloat16 is fast only where the CPU has bfloat16 arithmetic
(AVX-512 BF16 or AMX; the flags are printed); elsewhere it is emulated and slower than
float32.

``--variant NAME ...`` times variants of ``benchmarks/pixel_recipe_variants.yaml`` (each
over the config's file, as ``pixel_recipe_search.py`` builds them) beside the recipe, in
float32 only, and prints each one's time as a multiple of the recipe's: what a cheaper
architecture saves, before its validation runs are spent.

    python benchmarks/pixel_step_time.py                      # the Indian Pines recipe
    python benchmarks/pixel_step_time.py --threads 1 --steps 20
    python benchmarks/pixel_step_time.py --threads 1 --variant stem4816
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
import yaml

from geofm.tasks.pixel_models import build_classifier
from geofm.tasks.pixel_protocol import cpu_bf16_flags
from geofm.tasks.pixel_recipe import PixelRecipe, load_recipe, merged

ROOT = Path(__file__).resolve().parents[1]
K = TypeVar("K")


def step_seconds(model: torch.nn.Module, batch: int, bf16: bool, steps: int, warmup: int) -> float:
    """Mean seconds of a forward, backward and AdamW step on random reduced windows."""
    k, p = model.reduction.components, model.patch
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, k, p, p, generator=gen)
    y = torch.randint(0, model.num_classes, (batch,), generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model.head(model.forward_reduced(x)), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=ROOT / "configs/classify/lola_indian_pines.yaml"
    )
    parser.add_argument(
        "--bands",
        type=int,
        default=200,
        help="the scene's bands (Indian Pines: 200; they "
        "only size the PCA, the step sees its components)",
    )
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the two")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--variant",
        nargs="+",
        default=[],
        metavar="NAME",
        help="time these variants beside the recipe, in float32",
    )
    parser.add_argument(
        "--variants", type=Path, default=ROOT / "benchmarks/pixel_recipe_variants.yaml"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.config)
    if args.variant:
        return time_variants(args, recipe)
    batch = recipe.train["batch_size"]
    times = fastest({bf16: (recipe, bf16) for bf16 in (False, True)}, args)
    kw, flags = recipe.model["kwargs"], cpu_bf16_flags()
    print(
        f"{recipe.model['name']} {kw}, batch {batch}, {args.bands} bands, "
        f"{torch.get_num_threads()} CPU threads, fastest of {args.repeats}; "
        f"CPU bf16 flags: {', '.join(flags) if flags else 'none' if flags == [] else 'unknown'}"
    )
    print(f"float32:         {times[False] * 1e3:7.1f} ms per step")
    print(
        f"bfloat16 (mixed): {times[True] * 1e3:7.1f} ms per step, {times[False] / times[True]:.2f}x as fast"
    )
    return 0


def fastest(runs: dict[K, tuple[PixelRecipe, bool]], args: argparse.Namespace) -> dict[K, float]:
    """The fastest mean step seconds of each ``(recipe, bf16)`` in ``runs``, the runs
    alternated ``args.repeats`` times, each on a fresh model of the same seed."""
    times: dict[K, float] = {}
    for _ in range(args.repeats):
        for key, (recipe, bf16) in runs.items():
            torch.manual_seed(0)
            model, _ = build_classifier(recipe, args.bands, args.classes)
            took = step_seconds(model, recipe.train["batch_size"], bf16, args.steps, args.warmup)
            times[key] = min(times.get(key, took), took)
    return times


def time_variants(args: argparse.Namespace, recipe: PixelRecipe) -> int:
    """Float32 step times of the recipe and of ``args.variant``, alternated
    ``args.repeats`` times, the fastest of each; each as a multiple of the recipe's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pixel_recipe_search import read_variants

    known = dict(read_variants(args.variants))
    unknown = [n for n in args.variant if n not in known]
    if unknown:
        raise SystemExit(
            f"{args.variants} has no variant {', '.join(unknown)}; it has {', '.join(known)}"
        )
    config = yaml.safe_load(args.config.read_text())
    recipes = {"recipe": recipe}
    recipes.update({n: load_recipe(merged(config, known[n])) for n in args.variant})
    times = fastest({name: (r, False) for name, r in recipes.items()}, args)
    print(
        f"float32, {args.bands} bands, {torch.get_num_threads()} CPU threads, "
        f"fastest of {args.repeats}; the recipe: {args.config.name}"
    )
    for name, r in recipes.items():
        print(
            f"{name:>16}: {times[name] * 1e3:7.1f} ms per step, "
            f"{times[name] / times['recipe']:.2f}x the recipe's "
            f"(batch {r.train['batch_size']}, {r.model['kwargs']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
