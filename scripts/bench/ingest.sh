#!/usr/bin/env bash
# Ingest throughput of `nectar dev` (embedded event log, fsync + group commit) with wrk:
# 100-event PEACH payloads over loopback. Usage: scripts/bench/ingest.sh [NECTAR_BIN] [SECONDS] [CONNECTIONS]
# Prints requests/s, events/s, latency, and checks that the log holds every acknowledged event.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/nectar}
SECS=${2:-10}
CONNS=${3:-16}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A 100-event payload from the checked-in fixture, re-timed to now.
python3 - "$WORK/payload.json" <<'PY'
import json, sys, time
now = int(time.time() * 1000)
p = json.load(open("shared/model/benches/fixtures/peach-1000.json"))
p["events"] = p["events"][:100]
off = now - p["sent_timestamp"]
p["sent_timestamp"] = now
p["session_start_timestamp"] += off
for e in p["events"]:
    e["event_timestamp"] += off
json.dump(p, open(sys.argv[1], "w"), separators=(",", ":"))
PY
cat >"$WORK/post.lua" <<LUA
local f = io.open("$WORK/payload.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local non202 = 0
response = function(status, headers, body) if status ~= 202 then non202 = non202 + 1 end end
done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, non-202 answers: %d (this thread)\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, non202))
end
LUA

PORT=$((20000 + RANDOM % 10000))
"$BIN" dev --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/dev.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT/v1/collect?s=demo" | tee "$WORK/wrk.txt"
kill $PID; wait $PID 2>/dev/null || true
RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
REQS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
LINES=$(find "$WORK/data/events" -name '*.jsonl.gz' -exec zcat {} + | wc -l)
echo "events/s: $(python3 -c "print(round($RPS * 100))")  (requests/s $RPS × 100 events)"
echo "events on disk: $LINES; requests completed by wrk: $REQS (each acknowledged one holds 100)"
