#!/usr/bin/env bash
# The GPU checks of one device session (about 10 minutes of a 15-minute budget), in order
# of value:
# 1. the kernel tests compiled for CUDA (TRITON_INTERPRET=0);
# 2. benchmarks/kernels.py (reference against Triton, time and peak memory), recorded as
#    the kernels-cuda section of docs/benchmarks.md after every part, so a run cut short
#    keeps what it measured;
# 3. with GEOFM_GPU_ENCODERS=1, the encoder benchmark at batch 8 with the kernels in the
#    model, beside the earlier section measured without them.
# The device's copy of docs/benchmarks.md and the logs come back under $OUT.
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch, triton, timm; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(0))"
timeout 150 python3 -m pytest -q -p no:cacheprovider -x tests/kernels/test_kernels_gpu.py 2>&1 \
  | tee "$OUT/kernel_tests_gpu.log"
timeout 420 python3 benchmarks/kernels.py --device cuda --record docs/benchmarks.md 2>&1 \
  | tee "$OUT/kernels.log"
cp docs/benchmarks.md "$OUT/benchmarks.md"
if [ "${GEOFM_GPU_ENCODERS:-0}" = 1 ]; then
  timeout 150 python3 benchmarks/encoders.py --device cuda --batch 8 --repeats 5 \
    --timeout-s 60 --section "encoders-cuda-b8-kernels" --record docs/benchmarks.md 2>&1 \
    | tee "$OUT/encoders_b8.log"
  cp docs/benchmarks.md "$OUT/benchmarks.md"
fi
