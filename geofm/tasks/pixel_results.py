"""Results of the pixel-classification protocol: one row per method and seed, mean and
sample standard deviation over seeds, as a CSV with a JSON of confusion matrices and run
details beside it (from which an interrupted run resumes)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from geofm.data.outputs import write_atomic
from geofm.tasks.metrics import ClassificationMetrics, confusion_metrics
from geofm.tasks.pixel_recipe import PixelRecipe

__all__ = [
    "SeedResult",
    "jsonable",
    "mean_interval",
    "read_results",
    "read_rows",
    "summarise",
    "write_results",
]

#: what the mean and std rows of :func:`summarise` are grouped by
GROUP_KEYS = ("method", "mode", "split", "train_fraction")


@dataclass
class SeedResult:
    """One method on one split and seed."""

    method: str
    mode: str
    split: str
    train_fraction: float
    seed: int
    metrics: ClassificationMetrics
    trainable_params: int | None
    total_params: int | None
    train_seconds: float
    counts: dict[str, list[int]]
    details: dict[str, Any] = field(default_factory=dict)

    def row(self, classes: Sequence[str]) -> dict[str, Any]:
        row = {k: getattr(self, k) for k in (*GROUP_KEYS, "seed")}
        row.update({k: round(v, 6) for k, v in self.metrics.as_dict(classes).items()})
        row.update(
            {
                "trainable_params": self.trainable_params,
                "total_params": self.total_params,
                "train_seconds": round(self.train_seconds, 2),
                "n_train": sum(self.counts["train"]),
                "n_val": sum(self.counts["val"]),
                "n_test": sum(self.counts["test"]),
            }
        )
        return row


def summarise(results: Sequence[SeedResult], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Per-seed rows, then a ``mean`` and a ``std`` (sample standard deviation; empty with a
    single seed) row per (method, mode, split, train fraction)."""
    rows = [r.row(classes) for r in results]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP_KEYS), []).append(row)
    out = list(rows)
    numeric = [k for k in rows[0] if k not in (*GROUP_KEYS, "seed")] if rows else []
    for group, members in groups.items():
        for stat in ("mean", "std"):
            row: dict[str, Any] = {**dict(zip(GROUP_KEYS, group, strict=True)), "seed": stat}
            for key in numeric:
                values = [m[key] for m in members if m[key] is not None]
                if not values:
                    row[key] = None
                    continue
                arr = np.asarray(values, dtype=np.float64)
                finite = arr[~np.isnan(arr)]
                if stat == "mean":
                    # a class the split left out on every seed: nan, as on each seed
                    row[key] = round(float(finite.mean()), 6) if len(finite) else float("nan")
                else:
                    # one seed has no spread: left empty rather than a misleading 0
                    row[key] = round(float(np.std(finite, ddof=1)), 6) if len(finite) > 1 else None
            out.append(row)
    return out


def mean_interval(
    values: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """The mean of ``values`` (for example paired differences over seeds) and its two-sided
    ``level`` t-interval (Student's t with n - 1 degrees of freedom); no interval from one
    value."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"need a non-empty list of values, got shape {arr.shape}")
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, None, None
    import scipy.stats  # here: reading results needs no scipy

    half = float(scipy.stats.t.ppf(0.5 + level / 2, len(arr) - 1) * arr.std(ddof=1))
    half /= float(np.sqrt(len(arr)))
    return mean, mean - half, mean + half


def write_results(
    path: Path,
    results: Sequence[SeedResult],
    classes: Sequence[str],
    recipe: PixelRecipe | None = None,
) -> list[dict[str, Any]]:
    """The CSV (per seed, then mean and std) and a JSON beside it with the confusion
    matrices, per-run details and (``recipe``) the recipe, from which :func:`read_results`
    can rebuild the results. Each file is replaced atomically. Returns the rows."""
    rows = summarise(results, classes)

    def write_csv(part: Path) -> None:
        with open(part, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    recipe_dict = None if recipe is None else jsonable(recipe.as_dict())
    detail = [
        {
            "method": r.method,
            "mode": r.mode,
            "split": r.split,
            "seed": r.seed,
            "train_fraction": r.train_fraction,
            "classes": list(classes),
            "confusion": r.metrics.confusion.tolist(),
            "counts": r.counts,
            "trainable_params": r.trainable_params,
            "total_params": r.total_params,
            "train_seconds": r.train_seconds,
            "recipe": recipe_dict,
            "details": jsonable(r.details),
        }
        for r in results
    ]
    write_atomic(path, write_csv)
    write_atomic(
        path.with_suffix(".json"), lambda part: part.write_text(json.dumps(detail, indent=1))
    )
    return rows


def read_rows(path: Path, missing_ok: bool = False) -> list[dict[str, str]]:
    """The rows of a results CSV (:func:`write_results`, or the recipe search's) as
    strings, keyed by the header; ``missing_ok``: no file gives no rows instead of an
    error."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_results(path: Path, recipe: PixelRecipe, train_fraction: float) -> list[SeedResult]:
    """The results a :func:`write_results` JSON holds, to resume that run; refused unless
    they were made with this recipe (and so its split) and training share."""
    path = Path(path)
    split = recipe.split["kind"]
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not a classify-pixels results JSON ({err}); move it "
            "away or run without --resume"
        ) from err
    mine = jsonable(recipe.as_dict())
    out = []
    for i, e in enumerate(entries if isinstance(entries, list) else [None]):
        if not isinstance(e, dict) or "trainable_params" not in e or "recipe" not in e:
            raise ValueError(
                f"{path}: entry {i} lacks what resuming needs (written by an "
                "older geofm?); run without --resume, with --overwrite"
            )
        theirs = _with_defaults(e["recipe"])
        if theirs != mine:
            changed = recipe_differences(theirs, mine)
            shown = "; ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")
            raise ValueError(
                f"{path} holds runs of another recipe ({shown}); resume with the same "
                "recipe and options (for example --train.precision 32-true for runs "
                "made in float32), or write to another --output"
            )
        if e["split"] != split or float(e["train_fraction"]) != float(train_fraction):
            raise ValueError(
                f"{path} holds runs of split {e['split']!r} with training share "
                f"{e['train_fraction']}, not {split!r} with {train_fraction}; "
                "resume with the same options, or write to another --output"
            )
        # the entry's values of the result's fields (its metrics from the confusion matrix)
        kept = {f.name: e[f.name] for f in fields(SeedResult) if f.name != "metrics"}
        out.append(
            SeedResult(
                **{**kept, "seed": int(e["seed"]), "train_seconds": float(e["train_seconds"])},
                metrics=confusion_metrics(np.asarray(e["confusion"])),
            )
        )
    return out


def recipe_differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """``"key: recorded -> current"`` for every dotted key whose value differs between two
    recipes as dicts (missing keys shown as ``None``)."""
    if not (isinstance(recorded, dict) and isinstance(current, dict)):
        return [] if recorded == current else [f"{prefix or 'recipe'}: {recorded!r} -> {current!r}"]
    out = []
    for key in sorted(set(recorded) | set(current), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        out += recipe_differences(recorded.get(key), current.get(key), name)
    return out


def _with_defaults(recipe: Any) -> Any:
    """A recorded recipe with the keys a later geofm added at their defaults, at any depth
    (a run recorded before ``model.base_pca`` existed is the same recipe with ``refit``,
    one before ``model.lora.train`` with ``[]``)."""
    import dataclasses

    from geofm.tasks.pixel_recipe import SECTIONS, merged

    if not isinstance(recipe, dict):
        return recipe
    out = dict(recipe)
    for name, section in SECTIONS.items():
        if isinstance(out.get(name), dict):
            out[name] = merged(jsonable(dataclasses.asdict(section())), out[name])
    return out


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
