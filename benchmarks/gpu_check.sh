#!/usr/bin/env bash
# GPU check (CUDA machine, at most about five minutes; nothing in CI runs it):
#   1. training images/s for ResNet-50 at 256x128 with AMP and channels_last, CosFace vs
#      LEAP-CF, 751 classes, P×K = 16×4 (the step of benchmarks/train_step.py, on CUDA);
#   2. the head-only LEAP overhead at 100,000 classes (benchmarks/leap_overhead.py on CUDA);
#   3. with more than one GPU: training images/s of benchmarks/multi_gpu.yaml (ResNet-50,
#      751 synthetic identities) on 1 GPU and on all of them, CosFace vs LEAP-CF
#      (leap train --nproc N; the classes are sharded across the GPUs).
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
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 1 ]; then
    echo "multi-GPU: images/s of one short epoch (benchmarks/multi_gpu.yaml)"
    printf "%-9s %6s %12s\n" method GPUs images/s
    for mode in off full; do
        for n in 1 "$GPUS"; do
            rate=$("$PY" -m leap_cli train benchmarks/multi_gpu.yaml --nproc "$n" --no-mlflow \
                --json --set method.leap.mode="$mode" 2>/dev/null |
                "$PY" -c "import json, sys; print(round(json.load(sys.stdin)['images_per_second']))")
            printf "%-9s %6s %12s\n" "$([ "$mode" = off ] && echo CosFace || echo LEAP-CF)" "$n" "$rate"
        done
    done
fi
