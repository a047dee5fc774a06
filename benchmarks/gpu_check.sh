#!/usr/bin/env bash
# GPU check, offline, in under 9 minutes of steps (each under its own `timeout`; they sum to 540 s):
# calibrate bert-c5 in bf16 with torch.compile, train it for 1 RST minute on that table, print tokens/s
# and model FLOP utilisation against the card's measured bf16 matrix-product peak; then t5-base for
# 1 RST minute on the paper's A100 table, the NCCL path through torchrun, and gpt2-small: calibrated
# (no table ships for it), then 10 steps on the carried llm.c shards, charged on that table.
#
# Nothing is fetched and nothing installed: the corpus, the tokenizers and the llm.c shards come from a
# cache built beforehand by `bash scripts/prepare_gpu_cache.sh` (default .gpu-cache, about 30 MiB; carry
# it to the machine) and lmbudget is imported from this checkout. Neither `datasets` nor `rouge-score` is
# imported.
#
# Usage: bash benchmarks/gpu_check.sh                       (the python on PATH; GPU_CACHE=.gpu-cache OUT=/tmp/gpu-check)
#        GPU_CHECK_SMALL=1 bash benchmarks/gpu_check.sh     (a CPU rehearsal: bert-micro/t5-micro/gpt-micro, tiny budgets,
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
llmc="$(cd "$CACHE" && pwd)/llmc"   # GPT-2-sized BPE tokens (vocabulary 50,304) in the llm.c format
if [ -n "${GPU_CHECK_SMALL:-}" ]; then
  BERT=bert-micro; T5=t5-micro; BERT_BUDGET="30 steps"; T5_BUDGET="20 steps"; DDP_BUDGET="10 steps"
  CAL=(--repeats 9); THR=(--model bert-micro --modes fp32 --steps 3 --rounds 1); NPROC=1
  # gpt-micro with the shards' vocabulary, one layer (on a CPU the 50,304-way head drowns a layer's cost in noise)
  GPT=gpt-micro; GPT_CAL=(--repeats 9); GPT_SET=(model.vocab_size=50304 data.vocab_size=50304 model.n_layers=1 train.batch=16)
  mkdir -p "$OUT/hidden"
  for m in datasets rouge_score submitit; do   # what the GPU image lacks: importing it fails loudly
    mkdir -p "$OUT/hidden/$m"; echo "raise ImportError('$m is not on the GPU image')" > "$OUT/hidden/$m/__init__.py"
  done
  export PYTHONPATH="$OUT/hidden:$PYTHONPATH"
else
  BERT=bert-c5; T5=t5-base; BERT_BUDGET=1min; T5_BUDGET=1min; DDP_BUDGET="50 steps"
  CAL=(--repeats 5 train.precision=bf16 train.compile=true); THR=(--model bert-c5 --modes bf16,bf16+compile --steps 10 --rounds 2)
  NPROC=1
  GPT=gpt2-small; GPT_CAL=(--repeats 5); GPT_SET=(train.batch=128)   # its preset: bf16 + compile, micro-batch 32
fi
SCALE="${GPU_CHECK_TIMEOUT_SCALE:-1}"   # >1 only for rehearsals on a slow or busy CPU
start=$SECONDS
step() { echo; echo "== [$((SECONDS - start))s] $*"; }
step "python"
timeout $((10 * SCALE)) "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
step "prepare the carried corpus for $BERT and $T5 (tokenizers cached: packing only)"
for m in "$BERT" "$T5"; do
  timeout $((30 * SCALE)) "$PY" -m lmbudget prepare --corpus "$corpus" --model "$m" > "$OUT/prepare-$m.log" 2>&1 \
    && grep -E "tokenizer|data ready" "$OUT/prepare-$m.log" || { echo "prepare $m failed"; tail -3 "$OUT/prepare-$m.log"; }
done
step "calibrate $BERT"
timeout $((90 * SCALE)) "$PY" -m lmbudget calibrate --model "$BERT" --output "$OUT/$BERT-measured.json" "${CAL[@]}" | tail -3 \
  || echo "calibrate failed"
step "train $BERT for $BERT_BUDGET on the measured table"
ref="$OUT/$BERT-measured.json"
[ -f "$ref" ] || { ref=""; echo "(no measured table: the preset's reference)"; }
timeout $((85 * SCALE)) "$PY" -m lmbudget train --model "$BERT" --budget "$BERT_BUDGET" ${ref:+--reference "$ref"} --quiet \
  --run-dir "$OUT/$BERT-run" --overwrite data.corpus="$corpus" train.eval_every=0.5 || echo "train failed"
step "throughput and MFU against the measured matmul peak"
timeout $((50 * SCALE)) "$PY" benchmarks/throughput.py "${THR[@]}" || echo "throughput failed"
step "$T5: $T5_BUDGET on its preset's reference"
timeout $((75 * SCALE)) "$PY" -m lmbudget train --model "$T5" --budget "$T5_BUDGET" --quiet --run-dir "$OUT/$T5-run" --overwrite \
  data.corpus="$corpus" train.eval_every=0.5 || echo "t5 failed"
step "data-parallel path: torchrun --nproc_per_node=$NPROC (NCCL on a GPU, gloo on a CPU)"
timeout $((30 * SCALE)) "$PY" -m torch.distributed.run --standalone --nproc_per_node=$NPROC -m lmbudget train --model bert-micro \
  --budget "$DDP_BUDGET" --quiet --run-dir "$OUT/ddp-run" --overwrite data.corpus="$corpus" || echo "torchrun failed"
step "$GPT: calibrate (no table ships for it), then 10 steps on the carried llm.c shards"
if [ -f "$llmc/fineweb_val_000000.bin" ]; then
  timeout $((85 * SCALE)) "$PY" -m lmbudget calibrate --model "$GPT" --output "$OUT/$GPT-measured.json" "${GPT_CAL[@]}" \
    "${GPT_SET[@]}" | tail -3 || echo "calibrate $GPT failed"
  if [ -f "$OUT/$GPT-measured.json" ]; then   # without a table there is no RST to charge: nothing to train on
    timeout $((55 * SCALE)) "$PY" -m lmbudget train --model "$GPT" --budget "10 steps" --reference "$OUT/$GPT-measured.json" \
      --quiet --run-dir "$OUT/$GPT-run" --overwrite data.corpus="llmc:$llmc" train.eval_every=2 train.checkpoint_every=2 \
      train.eval_batches=2 "${GPT_SET[@]}" || echo "train $GPT failed"
  fi
else
  echo "no llm.c shards in $llmc (a cache from before they were added): run scripts/prepare_gpu_cache.sh again"
fi
step "done"
