"""Every kernel compiles for NVIDIA Hopper (sm_90, the H200) and Ampere (sm_80), within the
shared memory of those chips, without a GPU: Triton's ahead-of-time path down to a cubin,
which the interpreter the other kernel tests use never takes (it neither type-checks for the
hardware nor lowers to it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from timeouts import HANG_TIMEOUT_S

triton = pytest.importorskip("triton")

SCRIPT = Path(__file__).with_name("compile_for_gpu.py")
REPO = Path(__file__).resolve().parents[2]


def _has_nvidia_backend() -> bool:
    try:
        from triton.backends import backends
    except ImportError:
        return False
    return "nvidia" in backends


pytestmark = pytest.mark.skipif(
    not _has_nvidia_backend(), reason="this triton has no NVIDIA backend to compile with"
)


@pytest.mark.parametrize(
    "arch, dtypes", [("90", ["fp16", "bf16", "fp32", "fp64"]), ("80", ["bf16"])]
)
def test_every_kernel_compiles_for_the_gpu(tmp_path, arch, dtypes):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), arch, *dtypes],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    # 3 combine variants and the LoRA kernel in every dtype; 5 attention builds but in fp64
    assert len(lines) == 4 * len(dtypes) + 5 * len([d for d in dtypes if d != "fp64"])
    assert all(line.startswith("OK ") for line in lines)
