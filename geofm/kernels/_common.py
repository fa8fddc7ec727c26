"""What the kernel modules share: Triton's availability, dtypes, matmul precision, and the
one registry of kernels that failed on this device.

The registry maps ``(operation, dtype)`` to the error of the Triton kernel that could not be
built or launched for it here. :mod:`~geofm.kernels.dispatch` records a forward failure and
then serves that operation and dtype from the PyTorch reference; the backward of
:mod:`~geofm.kernels.block_sparse_attention` records its own failure (key
``"masked_attention backward"``) and the forward's (``"masked_attention"``). It lives here,
below both modules, so that neither imports the other for it.
"""

from __future__ import annotations

import importlib
import os

import torch

try:  # triton is a dependency on Linux x86_64 only
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None

__all__ = [
    "triton",
    "tl",
    "HAVE_TRITON",
    "TRITON_FAILURES",
    "is_triton_failure",
    "interpreted",
    "dot_precision",
    "acc_dtype",
    "next_pow2",
    "check_runnable",
    "record_failure",
    "has_failed",
    "failures",
    "reset_failures",
]

HAVE_TRITON = triton is not None


def _failures() -> tuple[type[BaseException], ...]:
    """Triton's own errors (a kernel that does not compile for this GPU, a block that needs
    more shared memory than it has), where this triton version defines them."""
    kinds = []
    for module, name in (
        ("triton.errors", "TritonError"),
        ("triton.compiler.errors", "CompilationError"),
        ("triton.runtime.errors", "OutOfResources"),
    ):
        try:
            kinds.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)


TRITON_FAILURES = _failures() if HAVE_TRITON else ()


def is_triton_failure(error: BaseException) -> bool:
    """Whether ``error`` is Triton failing to build or launch a kernel for this device: its
    own errors, or its MLIR pass manager giving up (as on float64 ``tl.dot`` with a large
    inner dimension, which sm_80/sm_90 cannot lower)."""
    if TRITON_FAILURES and isinstance(error, TRITON_FAILURES):
        return True
    return isinstance(error, RuntimeError) and "PassManager" in str(error)


#: (operation, dtype) whose Triton kernel failed to build or launch here -> "Type: message"
_failed: dict[tuple[str, torch.dtype], str] = {}


def record_failure(op: str, dtype: torch.dtype, error: BaseException) -> str:
    """Remember that ``op`` cannot run its kernel in ``dtype`` here; returns the first line
    of the error (at most 300 characters), for a warning."""
    _failed[op, dtype] = f"{type(error).__name__}: {error}"
    return (_failed[op, dtype].splitlines() or [""])[0][:300]


def has_failed(op: str | None, dtype: torch.dtype) -> bool:
    """Whether the kernel of ``op`` in ``dtype`` has failed here (see :func:`record_failure`)."""
    return (op, dtype) in _failed


def failures() -> dict[tuple[str, torch.dtype], str]:
    """A copy of the registry: ``(operation, dtype)`` -> the error recorded for it."""
    return dict(_failed)


def reset_failures() -> None:
    """Forget every recorded failure: the next call of each operation tries its kernel again."""
    _failed.clear()


def interpreted() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1`` before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_runnable(*tensors: torch.Tensor) -> None:
    """Refuse with a clear message where a Triton kernel cannot run on these tensors."""
    if not HAVE_TRITON:
        raise RuntimeError("the Triton kernels need triton, which is not installed")
    devices = {t.device.type for t in tensors}
    if devices == {"cuda"} or (devices == {"cpu"} and interpreted()):
        return
    if devices == {"cpu"}:
        raise RuntimeError(
            "a Triton kernel was asked for on CPU tensors; set TRITON_INTERPRET=1 before geofm "
            "is imported to run it in Triton's interpreter (slow: for tests), or use the "
            "reference backend"
        )
    raise RuntimeError(f"the Triton kernels run on CUDA tensors, got {sorted(devices)}")


def dot_precision(dtype: torch.dtype) -> str:
    """Match torch's float32 matmul precision: IEEE unless TF32 is allowed."""
    if dtype != torch.float32:
        return "ieee"
    matmul = torch.backends.cuda.matmul
    try:
        tf32 = bool(matmul.allow_tf32)
    except RuntimeError:  # set through the newer fp32_precision API, which refuses mixing
        tf32 = getattr(matmul, "fp32_precision", "ieee") == "tf32"
    return "tf32" if tf32 else "ieee"


def acc_dtype(dtype: torch.dtype):
    """Accumulate in float64 for float64 inputs (gradcheck), else in float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def next_pow2(n: int, floor: int = 16) -> int:
    """The block width covering ``n``: a power of two, at least ``floor`` (tl.dot's minimum)."""
    return max(floor, 1 << max(0, (int(n) - 1).bit_length()))
