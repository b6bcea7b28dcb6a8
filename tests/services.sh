#!/usr/bin/env bash
# Installs (if missing), starts and stops the real services the integration tests use, on
# loopback: redis-server (Debian package) and moto_server (PyPI moto[server], in a venv) for
# S3, Kinesis and DynamoDB.
#
#   tests/services.sh start   # idempotent; writes tests/.services/env
#   tests/services.sh stop
#   tests/services.sh status
#
# Ports: NECTAR_TEST_REDIS_PORT (default 16379), NECTAR_TEST_MOTO_PORT (default 15000), a
# 3-master Redis Cluster on NECTAR_TEST_CLUSTER_PORT .. +2 (default 17001-17003), and, like the
# deployed ElastiCache, TLS + AUTH: one node on NECTAR_TEST_REDIS_TLS_PORT (default 16380) and a
# 3-master cluster on NECTAR_TEST_TLS_CLUSTER_PORT .. +2 (default 17101-17103). Their certificate
# comes from a throwaway CA made here (tests/.services/tls/ca.crt), their "default" user has a
# random password and the AccessString of infra/template.yaml's RBAC user, so the tests prove
# that the functions need no more than the deployed ACL grants.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${NECTAR_SERVICES_DIR:-$ROOT/tests/.services}
VENV=${NECTAR_TEST_VENV:-$ROOT/.venv-test}
REDIS_PORT=${NECTAR_TEST_REDIS_PORT:-16379}
MOTO_PORT=${NECTAR_TEST_MOTO_PORT:-15000}
CLUSTER_PORT=${NECTAR_TEST_CLUSTER_PORT:-17001}
CLUSTER_PORTS="$CLUSTER_PORT $((CLUSTER_PORT + 1)) $((CLUSTER_PORT + 2))"
TLS_PORT=${NECTAR_TEST_REDIS_TLS_PORT:-16380}
TLS_CLUSTER_PORT=${NECTAR_TEST_TLS_CLUSTER_PORT:-17101}
TLS_CLUSTER_PORTS="$TLS_CLUSTER_PORT $((TLS_CLUSTER_PORT + 1)) $((TLS_CLUSTER_PORT + 2))"
TLS=$STATE/tls
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
cluster_up() { redis-cli -p "$CLUSTER_PORT" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

start_cluster() {
  cluster_up && return 0
  local hosts=()
  for p in $CLUSTER_PORTS; do
    mkdir -p "$STATE/cluster-$p"
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$STATE/cluster-$p/nodes.conf"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes --dir "$STATE/cluster-$p" \
      --pidfile "$STATE/cluster-$p/redis.pid" --logfile "$STATE/cluster-$p/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --save '' --appendonly no 9>&-
    hosts+=("127.0.0.1:$p")
  done
  for p in $CLUSTER_PORTS; do
    for _ in $(seq 1 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes >"$STATE/cluster-create.log" 2>&1 || true
  for _ in $(seq 1 100); do cluster_up && return 0; sleep 0.1; done
  log "the Redis Cluster did not come up; see $STATE/cluster-create.log"
  return 1
}
# ---- TLS + AUTH (the deployed shape)
make_tls_material() {
  mkdir -p "$TLS"
  if [ ! -s "$TLS/server.crt" ]; then
    log "making a throwaway CA and server certificate in $TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Nectar test CA" \
      -keyout "$TLS/ca.key" -out "$TLS/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$TLS/server.ext"
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
      -days 3650 -extfile "$TLS/server.ext" -out "$TLS/server.crt" 2>/dev/null
  fi
  [ -s "$TLS/password" ] || openssl rand -hex 20 >"$TLS/password"
  [ -s "$TLS/admin-password" ] || openssl rand -hex 20 >"$TLS/admin-password"
  # The RBAC user's access string, as deployed.
  sed -n 's/^ *AccessString: *//p' "$ROOT/infra/template.yaml" | head -n1 >"$TLS/access-string.new"
  [ -s "$TLS/access-string.new" ] || { log "no AccessString in infra/template.yaml"; return 1; }
}

# redis-server options of a TLS node on port $1 in dir $2: no plain port, the "default" user
# limited to the template's access string, and an "admin" user only for setting up the cluster.
tls_node_args() {
  local rules
  read -r -a rules <"$TLS/access-string"   # read: no glob expansion of ~nectar:*
  TLS_ARGS=(--port 0 --tls-port "$1" --bind 127.0.0.1 --daemonize yes --dir "$2"
    --pidfile "$2/redis.pid" --logfile "$2/redis.log" --save '' --appendonly no
    --tls-cert-file "$TLS/server.crt" --tls-key-file "$TLS/server.key"
    --tls-ca-cert-file "$TLS/ca.crt" --tls-auth-clients no
    --user default reset "${rules[@]}" ">$(cat "$TLS/password")"
    --user admin on ">$(cat "$TLS/admin-password")" '~*' '&*' +@all)
}

tls_cli() {  # tls_cli PORT USER ARGS...: redis-cli over TLS as USER
  local port=$1 user=$2 pw
  shift 2
  if [ "$user" = admin ]; then pw=$(cat "$TLS/admin-password"); else pw=$(cat "$TLS/password"); fi
  REDISCLI_AUTH=$pw redis-cli --tls --cacert "$TLS/ca.crt" -h 127.0.0.1 -p "$port" --user "$user" "$@" 2>/dev/null
}
tls_up() { [ "$(tls_cli "$TLS_PORT" default ping)" = PONG ]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A TLS port that answers but not to this checkout's CA and passwords belongs to another
# checkout's services: say so instead of failing obscurely.
tls_port_free_or_ours() {
  local p=$1
  if port_open "$p" && [ "$(tls_cli "$p" admin ping)" != PONG ]; then
    log "port $p is in use by a process this checkout did not start (another checkout's tests/services.sh? run \"bash tests/services.sh stop\" there)"
    return 1
  fi
}
tls_cluster_up() { tls_cli "$TLS_CLUSTER_PORT" admin cluster info | grep -q '^cluster_state:ok'; }

start_tls() {
  make_tls_material
  # A changed access string means restarting with the new ACL.
  if ! cmp -s "$TLS/access-string.new" "$TLS/access-string"; then
    for p in $TLS_PORT $TLS_CLUSTER_PORTS; do tls_cli "$p" admin shutdown nosave >/dev/null || true; done
    sleep 0.3
  fi
  mv "$TLS/access-string.new" "$TLS/access-string"
  for p in $TLS_PORT $TLS_CLUSTER_PORTS; do tls_port_free_or_ours "$p" || return 1; done
  if ! tls_up; then
    mkdir -p "$TLS/node-$TLS_PORT"
    tls_node_args "$TLS_PORT" "$TLS/node-$TLS_PORT"
    redis-server "${TLS_ARGS[@]}" 9>&-
  fi
  if ! tls_cluster_up; then
    local hosts=()
    for p in $TLS_CLUSTER_PORTS; do
      mkdir -p "$TLS/cluster-$p"
      tls_cli "$p" admin shutdown nosave >/dev/null || true
      rm -f "$TLS/cluster-$p/nodes.conf"
      tls_node_args "$p" "$TLS/cluster-$p"
      redis-server "${TLS_ARGS[@]}" --cluster-enabled yes --cluster-config-file nodes.conf \
        --tls-cluster yes --masteruser admin --masterauth "$(cat "$TLS/admin-password")" 9>&-
      hosts+=("127.0.0.1:$p")
    done
    for p in $TLS_CLUSTER_PORTS; do
      for _ in $(seq 1 50); do [ "$(tls_cli "$p" admin ping)" = PONG ] && break; sleep 0.1; done
    done
    REDISCLI_AUTH=$(cat "$TLS/admin-password") redis-cli --tls --cacert "$TLS/ca.crt" --user admin \
      --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes >"$TLS/cluster-create.log" 2>&1 || true
    for _ in $(seq 1 100); do tls_cluster_up && break; sleep 0.1; done
    tls_cluster_up || { log "the TLS Redis Cluster did not come up; see $TLS/cluster-create.log"; return 1; }
  fi
  for _ in $(seq 1 50); do tls_up && break; sleep 0.1; done
  tls_up || { log "the TLS redis-server did not start; see $TLS/node-$TLS_PORT/redis.log"; return 1; }
}

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
  start_cluster
  start_tls
  for _ in $(seq 1 100); do
    if redis_up && moto_up; then break; fi
    sleep 0.2
  done
  redis_up || { log "redis-server did not start; see $STATE/redis.log"; exit 1; }
  moto_up || { log "moto_server did not start; see $STATE/moto.log"; exit 1; }
  cat >"$STATE/env" <<ENV
NECTAR_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
NECTAR_TEST_AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT
NECTAR_TEST_REDIS_CLUSTER_URL=redis-cluster://127.0.0.1:$CLUSTER_PORT,127.0.0.1:$((CLUSTER_PORT + 1)),127.0.0.1:$((CLUSTER_PORT + 2))
NECTAR_TEST_REDIS_TLS_URL=rediss://127.0.0.1:$TLS_PORT
NECTAR_TEST_REDIS_TLS_CLUSTER_URL=rediss-cluster://127.0.0.1:$TLS_CLUSTER_PORT,127.0.0.1:$((TLS_CLUSTER_PORT + 1)),127.0.0.1:$((TLS_CLUSTER_PORT + 2))
NECTAR_TEST_REDIS_TLS_CA_FILE=$TLS/ca.crt
NECTAR_TEST_REDIS_TLS_USER=default
NECTAR_TEST_REDIS_TLS_PASSWORD=$(cat "$TLS/password")
ENV
  log "redis on 127.0.0.1:$REDIS_PORT, cluster on 127.0.0.1:$CLUSTER_PORT-$((CLUSTER_PORT + 2)), moto on 127.0.0.1:$MOTO_PORT"
  log "TLS + AUTH redis on 127.0.0.1:$TLS_PORT, TLS cluster on 127.0.0.1:$TLS_CLUSTER_PORT-$((TLS_CLUSTER_PORT + 2))"
}

stop() {
  if [ -f "$STATE/redis.pid" ]; then kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true; rm -f "$STATE/redis.pid"; fi
  if [ -f "$STATE/moto.pid" ]; then kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true; rm -f "$STATE/moto.pid"; fi
  for p in $CLUSTER_PORTS; do
    if [ -f "$STATE/cluster-$p/redis.pid" ]; then kill "$(cat "$STATE/cluster-$p/redis.pid")" 2>/dev/null || true; rm -f "$STATE/cluster-$p/redis.pid"; fi
  done
  for d in "$TLS/node-$TLS_PORT" $(for p in $TLS_CLUSTER_PORTS; do echo "$TLS/cluster-$p"; done); do
    if [ -f "$d/redis.pid" ]; then kill "$(cat "$d/redis.pid")" 2>/dev/null || true; rm -f "$d/redis.pid"; fi
  done
  rm -f "$STATE/env"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) redis_up && echo "redis up" || echo "redis down"; cluster_up && echo "cluster up" || echo "cluster down"; moto_up && echo "moto up" || echo "moto down"
    tls_up && echo "tls redis up" || echo "tls redis down"; tls_cluster_up && echo "tls cluster up" || echo "tls cluster down" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
