#!/usr/bin/env bash
# The Lab's Python env: makes .venv-lab (or $NECTAR_LAB_VENV) with the pinned packages of
# scripts/lab-requirements.txt (plus lab-requirements-jupyter.txt with --jupyter), then builds
# the `nectar` package from python/ into it with `maturin develop` (debug profile, the
# workspace's target dir, so CI reuses what cargo already built; --release for measurements).
# Idempotent: packages are installed again only when a requirements file changes, and cargo
# rebuilds only what changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
venv=${NECTAR_LAB_VENV:-$root/.venv-lab}
jupyter=0
profile=()
for arg in "$@"; do
  case "$arg" in
    --jupyter) jupyter=1 ;;
    --release) profile=(--release) ;;
    *) echo "usage: $0 [--jupyter] [--release]" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "python 3.10 or newer is required (set PYTHON=…)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || {
    echo "cannot create a venv: on Debian, apt-get install -y python3-venv" >&2
    exit 1
  }
fi
install() {
  local req=$1 stamp
  stamp="$venv/.installed-$(basename "$req" .txt)-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    touch "$stamp"
  fi
}
install scripts/lab-requirements.txt
if [ "$jupyter" = 1 ]; then
  install scripts/lab-requirements-jupyter.txt
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
(
  cd python
  VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet "${profile[@]}"
)
echo "nectar package built into $venv (${profile[*]:-debug}); activate with: source $venv/bin/activate"
