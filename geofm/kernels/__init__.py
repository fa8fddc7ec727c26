"""Triton kernels for LESS attention, each beside the PyTorch reference it must equal.

* :func:`kron_combine_proj`: the Kronecker combine of the spectral and spatial branches fused
  with the output projection (:mod:`~geofm.kernels.kron_proj`);
* :func:`masked_attention`: attention that skips the key blocks a boolean mask closes, for
  the perception-field spatial branch (:mod:`~geofm.kernels.block_sparse_attention`);
* :func:`lora_linear`: a LoRA layer's base GEMM and low-rank update in one pass
  (:mod:`~geofm.kernels.fused_lora`).

The models call these functions; :mod:`~geofm.kernels.dispatch` picks Triton on CUDA and
the reference elsewhere, and ``GEOFM_KERNELS`` / :func:`set_backend` / :func:`use_backend`
force either. This package imports only torch and triton. To run the kernels on the CPU (in
Triton's interpreter, for tests), set ``TRITON_INTERPRET=1`` before importing geofm.
"""

from ._common import HAVE_TRITON
from .dispatch import (
    BACKENDS,
    get_backend,
    kron_combine_proj,
    lora_linear,
    masked_attention,
    set_backend,
    triton_selected,
    use_backend,
)
from .reference import (
    kron_combine_proj_reference,
    kronecker_combine,
    lora_linear_reference,
    masked_attention_reference,
)

__all__ = [
    "BACKENDS",
    "HAVE_TRITON",
    "get_backend",
    "set_backend",
    "use_backend",
    "triton_selected",
    "kron_combine_proj",
    "masked_attention",
    "lora_linear",
    "kronecker_combine",
    "kron_combine_proj_reference",
    "masked_attention_reference",
    "lora_linear_reference",
]
