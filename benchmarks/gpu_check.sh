#!/usr/bin/env bash
# GPU check, offline, in under 9 minutes of steps (each under its own `timeout`; they sum to 510 s):
# calibrate bert-c5 in bf16 with torch.compile, train it for 1 RST minute on that table, print tokens/s
# and model FLOP utilisation against the card's measured bf16 matrix-product peak; then t5-base for
# 1 RST minute on the paper's A100 table, and the NCCL path through torchrun.
#
# Nothing is fetched and nothing installed: the corpus and the tokenizers come from a cache built
# beforehand by `bash scripts/prepare_gpu_cache.sh` (default .gpu-cache, about 20 MiB; carry it to the
# machine) and lmbudget is imported from this checkout. Neither `datasets` nor `rouge-score` is imported.
#
# Usage: bash benchmarks/gpu_check.sh                       (the python on PATH; GPU_CACHE=.gpu-cache OUT=/tmp/gpu-check)
#        GPU_CHECK_SMALL=1 bash benchmarks/gpu_check.sh     (a CPU rehearsal: bert-micro/t5-micro, tiny budgets,
#                                                            with datasets, rouge_score, submitit hidden from python;
#                                                            GPU_CHECK_TIMEOUT_SCALE=4 on a busy CPU)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
CACHE="${GPU_CACHE:-.gpu-cache}"
OUT="${OUT:-/tmp/gpu-check}"
if [ ! -d "$CACHE/corpus" ] || [ ! -d "$CACHE/home/data/tokenizers" ]; then
  echo "no prepared cache in $CACHE: run 'bash scripts/prepare_gpu_cache.sh $CACHE' where the corpus can be read, and carry it" >&2
  exit 2
fi
mkdir -p "$OUT/home/data"
export LMBUDGET_HOME="$OUT/home"
cp -r "$CACHE/home/data/tokenizers" "$LMBUDGET_HOME/data/"   # the carried cache stays as it is
export PYTHONPATH="$PWD:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
corpus="$(cd "$CACHE/corpus" && pwd)"
if [ -n "${GPU_CHECK_SMALL:-}" ]; then
  BERT=bert-micro; T5=t5-micro; BERT_BUDGET="30 steps"; T5_BUDGET="20 steps"; DDP_BUDGET="10 steps"
  CAL=(--repeats 9); THR=(--model bert-micro --modes fp32 --steps 3 --rounds 1); NPROC=1
  mkdir -p "$OUT/hidden"
  for m in datasets rouge_score submitit; do   # what the GPU image lacks: importing it fails loudly
    mkdir -p "$OUT/hidden/$m"; echo "raise ImportError('$m is not on the GPU image')" > "$OUT/hidden/$m/__init__.py"
  done
  export PYTHONPATH="$OUT/hidden:$PYTHONPATH"
else
  BERT=bert-c5; T5=t5-base; BERT_BUDGET=1min; T5_BUDGET=1min; DDP_BUDGET="50 steps"
  CAL=(--repeats 5 train.precision=bf16 train.compile=true); THR=(--model bert-c5 --modes bf16,bf16+compile --steps 10 --rounds 2)
  NPROC=1
fi
SCALE="${GPU_CHECK_TIMEOUT_SCALE:-1}"   # >1 only for rehearsals on a slow or busy CPU
start=$SECONDS
step() { echo; echo "== [$((SECONDS - start))s] $*"; }
step "python"
timeout $((15 * SCALE)) "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
step "prepare the carried corpus for $BERT and $T5 (tokenizers cached: packing only)"
for m in "$BERT" "$T5"; do
  timeout $((45 * SCALE)) "$PY" -m lmbudget prepare --corpus "$corpus" --model "$m" > "$OUT/prepare-$m.log" 2>&1 \
    && grep -E "tokenizer|data ready" "$OUT/prepare-$m.log" || { echo "prepare $m failed"; tail -3 "$OUT/prepare-$m.log"; }
done
step "calibrate $BERT"
timeout $((120 * SCALE)) "$PY" -m lmbudget calibrate --model "$BERT" --output "$OUT/$BERT-measured.json" "${CAL[@]}" | tail -3 \
  || echo "calibrate failed"
step "train $BERT for $BERT_BUDGET on the measured table"
ref="$OUT/$BERT-measured.json"
[ -f "$ref" ] || { ref=""; echo "(no measured table: the preset's reference)"; }
timeout $((100 * SCALE)) "$PY" -m lmbudget train --model "$BERT" --budget "$BERT_BUDGET" ${ref:+--reference "$ref"} --quiet \
  --run-dir "$OUT/$BERT-run" --overwrite data.corpus="$corpus" train.eval_every=0.5 || echo "train failed"
step "throughput and MFU against the measured matmul peak"
timeout $((60 * SCALE)) "$PY" benchmarks/throughput.py "${THR[@]}" || echo "throughput failed"
step "$T5: $T5_BUDGET on its preset's reference"
timeout $((85 * SCALE)) "$PY" -m lmbudget train --model "$T5" --budget "$T5_BUDGET" --quiet --run-dir "$OUT/$T5-run" --overwrite \
  data.corpus="$corpus" train.eval_every=0.5 || echo "t5 failed"
step "data-parallel path: torchrun --nproc_per_node=$NPROC (NCCL on a GPU, gloo on a CPU)"
timeout $((40 * SCALE)) "$PY" -m torch.distributed.run --standalone --nproc_per_node=$NPROC -m lmbudget train --model bert-micro \
  --budget "$DDP_BUDGET" --quiet --run-dir "$OUT/ddp-run" --overwrite data.corpus="$corpus" || echo "torchrun failed"
step "done"
