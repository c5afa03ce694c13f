#!/usr/bin/env bash
# End-to-end tests of channelgate with real third-party components only:
#   - Sockudo 5.2.0 (a Pusher-protocol server; `cargo install`, reused when already built),
#   - pusher-js and the official `pusher` server SDK (npm, from package-lock.json),
#   - the official `pusher` server SDK from PyPI (requirements.txt, in tests/e2e/.venv),
#   - headless Chromium (Debian's `chromium`, driven by playwright-core) on examples/demo,
#   - and on examples/memberships (an Express app with an opaque cookie session) with a
#     PostgreSQL of its own (Debian's `postgresql`, a fresh data directory on a loopback port)
#     and redis-server holding memberships.
#
#   tests/e2e/run.sh                 installs what is missing, builds channelgate, runs the suites
#
# Environment (all optional):
#   CHANNELGATE_BIN   a channelgate binary to test (default: `cargo build --locked`, target/debug/channelgate)
#   SOCKUDO_BIN       a Sockudo 5.2.0 binary (default: $CARGO_HOME/bin/sockudo, installed when missing)
#   CHROMIUM          the browser (default: /usr/bin/chromium)
#   E2E_SUITES        "e2e sdk browser memberships" (default) or some of them
#   E2E_DEBUG=1       pusher-js logs to the console
#
# Every server listens on 127.0.0.1 on a free port, gets fresh random secrets,
# and is stopped by PID when the script exits, also on failure or Ctrl-C.
# Server logs: tests/e2e/artifacts/logs/; the browser screenshot: tests/e2e/artifacts/.
# Output: PASS/FAIL per case, a `SUITE: N passed, M failed` line per suite, and
# last a total `N passed, M failed`. Exit status 0 only when nothing failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
artifacts="$here/artifacts"
logs="$artifacts/logs"
suites=${E2E_SUITES:-e2e sdk browser memberships}
sockudo_version=5.2.0

work=$(mktemp -d "${TMPDIR:-/tmp}/channelgate-e2e.XXXXXX")
pids=()          # every process we started, stopped by PID on exit
names=()
summary=()       # "SUITE: N passed, M failed" lines
total_passed=0
total_failed=0

# ------------------------------------------------------------------ exit path

stop_all() {
  local i pid deadline
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null
  done
  deadline=$((SECONDS + 5))
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "   ${names[$i]} (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  pids=()
  names=()
}

on_exit() {
  local status=$?
  trap - EXIT INT TERM
  stop_all
  rm -rf "$work"
  [ "$status" -ne 0 ] && [ "$total_failed" -eq 0 ] && total_failed=1
  echo "== e2e summary"
  local line
  for line in "${summary[@]}"; do echo "$line"; done
  echo "${total_passed} passed, ${total_failed} failed"
  [ "$total_failed" -eq 0 ] && exit 0 || exit 1
}
trap on_exit EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# A failure before the suites run: one failed case named "setup", with the server logs.
setup_fail() {
  echo "FAIL setup: $*"
  local f
  for f in "$logs"/*.log; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f"
    tail -n 15 "$f"
  done
  summary+=("setup: 0 passed, 1 failed")
  total_failed=$((total_failed + 1))
  exit 1
}

# ------------------------------------------------------------------ helpers

apt_install() {
  command -v apt-get >/dev/null 2>&1 || setup_fail "missing $*, and no apt-get to install it"
  [ "$(id -u)" -eq 0 ] || setup_fail "missing $*; install it (apt-get install $*) or run as root"
  echo "== apt-get install $*"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || setup_fail "apt-get install $* failed"
}

free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# wait_tcp NAME PID PORT SECONDS: until 127.0.0.1:PORT accepts, while PID lives.
wait_tcp() {
  local name=$1 pid=$2 port=$3 deadline=$((SECONDS + $4))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || setup_fail "$name exited before listening on 127.0.0.1:$port"
    [ "$SECONDS" -lt "$deadline" ] || setup_fail "$name did not listen on 127.0.0.1:$port within $4 s"
    sleep 0.1
  done
}

# wait_log NAME PID FILE REGEX SECONDS: prints the first match of REGEX in FILE.
wait_log() {
  local name=$1 pid=$2 file=$3 regex=$4 deadline=$((SECONDS + $5)) hit
  while :; do
    hit=$(grep -Eo "$regex" "$file" 2>/dev/null | head -n 1)
    [ -n "$hit" ] && { echo "$hit"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; see $file" >&2; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "$name did not log /$regex/ within $5 s" >&2; return 1; }
    sleep 0.1
  done
}

# assert_loopback NAME PID: every listening TCP socket of PID is on 127.0.0.1 or ::1
# (read from /proc: Sockudo's defaults would listen on 0.0.0.0, its metrics on 0.0.0.0:9601).
assert_loopback() {
  local name=$1 pid=$2 inodes bad
  inodes=$(ls -l "/proc/$pid/fd" 2>/dev/null | grep -o 'socket:\[[0-9]*\]' | tr -dc '0-9\n' | tr '\n' ' ')
  [ -n "$inodes" ] || return 0
  bad=$(awk -v inodes="$inodes" '
    BEGIN { n = split(inodes, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
    FNR > 1 && $4 == "0A" && ($10 in want) {
      split($2, hp, ":")
      if (hp[1] != "0100007F" && hp[1] != "00000000000000000000000001000000") print $2
    }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  [ -z "$bad" ] || setup_fail "$name (pid $pid) listens beyond loopback (hex addr:port from /proc/net/tcp: $bad)"
}

# start NAME CMD...: runs CMD in the background, logging to $logs/NAME.log; sets $pid.
start() {
  local name=$1
  shift
  (cd "$work" && exec "$@") >"$logs/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  names+=("$name")
}

# Clean environments: no stray HOST/PORT/... may move a listener (Sockudo reads dozens of variables).
base_env=(env -i "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=$work" "LANG=C.UTF-8")

secret() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }

# start_channelgate NAME CONFIG ENV...: sets $gateway_url from the bound address it logs,
# and $admin_url from its admin listener's (empty without `admin.listen`).
start_channelgate() {
  local name=$1 config=$2 addr
  shift 2
  start "$name" "${base_env[@]}" RUST_LOG=info "$@" "$channelgate" serve --config "$config" --log-format json
  addr=$(wait_log "$name" "$pid" "$logs/$name.log" 'listening on http://[0-9.]+:[0-9]+' 30) \
    || setup_fail "$name did not start"
  gateway_url="http://${addr#listening on http://}"
  # Logged before the public listener's line.
  addr=$(grep -Eo 'admin listener on http://[0-9.]+:[0-9]+' "$logs/$name.log" | head -n 1)
  admin_url=${addr:+http://${addr#admin listener on http://}}
  assert_loopback "$name" "$pid"
  echo "   $name: $gateway_url${admin_url:+, admin $admin_url} (pid $pid)"
}

# start_sockudo NAME TOML PORT SECRET [ENV...]: ENV are more placeholders for the TOML.
start_sockudo() {
  local name=$1 toml=$2 port=$3 app_secret=$4
  shift 4
  start "$name" "${base_env[@]}" "SOCKUDO_PORT=$port" "PUSHER_APP_SECRET=$app_secret" "$@" "$sockudo" --config "$toml"
  wait_tcp "$name" "$pid" "$port" 30
  sleep 0.5 # its other listeners, if any, start alongside
  assert_loopback "$name" "$pid"
  echo "   $name: ws://127.0.0.1:$port (pid $pid)"
}

# run_suite NAME SCRIPT ENV...: runs a Node suite, adds its counts to the totals.
run_suite() {
  local name=$1 script=$2 out="$work/$1.out" status counts passed failed
  shift 2
  echo "== suite: $name"
  (cd "$here" && exec timeout 300 env "$@" node "$script") 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  counts=$(tail -n 1 "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$')
  if [ -z "$counts" ]; then
    echo "FAIL $name: the suite stopped without its summary (exit status $status)"
    passed=0
    failed=1
  else
    passed=${counts%% passed*}
    failed=${counts#*, }
    failed=${failed%% failed}
    if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  fi
  summary+=("$name: $passed passed, $failed failed")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
}

wants() { [[ " $suites " == *" $1 "* ]]; }

# ------------------------------------------------------------------ tools

mkdir -p "$logs"
rm -f "$logs"/*.log
started=$SECONDS

command -v node >/dev/null 2>&1 || apt_install nodejs npm
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
  || setup_fail "Node.js >= 18 is needed (found $(node --version))"
command -v npm >/dev/null 2>&1 || apt_install npm

# The PyPI SDK for sdk.mjs: a venv kept in tests/e2e/.venv, rebuilt when requirements.txt changes.
venv="$here/.venv"
if wants sdk; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" || ! "$venv/bin/python" -c 'import pusher' >/dev/null 2>&1; then
    echo "== python3 -m venv tests/e2e/.venv; pip install -r requirements.txt"
    rm -rf "$venv"
    { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" \
      && cp "$here/requirements.txt" "$venv/requirements.txt"; } >"$logs/pip-sdk.log" 2>&1 \
      || setup_fail "the Python SDK's venv could not be made; see $logs/pip-sdk.log"
  fi
fi

chromium_bin=${CHROMIUM:-/usr/bin/chromium}
if { wants browser || wants memberships; } && [ ! -x "$chromium_bin" ]; then
  apt_install chromium
  [ -x "$chromium_bin" ] || setup_fail "no Chromium at $chromium_bin"
fi

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
sockudo=${SOCKUDO_BIN:-$cargo_bin/sockudo}
if ! "$sockudo" --version 2>/dev/null | grep -qw "$sockudo_version"; then
  command -v cargo >/dev/null 2>&1 || setup_fail "cargo is needed to install Sockudo"
  command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler
  echo "== cargo install sockudo $sockudo_version (10-20 minutes on 2 cores, once per machine)"
  timeout 3600 cargo install sockudo --version "$sockudo_version" --no-default-features --features local --locked \
    >"$logs/sockudo-install.log" 2>&1 || setup_fail "cargo install sockudo failed; see $logs/sockudo-install.log"
  sockudo="$cargo_bin/sockudo"
fi
echo "== $("$sockudo" --version) at $sockudo"

if [ -n "${CHANNELGATE_BIN:-}" ]; then
  channelgate=$CHANNELGATE_BIN
else
  echo "== cargo build --locked (channelgate)"
  (cd "$root" && cargo build --locked --quiet --bin channelgate) || setup_fail "cargo build failed"
  channelgate="$root/target/debug/channelgate"
fi
[ -x "$channelgate" ] || setup_fail "no channelgate binary at $channelgate"

echo "== npm ci (tests/e2e, examples/demo)"
(cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$logs/npm-e2e.log" 2>&1 \
  || setup_fail "npm ci in tests/e2e failed; see $logs/npm-e2e.log"
if wants browser; then
  (cd "$root/examples/demo" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$logs/npm-demo.log" 2>&1 \
    || setup_fail "npm ci in examples/demo failed; see $logs/npm-demo.log"
fi
if wants memberships; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  (cd "$root/examples/memberships" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$logs/npm-memberships.log" 2>&1 \
    || setup_fail "npm ci in examples/memberships failed; see $logs/npm-memberships.log"
  "$channelgate" test "$root/examples/memberships/policies" >"$logs/memberships-policy-tests.log" 2>&1 \
    || setup_fail "the memberships example's policy tests fail; see $logs/memberships-policy-tests.log"
fi
if wants browser; then
  "$channelgate" test "$root/examples/demo/policies" >"$logs/demo-policy-tests.log" 2>&1 \
    || setup_fail "the demo policy's own tests fail; see $logs/demo-policy-tests.log"
fi
echo "   tools ready in $((SECONDS - started)) s"

# ------------------------------------------------------------------ servers

echo "== starting servers"
if wants e2e || wants sdk; then
  e2e_app_secret=$(secret 24)
  e2e_master_key=$(secret 32)        # base64 of 32 bytes, as the SDKs expect
  e2e_jwt_secret=$(secret 48)
  e2e_admin_token=$(secret 24)       # channelgate's admin API
  e2e_publish_secret=$(secret 24)    # the local credentials of the publish proxy
  e2e_sdk_secret=$(secret 24)
  e2e_sdk_master_key=$(secret 32)    # the local master key the SDKs seal with
  e2e_sockudo_port=$(free_port)
  e2e_hooks_port=$(free_port)        # the webhook receiver e2e.mjs runs
  # channelgate first (Sockudo's webhook URL is channelgate's port), from a copy
  # of its config with only the loopback URLs of this run changed: Sockudo's
  # REST API (`pusher.api_url`) and the receiver (`webhooks.forward_to`).
  e2e_config="$work/e2e/channelgate.yaml"
  mkdir -p "$work/e2e"
  cp -r "$here/policies" "$work/e2e/"
  # The Laravel example's rules too (sdk.mjs checks Echo's presence members with them).
  cp "$root/examples/laravel-echo/policies/laravel.yaml" "$work/e2e/policies/"
  sed -e "s|^  api_url: http://127.0.0.1:[0-9]*|  api_url: http://127.0.0.1:$e2e_sockudo_port|" \
      -e "s|^  forward_to: http://127.0.0.1:[0-9]*/hooks|  forward_to: http://127.0.0.1:$e2e_hooks_port/hooks|" \
      "$here/channelgate.yaml" >"$e2e_config"
  grep -q "^  api_url: http://127.0.0.1:$e2e_sockudo_port " "$e2e_config" \
    && grep -q "^  forward_to: http://127.0.0.1:$e2e_hooks_port/hooks " "$e2e_config" \
    || setup_fail "tests/e2e/channelgate.yaml no longer has the api_url/forward_to lines this script rewrites"
  start_channelgate channelgate-e2e "$e2e_config" \
    "PUSHER_APP_SECRET=$e2e_app_secret" "PUSHER_ENCRYPTION_MASTER_KEY_BASE64=$e2e_master_key" \
    "SESSION_JWT_SECRET=$e2e_jwt_secret" "CHANNELGATE_ADMIN_TOKEN=$e2e_admin_token" \
    "CHANNELGATE_PUBLISH_SECRET=$e2e_publish_secret" "CHANNELGATE_SDK_SECRET=$e2e_sdk_secret" \
    "CHANNELGATE_SDK_MASTER_KEY=$e2e_sdk_master_key"
  e2e_gateway=$gateway_url
  e2e_admin=$admin_url
  [ -n "$e2e_admin" ] || setup_fail "channelgate-e2e did not log its admin listener"
  start_sockudo sockudo-e2e "$here/sockudo.toml" "$e2e_sockudo_port" "$e2e_app_secret" \
    "CHANNELGATE_WEBHOOK_URL=$e2e_gateway/pusher/webhooks" \
    "E2E_WEBHOOK_DIRECT_URL=http://127.0.0.1:$e2e_hooks_port/direct"
fi

if wants browser; then
  demo_app_secret=$(secret 24)
  demo_jwt_secret=$(secret 48)
  demo_sockudo_port=$(free_port)
  demo_port=$(free_port)
  start_sockudo sockudo-demo "$root/examples/demo/sockudo.toml" "$demo_sockudo_port" "$demo_app_secret"
  # The demo's own config with only what a loopback test must change: the
  # port (any free one) and the page's origin (the demo's random port).
  demo_config="$work/demo/channelgate.yaml"
  mkdir -p "$work/demo"
  cp -r "$root/examples/demo/policies" "$work/demo/"
  sed -e 's|^listen: .*|listen: 127.0.0.1:0|' \
      -e "s|^  allowed_origins: .*|  allowed_origins: [http://127.0.0.1:$demo_port]|" \
      "$root/examples/demo/channelgate.yaml" >"$demo_config"
  grep -q '^listen: 127.0.0.1:0$' "$demo_config" && grep -q "allowed_origins: \[http://127.0.0.1:$demo_port\]" "$demo_config" \
    || setup_fail "examples/demo/channelgate.yaml no longer has the listen/allowed_origins lines this script rewrites"
  start_channelgate channelgate-demo "$demo_config" \
    "PUSHER_APP_SECRET=$demo_app_secret" "SESSION_JWT_SECRET=$demo_jwt_secret"
  demo_gateway=$gateway_url
  start demo-app "${base_env[@]}" HOST=127.0.0.1 "PORT=$demo_port" "CHANNELGATE_URL=$demo_gateway" \
    "SESSION_JWT_SECRET=$demo_jwt_secret" "PUSHER_WS_PORT=$demo_sockudo_port" \
    node "$root/examples/demo/server.js"
  wait_tcp demo-app "$pid" "$demo_port" 20
  assert_loopback demo-app "$pid"
  echo "   demo-app: http://127.0.0.1:$demo_port (pid $pid)"
fi

if wants memberships; then
  # shellcheck source=lib/postgres.sh
  . "$here/lib/postgres.sh"
  start_postgres postgres-members
  members_pg_port=$pg_port
  pg_sql -c "CREATE DATABASE app" >"$logs/members-schema.log" 2>&1 || setup_fail "CREATE DATABASE app failed"
  pg_db=app pg_sql -f "$root/examples/memberships/schema.sql" >>"$logs/members-schema.log" 2>&1 \
    || setup_fail "examples/memberships/schema.sql failed; see $logs/members-schema.log"
  members_redis_port=$(free_port)
  start redis-members redis-server --bind 127.0.0.1 --port "$members_redis_port" --save "" --appendonly no
  wait_tcp redis-members "$pid" "$members_redis_port" 20
  assert_loopback redis-members "$pid"
  redis-cli -p "$members_redis_port" SADD team:blue:members alice >/dev/null || setup_fail "redis-cli SADD failed"
  echo "   redis-members: 127.0.0.1:$members_redis_port (pid $pid)"
  members_app_secret=$(secret 24)
  members_session_secret=$(secret 40)
  members_hook_token=$(secret 40)
  members_sockudo_port=$(free_port)
  members_port=$(free_port)
  start_sockudo sockudo-members "$root/examples/memberships/sockudo.toml" "$members_sockudo_port" "$members_app_secret"
  # The example's own config and policy with only what a loopback test must change: the
  # port, the app's port (session endpoint, hook, page origin) and 2 s TTLs, so a
  # membership change shows within seconds.
  members_dir="$work/members"
  mkdir -p "$members_dir/policies"
  sed -e 's|^listen: .*|listen: 127.0.0.1:0|' \
      -e "s|http://127.0.0.1:3000|http://127.0.0.1:$members_port|g" \
      -e "s|http://localhost:3000|http://localhost:$members_port|" \
      "$root/examples/memberships/channelgate.yaml" >"$members_dir/channelgate.yaml"
  sed -e "s|http://127.0.0.1:3000|http://127.0.0.1:$members_port|" -e 's|ttl: 30s|ttl: 2s|g' \
      "$root/examples/memberships/policies/memberships.yaml" >"$members_dir/policies/memberships.yaml"
  grep -q '^listen: 127.0.0.1:0$' "$members_dir/channelgate.yaml" \
    && grep -q "url: http://127.0.0.1:$members_port/api/me" "$members_dir/channelgate.yaml" \
    && [ "$(grep -c 'ttl: 2s' "$members_dir/policies/memberships.yaml")" -eq 3 ] \
    || setup_fail "examples/memberships no longer has the lines this script rewrites"
  start_channelgate channelgate-members "$members_dir/channelgate.yaml" \
    "PUSHER_APP_SECRET=$members_app_secret" \
    "DATABASE_URL=postgres://channelgate_ro@127.0.0.1:$members_pg_port/app" \
    "REDIS_URL=redis://127.0.0.1:$members_redis_port/" \
    "HOOK_AUTHORIZATION=Bearer $members_hook_token"
  members_gateway=$gateway_url
  start members-app "${base_env[@]}" HOST=127.0.0.1 "PORT=$members_port" "CHANNELGATE_URL=$members_gateway" \
    "APP_DATABASE_URL=postgres://app@127.0.0.1:$members_pg_port/app" "SESSION_SECRET=$members_session_secret" \
    "HOOK_TOKEN=$members_hook_token" ME_MAX_AGE=30 "PUSHER_WS_PORT=$members_sockudo_port" PUSHER_APP_KEY=members-key \
    node "$root/examples/memberships/server.js"
  wait_tcp members-app "$pid" "$members_port" 20
  assert_loopback members-app "$pid"
  echo "   members-app: http://127.0.0.1:$members_port (pid $pid)"
fi

# ------------------------------------------------------------------ suites

suites_started=$SECONDS
if wants e2e; then
  run_suite e2e e2e.mjs "SOCKUDO_PORT=$e2e_sockudo_port" "CHANNELGATE_URL=$e2e_gateway" \
    "PUSHER_APP_SECRET=$e2e_app_secret" "PUSHER_ENCRYPTION_MASTER_KEY_BASE64=$e2e_master_key" \
    "SESSION_JWT_SECRET=$e2e_jwt_secret" "CHANNELGATE_ADMIN_URL=$e2e_admin" \
    "CHANNELGATE_ADMIN_TOKEN=$e2e_admin_token" "CHANNELGATE_PUBLISH_SECRET=$e2e_publish_secret" \
    "CHANNELGATE_SDK_SECRET=$e2e_sdk_secret" "E2E_HOOKS_PORT=$e2e_hooks_port" "E2E_DEBUG=${E2E_DEBUG:-}"
fi
if wants sdk; then
  run_suite sdk sdk.mjs "SOCKUDO_PORT=$e2e_sockudo_port" "CHANNELGATE_URL=$e2e_gateway" \
    "CHANNELGATE_ADMIN_URL=$e2e_admin" "SESSION_JWT_SECRET=$e2e_jwt_secret" "PUSHER_APP_SECRET=$e2e_app_secret" \
    "CHANNELGATE_SDK_SECRET=$e2e_sdk_secret" "CHANNELGATE_SDK_MASTER_KEY=$e2e_sdk_master_key" \
    "E2E_PYTHON=$venv/bin/python" "E2E_HOOKS_PORT=$e2e_hooks_port" "E2E_DEBUG=${E2E_DEBUG:-}"
fi
if wants browser; then
  run_suite browser browser.mjs "DEMO_URL=http://127.0.0.1:$demo_port" "CHROMIUM=$chromium_bin" \
    "ARTIFACTS=$artifacts" "DEMO_SOCKUDO_PORT=$demo_sockudo_port" "DEMO_PUSHER_APP_SECRET=$demo_app_secret"
fi
if wants memberships; then
  run_suite memberships memberships.mjs "MEMBERS_URL=http://127.0.0.1:$members_port" "CHROMIUM=$chromium_bin" \
    "PSQL=$pg_bin/psql" "PG_PORT=$members_pg_port" "REDIS_PORT=$members_redis_port"
fi
echo "== suites ran in $((SECONDS - suites_started)) s (whole script: $((SECONDS - started)) s)"
if [ "$total_failed" -ne 0 ]; then
  for f in "$logs"/channelgate-*.log "$logs"/sockudo-*.log "$logs"/demo-app.log "$logs"/members-app.log; do
    [ -s "$f" ] && { echo "---- last lines of $f"; tail -n 10 "$f"; }
  done
fi
