#!/usr/bin/env bash
# Installs (if missing), starts and stops the real services the integration tests use, on
# loopback: redis-server (Debian package) and moto_server (PyPI moto[server], in a venv) for
# S3, Kinesis and DynamoDB.
#
#   tests/services.sh start   # idempotent; writes tests/.services/env
#   tests/services.sh stop
#   tests/services.sh status
#
# Ports: NECTAR_TEST_REDIS_PORT (default 16379), NECTAR_TEST_MOTO_PORT (default 15000).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${NECTAR_SERVICES_DIR:-$ROOT/tests/.services}
VENV=${NECTAR_TEST_VENV:-$ROOT/.venv-test}
REDIS_PORT=${NECTAR_TEST_REDIS_PORT:-16379}
MOTO_PORT=${NECTAR_TEST_MOTO_PORT:-15000}
MOTO_VERSION=5.2.1

mkdir -p "$STATE"
exec 9>"$STATE/lock"
flock 9   # concurrent test binaries start the services once

log() { echo "services: $*" >&2; }

install() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-server >/dev/null
  fi
  if [ ! -x "$VENV/bin/moto_server" ]; then
    log "installing moto[server]==$MOTO_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
}

redis_up() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }
moto_up() { curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; }

start() {
  install
  if ! redis_up; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$STATE" \
      --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --save '' --appendonly no 9>&-
  fi
  if ! moto_up; then
    # 9>&-: the server must not inherit (and hold) the lock
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE/moto.log" 2>&1 9>&- &
    echo $! >"$STATE/moto.pid"
  fi
  for _ in $(seq 1 100); do
    if redis_up && moto_up; then break; fi
    sleep 0.2
  done
  redis_up || { log "redis-server did not start; see $STATE/redis.log"; exit 1; }
  moto_up || { log "moto_server did not start; see $STATE/moto.log"; exit 1; }
  cat >"$STATE/env" <<ENV
NECTAR_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
NECTAR_TEST_AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT
ENV
  log "redis on 127.0.0.1:$REDIS_PORT, moto on 127.0.0.1:$MOTO_PORT"
}

stop() {
  if [ -f "$STATE/redis.pid" ]; then kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true; rm -f "$STATE/redis.pid"; fi
  if [ -f "$STATE/moto.pid" ]; then kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true; rm -f "$STATE/moto.pid"; fi
  rm -f "$STATE/env"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) redis_up && echo "redis up" || echo "redis down"; moto_up && echo "moto up" || echo "moto down" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
