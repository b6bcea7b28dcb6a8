#!/usr/bin/env bash
# Static checks of the deployment, offline: installs the pinned tools into .venv-infra/ (see
# infra/venv.sh) and runs every check, reporting each, failing if any failed.
#   cfn-lint (errors and warnings; any ignore is explained in the template's Metadata)
#   sam validate --lint
#   actionlint (with shellcheck) on .github/workflows/, shellcheck on every project script
#   python3 infra/gen_schedules.py --check   (template schedules == config/nectar.toml)
#   infra/test_gen_schedules.py               (the generator itself, on temporary copies)
#   infra/test_template.py                    (env vars, routes, IAM actions, Athena view vs table)
#   infra/check_functions.py                  (template functions == functions/ crates)
#   infra/test_check_functions.sh             (the checker itself, on temporary trees)
#   events/*.json parse
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
. infra/venv.sh || exit 1

passed=0 failed=0 failures=()
run() {  # run <name> <command...>
  local name="$1"; shift
  echo "--- $name: $*"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "--- $name FAILED"
  fi
}

run cfn-lint cfn-lint -- infra/template.yaml
# sam validate wants a region even though --lint works offline; any region does.
run sam-validate sam validate --lint --template-file infra/template.yaml --region "${AWS_REGION:-us-east-1}"
run actionlint actionlint .github/workflows/*.yml
run shellcheck shellcheck infra/*.sh scripts/*.sh scripts/bench/*.sh tests/*.sh
run schedules python3 infra/gen_schedules.py --check
run schedules-generator-tests python3 infra/test_gen_schedules.py
run template-tests python3 infra/test_template.py
run functions python3 infra/check_functions.py
run functions-checker-tests env PYTHON_INFRA=python3 infra/test_check_functions.sh
run events python3 -c '
import json, pathlib, sys
files = sorted(pathlib.Path("events").glob("*.json"))
for f in files:
    json.loads(f.read_text())
print(f"{len(files)} event files parse")
sys.exit(0 if files else 1)'

[ "$failed" -eq 0 ] || echo "infra: failed checks: ${failures[*]}"
echo "infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
