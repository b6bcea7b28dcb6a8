#!/usr/bin/env bash
# `nectar dev` against a Flask + gunicorn (2 workers) + numpy server of the same ml-100k ALS
# model (scripts/bench/flask_peer.py), side by side on this machine: the same data dir, the
# same answers (top-10 for a known user, recent history excluded, at most 4 per category),
# both checked to agree first, then `wrk -t2` at 16 connections (throughput) and at 4
# (latency), the two servers alternated in every round. nectar runs as `make bench-serve` runs
# it: metrics on (GET /metrics), served log on (checked on disk at the end).
# p99 note: wrk and both servers share this machine's cores, so a closed loop keeps them all
# busy and a request's tail is mostly time spent waiting for a core. Two controls tell that
# apart from the server's own time: every round also times nectar's trivial `/healthz` at 4
# connections, and the end prints the handler's latency from nectar's own histogram.
# Usage: scripts/bench/serve-vs-flask.sh [NECTAR_BIN] [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/nectar}
SECS=${2:-10}
ROUNDS=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
VENV=$(bash scripts/bench/flask-venv.sh)
WORK=$(mktemp -d)
NPID=
FPID=
trap 'kill $NPID $FPID 2>/dev/null || true; rm -rf "$WORK"' EXIT

SERVE_PREPARE_ONLY="$WORK" bash scripts/bench/serve.sh "$BIN" >/dev/null

NPORT=$((20000 + RANDOM % 5000))
FPORT=$((25000 + RANDOM % 5000))
"$BIN" dev --addr "127.0.0.1:$NPORT" --data-dir "$WORK/data" --config "$WORK/nectar.toml" \
  >"$WORK/dev.log" 2>&1 &
NPID=$!
NECTAR_PEER_DATA="$WORK/data" "$VENV/bin/gunicorn" -w 2 -b "127.0.0.1:$FPORT" \
  --chdir scripts/bench --log-level warning flask_peer:app >"$WORK/flask.log" 2>&1 &
FPID=$!
for port in $NPORT $FPORT; do
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

# Same answers: the ids of both servers for users 1..100 (ties within f32 rounding may
# order differently; the count says how often).
python3 - "$NPORT" "$FPORT" <<'PY'
import json, sys, urllib.request
n, f = sys.argv[1:3]
def ids(port, u):
    url = f"http://127.0.0.1:{port}/v1/recommend/for-you?s=demo&n=10&user_id={u}"
    a = json.load(urllib.request.urlopen(url))
    assert a["fallback"] is False and len(a["items"]) == 10, a
    return [i["id"] for i in a["items"]]
same = sum(ids(n, u) == ids(f, u) for u in range(1, 101))
print(f"same top-10 from both servers for {same}/100 users")
if same < 95:
    sys.exit("FAIL: the servers do not answer the same")
PY

# The 943 requests are formatted once, in `init`: wrk then spends its CPU on the sockets, not
# on building strings, which leaves more of the two cores to the server under test.
cat >"$WORK/get.lua" <<'LUA'
local reqs = {}
init = function(args)
  for u = 1, 943 do
    reqs[u] = wrk.format("GET", "/v1/recommend/for-you?s=demo&n=10&user_id=" .. u)
  end
  math.randomseed(42)
end
request = function()
  return reqs[math.random(1, 943)]
end
done = function(summary, latency, requests)
  io.write(string.format("LAT %.3f %.3f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
LUA

# The control: nectar's `/healthz` (no model, no served log, the same HTTP stack and
# threads), whose latency is what this machine adds to any answer (see the p99 note below).
cat >"$WORK/health.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("LAT %.3f %.3f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
LUA

run() { # server port conns round [script path]
  local out
  out=$(wrk -t2 -c"$3" -d"${SECS}s" --latency -s "$WORK/${5:-get}.lua" "http://127.0.0.1:$2${6:-}")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" >&2; fi
  local rps lat
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  lat=$(echo "$out" | awk '/^LAT/ {print $2, $3}')
  printf '%-7s %5s %5s %12s %s\n' "$1" "$3" "$4" "$rps" "$lat" | tee -a "$WORK/rows"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %5s %5s %12s %s\n' server conns round "req/s" "p50_ms p99_ms"
for r in $(seq 1 "$ROUNDS"); do
  for c in 16 4; do
    # Alternate which server goes first, so drift in the machine's load hits both.
    if [ $((r % 2)) -eq 1 ]; then
      run nectar "$NPORT" "$c" "$r"; run flask "$FPORT" "$c" "$r"
    else
      run flask "$FPORT" "$c" "$r"; run nectar "$NPORT" "$c" "$r"
    fi
  done
  run healthz "$NPORT" 4 "$r" health /healthz
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for c in ("16", "4"):
    for s in ("nectar", "flask"):
        sel = [r for r in rows if r[0] == s and r[1] == c]
        med[s, c] = [statistics.median(float(r[i]) for r in sel) for i in (3, 4, 5)]
sel = [r for r in rows if r[0] == "healthz"]
med["healthz", "4"] = [statistics.median(float(r[i]) for r in sel) for i in (3, 4, 5)]
print("median over rounds:")
print(f"{'server':7} {'conns':>5} {'req/s':>10} {'p50_ms':>8} {'p99_ms':>8}")
for (s, c), (rps, p50, p99) in med.items():
    print(f"{s:7} {c:>5} {rps:10.0f} {p50:8.3f} {p99:8.3f}")
for c in ("16", "4"):
    print(f"nectar/flask req/s at {c} connections: {med['nectar', c][0] / med['flask', c][0]:.1f}x")
PY
# nectar's own view of the same requests: the handler's latency histogram (/metrics), from
# the request's arrival in the handler to its answer, without the sockets and the scheduler.
curl -s "http://127.0.0.1:$NPORT/metrics" | python3 -c '
import re, sys
b = [(float(m.group(1).replace("+Inf", "inf")), int(m.group(2))) for m in
     re.finditer(r"recommend_latency_ms_bucket\{[^}]*le=\"([^\"]+)\"\} (\d+)", sys.stdin.read())]
n = b[-1][1]
for q in (0.5, 0.99, 0.999):
    le = next(le for le, c in b if c >= q * n)
    print(f"handler p{q * 100:g} <= {le:g} ms (histogram bucket) over {n} answers")
'
kill $NPID; wait $NPID 2>/dev/null || true
SERVED=$(find "$WORK/data/events" -name '*.jsonl.gz' -exec zcat {} + | grep -c '"recommendation_served"' || true)
echo "served log: $SERVED recommendation_served events on disk"
