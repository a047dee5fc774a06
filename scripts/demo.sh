#!/usr/bin/env bash
# The main job on the embedded default: real offline text, the bert-tiny preset, the paper's seven
# configurations at two short RST budgets (one seed), the offline downstream suite, a report with
# tables and plots. Restartable: run it again and finished runs are kept.
# The defaults keep it under 20 minutes on a 2-core machine (fine-tuning capped at 200 examples per
# task and 200 per evaluation split); for a bigger grid and the whole offline suite:
#   BUDGETS=1min,2min SEEDS=0,1 EVAL_MAX_TRAIN=0 EVAL_MAX_EVAL=0 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LMBUDGET_DEBIAN_TEXT=1 bash scripts/setup.sh
LMB="${LMBUDGET_VENV:-.venv}/bin/lmbudget"
OUT="${OUT:-results/tiny-bert-demo}"
"$LMB" prepare --corpus offline-en --model bert-tiny
"$LMB" references
"$LMB" sweep tiny-bert --out "$OUT" --seeds "${SEEDS:-0}" --budgets "${BUDGETS:-10s,20s}" \
  --evaluate "${SUITES:-offline}" --eval-max-train "${EVAL_MAX_TRAIN:-200}" --eval-max-eval "${EVAL_MAX_EVAL:-200}" --quiet --no-report
"$LMB" report "$OUT"
