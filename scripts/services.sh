#!/usr/bin/env bash
# Installs (Debian packages, when run as root) and starts the services the test suite uses:
# a throwaway PostgreSQL server on loopback, a Milvus standalone server on loopback, and Chromium for the
# browser tests.
# Prints the environment to export: eval "$(scripts/services.sh start)".
set -euo pipefail

PGPORT="${FACETRACE_TEST_PGPORT:-55432}"
PGDIR="${FACETRACE_TEST_PGDIR:-${TMPDIR:-/tmp}/facetrace-test-pg}"

have_pg() { ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }

install_packages() {
  local need=()
  have_pg || need+=(postgresql)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "note: cannot install ${need[*]} (not root); the tests that need them will be skipped" >&2
    return 0
  fi
  echo "installing ${need[*]} from Debian..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 || echo "note: apt-get install failed" >&2
}

start_pg() {
  have_pg || return 0
  local bin; bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
  local runas=()
  # PostgreSQL refuses to run as root: use the postgres system user when we are root.
  if [ "$(id -u)" -eq 0 ]; then runas=(runuser -u postgres --); fi
  if ! "${runas[@]}" "$bin/pg_ctl" -D "$PGDIR" status >/dev/null 2>&1; then
    rm -rf "$PGDIR"; mkdir -p "$PGDIR"
    [ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
    "${runas[@]}" "$bin/initdb" -D "$PGDIR" -A trust -U facetrace >/dev/null
    "${runas[@]}" "$bin/pg_ctl" -D "$PGDIR" -l "$PGDIR/server.log" -w \
      -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDIR -c fsync=off" start >/dev/null
  fi
  echo "export FACETRACE_TEST_POSTGRES_URL=postgresql+psycopg://facetrace@127.0.0.1:$PGPORT/postgres"
}

stop_pg() {
  have_pg || return 0
  local bin; bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
  local runas=(); if [ "$(id -u)" -eq 0 ]; then runas=(runuser -u postgres --); fi
  "${runas[@]}" "$bin/pg_ctl" -D "$PGDIR" -m fast stop >/dev/null 2>&1 || true
}

# A Milvus standalone server (the `milvus` package, installed by `make test`) on ports of its own, so that it
# never meets a developer's Milvus on the default ports (its embedded etcd and metrics keep 2379, 2380, 9091);
# its data lives in a temporary folder and survives a restart (each test uses and drops its own collection).
MILVUS_PORT="${FACETRACE_TEST_MILVUS_PORT:-19539}"
MILVUS_DIR="${FACETRACE_TEST_MILVUS_DIR:-${TMPDIR:-/tmp}/facetrace-test-milvus}"
MILVUS_BIN="${VENV:-.venv}/bin/milvus-server"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_milvus() {
  [ -x "$MILVUS_BIN" ] || { echo "note: $MILVUS_BIN not installed; the Milvus server tests will be skipped" >&2; return 0; }
  if ! port_open "$MILVUS_PORT"; then
    mkdir -p "$MILVUS_DIR"
    local offset=$((MILVUS_PORT - 19530))
    # Its own session, so that stopping it stops the server process its launcher starts.
    setsid nohup "$MILVUS_BIN" --data "$MILVUS_DIR" --proxy-port "$MILVUS_PORT" \
      --etcd-port $((2379 + offset * 10)) --proxy-internal-port $((19529 - offset)) \
      --root-coord-port $((53100 + offset)) --query-coord-port $((19531 + offset * 10)) \
      --query-node-port $((21123 + offset * 10)) --index-coord-port $((31000 + offset)) \
      --index-node-port $((21121 + offset * 10)) --data-coord-port $((13333 + offset)) \
      --data-node-port $((21124 + offset * 10)) >"$MILVUS_DIR/server.out" 2>&1 &
    echo $! >"$MILVUS_DIR/server.pid"
    for _ in $(seq 1 240); do port_open "$MILVUS_PORT" && break; sleep 0.5; done
    port_open "$MILVUS_PORT" || { echo "note: the Milvus server did not start (see $MILVUS_DIR/server.out)" >&2; return 0; }
  fi
  # The port opens before the server answers: wait until it lists its collections.
  "${VENV:-.venv}/bin/python" -c "from pymilvus import MilvusClient; MilvusClient(uri='http://127.0.0.1:$MILVUS_PORT', timeout=120).list_collections()" >/dev/null 2>&1 \
    || { echo "note: the Milvus server does not answer (see $MILVUS_DIR/server.out)" >&2; return 0; }
  echo "export FACETRACE_TEST_MILVUS_URL=milvus://127.0.0.1:$MILVUS_PORT"
}

stop_milvus() {
  [ -f "$MILVUS_DIR/server.pid" ] || return 0
  local group="-$(cat "$MILVUS_DIR/server.pid")"
  kill -TERM -- "$group" 2>/dev/null || true
  # A clean stop takes a while, but an unclean one leaves the node's session in the embedded etcd, and the
  # next start then waits minutes for it to expire.
  for _ in $(seq 1 120); do kill -0 -- "$group" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "$group" 2>/dev/null || true
  rm -f "$MILVUS_DIR/server.pid"
}

case "${1:-start}" in
  start) install_packages; start_pg; start_milvus ;;
  stop) stop_pg; stop_milvus ;;
  stop-milvus) stop_milvus ;;
  *) echo "usage: $0 start|stop|stop-milvus" >&2; exit 2 ;;
esac
