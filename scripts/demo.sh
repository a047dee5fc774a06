#!/usr/bin/env bash
# The main job on the embedded default: real offline text, the bert-demo preset, the paper's seven
# configurations at 30 RST seconds with 3 seeds (hyper-parameters from an equal-trials tuning), the
# fully-decayed baseline also at 15 s and 60 s, the frozen-feature probe downstream, and a report
# whose headline is each configuration's speedup over the baseline with its 95% interval.
# Two workers (bert-demo trains on one thread) keep it under 20 minutes on a 2-core machine, set-up
# included. Restartable: run it again and finished runs are kept. Knobs: SEEDS, WORKERS, OUT, SUITES.
set -euo pipefail
cd "$(dirname "$0")/.."
LMBUDGET_DEBIAN_TEXT=1 LMBUDGET_EXTRAS="${LMBUDGET_EXTRAS:-none}" bash scripts/setup.sh
LMB="${LMBUDGET_VENV:-.venv}/bin/lmbudget"
OUT="${OUT:-results/demo-bert}"
"$LMB" prepare --corpus offline-en --model bert-demo > /dev/null
"$LMB" sweep demo-bert --out "$OUT" --seeds "${SEEDS:-0,1,2}" --workers "${WORKERS:-2}" \
  --evaluate "${SUITES:-probe}" --quiet --no-report
"$LMB" report "$OUT"
