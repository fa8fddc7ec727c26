"""The long results file: one row per (run, metric), appended under a lock, resumable.

A *run* is one (model, checkpoint, dataset, protocol, label fraction, seed, configuration).
It writes several rows: its per-class scores first and its headline metric last, all in one
append under an exclusive lock (:mod:`filelock`), so two processes can share a file. A run
counts as finished only when its headline row is in the file; rows of a run that was cut
short (per-class rows without their headline, or a half-written last line) are removed
before the run is repeated, so resuming loses no finished row and duplicates none.

Columns (:data:`COLUMNS`): the run's key, ``run_id`` (a hash of the key), ``metric``,
``value``, ``time_s`` (wall time of the run), ``git_commit`` (of this checkout, ``+dirty``
with uncommitted changes), ``config`` (the protocol settings as JSON) and ``timestamp``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import hashlib
import io
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from geofm.data.download import file_digest

__all__ = ["COLUMNS", "RunKey", "ResultsFile", "git_commit", "file_hash", "config_hash"]

COLUMNS = (
    "model",
    "checkpoint_hash",
    "dataset",
    "protocol",
    "label_fraction",
    "seed",
    "config_hash",
    "run_id",
    "metric",
    "value",
    "time_s",
    "git_commit",
    "config",
    "timestamp",
)


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Mapping[str, Any]) -> str:
    """12 hex digits identifying a protocol configuration (key order does not matter)."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()[:12]


def file_hash(path: str | os.PathLike | None) -> str:
    """12 hex digits of a checkpoint file's SHA-256; ``"random-init"`` for no file."""
    if path is None:
        return "random-init"
    return file_digest(path, "sha256")[:12]


@functools.cache
def git_commit() -> str:
    """The commit of the checkout this package runs from (``+dirty`` if changed), or
    ``"unknown"`` outside a git checkout."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class RunKey:
    """What identifies a run; two runs with equal keys are the same run."""

    model: str
    checkpoint_hash: str
    dataset: str
    protocol: str
    label_fraction: float
    seed: int
    config_hash: str

    @property
    def run_id(self) -> str:
        fields = {**asdict(self), "label_fraction": f"{float(self.label_fraction):g}"}
        return hashlib.sha256(_canonical(fields).encode()).hexdigest()[:16]


class ResultsFile:
    """A CSV of :data:`COLUMNS` at ``path``; created with its header on first write."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = FileLock(str(self.path) + ".lock")

    # ------------------------------------------------------------------ reading
    def _read_unlocked(self) -> tuple[list[dict[str, str]], bool]:
        """Complete rows, and whether the file needs repair (a cut line or a foreign header)."""
        if not self.path.exists():
            return [], False
        text = self.path.read_text(encoding="utf-8")
        if not text:
            return [], False
        cut = not text.endswith("\n")
        lines = text.splitlines(keepends=True)
        if cut:
            lines = lines[:-1]
        reader = csv.reader(io.StringIO("".join(lines)))
        header = next(reader, None)
        if header is None:
            return [], cut
        if tuple(header) != COLUMNS:
            raise ValueError(
                f"{self.path} is not a gfm-bench results file: its header is "
                f"{header[:5]}..., expected {list(COLUMNS[:5])}..."
            )
        rows = []
        for line_no, values in enumerate(reader, start=2):
            if len(values) != len(COLUMNS):
                raise ValueError(
                    f"{self.path}, line {line_no}: {len(values)} fields, expected {len(COLUMNS)}"
                )
            rows.append(dict(zip(COLUMNS, values, strict=True)))
        return rows, cut

    def rows(self) -> list[dict[str, str]]:
        """All complete rows (a half-written last line is left out)."""
        with self.lock:
            return self._read_unlocked()[0]

    def finished(self) -> set[str]:
        """``run_id`` of every run whose headline row is in the file."""
        return _finished(self.rows())

    # ------------------------------------------------------------------ writing
    def repair(self) -> int:
        """Drop rows of unfinished runs and a half-written last line; return rows dropped."""
        with self.lock:
            rows, cut = self._read_unlocked()
            done = _finished(rows)
            keep = [r for r in rows if r["run_id"] in done]
            dropped = len(rows) - len(keep)
            if dropped or cut:
                tmp = self.path.with_suffix(self.path.suffix + ".tmp")
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
                    writer.writeheader()
                    writer.writerows(keep)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            return dropped + int(cut)

    def append_run(
        self,
        key: RunKey,
        headline: tuple[str, float],
        extra: Iterable[tuple[str, float]] = (),
        time_s: float = 0.0,
        config: Mapping[str, Any] | None = None,
    ) -> bool:
        """Append one run's rows (``extra`` first, ``headline`` last) in one write.

        Returns False, writing nothing, when the run is already finished in the file (two
        processes racing on one run keep one copy).
        """
        common = {
            **asdict(key),
            "label_fraction": f"{float(key.label_fraction):g}",
            "run_id": key.run_id,
            "time_s": f"{time_s:.2f}",
            "git_commit": git_commit(),
            "config": _canonical(config or {}),
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        for metric, value in [*extra, headline]:
            writer.writerow({**common, "metric": metric, "value": repr(float(value))})
        with self.lock:
            rows, cut = self._read_unlocked()
            if key.run_id in _finished(rows):
                return False
            if cut or any(r["run_id"] == key.run_id for r in rows):
                self.repair()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                if new:
                    csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n").writeheader()
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
        return True


HEADLINES = frozenset({"top1", "micro_map", "miou"})
"""Metric names that close a run (written last)."""


def _finished(rows: Iterable[Mapping[str, str]]) -> set[str]:
    return {r["run_id"] for r in rows if r["metric"] in HEADLINES}
