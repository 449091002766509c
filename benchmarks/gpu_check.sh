#!/usr/bin/env bash
# GPU check, one command on a CUDA machine (about 5 minutes on one GPU, under 8; nothing in
# CI runs it). It prints, in order:
#   1. the CUDA tests (pytest -m cuda: the fused loss with the cloud, the loss terms and
#      Partial FC against the float64 CPU reference; a tiny run with AMP and channels_last);
#   2. training images/s for ResNet-50 at 256x128 with channels_last, CosFace vs LEAP-CF,
#      751 classes, P×K = 16×4 (benchmarks/train_step.py), with AMP in bf16 and in fp16;
#   3. the head-only LEAP overhead at 751 and 100,000 classes (benchmarks/leap_overhead.py);
#   4. Partial FC at 1,000,000 classes in one process: step time and the device memory
#      allocated after setup and at the step's peak, sample rate 0.1 against 1
#      (benchmarks/partial_fc.py --device cuda);
#   5. with more than one GPU: training images/s of benchmarks/multi_gpu.yaml (ResNet-50,
#      751 synthetic identities) on 1 GPU and on all of them, CosFace vs LEAP-CF
#      (leap train --nproc N over NCCL; the classes are sharded across the GPUs). A world
#      of one process opens no process group by design, so NCCL runs only here.
# Then one summary table of the figures.
# Usage: bash benchmarks/gpu_check.sh   (from the repository root, after make install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=$(mktemp -d)
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "benchmarks/gpu_check.sh needs a CUDA device"
print(torch.__version__, torch.cuda.get_device_name(0))
PYEOF
echo "== 1. CUDA tests"
"$PY" -m pytest -q -p no:randomly -m cuda tests/cuda 2>&1 | tee "$LOG/tests.txt" | tail -n 5
for dtype in bf16 fp16; do
    echo "== 2. train step, AMP $dtype"
    "$PY" benchmarks/train_step.py --device cuda --backbone resnet50 --height 256 --width 128 \
        --repeats 20 --amp --amp-dtype "$dtype" --channels-last | tee "$LOG/step-$dtype.txt"
done
echo "== 3. head-only LEAP overhead"
"$PY" benchmarks/leap_overhead.py --device cuda --classes 751 100000 --repeats 20 |
    tee "$LOG/overhead.txt"
echo "== 4. Partial FC at 1,000,000 classes"
"$PY" benchmarks/partial_fc.py --device cuda --steps 10 | tee "$LOG/partial_fc.txt"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 1 ]; then
    echo "== 5. multi-GPU: images/s of one short epoch (benchmarks/multi_gpu.yaml)"
    printf "%-9s %6s %12s\n" method GPUs images/s
    for mode in off full; do
        for n in 1 "$GPUS"; do
            rate=$("$PY" -m leap_cli train benchmarks/multi_gpu.yaml --nproc "$n" --no-mlflow \
                --json --set method.leap.mode="$mode" 2>/dev/null |
                "$PY" -c "import json, sys; print(round(json.load(sys.stdin)['images_per_second']))")
            printf "%-9s %6s %12s\n" "$([ "$mode" = off ] && echo CosFace || echo LEAP-CF)" "$n" "$rate"
        done
    done | tee "$LOG/multi_gpu.txt"
else
    echo "== 5. multi-GPU: skipped, one GPU" | tee "$LOG/multi_gpu.txt"
fi
echo
echo "== summary"
printf "%-34s %s\n" "CUDA tests" "$(tail -n 1 "$LOG/tests.txt")"
for dtype in bf16 fp16; do
    printf "%-34s %s\n" "train step AMP $dtype (img/s)" \
        "$(grep -o 'CosFace step.*' "$LOG/step-$dtype.txt")"
done
printf "%-34s %s\n" "Partial FC 1M classes" "$(tail -n 1 "$LOG/partial_fc.txt")"
rm -rf "$LOG"
