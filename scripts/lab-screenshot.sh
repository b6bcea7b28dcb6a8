#!/usr/bin/env bash
# The README's picture of the Lab: executes examples/lab/getting-started.ipynb on a demo data dir
# (the same pytest that `make test` runs, keeping the executed copy), renders its last cell
# (under its section's heading: the nectar dev answer) to HTML with nbconvert, and has headless
# Chromium (Debian package, installed if missing) take the screenshot
# examples/lab/getting-started-last-cell.png.
#
#   scripts/lab-screenshot.sh [OUT_DIR]    # default target/lab-screenshot
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/target/lab-screenshot}
PNG=$ROOT/examples/lab/getting-started-last-cell.png
cd "$ROOT"

if ! command -v chromium >/dev/null 2>&1; then
  echo "lab-screenshot: installing chromium (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
fi
cargo build -q -p nectar-cli
bash scripts/python-env.sh --jupyter
mkdir -p "$OUT"
rm -f "$OUT/executed.ipynb"
NECTAR_NOTEBOOK_OUT=$OUT/executed.ipynb .venv-lab/bin/python -m pytest -q python/tests/test_notebook.py

.venv-lab/bin/python - "$OUT/executed.ipynb" "$OUT/last.ipynb" <<'PY'
import sys
import nbformat

nb = nbformat.read(sys.argv[1], as_version=4)
# The last cell, under the last section's heading.
heading = [c for c in nb.cells if c.cell_type == "markdown"][-1]
nb.cells = [heading, nb.cells[-1]]
nbformat.write(nb, sys.argv[2])
PY
.venv-lab/bin/jupyter nbconvert --to html --template lab --log-level WARN \
  --output-dir "$OUT" --output last "$OUT/last.ipynb"

timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1100,560 \
  --screenshot="$PNG" "file://$OUT/last.html" 2>>"$OUT/chromium.log" >/dev/null
[ -s "$PNG" ] || { echo "lab-screenshot: no screenshot; see $OUT/chromium.log" >&2; exit 1; }
echo "lab-screenshot: $PNG"
