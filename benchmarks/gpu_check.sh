#!/usr/bin/env bash
# GPU check (under 8 minutes on one H100/H200): calibrate bert-c5 in bf16 with torch.compile, train it for
# 2 RST minutes on that table, and print tokens/s and model FLOP utilisation against the card's measured
# bf16 matrix-product peak; then the same for t5-base when that preset exists, and the NCCL path via torchrun.
# Usage: bash benchmarks/gpu_check.sh   (uses the python on PATH; installs lmbudget without dependencies)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
export LMBUDGET_HOME="$OUT/home"
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH="$PWD:${PYTHONPATH:-}"
"$PY" - <<'PY'
import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PY
corpus="${CORPUS:-offline-en}"
step() { echo; echo "== $*"; }
step "prepare ($corpus, bert-c5 vocabulary)"
timeout 120 "$PY" -m lmbudget prepare --corpus "$corpus" --model bert-c5 || echo "prepare failed"
step "calibrate bert-c5 (bf16, compile)"
timeout 240 "$PY" -m lmbudget calibrate --model bert-c5 --repeats 7 --output "$OUT/bert-c5-gpu.json" \
  train.precision=bf16 train.compile=true || echo "calibrate failed"
step "train bert-c5 for 2 RST minutes on the measured table"
timeout 300 "$PY" -m lmbudget train --model bert-c5 --budget 2min --reference "$OUT/bert-c5-gpu.json" --quiet \
  --run-dir "$OUT/bert-c5-run" --overwrite data.corpus="$corpus" train.eval_every=0.5 || echo "train failed"
step "throughput and MFU against the measured bf16 matmul peak"
timeout 240 "$PY" benchmarks/throughput.py --model bert-c5 --modes bf16,bf16+compile --steps 10 --rounds 2 || echo "throughput failed"
if "$PY" -c "from lmbudget.presets import PRESETS; assert 't5-base' in PRESETS" 2>/dev/null; then
  step "t5-base: 1 RST minute on the paper's A100 table"
  timeout 240 "$PY" -m lmbudget train --model t5-base --budget 1min --quiet --run-dir "$OUT/t5-run" --overwrite \
    data.corpus="$corpus" train.precision=bf16 || echo "t5 failed"
fi
step "NCCL path: torchrun --nproc_per_node=1"
timeout 180 torchrun --nproc_per_node=1 -m lmbudget train --model bert-micro --budget "50 steps" --quiet \
  --run-dir "$OUT/ddp-run" --overwrite data.corpus="$corpus" || echo "torchrun failed"
