#!/usr/bin/env bash
# Cold start of the recommend Lambda binary, measured through a local emulator of the Lambda
# Runtime API (and Extensions API) — the stand-in for `cargo lambda watch` when there is no
# Docker and no cargo-lambda: scripts/bench/cold-start.py.
#
#   scripts/bench/cold-start.sh [BINARY] [cold-start.py options, e.g. --runs 20 --warm 5 --json]
#
# BINARY defaults to target/release/recommend (under CARGO_TARGET_DIR if set), else the debug
# build with a warning. Starts the test services (tests/services.sh: Redis on 16379, moto on
# 15000; stopped again at the end only if this script started them), creates on moto what the
# function reads at cold start, as deployed by infra/template.yaml (the Kinesis stream of the
# served log, and the catalog, keys and registry DynamoDB tables, all empty), and runs the
# binary with that environment: Redis on loopback, the AWS SDK pointed at moto with dummy
# credentials in us-east-1. Publishes a trending list (no ALS model) into Redis database
# COLD_START_REDIS_DB (default 9): the answer is the trending fallback (200, "fallback": true);
# COLD_START_ITEMS=0 publishes nothing (503 no_model expected). Prints the binary's size; peak RSS
# comes from cold-start.py (VmHWM). The served log goes where COLD_START_SERVED_LOG says
# (NECTAR_SERVED_LOG: extension, the default, log or kinesis); for `extension` the served-log
# extension (nectar-served-log beside BINARY) runs as an external extension, on a socket of its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

TARGET=${CARGO_TARGET_DIR:-target}
BIN=
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then BIN=$1; shift; fi
if [ -z "$BIN" ]; then
  if [ -x "$TARGET/release/recommend" ]; then
    BIN=$TARGET/release/recommend
  else
    BIN=$TARGET/debug/recommend
  fi
fi
[ -x "$BIN" ] || { echo "cold-start: no binary at $BIN (cargo build --release -p recommend)" >&2; exit 2; }
case "$BIN" in
  */debug/*)
    echo "################################################################################" >&2
    echo "# cold-start: $BIN is a DEBUG build: its numbers are NOT representative." >&2
    echo "# Build the release binary (cargo build --release -p recommend) for real numbers." >&2
    echo "################################################################################" >&2 ;;
esac

# The moto venv: this checkout's, else the main worktree's (a `git worktree` has none).
if [ -z "${NECTAR_TEST_VENV:-}" ] && [ ! -x "$ROOT/.venv-test/bin/python" ]; then
  MAIN=$(cd "$(git rev-parse --git-common-dir)/.." && pwd)
  [ -x "$MAIN/.venv-test/bin/python" ] && export NECTAR_TEST_VENV=$MAIN/.venv-test
fi
VENV=${NECTAR_TEST_VENV:-$ROOT/.venv-test}

# Services the caller already points at (NECTAR_TEST_REDIS_URL and NECTAR_TEST_AWS_ENDPOINT, e.g.
# from another checkout's tests/.services/env) are used as they are. Else they are started here,
# and stopped at the end only if this script started them (others may be using them);
# KEEP_SERVICES=1 keeps them.
if [ -z "${NECTAR_TEST_REDIS_URL:-}" ] || [ -z "${NECTAR_TEST_AWS_ENDPOINT:-}" ]; then
  STATUS=$(bash tests/services.sh status 2>/dev/null || true)
  STARTED=
  case "$STATUS" in *"redis up"*"moto up"*) ;; *) STARTED=1 ;; esac
  bash tests/services.sh start
  if [ -n "$STARTED" ] && [ -z "${KEEP_SERVICES:-}" ]; then
    trap 'bash tests/services.sh stop' EXIT
  fi
  set -a
  # shellcheck source=/dev/null
  source tests/.services/env
  set +a
fi
# A Redis database of its own (the tests use 0), holding the model published below.
REDIS_DB=${COLD_START_REDIS_DB:-9}
REDIS_URL=$NECTAR_TEST_REDIS_URL/$REDIS_DB
REDIS_PORT=${NECTAR_TEST_REDIS_URL##*:}

export AWS_ENDPOINT_URL=$NECTAR_TEST_AWS_ENDPOINT AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1
STREAM=nectar-cold-start-events
CATALOG=nectar-cold-start-catalog
KEYS=nectar-cold-start-keys
REGISTRY=nectar-cold-start-registry

# Idempotent; the key schemas are infra/template.yaml's.
"$VENV/bin/python" - "$STREAM" "$CATALOG" "$KEYS" "$REGISTRY" <<'PY'
import sys
import boto3
stream, catalog, keys, registry = sys.argv[1:]
kinesis = boto3.client("kinesis")
try:
    kinesis.create_stream(StreamName=stream, ShardCount=1)
except kinesis.exceptions.ResourceInUseException:
    pass
kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
ddb = boto3.client("dynamodb")
for name, schema in ((catalog, [("site", "HASH"), ("item_id", "RANGE")]),
                     (keys, [("key_hash", "HASH")]),
                     (registry, [("pk", "HASH"), ("sk", "RANGE")])):
    try:
        ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a, _ in schema],
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in schema])
    except ddb.exceptions.ResourceInUseException:
        pass
print(f"cold-start: moto has stream {stream}, tables {catalog}, {keys}, {registry}", file=sys.stderr)
PY

BYTES=$(stat -c %s "$BIN")
echo "cold-start: binary $BIN: $BYTES bytes ($(python3 -c "print(f'{$BYTES / 2**20:.1f}')") MiB)" >&2
# The model: a "trending" list of COLD_START_ITEMS items for site demo (the embedded config's
# fallback of for-you), keys and JSON values as RedisModelStore::publish writes them; no ALS
# model, so the answer is the fallback list (200, "fallback": true). COLD_START_ITEMS=0: no model
# at all, and the answer is 503 no_model (expected instead).
ITEMS=${COLD_START_ITEMS:-1000}
EXPECT=(--expect-status 200)
if [ "$ITEMS" -gt 0 ]; then
  python3 - "$REDIS_PORT" "$REDIS_DB" "$ITEMS" <<'PY'
import json, subprocess, sys, time
port, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base, version = "nectar:{demo:trending}", 1
items = [f"m-{i:04d}" for i in range(n)]
popular = [[i, float(n - i)] for i in range(n)]
meta = {"version": version, "items": n, "dim": None, "chunk_rows": 4096, "has_similar": False,
        "users": 0, "user_dim": None, "has_user_top": False, "user_chunk_rows": 10000,
        "published_ms": int(time.time() * 1000), "metadata": None}
cmds = [["FLUSHDB"],
        ["SET", f"{base}:v{version}:items", json.dumps(items)],
        ["SET", f"{base}:v{version}:popular", json.dumps(popular)],
        ["SET", f"{base}:v{version}:meta", json.dumps(meta)],
        ["SET", f"{base}:current", str(version)],
        ["ZADD", f"{base}:versions", str(version), str(version)]]
for c in cmds:
    subprocess.run(["redis-cli", "-p", port, "-n", db, *c], check=True, stdout=subprocess.DEVNULL)
PY
  echo "cold-start: model store $REDIS_URL: published demo/trending v1 ($ITEMS items), no ALS model: expect the trending fallback (200)" >&2
else
  redis-cli -p "$REDIS_PORT" -n "$REDIS_DB" FLUSHDB >/dev/null
  EXPECT=(--expect-status 503)
  echo "cold-start: model store $REDIS_URL: no model published: expect 503 no_model" >&2
fi

SERVED=${COLD_START_SERVED_LOG:-extension}
SOCK=${TMPDIR:-/tmp}/nectar-cold-start-$$.sock
SERVED_ARGS=(--env "NECTAR_SERVED_LOG=$SERVED")
if [ "$SERVED" = extension ]; then
  EXT_BIN=$(dirname "$BIN")/nectar-served-log
  [ -x "$EXT_BIN" ] || { echo "cold-start: no $EXT_BIN (cargo build --release -p nectar-served-log), or set COLD_START_SERVED_LOG=log|kinesis" >&2; exit 2; }
  SERVED_ARGS+=(--extension "$EXT_BIN" --env "NECTAR_SERVED_LOG_SOCKET=$SOCK")
fi
echo "cold-start: served log: $SERVED" >&2

# What functions/recommend/src/main.rs reads (shared/platform/src/env.rs), as the template sets it.
python3 scripts/bench/cold-start.py "$BIN" --runs 10 --warm 5 "${EXPECT[@]}" "${SERVED_ARGS[@]}" \
  --env "NECTAR_REDIS_URL=$REDIS_URL" \
  --env "NECTAR_STREAM_NAME=$STREAM" \
  --env "NECTAR_CATALOG_TABLE=$CATALOG" \
  --env "NECTAR_KEYS_TABLE=$KEYS" \
  --env "NECTAR_REGISTRY_TABLE=$REGISTRY" \
  --env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" \
  --env "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" \
  --env "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" \
  --env "AWS_SESSION_TOKEN=$AWS_SESSION_TOKEN" \
  --env "AWS_LAMBDA_LOG_FORMAT=JSON" \
  --env "AWS_LAMBDA_LOG_LEVEL=${AWS_LAMBDA_LOG_LEVEL:-INFO}" \
  "$@" || status=$?
rm -f "$SOCK"
exit "${status:-0}"
