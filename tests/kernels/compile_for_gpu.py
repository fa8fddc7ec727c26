"""Compile every geofm kernel for an NVIDIA target without a GPU (Triton's ahead-of-time
path down to a cubin through its bundled ptxas), in the constexpr combinations the
launchers use. Run with TRITON_INTERPRET unset (the interpreter replaces the kernels).

    python tests/kernels/compile_for_gpu.py 90 fp16 bf16 fp32

Prints one line per kernel, ``OK`` or ``FAIL`` with the error, and exits 1 if any failed.
"""

from __future__ import annotations

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from geofm.kernels import block_sparse_attention as bsa  # noqa: E402
from geofm.kernels import fused_lora, kron_proj  # noqa: E402

#: shared memory a block may use (bytes): H100/H200 and A100 opt-in maxima
SHARED_LIMIT = {90: 232448, 80: 166912}


def compile_kernel(fn, pointers: dict, floats: set, constants: dict, target) -> str | None:
    """None when ``fn`` compiles for ``target`` within its shared memory, else why not."""
    signature = {}
    for name in fn.arg_names:
        if name in constants:
            signature[name] = "constexpr"
        elif name in pointers:
            signature[name] = "*" + pointers[name]
        else:
            signature[name] = "fp32" if name in floats else "i32"
    try:
        kernel = triton.compile(ASTSource(fn, signature, constants), target=target)
    except Exception as error:  # report every failure, not only the first
        return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
    limit = SHARED_LIMIT.get(target.arch)
    if limit is not None and kernel.metadata.shared > limit:
        return f"needs {kernel.metadata.shared} B of shared memory, sm_{target.arch} has {limit}"
    return None


def cases(dtype: str):
    acc = tl.float64 if dtype == "fp64" else tl.float32
    precision = "tf32" if dtype == "fp32" else "ieee"
    stat = "fp64" if dtype == "fp64" else "fp32"
    for loop_rank, rank, width in ((True, 1, 32), (False, 4, 32), (True, 2, 8)):
        yield (
            f"kron_proj r={rank} b={width}",
            kron_proj._kron_proj_fwd,
            dict(yc=dtype, ys=dtype, w=dtype, bias=dtype, out=dtype),
            set(),
            dict(
                R=rank,
                A=2,
                BW=width,
                BB=max(16, width),
                BN=64,
                BO=64,
                HAS_BIAS=True,
                LOOP_RANK=loop_rank,
                ACC=acc,
                PRECISION=precision,
            ),
        )
    yield (
        "fused_lora",
        fused_lora._lora_linear_fwd,
        dict(X=dtype, W=dtype, Bias=dtype, A=dtype, Bm=dtype, Y=dtype),
        {"scaling"},
        dict(RP=16, BM=64, BN=64, BK=64, HAS_BIAS=True, ACC=acc, PRECISION=precision),
    )
    if dtype == "fp64":
        return  # float64 attention is served by the reference (see geofm.kernels.dispatch)
    qkv = dict(Q=dtype, K=dtype, V=dtype, M="u8", LUT="i32", CNT="i32")
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    block = bsa.default_block(32, torch_dtype)
    meta = dict(DH=32, DP=32, BQ=block, BK=block, HAS_MASK=True, ACC=acc, PRECISION=precision)
    yield ("attention forward", bsa._attn_fwd, dict(qkv, Out=dtype, Lse=stat), {"scale"}, meta)
    yield (
        "attention forward, no mask, d=64",
        bsa._attn_fwd,
        dict(qkv, Out=dtype, Lse=stat),
        {"scale"},
        dict(meta, DH=64, DP=64, HAS_MASK=False),
    )
    wide = bsa.default_block(128, torch_dtype)  # the widest heads the blocks are sized for
    yield (
        "attention dK dV, d=128",
        bsa._attn_bwd_dkdv,
        dict(qkv, dO=dtype, Lse=stat, Delta=stat, dK=dtype, dV=dtype),
        {"scale"},
        dict(meta, DH=128, DP=128, BQ=wide, BK=wide),
    )
    yield (
        "attention dK dV",
        bsa._attn_bwd_dkdv,
        dict(qkv, dO=dtype, Lse=stat, Delta=stat, dK=dtype, dV=dtype),
        {"scale"},
        meta,
    )
    yield (
        "attention dQ",
        bsa._attn_bwd_dq,
        dict(qkv, dO=dtype, Lse=stat, Delta=stat, dQ=dtype),
        {"scale"},
        meta,
    )


def main(argv) -> int:
    target = GPUTarget("cuda", int(argv[0]), 32)
    failed = 0
    for dtype in argv[1:]:
        for label, fn, pointers, floats, constants in cases(dtype):
            error = compile_kernel(fn, pointers, floats, dict(constants), target)
            failed += error is not None
            print(
                f"{'OK' if error is None else 'FAIL'} sm_{argv[0]} {dtype} {label}"
                + ("" if error is None else f": {error}"),
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
