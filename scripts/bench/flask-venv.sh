#!/usr/bin/env bash
# Builds the venv of the Flask peer (scripts/bench/flask_peer.py) with pinned versions and
# prints its path. numpy 2.4 is the newest release for Python 3.11 (2.5 needs 3.12).
# Usage: scripts/bench/flask-venv.sh [VENV_DIR]   (default: .venv-bench-flask)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=${1:-${NECTAR_BENCH_VENV:-.venv-bench-flask}}
PINS=(flask==3.1.3 gunicorn==27.0.1 numpy==2.4.6)
if ! "$VENV/bin/python" -c 'import flask, gunicorn, numpy' 2>/dev/null ||
  ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qi '^numpy==2.4.6$'; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
fi
echo "$VENV"
