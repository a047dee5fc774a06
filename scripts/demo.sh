#!/usr/bin/env bash
# The main job on the embedded default: real offline text, the bert-tiny preset, the paper's seven
# configurations at two short RST budgets (one seed), the offline downstream suite, a report with
# tables and plots. Restartable: run it again and finished runs are kept.
#   BUDGETS=1min,2min SEEDS=0,1 SUITES=offline,valloss bash scripts/demo.sh   # a bigger grid
set -euo pipefail
cd "$(dirname "$0")/.."
LMBUDGET_DEBIAN_TEXT=1 bash scripts/setup.sh
LMB="${LMBUDGET_VENV:-.venv}/bin/lmbudget"
OUT="${OUT:-results/tiny-bert-demo}"
"$LMB" prepare --corpus offline-en --model bert-tiny
"$LMB" references
"$LMB" sweep tiny-bert --out "$OUT" --seeds "${SEEDS:-0}" --budgets "${BUDGETS:-20s,40s}" \
  --evaluate "${SUITES:-offline}" --eval-max-train "${EVAL_MAX_TRAIN:-300}" --quiet
"$LMB" report "$OUT"
echo "report: $OUT/report.md (plots in $OUT/plots/)"
