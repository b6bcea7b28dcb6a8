#!/usr/bin/env bash
# Static checks of the deployment, offline: installs the pinned tools into .venv-infra/ (see
# infra/venv.sh) and runs every check, reporting each, failing if any failed.
#   cfn-lint (errors and warnings; any ignore is explained in the template's Metadata)
#   cfn-lint and checkov on the template generated from jobs/spark/testdata/nectar-spark.toml
#     (the spark resources, which config/nectar.toml does not declare)
#   sam validate --lint
#   checkov (no failed check; each skip has its reason next to the resource, see below)
#   actionlint (with shellcheck) on .github/workflows/, shellcheck on every project script
#   python3 infra/gen_schedules.py --check   (template schedules == config/nectar.toml)
#   infra/test_gen_schedules.py               (the generator itself, on temporary copies)
#   infra/test_template.py                    (env vars, routes, IAM actions, Athena view vs table,
#                                              alarm and dashboard metrics vs observe/names.rs)
#   infra/test_grafana.py                     (grafana/nectar-dashboard.json vs observe/names.rs)
#   infra/check_functions.py                  (template functions == functions/ crates)
#   infra/test_check_functions.sh             (the checker itself, on temporary trees)
#   events/*.json parse
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
. infra/venv.sh && nectar_venv_checkov || exit 1

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
# checkov fails on any finding that has neither a fix nor a `Metadata: checkov: skip:` entry with
# a comment next to the resource (infra/test_template.py requires the comment). The JSON report
# is read as well, so that a template checkov could not parse (0 checks run) fails too.
# --skip-download: no calls to the vendor's platform (offline; no API key).
checkov_template() {  # checkov_template [template file]
  local out rc=0
  out="$(mktemp -d)" || return 1
  checkov --file "${1:-infra/template.yaml}" --framework cloudformation --skip-download --compact --quiet \
    --output cli --output json --output-file-path "console,$out/results_json.json" || rc=1
  python3 - "$out/results_json.json" <<'PY' || rc=1
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    sys.exit(f"checkov: no JSON report ({e})")
reports = report if isinstance(report, list) else [report]
s = {k: sum(r.get("summary", {}).get(k, 0) for r in reports) for k in ("passed", "failed", "skipped", "parsing_errors")}
print(f"checkov: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped with a reason, "
      f"{s['parsing_errors']} parsing errors")
sys.exit(0 if s["passed"] > 0 and s["failed"] == 0 and s["parsing_errors"] == 0 else 1)
PY
  rm -rf "$out"
  return "$rc"
}

run checkov checkov_template
# The spark resources are generated only for tasks with engine = "spark", and config/nectar.toml
# has none: lint and scan the template generated from the Spark job's fixture config as well.
spark_template() {
  local dir rc=0
  dir="$(mktemp -d)" || return 1
  cp infra/template.yaml "$dir/template.yaml" &&
    python3 infra/gen_schedules.py --config jobs/spark/testdata/nectar-spark.toml \
      --template "$dir/template.yaml" >/dev/null || rc=1
  [ "$rc" -eq 0 ] && { cfn-lint -- "$dir/template.yaml" || rc=1; }
  [ "$rc" -eq 0 ] && { checkov_template "$dir/template.yaml" || rc=1; }
  rm -rf "$dir"
  return "$rc"
}
run spark-template spark_template
run actionlint actionlint .github/workflows/*.yml
run shellcheck shellcheck infra/*.sh scripts/*.sh scripts/bench/*.sh tests/*.sh
run schedules python3 infra/gen_schedules.py --check
run schedules-generator-tests python3 infra/test_gen_schedules.py
run template-tests python3 infra/test_template.py
run grafana-tests python3 infra/test_grafana.py
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
