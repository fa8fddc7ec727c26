#!/usr/bin/env bash
# The GPU checks of one device session: the encoder benchmark on CUDA at batch 8 and 32
# (float32, a fresh process per configuration), recorded as their own sections of
# docs/benchmarks.md; the device's copy of that file comes back under $OUT.
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(0))"
for batch in 8 32; do
  timeout 270 python3 benchmarks/encoders.py --device cuda --batch "$batch" --repeats 5 \
    --timeout-s 90 --section "encoders-cuda-b$batch" --record docs/benchmarks.md 2>&1 \
    | tee "$OUT/encoders_b$batch.log"
done
cp docs/benchmarks.md "$OUT/benchmarks.md"
