#!/usr/bin/env bash
# The main job on the embedded default: real offline text, the bert-demo preset, the paper's seven
# configurations at 30 RST seconds with 3 seeds (hyper-parameters from an equal-trials tuning), the
# fully-decayed baseline also at 15 s and 60 s, the frozen-feature probe downstream, and a report
# whose headline is each configuration's speedup over the baseline with its 95% interval.
# `bash scripts/demo.sh gpt` asks the same on the causal decoder (demo-gpt, gpt-demo preset);
# `bash scripts/demo.sh optimizers` (or optimizers-gpt) compares today's optimizers with AdamW.
# Two workers (the demo presets train on one thread) share a 2-core machine (demo-bert: 7 min, demo-gpt: 9 min from a
# fresh clone on an idle one, set-up included). Restartable: run it again and finished runs are kept. Knobs: SEEDS, WORKERS, OUT, SUITES.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-bert}" in
  bert) spec=demo-bert; model=bert-demo ;;
  gpt) spec=demo-gpt; model=gpt-demo ;;
  optimizers) spec=demo-optimizers; model=bert-demo ;;
  optimizers-gpt) spec=demo-optimizers-gpt; model=gpt-demo ;;
  *) echo "scripts/demo.sh: unknown demo '$1': use bert (the default), gpt, optimizers or optimizers-gpt" >&2; exit 2 ;;
esac
LMBUDGET_DEBIAN_TEXT=1 LMBUDGET_EXTRAS="${LMBUDGET_EXTRAS:-none}" bash scripts/setup.sh
LMB="${LMBUDGET_VENV:-.venv}/bin/lmbudget"
OUT="${OUT:-results/$spec}"
"$LMB" prepare --corpus offline-en --model "$model" > /dev/null
"$LMB" sweep "$spec" --out "$OUT" --seeds "${SEEDS:-0,1,2}" --workers "${WORKERS:-2}" \
  --evaluate "${SUITES:-probe}" --quiet --no-report
"$LMB" report "$OUT"
