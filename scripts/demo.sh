#!/usr/bin/env bash
# The main job on the embedded default: real offline text, the bert-tiny preset, an RST budget.
set -euo pipefail
cd "$(dirname "$0")/.."
LMBUDGET_DEBIAN_TEXT=1 bash scripts/setup.sh
LMB="${LMBUDGET_VENV:-.venv}/bin/lmbudget"
BUDGET="${BUDGET:-3min}"
"$LMB" prepare --corpus offline-en --model bert-tiny
"$LMB" references
"$LMB" train --model bert-tiny --budget "$BUDGET" --seed 0 --run-dir runs/demo-baseline --overwrite
