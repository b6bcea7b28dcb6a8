#!/usr/bin/env bash
# Smoke test of a deployed stack: reads the stack outputs with the AWS CLI, collects one event and
# asks one recommendation with curl. collect must answer 2xx. recommend must answer 200, or,
# before the first training run has published a model, the documented 503 with error code
# "no_model" (the output says which); anything else fails.
#   infra/smoke.sh [default|prod]            # stack name from samconfig.toml's environment
#   NECTAR_STACK=name infra/smoke.sh         # or name the stack
# Site and endpoint: NECTAR_SMOKE_SITE (demo), NECTAR_SMOKE_ENDPOINT (for-you).
set -euo pipefail
cd "$(dirname "$0")/.."
env="${1:-default}"
stack="${NECTAR_STACK:-$(python3 - "$env" <<'PY'
import sys, tomllib
cfg = tomllib.load(open("samconfig.toml", "rb"))
env = cfg.get(sys.argv[1], {})
for section in ("deploy", "global"):
    name = env.get(section, {}).get("parameters", {}).get("stack_name")
    if name:
        print(name)
        break
else:
    sys.exit(f"smoke: no stack_name for environment {sys.argv[1]!r} in samconfig.toml")
PY
)}"
site="${NECTAR_SMOKE_SITE:-demo}"
endpoint="${NECTAR_SMOKE_ENDPOINT:-for-you}"

api="$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Outputs[?OutputKey=='ApiUrl'].OutputValue" --output text)"
case "$api" in https://*|http://127.0.0.1:*) ;; *) echo "smoke: stack $stack has no ApiUrl output (got '$api')" >&2; exit 1 ;; esac
echo "smoke: $stack at $api"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
now="$(date +%s%3N)"
client_id="smoke-$(date +%s)-$$"
cat > "$tmp/payload.json" <<JSON
{"peach_schema_version":"1.0.3","sent_timestamp":$now,
 "client":{"id":"$client_id","app_id":"nectar-smoke","type":"script","device":{"type":"desktop"}},
 "events":[{"type":"page_view","id":"smoke","event_timestamp":$now,"context":{"page_uri":"/smoke"}}]}
JSON

call() {  # call <name> <curl args...>: retries transient failures (cold start), fails on non-2xx
  local name="$1" code=000 try; shift
  for try in 1 2 3; do
    code="$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 30 "$@" || echo 000)"
    case "$code" in 2??) break ;; 5??|000) sleep $((try * 3)) ;; *) break ;; esac
  done
  echo "smoke: $name -> HTTP $code: $(head -c 400 "$tmp/body" 2>/dev/null)"
  case "$code" in 2??) return 0 ;; *) return 1 ;; esac
}

call "collect" -X POST "$api/v1/collect?s=$site" -H 'content-type: application/json' \
  --data-binary "@$tmp/payload.json"
error_code() {  # the "error.code" of the last answer's JSON body, if any
  python3 -c 'import json, sys; print(json.load(sys.stdin)["error"]["code"])' <"$tmp/body" 2>/dev/null || true
}

recommend() {
  local code=000 try
  for try in 1 2 3; do
    code="$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 30 "$@" || echo 000)"
    case "$code" in
      200) break ;;
      503) [ "$(error_code)" = no_model ] && break; sleep $((try * 3)) ;;
      5??|000) sleep $((try * 3)) ;;
      *) break ;;
    esac
  done
  echo "smoke: recommend -> HTTP $code: $(head -c 400 "$tmp/body" 2>/dev/null)"
  if [ "$code" = 200 ]; then
    echo "smoke: recommend served recommendations (200)"
  elif [ "$code" = 503 ] && [ "$(error_code)" = no_model ]; then
    echo "smoke: recommend answered 503 no_model: no model published yet (run a training task), accepted"
  else
    echo "smoke: recommend must answer 200 or 503 no_model" >&2
    return 1
  fi
}

recommend "$api/v1/recommend/$endpoint?s=$site&client_id=$client_id&n=5"
echo "smoke: ok"
