#!/usr/bin/env bash
# Idempotent set-up: a virtual environment with the pinned CPU torch and lmbudget (editable).
# LMBUDGET_EXTRAS=dev (the default: the test command) adds the test dependencies; =none installs
# lmbudget alone (the main job). With LMBUDGET_DEBIAN_TEXT=1 and root, also installs the Debian
# packages that hold offline text, in parallel with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LMBUDGET_VENV:-.venv}"
EXTRAS="${LMBUDGET_EXTRAS:-dev}"
apt_pid=""
if [ "${LMBUDGET_DEBIAN_TEXT:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  pkgs="wordnet-base fortunes fortunes-min bible-kjv-text bible-kjv python3-doc"
  if ! dpkg -s $pkgs >/dev/null 2>&1; then
    echo "installing Debian text sources: $pkgs"
    ( (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null 2>&1) \
      || echo "warning: could not install the Debian text sources; offline-en will use the PyPI ones only" ) &
    apt_pid=$!
  fi
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
stamp="$VENV/.lmbudget-installed"
hash="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
# An installation with the test extras also serves a request for none.
if [ "$(cat "$stamp" 2>/dev/null)" != "$hash:$EXTRAS" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$hash:dev" ]; then
  # Install the pinned CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build.
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 \
    | grep -v "^WARNING: Location" || true
  target="."; [ "$EXTRAS" = none ] || target=".[$EXTRAS]"
  "$PY" -m pip install -q --disable-pip-version-check -e "$target" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import lmbudget, torch, tokenizers, safetensors"
  echo "$hash:$EXTRAS" > "$stamp"
fi
[ -z "$apt_pid" ] || wait "$apt_pid"
