#!/usr/bin/env bash
# Latency A/B of `nectar dev` servers on this machine: each SPEC's server gets its own copy of
# one data dir (the ml-100k ALS model that `serve.sh` trains), all run at once, and every
# round times each with `wrk -t2 -c4` for SECONDS (the order rotates from round to round), so
# the machine's drift hits them alike. The host's CPU steal during each run is read from
# /proc/stat and printed beside it; the summary takes the rounds with at most 20 ms of steal.
# Usage: scripts/bench/serve-ab.sh ROUNDS SPEC [SPEC …]
#   SPEC = NAME|BINARY|DEV_ARGS|ENV   e.g. "log|target/release/nectar||"
#                                          "off|target/release/nectar|--no-served-log|"
#                                          "one|/tmp/old-nectar|--workers 1|RUST_LOG=warn"
# Environment: SECONDS_PER_RUN (default 5), CONNS (default 4).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${1:?usage: serve-ab.sh ROUNDS SPEC [SPEC …]}
shift
[ $# -ge 1 ] || { echo "usage: serve-ab.sh ROUNDS SPEC [SPEC …]" >&2; exit 2; }
SECS=${SECONDS_PER_RUN:-5}
CONNS=${CONNS:-4}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

FIRST_BIN=$(echo "$1" | cut -d'|' -f2)
SERVE_PREPARE_ONLY="$WORK" bash scripts/bench/serve.sh "$FIRST_BIN" >/dev/null
NAMES=()
PORTS=()
i=0
for spec in "$@"; do
  IFS='|' read -r name bin args envs <<<"$spec"
  cp -r "$WORK/data" "$WORK/data$i"
  port=$((20000 + RANDOM % 9000))
  # shellcheck disable=SC2086 # DEV_ARGS and ENV are word lists
  env ${envs:-} "$bin" dev --addr "127.0.0.1:$port" --data-dir "$WORK/data$i" \
    --config "$WORK/nectar.toml" $args >"$WORK/$i.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  PORTS+=("$port")
  i=$((i + 1))
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
cat >"$WORK/get.lua" <<'LUA'
local reqs = {}
init = function(args)
  for u = 1, 943 do reqs[u] = wrk.format("GET", "/v1/recommend/for-you?s=demo&n=10&user_id=" .. u) end
  math.randomseed(42)
end
request = function() return reqs[math.random(1, 943)] end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %.3f %.3f\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000))
end
LUA
steal() { awk '/^cpu / {print $9}' /proc/stat; }
printf '%-10s %5s %8s %7s %7s %7s %7s %9s\n' server round "req/s" p50_ms p90_ms p99_ms p99.9_ms steal_ms
n=${#NAMES[@]}
for r in $(seq 0 $((ROUNDS - 1))); do
  for k in $(seq 0 $((n - 1))); do
    j=$(((k + r) % n))
    before=$(steal)
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$WORK/get.lua" "http://127.0.0.1:${PORTS[$j]}" | awk '/^RESULT/')
    after=$(steal)
    # /proc/stat counts in USER_HZ (100 per second): 10 ms per tick.
    read -r _ rps p50 p90 p99 p999 <<<"$out"
    printf '%-10s %5s %8s %7s %7s %7s %7s %9s\n' "${NAMES[$j]}" $((r + 1)) "$rps" "$p50" "$p90" \
      "$p99" "$p999" $(((after - before) * 10)) | tee -a "$WORK/rows"
  done
done
python3 - "$WORK/rows" "${NAMES[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("rounds with at most 20 ms of steal: median req/s, p90, p99 (every p99, sorted)")
for name in sys.argv[2:]:
    quiet = [r for r in rows if r[0] == name and int(r[7]) <= 20]
    if not quiet:
        print(f"{name:<10} no quiet round")
        continue
    med = lambda k: statistics.median(float(r[k]) for r in quiet)
    p99s = sorted(float(r[5]) for r in quiet)
    print(f"{name:<10} n={len(quiet):<3} req/s {med(2):8.0f}  p90 {med(4):.3f}  p99 {med(5):.3f} ms  {p99s}")
PY
