# shellcheck shell=bash
# Sourced by infra/*.sh: creates or refreshes .venv-infra/ (gitignored) from infra/requirements.txt
# and puts it first on PATH. Reinstalls only when the requirements file changed.
_nectar_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_nectar_venv="$_nectar_root/.venv-infra"
_nectar_req="$_nectar_root/infra/requirements.txt"
_nectar_stamp="$_nectar_venv/.requirements.sha256"
_nectar_py="${PYTHON:-python3}"
if ! "$_nectar_py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "infra: Python 3.11+ is needed (tomllib); set PYTHON=python3.11" >&2
  return 1
fi
if [ ! -f "$_nectar_stamp" ] || [ "$(sha256sum "$_nectar_req" | cut -d' ' -f1)" != "$(cat "$_nectar_stamp")" ]; then
  echo "infra: installing the pinned tools into .venv-infra/ (about a minute)" >&2
  "$_nectar_py" -m venv "$_nectar_venv"
  "$_nectar_venv/bin/pip" install --quiet --disable-pip-version-check -r "$_nectar_req"
  sha256sum "$_nectar_req" | cut -d' ' -f1 > "$_nectar_stamp"
fi
export PATH="$_nectar_venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
