#!/usr/bin/env bash
# Serving latency of `nectar dev` with the ml-100k ALS model, under wrk (16 connections, random
# known users, GET /v1/recommend/for-you?…&n=10 with the default rules: exclude consumed, at
# most 4 per category from the imported catalog).
# Usage: scripts/bench/serve.sh [NECTAR_BIN] [SECONDS] [CONNECTIONS] [--redis]
#   --redis: train into and serve from the test redis-server (tests/services.sh) instead of the
#   data dir's model store.
# SERVE_ALLOCATION=fixed|thompson: for-you gets a two-variant experiment (both variants the same
# ALS model, so only the allocation differs) with that allocation.
# SERVE_EXPLAIN=1: requests ask explain=true (each item gets `because`).
# SERVE_DIVERSITY=0.3: for-you gets the rule diversity = { lambda = 0.3 } (MMR on the ALS factors).
# SERVE_PREPARE_ONLY=DIR: import and train only, copy the data dir and config to DIR, and exit.
# SERVE_SESSION=1: requests go to a session endpoint over the same ALS model,
# GET /v1/session/visit?items=<10 random known items>, instead of per-user requests.
# SERVE_INPROC=1: no HTTP; after training, `nectar bench serve` asks the recommend service in
# process for the variants user, user+explain, user+diversity (0.3), session (10 items) and
# session+explain, interleaved, SECONDS×1000 answers each, and prints per-variant latency: what
# explain, diversity and sessions cost, with every variant on the same machine state.
# ml-100k comes from ../shared/tools/refeval/get_data.sh (never committed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/nectar}
SECS=${2:-10}
CONNS=${3:-16}
MODE=${4:-local}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
DATA=${REFEVAL_DATA:-/tmp/refeval/data}
[ -f "$DATA/ml-100k/ml-100k.csv" ] || bash ../shared/tools/refeval/get_data.sh "$DATA" >/dev/null
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID=

# The default endpoints over tasks anchored at the data's newest event (ml-100k is from 1998).
cat >"$WORK/nectar.toml" <<'TOML'
[sites.demo]
name = "ml-100k"
allowed_origins = ["*"]
[sites.demo.event_weights]
rating = 1
[sites.demo.tasks.als]
algorithm = "als"
params = { factors = 64, regularization = 20, alpha = 1, iterations = 15, seed = 42, confidence = "binary" }
window = { days = 3650, anchor = "latest" }
holdout_fraction = 0
publish = { top_n = 100, similar_n = 0 }
[sites.demo.tasks.trending]
algorithm = "trending"
params = { half_life_hours = 48 }
window = { days = 3650, anchor = "latest" }
holdout_fraction = 0
[sites.demo.endpoints.for-you]
kind = "user"
model = "als"
fallback = "trending"
TOML
DIVERSITY=
if [ -n "${SERVE_DIVERSITY:-}" ]; then DIVERSITY=", diversity = { lambda = $SERVE_DIVERSITY }"; fi
echo "rules = { exclude_consumed = true, max_per_category = 4$DIVERSITY }" >>"$WORK/nectar.toml"
if [ -n "${SERVE_ALLOCATION:-}" ]; then
  echo "experiment = { name = \"bench\", allocation = \"$SERVE_ALLOCATION\", variants = [{ name = \"a\", weight = 1, model = \"als\" }, { name = \"b\", weight = 1, model = \"als\" }] }" >>"$WORK/nectar.toml"
fi

if [ -n "${SERVE_SESSION:-}" ]; then
  cat >>"$WORK/nectar.toml" <<TOML
[sites.demo.endpoints.visit]
kind = "session"
model = "als"
fallback = "trending"
rules = { max_per_category = 4$DIVERSITY }
TOML
fi
if [ -n "${SERVE_INPROC:-}" ]; then
  cat >>"$WORK/nectar.toml" <<'TOML'
[sites.demo.endpoints.for-you-diverse]
kind = "user"
model = "als"
fallback = "trending"
rules = { exclude_consumed = true, max_per_category = 4, diversity = { lambda = 0.3 } }
[sites.demo.endpoints.visit]
kind = "session"
model = "als"
fallback = "trending"
rules = { max_per_category = 4 }
TOML
fi
EXPLAIN=${SERVE_EXPLAIN:+&explain=true}

REDIS_FLAG=()
if [ "$MODE" = "--redis" ]; then
  bash tests/services.sh start >/dev/null
  # shellcheck disable=SC1091
  . tests/.services/env
  REDIS_FLAG=(--redis "${NECTAR_TEST_REDIS_URL%/}/7")
fi
"$BIN" import --site demo --config "$WORK/nectar.toml" --csv "$DATA/ml-100k/ml-100k.csv" \
  --items "$DATA/ml-100k/items.csv" --data-dir "$WORK/data" "${REDIS_FLAG[@]}" 2>/dev/null
"$BIN" train --site demo --config "$WORK/nectar.toml" --data-dir "$WORK/data" "${REDIS_FLAG[@]}" | grep -v '^ '
if [ -n "${SERVE_PREPARE_ONLY:-}" ]; then
  # serve-vs-flask.sh: the trained data dir and config, for both servers.
  mkdir -p "$SERVE_PREPARE_ONLY" && cp -r "$WORK/data" "$WORK/nectar.toml" "$SERVE_PREPARE_ONLY/"
  exit 0
fi

if [ -n "${SERVE_INPROC:-}" ]; then
  U='/v1/recommend/for-you?s=demo&n=10&user_id={user}'
  "$BIN" bench serve --data-dir "$WORK/data" --config "$WORK/nectar.toml" \
    --queries $((SECS * 1000)) --variant "user=$U" --variant "user+explain=$U&explain=true" \
    --variant "user+diversity=/v1/recommend/for-you-diverse?s=demo&n=10&user_id={user}" \
    --variant "session=/v1/session/visit?s=demo&n=10&items={items}" \
    --variant "session+explain=/v1/session/visit?s=demo&n=10&explain=true&items={items}"
  exit
fi

# Random known users (ml-100k user ids are 1..943).
# Session requests: 10 random items (ml-100k item ids are 1..1682).
cat >"$WORK/get.lua" <<LUA
math.randomseed(42)
local non200 = 0
local session = "${SERVE_SESSION:-}" ~= ""
request = function()
  if session then
    local items = {}
    for i = 1, 10 do items[i] = math.random(1, 1682) end
    return wrk.format("GET", "/v1/session/visit?s=demo&n=10${EXPLAIN}&items=" .. table.concat(items, ","))
  end
  return wrk.format("GET", "/v1/recommend/for-you?s=demo&n=10${EXPLAIN}&user_id=" .. math.random(1, 943))
end
response = function(status, headers, body) if status ~= 200 then non200 = non200 + 1 end end
done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

PORT=$((20000 + RANDOM % 10000))
"$BIN" dev --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" --config "$WORK/nectar.toml" \
  "${REDIS_FLAG[@]}" >"$WORK/dev.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
# One answer to check, and to load the model before timing.
if [ -n "${SERVE_SESSION:-}" ]; then
  ANSWER=$(curl -s "http://127.0.0.1:$PORT/v1/session/visit?s=demo&n=10${EXPLAIN}&items=1,2,3,4,5,6,7,8,9,10")
else
  ANSWER=$(curl -s "http://127.0.0.1:$PORT/v1/recommend/for-you?s=demo&n=10${EXPLAIN}&user_id=1")
fi
echo "$ANSWER" | python3 -c 'import json,sys; a=json.load(sys.stdin); assert a["fallback"] is False and len(a["items"]) == 10, a; print("user 1 →", [i["id"] for i in a["items"]], a["model"])'
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/get.lua" "http://127.0.0.1:$PORT" | tee "$WORK/wrk.txt"
kill $PID; wait $PID 2>/dev/null || true
if grep -q "Non-2xx" "$WORK/wrk.txt"; then echo "FAIL: non-200 answers" >&2; exit 1; fi
REQS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
SERVED=$(find "$WORK/data/events" -name '*.jsonl.gz' -exec zcat {} + | grep -c '"recommendation_served"' || true)
echo "served log: $SERVED recommendation_served events on disk for $REQS requests completed by wrk (+1 check)"
[ "$SERVED" -ge "$REQS" ] || { echo "FAIL: served events missing" >&2; exit 1; }
