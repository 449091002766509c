#!/usr/bin/env bash
# GPU check (CUDA machine, at most about five minutes; nothing in CI runs it):
#   1. training images/s for ResNet-50 at 256x128 with AMP and channels_last, CosFace vs
#      LEAP-CF, 751 classes, P×K = 16×4 (the step of benchmarks/train_step.py, on CUDA);
#   2. the head-only LEAP overhead at 100,000 classes (benchmarks/leap_overhead.py on CUDA).
# Usage: bash benchmarks/gpu_check.sh   (from the repository root, after make install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "benchmarks/gpu_check.sh needs a CUDA device"
print(torch.__version__, torch.cuda.get_device_name(0))
PYEOF
"$PY" benchmarks/train_step.py --device cuda --backbone resnet50 --height 256 --width 128 \
    --repeats 30 --amp --channels-last
"$PY" benchmarks/leap_overhead.py --device cuda --classes 751 100000 --repeats 30
