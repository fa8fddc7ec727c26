"""Suites (which datasets, protocols and settings) and the runner that fills a results file.

``mini``: the real data bundled with geofm (:mod:`gfm_bench.mini`), small enough to run on
two CPU cores in minutes. ``full``: the GFM-Bench datasets read from ``--data-root`` (one
folder per dataset, in the GFM-Bench layout), with the paper's settings.

The runner walks encoders x datasets x protocols x label fractions x seeds, skips the runs
already finished in the results file when resuming, and appends each run's rows as soon as
it ends, so an interruption loses at most the run in progress.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encoders import EncoderAdapter
from .protocols import PAPER_SWEEPS, BenchData, applicable, run_protocol
from .results import ResultsFile, RunKey, config_hash, file_hash

__all__ = ["Entry", "SUITES", "suite_entries", "RunPlan", "run_suite"]


@dataclass(frozen=True)
class Entry:
    """One dataset of a suite with its protocols, label fractions and protocol settings.

    ``modalities``: what the reader stacks (``("optical", "radar")`` for S2 + S1).
    ``val_fraction``: the share of the validation split kept (a fixed draw, seed 0), for the
    paper's "10% of train and val" on BigEarthNet and So2Sat.
    """

    dataset: str
    protocols: tuple[str, ...]
    label_fractions: tuple[float, ...] = (1.0,)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    modalities: tuple[str, ...] = ("optical",)
    val_fraction: float = 1.0

    def data_variant(self) -> dict[str, Any]:
        """What about the data differs from the defaults (part of each run's key)."""
        out: dict[str, Any] = {}
        if self.modalities != ("optical",):
            out["modalities"] = list(self.modalities)
        if self.val_fraction != 1.0:
            out["val_fraction"] = self.val_fraction
        return out


_GLOBAL = ("linear_probe", "knn", "finetune", "finetune_lora")
_SEG = ("upernet_frozen", "upernet_finetune")

SUITES: dict[str, tuple[Entry, ...]] = {
    "mini": (
        Entry(
            "eurosat_ms_mini",
            _GLOBAL,
            settings={
                "knn": {"ks": (1,)},  # one training scene per class
                "finetune": {"epochs": 5, "batch_size": 10, "lrs": (1e-4,)},
                "finetune_lora": {"epochs": 5, "batch_size": 10, "lrs": (1e-3,)},
            },
        ),
        Entry(
            "salinas_a_pixels",
            ("linear_probe", "knn"),
            label_fractions=(0.1, 1.0),
            settings={"knn": {"ks": (5,)}},
        ),
        Entry(
            "salinas_a_tiles",
            ("upernet_frozen",),
            settings={
                # the frozen encoder's maps are computed once; the head trains on them
                "upernet_frozen": {
                    "epochs": 40,
                    "batch_size": 4,
                    "lrs": (1e-3,),
                    "channels": 64,
                    "cache_features": True,
                },
            },
        ),
    ),
    # The paper's protocols (Si et al., 2025): fine-tuning 10 epochs (20 for EuroSAT and So2Sat),
    # linear probing 100 epochs at batch 1024; BigEarthNet and So2Sat use 10% of train.
    "full": (
        Entry(
            "eurosat",
            _GLOBAL,
            settings={"finetune": {"epochs": 20}, "finetune_lora": {"epochs": 20}},
        ),
        Entry(
            "bigearthnet",
            _GLOBAL,
            label_fractions=(0.1,),
            modalities=("optical", "radar"),
            val_fraction=0.1,
        ),
        Entry(
            "so2sat",
            _GLOBAL,
            label_fractions=(0.1,),
            val_fraction=0.1,
            settings={"finetune": {"epochs": 20}, "finetune_lora": {"epochs": 20}},
        ),
        Entry("segmunich", _SEG),
        Entry("dfc2020", _SEG, modalities=("optical", "radar")),
        Entry("marida", _SEG),
        Entry("nlcd_l", _SEG),
    ),
}


def suite_entries(
    suite: str,
    datasets: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    label_fractions: Sequence[float] | None = None,
) -> list[Entry]:
    """A suite's entries, narrowed to ``datasets``/``protocols``; ``label_fractions``
    replaces the suite's. Unknown names raise ``ValueError`` listing the valid ones."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    entries = list(SUITES[suite])
    known = [e.dataset for e in entries]
    if datasets:
        bad = [d for d in datasets if d not in known]
        if bad:
            raise ValueError(
                f"suite {suite} has no dataset {', '.join(bad)}; it has {', '.join(known)}"
            )
        entries = [e for e in entries if e.dataset in datasets]
    if protocols:
        every = {p for e in SUITES[suite] for p in e.protocols}
        bad = [p for p in protocols if p not in every]
        if bad:
            raise ValueError(
                f"suite {suite} runs no protocol {', '.join(bad)}; it runs "
                f"{', '.join(sorted(every))}"
            )
        entries = [
            dataclasses.replace(e, protocols=tuple(p for p in e.protocols if p in protocols))
            for e in entries
        ]
        entries = [e for e in entries if e.protocols]
    if label_fractions:
        entries = [
            dataclasses.replace(e, label_fractions=tuple(float(f) for f in label_fractions))
            for e in entries
        ]
    return entries


@dataclass
class RunPlan:
    """Everything a suite run needs besides the data."""

    entries: list[Entry]
    encoders: list[tuple[str, Callable[[], EncoderAdapter], str | None]]
    """(name, builder, checkpoint path or None) per encoder."""
    seeds: Sequence[int]
    results: ResultsFile
    resume: bool = False
    lr_sweep: bool = False
    device: str = "cpu"
    progress: bool = True
    log: Callable[[str], None] = print


def _settings(entry: Entry, protocol: str, lr_sweep: bool) -> dict[str, Any]:
    settings = dict(entry.settings.get(protocol, {}))
    if lr_sweep and protocol in PAPER_SWEEPS:
        settings["lrs"] = PAPER_SWEEPS[protocol]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _key_config(entry: Entry, settings: dict[str, Any]) -> dict[str, Any]:
    """What a run's config hash covers: the protocol settings and the data variant. (A
    random initialisation is drawn with the run's seed, which the key holds already.)"""
    variant = entry.data_variant()
    return {**settings, "data": variant} if variant else dict(settings)


def load_entry(entry: Entry, load_data: Callable[[Entry], BenchData]) -> BenchData:
    """The entry's data, with the validation split cut to ``val_fraction`` (seed 0)."""
    data = load_data(entry)
    if entry.val_fraction != 1.0:
        import numpy as np
        from torch.utils.data import Subset

        n = len(data.val)
        keep = max(1, round(entry.val_fraction * n))
        idx = np.sort(np.random.default_rng(0).choice(n, size=keep, replace=False))
        data = dataclasses.replace(data, val=Subset(data.val, idx.tolist()))
    return data


def run_suite(plan: RunPlan, load_data: Callable[[Entry], BenchData]) -> dict[str, int]:
    """Run every pending run of ``plan``; returns counts of runs done and skipped.

    ``load_data(entry)`` gives an entry's :class:`BenchData` (with its ``modalities``). An
    error in a run stops the suite; the runs finished before it stay in the file.

    Without ``resume`` a run already finished in the results file stops the suite before
    anything is computed (``FileExistsError``): nothing is lost or duplicated.
    """
    if plan.resume:
        dropped = plan.results.repair()
        if dropped:
            plan.log(f"resume: removed {dropped} rows of runs that were cut short")
    finished = plan.results.finished()
    hashes = [file_hash(ckpt) for _, _, ckpt in plan.encoders]
    if len(set(zip([n for n, _, _ in plan.encoders], hashes, strict=True))) < len(hashes):
        raise ValueError("the same encoder (name and weights) is listed twice")
    keys: list[RunKey] = []
    for (name, _, _), weights in zip(plan.encoders, hashes, strict=True):
        for entry, protocol in ((e, p) for e in plan.entries for p in e.protocols):
            config = config_hash(_key_config(entry, _settings(entry, protocol, plan.lr_sweep)))
            keys += [
                RunKey(name, weights, entry.dataset, protocol, float(fraction), int(seed), config)
                for fraction in entry.label_fractions
                for seed in plan.seeds
            ]
    done_already = [k for k in keys if k.run_id in finished]
    if done_already and not plan.resume:
        raise FileExistsError(
            f"{len(done_already)} of these {len(keys)} runs are already in "
            f"{plan.results.path}; pass --resume to skip them, or write to another --output"
        )
    counts = {"done": 0, "skipped": len(done_already)}
    pending = {k.run_id for k in keys if k.run_id not in finished}
    plan.log(
        f"{len(keys)} runs: {len(pending)} to do, {len(done_already)} already in "
        f"{plan.results.path}"
    )
    data_cache: dict[str, BenchData] = {}
    for (name, build, _), weights in zip(plan.encoders, hashes, strict=True):
        todo = [
            k
            for k in keys
            if (k.model, k.checkpoint_hash) == (name, weights) and k.run_id in pending
        ]
        # A random initialisation is drawn anew for each seed (its spread then includes the
        # initialisation's); weights from a file are built once for every seed.
        if weights == "random-init":
            groups = {
                s: [k for k in todo if k.seed == s] for s in dict.fromkeys(k.seed for k in todo)
            }
        else:
            groups = {None: todo}
        for init_seed, group in groups.items():
            adapter = build() if init_seed is None else build(seed=init_seed)
            done = _run_group(plan, group, adapter, name, weights, load_data, data_cache)
            counts = {k: v + done[k] for k, v in counts.items()}
            del adapter
    return counts


def _run_group(
    plan: RunPlan,
    todo: list[RunKey],
    adapter: EncoderAdapter,
    name: str,
    weights: str,
    load_data,
    data_cache: dict,
) -> dict[str, int]:
    """The runs of one built encoder, dataset by dataset."""
    counts = {"done": 0, "skipped": 0}
    feature_cache: dict = {}
    for entry in plan.entries:
        mine = [k for k in todo if k.dataset == entry.dataset]
        if not mine:
            continue
        if entry.dataset not in data_cache:
            data_cache[entry.dataset] = load_entry(entry, load_data)
        data = data_cache[entry.dataset]
        for key in mine:
            if not applicable(key.protocol, data.task):
                raise ValueError(
                    f"suite entry {entry.dataset} lists {key.protocol}, which "
                    f"does not apply to a {data.task} dataset"
                )
            settings = _settings(entry, key.protocol, plan.lr_sweep)
            label = (
                f"{name} @{weights[:8]} | {key.dataset} | {key.protocol} | "
                f"{key.label_fraction:g} | seed {key.seed}"
            )
            start = time.perf_counter()
            outcome = run_protocol(
                key.protocol,
                data,
                adapter,
                label_fraction=key.label_fraction,
                seed=key.seed,
                settings=settings,
                device=plan.device,
                progress=plan.progress,
                feature_cache=feature_cache,
            )
            seconds = time.perf_counter() - start
            extra = [] if outcome.val is None else [(f"val_{outcome.val.name}", outcome.val.value)]
            names = data.classes if len(data.classes) == len(outcome.test.per_class) else None
            per_class = outcome.test.per_class_dict(names).items()
            extra += [(f"{outcome.test.name}/{cls}", value) for cls, value in per_class]
            config = {
                "settings": settings,
                "data": entry.data_variant(),
                "init_seed": key.seed if weights == "random-init" else None,
                "chosen": outcome.settings,
                "adapter": adapter.describe(),
            }
            written = plan.results.append_run(
                key, (outcome.test.name, outcome.test.value), extra, seconds, config
            )
            counts["done" if written else "skipped"] += 1
            plan.log(
                f"{label}: {outcome.test.name} {outcome.test.value:.2f} "
                f"(val {outcome.val.value:.2f}) in {seconds:.1f} s"
                + ("" if written else " [already written by another process]")
            )
    return counts


def default_cache_dir() -> Path:
    """Where the mini suite writes its GFM-Bench tree of the bundled samples."""
    return Path(os.environ.get("GFM_BENCH_CACHE", Path.home() / ".cache" / "gfm_bench"))
