#!/usr/bin/env bash
# The GPU checks of one device session, in order of value:
# 1. the kernel tests compiled for CUDA (TRITON_INTERPRET=0), then every kernel test;
# 2. benchmarks/kernels.py (reference against Triton, time and peak memory), recorded as
#    its own section of docs/benchmarks.md;
# 3. the encoder benchmark on CUDA at batch 8 (float32, a fresh process per configuration),
#    now with the kernels in the model, beside the earlier section measured without them.
# The device's copy of docs/benchmarks.md and the logs come back under $OUT.
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch, triton, timm; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(0))"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels_gpu.py 2>&1 \
  | tee "$OUT/kernel_tests_gpu.log"
timeout 240 python3 benchmarks/kernels.py --device cuda --record docs/benchmarks.md 2>&1 \
  | tee "$OUT/kernels.log"
cp docs/benchmarks.md "$OUT/benchmarks.md"
timeout 150 python3 benchmarks/encoders.py --device cuda --batch 8 --repeats 5 \
  --timeout-s 60 --section "encoders-cuda-b8-kernels" --record docs/benchmarks.md 2>&1 \
  | tee "$OUT/encoders_b8.log"
cp docs/benchmarks.md "$OUT/benchmarks.md"
