"""Kernel benchmark: the Triton kernels of geofm.kernels against their PyTorch references.

The measurements, for LESS ViT-S (D 384, 6 heads) and ViT-B (D 768, 12 heads) with
a = 2, b = 32, rank 1, 16 px patches at 10 m and the 640 m perception field:

1. **combine**: ``Linear(kronecker_combine(Y_c, Y_s))`` (reference: a batched GEMM, the
   written (B, C+1, N+1, D) activation, then ``F.linear``) against the fused kernel, at
   C = 13 and 202 bands and N = 64, 256 and 1024 patches, forward and forward+backward;
2. **attention**: the spatial branch, dense SDPA with the boolean perception-field mask
   against the block-sparse kernel, at N = 64, 256, 1024 (C does not enter), with the share
   of (query block, key block) pairs the kernel visits;
3. **LoRA fc1**: one rank-8 LoRA linear layer (D -> 4D, frozen base) over every band-patch
   token of a batch at C = 13, N = 256: reference (three GEMMs and an addition) against the
   fused kernel;
4. **step**: one LESS ViT-B training step (forward, backward, AdamW) at 13 bands and
   256 x 256 px with either backend;
5. **LoRA share**: the share of a LoRA fine-tuning step spent in the low-rank paths (the
   step with them against the same step with them switched off), the most a fused LoRA
   linear can save.

Times are medians of ``--repeats`` warm runs (CUDA synchronised); memory is the peak rise of
``torch.cuda.max_memory_allocated`` over what was allocated before the call (the inputs),
or of the resident set on the CPU. A configuration that runs out of memory is recorded so.

The Triton kernels run on CUDA. On a CPU they run only in Triton's interpreter
(``TRITON_INTERPRET=1``), whose timings say nothing about speed: ``--quick`` does that at toy
sizes to check the script end to end, and a CPU run without the interpreter measures the
references alone.

    python benchmarks/kernels.py --device cuda --record docs/benchmarks.md
    TRITON_INTERPRET=1 python benchmarks/kernels.py --quick     # seconds; the test suite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from encoders import _Peak, device_text, record  # noqa: E402

from geofm import kernels  # noqa: E402
from geofm.kernels._common import interpreted  # noqa: E402
from geofm.kernels.block_sparse_attention import block_layout, default_block  # noqa: E402
from geofm.models.less_vit import perception_field_mask  # noqa: E402

#: label -> (embed dim, heads); a = 2 so b = D / (2 h) = 32 for both
MODELS = {"ViT-S": (384, 6), "ViT-B": (768, 12)}
BANDS = (13, 202)
PATCHES = (64, 256, 1024)
QUICK_MODELS = {"ViT-Ti/8": (48, 3)}  # b = 8
QUICK_BANDS = (3,)
QUICK_PATCHES = (16, 64)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
MIB = 2**20


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(fn, device, repeats: int) -> tuple[float, int]:
    """(median seconds of warm runs, peak memory rise of the first run in bytes)."""
    peak = _Peak(device)
    peak.reset()
    fn()
    _sync(device)
    rise = peak.rise()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rise


def _guarded(fn, device, repeats):
    """measure(), or None when the configuration runs out of memory or fails (said on
    stdout, so the log tells which)."""
    try:
        return measure(fn, device, repeats)
    except torch.cuda.OutOfMemoryError:
        print("# out of memory", flush=True)
    except Exception as error:  # a kernel that fails must not cost the rest of the run
        print(f"# failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return None


def _grid(n: int) -> tuple[int, int]:
    side = int(round(n**0.5))
    return (side, n // side)


def _field(n, device, radius=640.0):
    return perception_field_mask(_grid(n), 16, torch.tensor([10.0], device=device), radius)


def triton_runnable(device) -> bool:
    return kernels.HAVE_TRITON and (device.type == "cuda" or interpreted())


def _measure_backend(backend, fn, device, repeats, grad, inputs):
    """(forward, forward+backward) measurements of ``fn`` under one backend."""

    def forward():
        with torch.no_grad(), kernels.use_backend(backend):
            fn()

    def train():
        with kernels.use_backend(backend):
            result = fn()
        torch.autograd.backward(result, grad)
        for t in inputs:
            t.grad = None

    measured = (_guarded(forward, device, repeats), _guarded(train, device, repeats))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return measured


def _pair(fn, device, repeats, grad_shape, inputs):
    """Time and memory of ``fn`` under both backends: forward and forward+backward."""
    grad = torch.randn(grad_shape, device=device, dtype=inputs[0].dtype)
    return {
        backend: (
            _measure_backend(backend, fn, device, repeats, grad, inputs)
            if backend == "reference" or triton_runnable(device)
            else None
        )
        for backend in ("reference", "triton")
    }


def _combine_case(name, dim, heads, C, N, batch, dtype, device, repeats):
    a = 2
    b = dim // (heads * a)
    g = torch.Generator(device=device).manual_seed(0)
    y_c = torch.randn(batch, heads, 1, C + 1, a, device=device, generator=g).to(dtype)
    y_s = torch.randn(batch, heads, 1, N + 1, b, device=device, generator=g).to(dtype)
    w = (torch.randn(dim, dim, device=device, generator=g) / dim**0.5).to(dtype)
    bias = torch.zeros(dim, device=device, dtype=dtype)
    inputs = [t.requires_grad_() for t in (y_c, y_s, w, bias)]
    out_shape = (batch, C + 1, N + 1, dim)
    result = _pair(lambda: kernels.kron_combine_proj(*inputs), device, repeats, out_shape, inputs)
    out_mib = torch.Size(out_shape).numel() * y_c.element_size() / MIB
    return dict(
        op="combine", model=name, C=C, N=N, batch=batch, out_mib=out_mib, **_flatten(result)
    )


def bench_combine(models, bands, patches, batch, dtype, device, repeats):
    return [
        _combine_case(name, dim, heads, C, N, batch, dtype, device, repeats)
        for name, (dim, heads) in models.items()
        for C in bands
        for N in patches
    ]


def _attention_case(name, dim, heads, N, batch, dtype, device, repeats):
    b = dim // (heads * 2)
    block = default_block(b, dtype)
    L = N + 1
    mask = _field(N, device)
    _, counts, _, _ = block_layout(mask, block, block)
    visited = counts.sum().item() / (-(-L // block)) ** 2
    g = torch.Generator(device=device).manual_seed(0)
    qkv = [
        torch.randn(batch, heads, L, b, device=device, generator=g).to(dtype).requires_grad_()
        for _ in range(3)
    ]
    result = _pair(
        lambda: kernels.masked_attention(*qkv, mask), device, repeats, (batch, heads, L, b), qkv
    )
    return dict(
        op="attention",
        model=name,
        C="-",
        N=N,
        batch=batch,
        out_mib=qkv[0].numel() * qkv[0].element_size() / MIB,
        visited=visited,
        **_flatten(result),
    )


def bench_attention(models, patches, batch, dtype, device, repeats):
    return [
        _attention_case(name, dim, heads, N, batch, dtype, device, repeats)
        for name, (dim, heads) in models.items()
        for N in patches
    ]


def _lora_layer_case(name, dim, C, N, batch, dtype, device, repeats, rank=8):
    """An MLP input layer (dim -> 4 dim) with rank-8 LoRA over every band-patch token."""
    g = torch.Generator(device=device).manual_seed(0)
    rows_ = batch * (C + 1) * (N + 1)
    x = torch.randn(rows_, dim, device=device, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(4 * dim, dim, device=device, generator=g) / dim**0.5).to(dtype)
    bias = torch.zeros(4 * dim, device=device, dtype=dtype)
    a = (torch.randn(rank, dim, device=device, generator=g) / dim**0.5).to(dtype)
    bb = torch.randn(4 * dim, rank, device=device, generator=g).to(dtype)
    inputs = [x, a.requires_grad_(), bb.requires_grad_()]  # frozen base, as in fine-tuning
    result = _pair(
        lambda: kernels.lora_linear(x, w, bias, a, bb, 2.0),
        device,
        repeats,
        (rows_, 4 * dim),
        inputs,
    )
    return dict(
        op="LoRA fc1",
        model=name,
        C=C,
        N=N,
        batch=batch,
        out_mib=rows_ * 4 * dim * x.element_size() / MIB,
        **_flatten(result),
    )


def bench_lora_layer(models, bands, patches, batch, dtype, device, repeats):
    return [
        _lora_layer_case(name, dim, C, N, batch, dtype, device, repeats)
        for name, (dim, _) in models.items()
        for C in bands[:1]
        for N in patches[1:2]
    ]


def _step_case(backend, model_name, bands, size, batch, dtype, device, repeats):
    from geofm.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name).to(device)
    model.validate_inputs = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    image = torch.randn(batch, bands, size, size, device=device)
    wl = torch.linspace(443.0, 2190.0, bands, device=device)
    gsd = torch.full((batch,), 10.0, device=device)

    def step():
        with (
            kernels.use_backend(backend),
            torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
        ):
            loss = model.forward_features(image, wl, gsd).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _guarded(step, device, repeats)


def bench_step(model_name, bands, size, batch, dtype, device, repeats):
    """[reference, triton] measurements of one training step (None: out of memory)."""
    rows = []
    for backend in ("reference", "triton"):
        if backend == "triton" and not triton_runnable(device):
            rows.append(NOT_RUN)
            continue
        # with the kernels is what users get: auto on CUDA (the unmasked channel branch keeps
        # SDPA); in the CPU interpreter only a forced backend reaches them
        chosen = backend if backend == "reference" or device.type != "cuda" else "auto"
        rows.append(_step_case(chosen, model_name, bands, size, batch, dtype, device, repeats))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def lora_share(model_name, bands, size, batch, dtype, device, repeats):
    """How much of a LoRA fine-tuning step the low-rank paths take: the step with LoRA (on
    the reference path) against the same step with every low-rank path switched off (the
    layers flagged merged without changing their weights, so they run their frozen base GEMM
    alone). The base is frozen in both, so both backward passes reach the same layers; the
    difference is the most a fused LoRA linear could save. Returns (with LoRA, without,
    share, number of LoRA layers, the step with the kernels or None)."""
    from geofm.models import create_model
    from geofm.models.lora import inject_lora, lora_layers

    torch.manual_seed(0)
    model = create_model(model_name).to(device)
    model.validate_inputs = False
    inject_lora(model, rank=8, skip_narrow=True)  # ViT-Ti has 6-wide layers
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    layers = [layer for _, layer in lora_layers(model)]
    image = torch.randn(batch, bands, size, size, device=device)
    wl = torch.linspace(443.0, 2190.0, bands, device=device)
    gsd = torch.full((batch,), 10.0, device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model.forward_features(image, wl, gsd).float().square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    image.requires_grad_()  # a backward through every layer even with LoRA off

    def seconds(backend):
        with kernels.use_backend(backend):
            measured = _guarded(step, device, repeats)
        return None if measured is None else measured[0]

    with_lora = seconds("reference")
    for layer in layers:
        layer.merged = True
    without = seconds("reference")
    for layer in layers:
        layer.merged = False
    fused = None
    if triton_runnable(device):
        fused = seconds("auto" if device.type == "cuda" else "triton")
    share = None if with_lora is None or without is None else (with_lora - without) / with_lora
    return with_lora, without, share, len(layers), fused


def _flatten(result):
    flat = {}
    for backend, value in result.items():
        fwd, bwd = value if value is not None else (None, None)
        for phase, m in (("fwd", fwd), ("bwd", bwd)):
            flat[f"{backend}_{phase}_s"] = m[0] if m else None
            flat[f"{backend}_{phase}_mib"] = m[1] / MIB if m else None
        flat[f"{backend}_ran"] = value is not None
    return flat


def _ms(x):
    if x is None:
        return "-"
    return f"{x * 1e3:,.0f}" if x >= 1 else f"{x * 1e3:.3g}"


def _mib(x):
    return "-" if x is None else f"{x:,.0f}" if x >= 10 else f"{x:.2g}"


def _ratio(num, den):
    return "-" if num is None or den is None or den == 0 else f"{num / den:.2f}x"


def table(rows) -> str:
    head = (
        "| op | model | C | N | batch | ref fwd ms | Triton fwd ms | fwd speed-up | "
        "ref fwd+bwd ms | Triton fwd+bwd ms | fwd+bwd speed-up | ref peak fwd MiB | "
        "Triton peak fwd MiB | output MiB | blocks visited |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["op"],
                    r["model"],
                    str(r["C"]),
                    str(r["N"]),
                    str(r["batch"]),
                    _ms(r["reference_fwd_s"]),
                    _ms(r["triton_fwd_s"]),
                    _ratio(r["reference_fwd_s"], r["triton_fwd_s"]),
                    _ms(r["reference_bwd_s"]),
                    _ms(r["triton_bwd_s"]),
                    _ratio(r["reference_bwd_s"], r["triton_bwd_s"]),
                    _mib(r["reference_fwd_mib"]),
                    _mib(r["triton_fwd_mib"]),
                    _mib(r["out_mib"]),
                    f"{r['visited']:.0%}" if "visited" in r else "-",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


NOT_RUN = "not run"


def _step_text(step) -> str | None:
    if not step:
        return None
    cells = [
        f"{b} {'out of memory' if s is None else s if s == NOT_RUN else _ms(s[0]) + ' ms'}"
        for b, s in zip(("reference", "Triton"), step, strict=True)
    ]
    text = "- LESS ViT training step: " + ", ".join(cells)
    ref, tri = step
    if isinstance(ref, tuple) and isinstance(tri, tuple):
        text += (
            f" ({_ratio(ref[0], tri[0])}; target: faster); peak {_mib(ref[1] / MIB)} "
            f"against {_mib(tri[1] / MIB)} MiB"
        )
    return text + "."


def targets(rows, step, device, quick) -> list[str]:
    step_line = [] if _step_text(step) is None else [_step_text(step)]
    if not any(r["triton_ran"] for r in rows):
        return [
            "- Triton was not run (no CUDA device and no interpreter): the GPU figures "
            "and the targets are still to be measured.",
            *step_line,
        ]
    if device.type != "cuda":
        return [
            "- Triton ran in its CPU interpreter: these times check the script, not the "
            "kernels' speed. The GPU figures and the targets are still to be measured.",
            *step_line,
        ]
    out = []
    for r in rows:
        if quick:
            break
        if r["op"] == "combine" and (r["model"], r["C"], r["N"]) == ("ViT-B", 13, 256):
            extra = None if r["triton_fwd_mib"] is None else r["triton_fwd_mib"] - r["out_mib"]
            out.append(
                f"- Fused combine, ViT-B, C = 13, N = 256, batch {r['batch']}: "
                f"{_ratio(r['reference_fwd_s'], r['triton_fwd_s'])} faster than the "
                f"reference (target 2x); peak beyond the output {_mib(extra)} MiB "
                "(target: none)."
            )
        if r["op"] == "attention" and (r["model"], r["N"]) == ("ViT-B", 1024):
            out.append(
                f"- Perception-field attention, ViT-B heads, N = 1024: "
                f"{_ratio(r['reference_fwd_s'], r['triton_fwd_s'])} faster forward, "
                f"{_ratio(r['reference_bwd_s'], r['triton_bwd_s'])} forward+backward "
                "than dense masked SDPA (target 5x)."
            )
    return out + step_line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="bf16 on CUDA, fp32 on the CPU by default",
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--step-batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default="combine,attention,lora-layer,step,lora")
    p.add_argument("--quick", action="store_true", help="toy sizes, one repeat")
    p.add_argument("--record", type=Path, help="write the table into this Markdown file")
    p.add_argument("--section", default=None, help="marker name in the recorded file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    only = set(args.only.split(","))
    models, bands, patches = (
        (QUICK_MODELS, QUICK_BANDS, QUICK_PATCHES) if args.quick else (MODELS, BANDS, PATCHES)
    )
    batch = 1 if args.quick else args.batch
    repeats = 1 if args.quick else args.repeats
    rows, results = [], {"step": None, "lora": None}

    def report() -> str:
        """The table so far; recorded after every section, so a run cut short keeps it."""
        text = _report(rows, results["step"], results["lora"], device, dtype, repeats, args, argv)
        if args.record:
            record(text, args.record, args.section or f"kernels-{device.type}")
        return text

    if "combine" in only:
        rows += bench_combine(models, bands, patches, batch, dtype, device, repeats)
        report()
    if "attention" in only:
        rows += bench_attention(models, patches, batch, dtype, device, repeats)
        report()
    if "lora-layer" in only:
        rows += bench_lora_layer(
            models, bands, patches, 1 if args.quick else args.step_batch, dtype, device, repeats
        )
        report()
    if "step" in only:
        results["step"] = (
            bench_step("less_vit_tiny", 3, 32, 1, dtype, device, 1)
            if args.quick
            else bench_step("less_vit_base", 13, 256, args.step_batch, dtype, device, repeats)
        )
        report()
    if "lora" in only:
        lora_cfg = (
            ("less_vit_tiny", 3, 32, 1)
            if args.quick
            else ("less_vit_base", 13, 256, args.step_batch)
            if device.type == "cuda"
            else ("less_vit_small", 13, 64, 4)
        )
        results["lora"] = (lora_cfg, lora_share(*lora_cfg, dtype, device, repeats))
    print(report())
    return 0


def _report(rows, step, lora, device, dtype, repeats, args, argv) -> str:
    mode = (
        "Triton interpreter"
        if interpreted()
        else f"triton {kernels._common.triton.__version__}"
        if kernels.HAVE_TRITON
        else "no triton"
    )
    dtype_name = str(dtype).replace("torch.", "")
    lora_lines = []
    if lora is not None:
        (name, bands, size, batch), (with_lora, without, share, n_layers, fused) = lora
        lora_lines.append(
            f"- LoRA fine-tuning ({name}, rank 8 on {n_layers} layers, {bands} bands, {size} "
            f"px, batch {batch}, reference path): step {_ms(with_lora)} ms, {_ms(without)} ms "
            f"with the low-rank paths off: they take "
            f"{'-' if share is None else f'{share:.0%}'} of the step, the most a fused "
            "LoRA linear could save."
            + ("" if fused is None else f" With the kernels: {_ms(fused)} ms.")
        )
    return "\n".join(
        [
            f"### Kernels on {device.type.upper()}: {device_text(device.type)}",
            "",
            f"`python benchmarks/kernels.py {' '.join(argv if argv is not None else sys.argv[1:])}`, "
            f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {mode}, {dtype_name}, rank 1, "
            f"a = 2, 640 m field at 10 m and 16 px patches, attention blocks of "
            f"{default_block(32, dtype)} (head width 32). Times are "
            f"medians of {repeats} warm runs; memory is the peak rise over the inputs in the first "
            "run. The training step is "
            + (
                "LESS ViT-Ti at 3 bands, 32 px, batch 1."
                if args.quick
                else f"LESS ViT-B at 13 bands, 256 px, batch {args.step_batch}, AdamW"
                + (f", {dtype_name} autocast." if dtype != torch.float32 else ".")
            ),
            "",
            table(rows),
            "",
            *targets(rows, step, device, args.quick),
            *lora_lines,
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
