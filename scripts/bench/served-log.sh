#!/usr/bin/env bash
# The served log's designs side by side in one run, through the cold-start harness
# (scripts/bench/cold-start.sh: the release recommend binary against Redis and moto):
#
#   kinesis    NECTAR_SERVED_LOG=kinesis: PutRecords from an internal extension after each
#              invocation (the design before issue 16)
#   log        NECTAR_SERVED_LOG=log (the default): JSON lines on stdout; on AWS a CloudWatch Logs
#              subscription filter delivers them to the stream (not emulated here: the lines are
#              counted in the function's output)
#   extension  NECTAR_SERVED_LOG=extension: handed over a Unix socket to the served-log extension
#              (target/release/nectar-served-log, started as an external extension), which writes
#              to Kinesis on a timer and on SHUTDOWN
#
#   scripts/bench/served-log.sh [--runs N] [--warm N]     (defaults: 5 runs x (1 cold + 40 warm))
#
# Per design: warm answer and billed time (p50, p99), SHUTDOWN time, and where the served events
# went: events in the moto stream added by the run (kinesis, extension) or served lines on stdout
# (log), against the number of invocations (all must be there: the harness sends SHUTDOWN before
# it kills the environment). Needs `cargo build --release -p recommend -p nectar-served-log`.
# Uses the services NECTAR_TEST_REDIS_URL / NECTAR_TEST_AWS_ENDPOINT point at, else starts them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/recommend
EXT=$TARGET/release/nectar-served-log
RUNS=5 WARM=40
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --warm) WARM=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--warm N]" >&2; exit 2 ;;
  esac
done
for b in "$BIN" "$EXT"; do
  [ -x "$b" ] || { echo "served-log: no $b (cargo build --release -p recommend -p nectar-served-log)" >&2; exit 2; }
done
if [ -z "${NECTAR_TEST_VENV:-}" ] && [ ! -x .venv-test/bin/python ]; then
  MAIN=$(cd "$(git rev-parse --git-common-dir)/.." && pwd)
  [ -x "$MAIN/.venv-test/bin/python" ] && export NECTAR_TEST_VENV=$MAIN/.venv-test
fi
VENV=${NECTAR_TEST_VENV:-$PWD/.venv-test}
if [ -z "${NECTAR_TEST_AWS_ENDPOINT:-}" ]; then
  bash tests/services.sh start
  set -a
  # shellcheck source=/dev/null
  source tests/.services/env
  set +a
fi
export NECTAR_TEST_REDIS_URL NECTAR_TEST_AWS_ENDPOINT

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# Events in the cold-start stream (cold-start.sh creates it; 0 before it exists).
stream_events() {
  AWS_ENDPOINT_URL=$NECTAR_TEST_AWS_ENDPOINT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_DEFAULT_REGION=us-east-1 "$VENV/bin/python" - <<'PY'
import boto3
k = boto3.client("kinesis")
try:
    shards = k.list_shards(StreamName="nectar-cold-start-events")["Shards"]
except k.exceptions.ResourceNotFoundException:
    print(0); raise SystemExit
n = 0
for s in shards:
    it = k.get_shard_iterator(StreamName="nectar-cold-start-events", ShardId=s["ShardId"],
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        page = k.get_records(ShardIterator=it, Limit=10000)
        n += sum(r["Data"].count(b'"nectar_served":true') for r in page["Records"])
        it = page.get("NextShardIterator")
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break
print(n)
PY
}

for design in kinesis log extension; do
  args=(--runs "$RUNS" --warm "$WARM" --json --count-lines '"nectar_served":true')
  before=$(stream_events)
  echo "served-log: $design ..." >&2
  COLD_START_SERVED_LOG=$design bash scripts/bench/cold-start.sh "$BIN" "${args[@]}" \
    >"$OUT/$design.json" 2>"$OUT/$design.err" \
    || { cat "$OUT/$design.err" >&2; exit 1; }
  after=$(stream_events)
  echo "$design $((after - before))" >>"$OUT/stream"
done

python3 - "$OUT" "$RUNS" "$WARM" <<'PY'
import json, sys
out, runs, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stream = dict(line.split() for line in open(f"{out}/stream"))
served = runs * (1 + warm)
print(f"served log designs: {runs} environments x (1 cold + {warm} warm invocations), "
      f"release build, against moto and Redis")
print(f"{'design':<11}{'answer p50':>11}{'p99':>8}{'billed p50':>12}{'p99':>8}"
      f"{'billed/answer':>15}{'shutdown':>10}{'events written':>16}")
ok = True
for design in ("kinesis", "log", "extension"):
    doc = json.load(open(f"{out}/{design}.json"))
    s = doc["summary"]
    a, b = s["warm_answer_ms"], s["warm_billed_ms"]
    sd = s.get("shutdown_ms", {}).get("p50")
    if design == "log":
        written, where = s.get("counted_lines", {}).get("sum", 0), "stdout"
    else:
        written, where = int(stream[design]), "stream"
    ok &= int(written) == served and doc["ok"]
    print(f"{design:<11}{a['p50']:>11.2f}{a['p99']:>8.2f}{b['p50']:>12.2f}{b['p99']:>8.2f}"
          f"{b['p50'] / a['p50']:>15.1f}{'-' if sd is None else f'{sd:.1f}':>10}"
          f"{f'{int(written)}/{served} {where}':>16}")
print("times in ms; billed = until the runtime and every INVOKE extension wait for the next event")
sys.exit(0 if ok else 1)
PY
