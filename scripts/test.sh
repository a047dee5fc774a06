#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${LMBUDGET_VENV:-.venv}/bin/python" -m pytest "$@"
