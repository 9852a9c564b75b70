#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (and for trying --store):
#
#   eval "$(scripts/pg-throwaway.sh start)"   # exports LABELREST_TEST_PG and PG_THROWAWAY
#   ...
#   scripts/pg-throwaway.sh stop "$PG_THROWAWAY"
#
# (`restart DIR`: a fast restart, every connection closed, for the test of
# what labelrest does then.)
#
# It runs from a new temporary folder, listening on a Unix socket in that
# folder only (no TCP port), with trust authentication for the local user.
# PostgreSQL refuses to run as root: run as root, it runs as the `postgres`
# user that Debian's package makes (or LABELREST_PG_USER). `stop` stops it
# and removes the folder.
set -euo pipefail

bin_dir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] || { echo "no PostgreSQL server found (Debian: apt-get install postgresql)" >&2; exit 1; }
  echo "$d"
}

as_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "${LABELREST_PG_USER:-postgres}" -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  start)
    BIN=$(bin_dir)
    DIR=$(mktemp -d /tmp/labelrest-pg.XXXXXX)
    chmod 755 "$DIR"
    if [ "$(id -u)" = 0 ]; then
      chown "${LABELREST_PG_USER:-postgres}" "$DIR"
    fi
    as_user "$BIN/initdb" -D "$DIR/data" -A trust -U labelrest -E UTF8 --no-instructions >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
    as_user "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
      -o "-c listen_addresses='' -c unix_socket_directories='$DIR' -c max_connections=300 -c fsync=on" start >/dev/null \
      || { cat "$DIR/server.log" >&2; exit 1; }
    echo "export PG_THROWAWAY='$DIR'"
    echo "export LABELREST_TEST_PG='host=$DIR user=labelrest dbname=postgres'"
    ;;
  restart)
    DIR=${2:?usage: pg-throwaway.sh restart DIR}
    case "$DIR" in /tmp/labelrest-pg.*) ;; *) echo "not a throwaway server: $DIR" >&2; exit 1 ;; esac
    BIN=$(bin_dir)
    as_user "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -m fast -w \
      -o "-c listen_addresses='' -c unix_socket_directories='$DIR' -c max_connections=300 -c fsync=on" restart >/dev/null \
      || { tail -20 "$DIR/server.log" >&2; exit 1; }
    ;;
  stop)
    DIR=${2:?usage: pg-throwaway.sh stop DIR}
    case "$DIR" in /tmp/labelrest-pg.*) ;; *) echo "not a throwaway server: $DIR" >&2; exit 1 ;; esac
    BIN=$(bin_dir)
    as_user "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: $0 start | restart DIR | stop DIR" >&2
    exit 2
    ;;
esac
