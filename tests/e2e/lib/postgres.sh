# PostgreSQL for the end-to-end suites, sourced by run.sh (which defines
# apt_install, setup_fail, start, free_port, wait_tcp, assert_loopback).
#
#   start_postgres NAME    a server of its own: a fresh data directory in
#                          $work, trust authentication, 127.0.0.1 only, its
#                          Unix socket in that directory; as the `postgres`
#                          user when run as root (PostgreSQL refuses root).
#                          Sets $pg_port and $pg_bin; stopped by PID with the
#                          other servers (SIGTERM: smart shutdown, then
#                          SIGKILL after 5 s, as run.sh does for everything).
#   pg_sql ARGS...         psql as the superuser `channelgate` on database ${pg_db:-postgres}
#                          (stops at the first error).

pg_find_bin() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null)
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  return 1
}

start_postgres() {
  local name=$1 data as=()
  pg_bin=$(pg_find_bin) || { apt_install postgresql; pg_bin=$(pg_find_bin) || setup_fail "no initdb after installing postgresql"; }
  data="$work/$name"
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || setup_fail "running as root, and there is no postgres user to run PostgreSQL as"
    chown postgres:postgres "$data"
    chmod o+x "$work" # the postgres user must reach its directory inside
    as=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
  fi
  "${as[@]}" "$pg_bin/initdb" -D "$data/data" -U channelgate --auth=trust -E UTF8 --locale=C --no-sync \
    >"$logs/$name-initdb.log" 2>&1 || setup_fail "initdb failed; see $logs/$name-initdb.log"
  pg_port=$(free_port)
  start "$name" "${as[@]}" "$pg_bin/postgres" -D "$data/data" -h 127.0.0.1 -p "$pg_port" -k "$data" \
    -F -c max_connections=40 -c shared_buffers=16MB
  wait_tcp "$name" "$pid" "$pg_port" 30
  local deadline=$((SECONDS + 20))
  until "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; do
    kill -0 "$pid" 2>/dev/null || setup_fail "$name exited; see $logs/$name.log"
    [ "$SECONDS" -lt "$deadline" ] || setup_fail "$name did not accept connections within 20 s"
    sleep 0.1
  done
  assert_loopback "$name" "$pid"
  echo "   $name: postgres://127.0.0.1:$pg_port (pid $pid)"
}

pg_sql() {
  "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U channelgate -d "${pg_db:-postgres}" "$@"
}
