"""One function per operation: Triton on CUDA, the PyTorch reference elsewhere.

The backend is ``"auto"`` (Triton for CUDA tensors when triton is installed and not in its
interpreter, the reference otherwise), ``"triton"`` (always the kernels; on CPU tensors that
needs ``TRITON_INTERPRET=1`` before import) or ``"reference"``. It starts from the
``GEOFM_KERNELS`` environment variable (default ``auto``) and is changed with
:func:`set_backend` or, for a block of code, :func:`use_backend`.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from ._common import HAVE_TRITON, has_failed, interpreted, is_triton_failure, record_failure
from .reference import (
    kron_combine_proj_reference,
    lora_linear_reference,
    masked_attention_reference,
)

__all__ = [
    "BACKENDS",
    "get_backend",
    "set_backend",
    "use_backend",
    "triton_selected",
    "kron_combine_proj",
    "masked_attention",
    "lora_linear",
]

BACKENDS = ("auto", "triton", "reference")


def _checked(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {name!r}")
    return name


#: the backend in force, process-wide: autograd runs backward passes (and the recomputation
#: of checkpointed blocks) on its own threads, which must see what the forward saw
_state = {"backend": _checked(os.environ.get("GEOFM_KERNELS", "auto"))}


def get_backend() -> str:
    """The backend in force: ``auto``, ``triton`` or ``reference``."""
    return _state["backend"]


def set_backend(name: str) -> None:
    """Set the backend for the whole process (every thread)."""
    _state["backend"] = _checked(name)


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend("reference"): ...`` runs the block with that backend, then restores
    the one before. Process-wide, like :func:`set_backend`: not for threads that want
    different backends at once. Run the backward under the same backend as the forward (a
    checkpointed LESS ViT block recomputes under its forward's backend by itself)."""
    previous, _state["backend"] = _state["backend"], _checked(name)
    try:
        yield
    finally:
        _state["backend"] = previous


def triton_selected(*tensors: torch.Tensor, op: str | None = None) -> bool:
    """Whether an operation on these tensors runs its Triton kernel under the backend."""
    backend = get_backend()
    if backend == "reference":
        return False
    if backend == "triton":
        return True
    return (
        HAVE_TRITON
        and not interpreted()
        and not has_failed(op, run_dtype(tensors[0]))
        and all(t.is_cuda for t in tensors)
    )


def run_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype an operation on ``t`` computes in: the autocast dtype where autocast is
    on and would cast ``t``, else ``t``'s own."""
    device = t.device.type
    if t.dtype in _AUTOCASTABLE and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


def _run(op: str, kernel, reference, *args, **kwargs):
    """``kernel(*args)``; under ``auto``, Triton failing to build or launch the kernel on
    this device falls back to the reference, for this operation and dtype from then on."""
    try:
        return kernel(*args, **kwargs)
    except Exception as error:
        if get_backend() == "triton" or not is_triton_failure(error):
            raise
        dtype = args[0].dtype
        first_line = record_failure(op, dtype, error)
        warnings.warn(
            f"geofm.kernels: the Triton kernel for {op} failed on this device in "
            f"{dtype} ({first_line}); it runs its PyTorch reference from now on",
            RuntimeWarning,
            stacklevel=3,
        )
        return reference(*args)


_AUTOCASTABLE = (torch.float16, torch.bfloat16, torch.float32)


def _autocast(*tensors):
    """Cast to the autocast dtype where autocast is on, as F.linear would (float64 stays)."""
    device = tensors[0].device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        return tuple(
            t.to(dtype) if t is not None and t.dtype in _AUTOCASTABLE else t for t in tensors
        )
    return tensors


def kron_combine_proj(
    y_c: torch.Tensor,
    y_s: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The LESS Kronecker combine and its output projection, ``Linear(D, O)``.

    y_c: (B, h, r, C+1, a), y_s: (B, h, r, N+1, b), weight: (O, h*a*b) -> (B, C+1, N+1, O).
    Triton: :func:`~geofm.kernels.kron_proj.kron_combine_proj_triton` (the pre-projection
    activation is never written); reference:
    :func:`~geofm.kernels.reference.kron_combine_proj_reference`.
    """
    if not triton_selected(y_c, y_s, weight, op="kron_combine_proj"):
        return kron_combine_proj_reference(y_c, y_s, weight, bias)
    from .kron_proj import kron_combine_proj_triton

    y_c, y_s, weight, bias = _autocast(y_c, y_s, weight, bias)
    with torch.autocast(y_c.device.type, enabled=False):
        return _run(
            "kron_combine_proj",
            kron_combine_proj_triton,
            kron_combine_proj_reference,
            y_c,
            y_s,
            weight,
            bias,
        )


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention with an optional boolean mask (True = may attend).

    q, k, v: (B, H, L, d). With a mask and the Triton backend, key blocks the mask closes
    wholly are skipped (:func:`~geofm.kernels.block_sparse_attention.block_sparse_attention_triton`);
    without a mask ``auto`` keeps PyTorch's fused SDPA, which is already what a dense
    attention should be. The kernel has no dropout: ``auto`` uses the reference when
    ``dropout_p > 0``, and ``triton`` refuses it.
    """
    backend = get_backend()
    # float64 attention does not lower to sm_80/sm_90 MMA: the reference serves it under auto
    use = (
        triton_selected(q, k, v, op="masked_attention")
        and (mask is not None or backend == "triton")
        and (q.dtype != torch.float64 or backend == "triton")
    )
    if use and dropout_p > 0:
        if backend == "triton":
            raise NotImplementedError(
                "the Triton attention kernel has no dropout: set attn_drop to 0 or use the "
                "reference backend"
            )
        use = False
    if not use:
        return masked_attention_reference(q, k, v, mask, dropout_p)
    from .block_sparse_attention import block_sparse_attention_triton

    q, k, v = _autocast(q, k, v)
    with torch.autocast(q.device.type, enabled=False):
        return _run(
            "masked_attention",
            block_sparse_attention_triton,
            masked_attention_reference,
            q,
            k,
            v,
            mask,
            fallback=backend == "auto",
        )


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """A LoRA linear layer, ``x W^T + b + scaling * (x A^T) B^T`` (no LoRA dropout).

    Triton: :func:`~geofm.kernels.fused_lora.lora_linear_triton` (base GEMM and update in
    one pass); reference: :func:`~geofm.kernels.reference.lora_linear_reference`.
    """
    if not triton_selected(x, weight, lora_a, lora_b, op="lora_linear"):
        return lora_linear_reference(x, weight, bias, lora_a, lora_b, scaling)
    from .fused_lora import lora_linear_triton

    x, weight, bias, lora_a, lora_b = _autocast(x, weight, bias, lora_a, lora_b)
    with torch.autocast(x.device.type, enabled=False):
        return _run(
            "lora_linear",
            lora_linear_triton,
            lora_linear_reference,
            x,
            weight,
            bias,
            lora_a,
            lora_b,
            scaling,
        )
