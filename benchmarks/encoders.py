"""Encoder benchmark: LESS ViT against joint and grouped attention, time and peak memory.

Each (model, bands, image size) runs in a fresh child process so that peak memory belongs to
that configuration alone. A child measures, in order:

1. a forward pass without gradients (cold; its peak memory),
2. a forward+backward pass (cold; its peak memory),
3. ``--repeats`` timed forward passes and ``--repeats`` timed forward+backward passes after
   the cold ones (one of each when the cold forward+backward took longer than ``--slow-s``).

Peak memory is the rise of the process' peak resident set over its size before the first
pass (Linux ``/proc/self/clear_refs`` resets the peak between phases), or the rise of
``torch.cuda.max_memory_allocated`` on a GPU. A child that runs past ``--timeout-s`` is
stopped and what it measured so far is kept; one that exceeds ``--memory-gb`` (enforced with
``RLIMIT_DATA`` on the CPU) is recorded as out of memory.

Usage (the full run takes about 40 minutes on 2 CPU cores):

    python benchmarks/encoders.py --record docs/benchmarks.md
    python benchmarks/encoders.py --quick            # seconds; what the test suite runs
    python benchmarks/encoders.py --device cuda --record docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (label, registry name, overrides)
MODELS = [
    ("LESS ViT-S r1", "less_vit_small", {"rank": 1}),
    ("LESS ViT-S r8", "less_vit_small", {"rank": 8}),
    ("joint ViT-S", "joint_vit_small", {}),
    ("grouped ViT-S", "grouped_vit_small", {}),
]
SHAPES = [(13, 64), (13, 128), (202, 64), (202, 128)]
QUICK_MODELS = [
    ("LESS ViT-Ti r1", "less_vit_tiny", {"rank": 1, "depth": 1}),
    ("joint ViT-Ti", "joint_vit_tiny", {"depth": 1}),
]
QUICK_SHAPES = [(3, 32)]


def markers(section: str) -> tuple[str, str]:
    return f"<!-- {section}:begin -->", f"<!-- {section}:end -->"


# --------------------------------------------------------------------------- child
def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class _Peak:
    """Peak memory above a baseline, on the CPU (resident set) or a CUDA device."""

    def __init__(self, device):
        self.device = device
        self.baseline = self._current()

    def _current(self) -> int:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        return _rss_bytes("VmRSS")

    def reset(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set

    def rise(self) -> int:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.baseline
        return _rss_bytes("VmHWM") - self.baseline


def _emit(**event) -> None:
    print(json.dumps(event), flush=True)


def run_child(spec: dict) -> None:
    import torch

    from geofm.models import create_model

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = create_model(spec["model"], **spec["overrides"]).to(device)
    model.validate_inputs = False  # the NaN scan is not what is being measured
    model.set_grad_checkpointing(spec.get("checkpointing", False))
    B, C, S = spec["batch"], spec["bands"], spec["size"]
    image = torch.randn(B, C, S, S, device=device)
    wavelengths = torch.linspace(400.0, 2500.0, C, device=device)
    gsd = torch.full((B,), 10.0, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            model.forward_features(image, wavelengths, gsd)
        sync()

    def train_step():
        model.forward_features(image, wavelengths, gsd).float().mean().backward()
        model.zero_grad(set_to_none=True)
        sync()

    peak = _Peak(device)
    for phase, fn in (("forward", forward), ("train", train_step)):
        peak.reset()
        t0 = time.perf_counter()
        fn()
        _emit(phase=phase + "_cold", seconds=time.perf_counter() - t0, peak_bytes=peak.rise())
    reps = spec["repeats"]
    for phase, fn in (("forward", forward), ("train", train_step)):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if times[-1] > spec["slow_s"]:
                break  # one warm measurement of a slow configuration is enough
        _emit(phase=phase, seconds=statistics.median(times), repeats=len(times))


# --------------------------------------------------------------------------- parent
def run_config(label, name, overrides, bands, size, args) -> dict:
    spec = dict(
        model=name,
        overrides=overrides,
        bands=bands,
        size=size,
        batch=args.batch,
        device=args.device,
        repeats=args.repeats,
        slow_s=args.slow_s,
        checkpointing=args.checkpointing,
    )
    if args.checkpointing:
        label += " +ckpt"
    row = dict(model=label, bands=bands, size=size, status="ok")

    def limit_memory():
        if args.device == "cpu" and args.memory_gb:
            limit = int(args.memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory
    )
    try:
        out, err = proc.communicate(timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        row["status"] = f"stopped after {args.timeout_s:.0f} s"
    for line in out.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            row[event["phase"] + "_s"] = event["seconds"]
            if "peak_bytes" in event:
                row[event["phase"] + "_peak_mb"] = event["peak_bytes"] / 2**20
    if row["status"] == "ok" and proc.returncode != 0:
        oom = re.search(
            r"out of memory|Cannot allocate memory|MemoryError|DefaultCPUAllocator", err
        )
        where = "forward+backward" if "forward_cold_s" in row else "forward"
        row["status"] = (
            f"out of memory in the {where} (limit {args.memory_gb:g} GiB)"
            if oom
            else "failed: " + (err.strip().splitlines() or ["?"])[-1][:120]
        )
    row["wall_s"] = time.perf_counter() - started
    return row


def _fmt_s(row, key):
    return f"{row[key]:.3g}" if key in row else "-"


def _fmt_mb(row, key):
    return f"{row[key]:,.0f}" if key in row else "-"


def _warm_or_cold(row, phase: str) -> str:
    if phase + "_s" in row:
        return _fmt_s(row, phase + "_s")
    if phase + "_cold_s" in row:
        return _fmt_s(row, phase + "_cold_s") + " (cold)"
    return "-"


def table(rows) -> str:
    lines = [
        "| model | bands | size | forward s | fwd+bwd s | peak fwd MiB | peak fwd+bwd MiB | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = "" if r["status"] == "ok" else r["status"]
        lines.append(
            f"| {r['model']} | {r['bands']} | {r['size']} | {_warm_or_cold(r, 'forward')} | "
            f"{_warm_or_cold(r, 'train')} | {_fmt_mb(r, 'forward_cold_peak_mb')} | "
            f"{_fmt_mb(r, 'train_cold_peak_mb')} | {note} |"
        )
    return "\n".join(lines)


def _find(rows, model, bands, size):
    for r in rows:
        if r["model"] == model and r["bands"] == bands and r["size"] == size:
            return r
    return None


def ratios(rows, suffix: str = "") -> list[str]:
    """The issue's targets as ratios measured in this run (``suffix``: label suffix)."""
    out = []
    targets = [((13, 128), 1.2), ((202, 64), 2.5)]
    for (bands, size), goal in targets:
        joint = _find(rows, "joint ViT-S" + suffix, bands, size)
        less = _find(rows, "LESS ViT-S r8" + suffix, bands, size)
        if joint and less and "train_s" in joint and "train_s" in less:
            ratio = joint["train_s"] / less["train_s"]
            verdict = "met" if ratio >= goal else "missed"
            out.append(
                f"- joint ViT-S / LESS ViT-S r8, forward+backward, {bands} bands "
                f"{size} px: **{ratio:.2f}x** (target at least {goal}x: {verdict})"
            )
    for bands, size in SHAPES:
        r1 = _find(rows, "LESS ViT-S r1" + suffix, bands, size)
        r8 = _find(rows, "LESS ViT-S r8" + suffix, bands, size)
        if r1 and r8 and "train_s" in r1 and "train_s" in r8:
            t = r8["train_s"] / r1["train_s"]
            m = r8.get("train_cold_peak_mb", 0) / max(r1.get("train_cold_peak_mb", 1), 1)
            out.append(
                f"- LESS ViT-S r8 / r1 at {bands} bands {size} px: time **{t:.2f}x** "
                f"(target at most 1.15x: {'met' if t <= 1.15 else 'missed'}), peak "
                f"memory **{m:.2f}x** (target at most 1.1x: "
                f"{'met' if m <= 1.1 else 'missed'})"
            )
    return out


def device_text(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def report(rows, args) -> str:
    import torch

    command = " ".join(["python benchmarks/encoders.py", *args.argv_shown])
    lines = [
        f"### Encoders on {args.device.upper()}: {device_text(args.device)}"
        + (", gradient checkpointing" if args.checkpointing else ""),
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, batch "
        f"{args.batch}, float32, patch 16, GSD 10 m, LESS perception radius 640 m, features "
        "of all tokens (no head). Times are medians of warm runs; memory is the peak rise "
        "during the cold pass (see the script's docstring).",
        "",
        table(rows),
        "",
    ]
    lines += ratios(rows, " +ckpt" if args.checkpointing else "") or [
        "- (no ratio: a configuration the targets need did not finish)"
    ]
    return "\n".join(lines) + "\n"


def record(text: str, path: Path, section: str = "encoders") -> None:
    begin, end = markers(section)
    block = f"{begin}\n{text}{end}"
    if path.exists():
        old = path.read_text()
        if begin in old and end in old:
            new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
        else:
            new = old.rstrip() + "\n\n" + block + "\n"
    else:
        new = "# Benchmarks\n\n" + block + "\n"
    path.write_text(new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--slow-s", type=float, default=30.0, help="after a warm pass this long, stop repeating"
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=600.0,
        help="stop a configuration after this long (default 10 minutes)",
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=20.0,
        help="cap on a CPU child's data segment (RLIMIT_DATA); 0 for none",
    )
    parser.add_argument(
        "--only", default=None, help="run only models whose label contains this text"
    )
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated BANDSxSIZE, e.g. 202x128 (default: all four)",
    )
    parser.add_argument(
        "--checkpointing", action="store_true", help="run every model with gradient checkpointing"
    )
    parser.add_argument(
        "--section", default="encoders", help="name of the marked block --record replaces"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one tiny model pair at 3 bands 32 px: checks the script runs",
    )
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        help="write the table into this Markdown file (between markers)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv_shown = [a for a in argv if a not in ("--record", str(args.record))]
    if args.child:
        run_child(json.loads(args.child))
        return 0
    models, shapes = (QUICK_MODELS, QUICK_SHAPES) if args.quick else (MODELS, SHAPES)
    if args.quick:
        args.batch, args.repeats = 2, 1
    if args.only:
        models = [m for m in models if args.only in m[0]]
    if args.shapes:
        shapes = [tuple(int(v) for v in item.split("x")) for item in args.shapes.split(",")]
    rows = []
    for bands, size in shapes:
        for label, name, overrides in models:
            print(f"{label:16s} {bands:3d} bands {size:3d} px ...", end=" ", flush=True)
            row = run_config(label, name, overrides, bands, size, args)
            rows.append(row)
            print(
                f"forward {_warm_or_cold(row, 'forward')} s, "
                f"fwd+bwd {_warm_or_cold(row, 'train')} s, "
                f"peak {_fmt_mb(row, 'train_cold_peak_mb')} MiB [{row['status']}]",
                flush=True,
            )
    text = report(rows, args)
    print()
    print(text)
    if args.record:
        record(text, args.record, args.section)
        print(f"recorded in {args.record}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
