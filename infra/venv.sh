# shellcheck shell=bash
# Sourced by infra/*.sh: creates or refreshes .venv-infra/ (gitignored) from infra/requirements.txt
# and puts it first on PATH. Reinstalls only when the requirements file changed.
# nectar_venv_checkov (called by infra/check.sh) does the same for checkov in its own venv,
# .venv-infra/checkov/, from infra/requirements-checkov.txt (its pins conflict with aws-sam-cli's),
# and links its command into .venv-infra/bin/.
_nectar_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_nectar_venv="$_nectar_root/.venv-infra"
_nectar_py="${PYTHON:-python3}"
if ! "$_nectar_py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "infra: Python 3.11+ is needed (tomllib); set PYTHON=python3.11" >&2
  return 1
fi
_nectar_install() {  # _nectar_install <venv dir> <requirements file>
  local venv="$1" req="$2" sum
  sum="$(sha256sum "$req" | cut -d' ' -f1)" || return 1
  if [ -f "$venv/.requirements.sha256" ] && [ "$sum" = "$(cat "$venv/.requirements.sha256")" ]; then
    return 0
  fi
  echo "infra: installing the pinned tools of ${req#"$_nectar_root"/} into ${venv#"$_nectar_root"/}/ (about a minute)" >&2
  # The stamp is written only after a complete install, so that a failed one is retried next time.
  if ! "$_nectar_py" -m venv "$venv" ||
     ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"; then
    echo "infra: installing ${req#"$_nectar_root"/} failed" >&2
    return 1
  fi
  echo "$sum" > "$venv/.requirements.sha256"
}
nectar_venv_checkov() {
  _nectar_install "$_nectar_venv/checkov" "$_nectar_root/infra/requirements-checkov.txt" &&
    ln -sfn ../checkov/bin/checkov "$_nectar_venv/bin/checkov"
}
_nectar_install "$_nectar_venv" "$_nectar_root/infra/requirements.txt" || return 1
export PATH="$_nectar_venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
