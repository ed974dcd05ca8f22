#!/usr/bin/env bash
# Installs (Debian packages, when run as root) and starts the services the test suite uses:
# a throwaway PostgreSQL server on loopback, and Chromium for the browser tests.
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

case "${1:-start}" in
  start) install_packages; start_pg ;;
  stop) stop_pg ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
