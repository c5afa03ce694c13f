#!/usr/bin/env bash
# channelgate's load benchmark: channelgate against the HTTP ceiling (a
# minimal hyper server returning a fixed body) and against the endpoint
# people write instead (Node http + the official pusher SDK + jsonwebtoken),
# each on one pinned core, driven by wrk on another core with realistic,
# rotating tokens and channels. See BENCHMARKS.md.
#
#   bench/run.sh [--smoke] [SCENARIO...]
#
# Scenarios (default: all): hs256 rs256-page es256-page presence batch deny10
# two-core: channelgate alone, on both cores (the multi-threaded runtime),
#           hs256 requests; judged by CPU µs per request against hs256's
#           one-core row of the same run (wrk shares a core, so req/s would
#           not tell): scaling = 2 × one-core CPU/req ÷ two-core CPU/req
# lookup:   channelgate alone, hs256 requests under a rule with a Redis
#           lookup (a redis-server of the script's own on loopback, on wrk's
#           core); every request a new user, so every decision is a cache
#           miss and a round trip; compared with hs256's row of the same run
# --smoke: 2 s per run and no targets (a bounded check that everything
#          works, for CI); otherwise 3 rounds of 5 s and PASS/FAIL per target.
#
# Environment:
#   BENCH_SECONDS=5          seconds per load run
#   BENCH_CONNECTIONS=64     wrk connections
#   BENCH_SERVER_CPU=0       the core every server is pinned to (taskset)
#   BENCH_TWO_CORES=0,1      the cores of the two-core scenario
#   BENCH_CLIENT_CPU=1       the core wrk is pinned to
#   BENCH_SERVERS="ceiling channelgate node"
#   BENCH_CACHE=bench/.cache keys, secrets and minted tokens, reused across runs
#   BENCH_OUT=bench/results  results.tsv, table.md, chart.svg, env.txt
#   BENCH_MAX_INTERFERENCE=10  a run during which other processes used more
#                            than this % of the machine is run again ...
#   BENCH_RETRIES=4          ... up to this many times (1 with --smoke)
#   BENCH_ROUNDS=3           rounds per scenario, servers alternating; the
#                            median round of each server is reported (1 with --smoke)
#   BENCH_NO_BUILD=1         use the binaries already built
#   CHANNELGATE_BIN=...      the channelgate binary to measure, as it is (default:
#                            target/release/channelgate, built first)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B="$ROOT/bench"
ALL_SCENARIOS=(hs256 rs256-page es256-page presence batch deny10 two-core lookup)

SMOKE=0
SCENARIOS=()
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    *)
      if [[ " ${ALL_SCENARIOS[*]} " != *" $arg "* ]]; then
        echo "unknown scenario $arg; one of: ${ALL_SCENARIOS[*]}" >&2
        exit 2
      fi
      SCENARIOS+=("$arg")
      ;;
  esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")

if [ "$SMOKE" = 1 ]; then DEFAULT_SECONDS=2; else DEFAULT_SECONDS=5; fi
DURATION=${BENCH_SECONDS:-$DEFAULT_SECONDS}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
TWO_CORES=${BENCH_TWO_CORES:-0,1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
SERVERS=${BENCH_SERVERS:-"ceiling channelgate node"}
CACHE=${BENCH_CACHE:-$B/.cache}
OUT=${BENCH_OUT:-$B/results}
CHANNELGATE=${CHANNELGATE_BIN:-$ROOT/target/release/channelgate}
CEILING="$B/ceiling/target/release/channelgate-bench-ceiling"
MAX_INTERFERENCE=${BENCH_MAX_INTERFERENCE:-10}
RETRIES=${BENCH_RETRIES:-$([ "$SMOKE" = 1 ] && echo 1 || echo 4)}
ROUNDS=${BENCH_ROUNDS:-$([ "$SMOKE" = 1 ] && echo 1 || echo 3)}
RETRY_WAIT=${BENCH_RETRY_WAIT:-20}
CLK_TCK=$(getconf CLK_TCK)
ISSUER=https://auth.bench.example
AUDIENCE=bench
APP_KEY=bench-app-key

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
need=()
for tool in wrk gnuplot openssl curl taskset; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^gnuplot$/gnuplot-nox/; s/^taskset$/util-linux/' | tr '\n' ' ')
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing from Debian: $pkgs"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    die "missing tools: ${need[*]} (apt-get install $pkgs)"
  fi
fi
if [[ " ${SCENARIOS[*]} " == *" lookup "* ]] && [[ " $SERVERS " == *" channelgate "* ]] &&
  ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing from Debian: redis-server (the lookup scenario)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    die "the lookup scenario needs redis-server (apt-get install redis-server)"
  fi
fi
command -v node >/dev/null 2>&1 || die "node (18 or later) is needed for the Node endpoint and the helpers"
[ "$(nproc)" -ge 2 ] || echo "warning: one core only; server and load generator will share it" >&2

# ---------------------------------------------------------------- build
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  # A binary given with CHANNELGATE_BIN is measured as it is.
  if [ -z "${CHANNELGATE_BIN:-}" ]; then
    say "building channelgate (release)"
    (cd "$ROOT" && cargo build --release --locked --quiet --bin channelgate)
  fi
  say "building the ceiling server (release)"
  cargo build --release --locked --quiet --manifest-path "$B/ceiling/Cargo.toml"
fi
[ -x "$CHANNELGATE" ] || die "no channelgate binary at $CHANNELGATE"
[ -x "$CEILING" ] || die "no ceiling binary at $CEILING"
if [ ! -d "$B/node/node_modules" ] || [ "$B/node/package-lock.json" -nt "$B/node/node_modules/.package-lock.json" ]; then
  say "npm ci (bench/node)"
  (cd "$B/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# ---------------------------------------------------------------- keys and tokens
mkdir -p "$CACHE/keys" "$CACHE/secrets" "$OUT"
if [ ! -s "$CACHE/secrets/pusher" ]; then
  openssl rand -hex 32 | tr -d '\n' >"$CACHE/secrets/pusher"
  openssl rand -hex 32 | tr -d '\n' >"$CACHE/secrets/jwt"
  rm -f "$CACHE"/tokens-*.tsv
fi
if [ ! -s "$CACHE/keys/rs256.pem" ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CACHE/keys/rs256.pem" 2>/dev/null
  openssl pkey -in "$CACHE/keys/rs256.pem" -pubout -out "$CACHE/keys/rs256.pub.pem"
  rm -f "$CACHE"/tokens-rs256*.tsv
fi
if [ ! -s "$CACHE/keys/es256.pem" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CACHE/keys/es256.pem"
  openssl pkey -in "$CACHE/keys/es256.pem" -pubout -out "$CACHE/keys/es256.pub.pem"
  rm -f "$CACHE"/tokens-es256*.tsv
fi
PUSHER_SECRET=$(cat "$CACHE/secrets/pusher")
JWT_SECRET=$(cat "$CACHE/secrets/jwt")

# Every token is used once per run (one-channel scenarios) or for exactly
# ten requests (page scenarios), so each server sees as many distinct
# tokens as a real herd of pages would. The pools are sized for up to
# 90,000 requests/s; wrk wraps around (and the table says so) past that.
pool_size() { # MODE
  case "$1" in
    page) echo $((DURATION * 9000 + 1000)) ;;
    *) echo $((DURATION * 90000 + 10000)) ;;
  esac
}
token_file() { # ALG MODE -> path of a token file big enough for one run
  local alg=$1 mode=$2 count file key
  count=$(pool_size "$mode")
  # Reuse the largest file that is big enough and not older than 5 days
  # (tokens live 7 days).
  for file in $(ls -1 "$CACHE"/tokens-"$alg"-*.tsv 2>/dev/null | sort -t- -k3 -n -r); do
    local have=${file##*-}
    have=${have%.tsv}
    if [ "$have" -ge "$count" ] && [ -z "$(find "$file" -mmin +7200)" ]; then
      echo "$file"
      return
    fi
  done
  rm -f "$CACHE"/tokens-"$alg"-*.tsv
  file="$CACHE/tokens-$alg-$count.tsv"
  case "$alg" in
    hs256) key=$JWT_SECRET ;;
    *) key="$CACHE/keys/$alg.pem" ;;
  esac
  say "minting $count ${alg^^} tokens (cached in $CACHE)"
  node "$B/node/tokens.js" --alg "${alg^^}" --key "$key" --count "$count" --out "$file.tmp" \
    --iss "$ISSUER" --aud "$AUDIENCE" >&2
  mv "$file.tmp" "$file"
  echo "$file"
}

# ---------------------------------------------------------------- helpers
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
cpu_ticks() { # PID -> utime+stime in clock ticks (all threads)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
status_field() { # PID FIELD -> value (kB for memory fields)
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
stop_pid() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
}
busy_ticks() { # non-idle ticks of the whole machine so far
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
read_children_cpu() { # sets CHILDREN_CPU: CPU seconds of this shell's finished children (wrk)
  # `times` must run in this shell (in a $(...) subshell it would count the
  # subshell's children instead).
  times >"$RUN/times.txt"
  CHILDREN_CPU=$(tail -n1 "$RUN/times.txt" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }')
}
bench_field() { # FILE KEY
  sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | head -n1
}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/channelgate-bench.XXXXXX")
LIVE_PID=""
REDIS_PID=""
REDIS_PORT=""
cleanup() {
  [ -z "$LIVE_PID" ] || stop_pid "$LIVE_PID"
  [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
  rm -rf "$RUN"
}
trap cleanup EXIT

# The lookup scenario's Redis: started once, empty, no persistence, on wrk's core.
start_redis() {
  [ -z "$REDIS_PID" ] || return 0
  REDIS_PORT=$(free_port)
  taskset -c "$CLIENT_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize no --dir "$RUN" >"$RUN/redis.log" 2>&1 &
  REDIS_PID=$!
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  cat "$RUN/redis.log" >&2
  die "redis-server did not start"
}

scenario_alg() {
  case "$1" in rs256-page) echo rs256 ;; es256-page) echo es256 ;; *) echo hs256 ;; esac
}
scenario_cpus() {
  case "$1" in two-core) echo "$TWO_CORES" ;; *) echo "$SERVER_CPU" ;; esac
}
scenario_servers() {
  case "$1" in
    two-core | lookup) [[ " $SERVERS " == *" channelgate "* ]] && echo channelgate ;;
    *) echo "$SERVERS" ;;
  esac
}
scenario_mode() {
  case "$1" in *-page) echo page ;; hs256 | two-core | lookup) echo single ;; *) echo "$1" ;; esac
}

# start SERVER SCENARIO DIR -> sets PID, READY_MS, PORT, ADMIN_PORT
start_server() {
  local server=$1 scenario=$2 dir=$3 alg out
  alg=$(scenario_alg "$scenario")
  PORT=$(free_port)
  ADMIN_PORT=""
  local -a cmd env_vars=()
  case "$server" in
    ceiling) cmd=("$CEILING" "127.0.0.1:$PORT") ;;
    channelgate)
      ADMIN_PORT=$(free_port)
      mkdir -p "$dir/keys" "$dir/secrets"
      cp -r "$B/configs/policies" "$B/configs/policies-lookup" "$dir/"
      cp "$CACHE/secrets/pusher" "$CACHE/secrets/jwt" "$dir/secrets/"
      cp "$CACHE/keys/rs256.pub.pem" "$CACHE/keys/es256.pub.pem" "$dir/keys/"
      local config=$alg
      if [ "$scenario" = lookup ]; then
        config=lookup
        start_redis
        env_vars=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/")
      fi
      sed "s/@PORT@/$PORT/; s/@ADMIN_PORT@/$ADMIN_PORT/" "$B/configs/$config.yaml" >"$dir/channelgate.yaml"
      cmd=("$CHANNELGATE" serve --config "$dir/channelgate.yaml")
      ;;
    node)
      env_vars=(PORT="$PORT" PUSHER_APP_ID=1001 PUSHER_KEY="$APP_KEY" PUSHER_SECRET="$PUSHER_SECRET"
        JWT_ALG="${alg^^}" JWT_SECRET="$JWT_SECRET" JWT_PUBLIC_KEY_FILE="$CACHE/keys/$alg.pub.pem"
        JWT_ISSUER="$ISSUER" JWT_AUDIENCE="$AUDIENCE" NODE_ENV=production)
      cmd=(node "$B/node/server.js")
      ;;
  esac
  out=$(env "${env_vars[@]}" node "$B/node/launch.js" "http://127.0.0.1:$PORT/readyz" "$dir/server.log" -- \
    taskset -c "$(scenario_cpus "$scenario")" "${cmd[@]}") || { cat "$dir/server.log" >&2; return 1; }
  PID=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$out")
  READY_MS=$(sed -n 's/.*ready_ms=\([0-9.]*\).*/\1/p' <<<"$out")
  LIVE_PID=$PID
}

# ---------------------------------------------------------------- runs
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(nproc) cores"
  echo "kernel: $(uname -r)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "wrk: $(wrk -v 2>&1 | head -n1)"
  echo "node: $(node --version)"
  echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
  echo "settings: ${DURATION}s per run, median of $ROUNDS alternating rounds, $CONNECTIONS connections, server on cpu $SERVER_CPU (two-core: cpus $TWO_CORES), wrk on cpu $CLIENT_CPU (1 thread)"
} >"$RUN/env.txt"
say "$(tail -n1 "$RUN/env.txt"); load average $(cut -d' ' -f1-3 /proc/loadavg)"

RESULTS="$RUN/results.tsv"
printf 'scenario\tserver\trps\tp50_us\tp99_us\tcpu_us\tcpu_util\trss_kib\tready_ms\tthreads\tstatus_errors\tsocket_errors\trequests\ttokens_used\twraps\tverifications\twrk_cpu_util\tinterference\tcheck\n' >"$RESULTS"

# One server, one scenario: start, check the answers, load, measure, stop.
# Appends a row to $RESULTS; returns 10 when other processes took more
# than BENCH_MAX_INTERFERENCE % of the machine during the load run.
measure() {
  local scenario=$1 server=$2 tokens=$3 mode=$4 dir=$5 check code
  start_server "$server" "$scenario" "$dir" || die "$server did not start for $scenario"
  if [ "$server" = ceiling ]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/pusher/auth" -d socket_id=1.2)
    [ "$code" = 200 ] && check="n/a (fixed body)" || check="FAIL: status $code"
  else
    check=$(node "$B/node/check.js" "http://127.0.0.1:$PORT/pusher/auth" "$mode" "$tokens" "$APP_KEY" "$PUSHER_SECRET" ||
      true)
  fi
  if [[ "$check" == FAIL* ]]; then
    say "$scenario $server: $check"
    printf '%s\t%s\t0\t0\t0\t0\t0\t0\t%s\t0\t0\t0\t0\t0\t0\t\t0\t0\t%s\n' "$scenario" "$server" "$READY_MS" "$check" >>"$ROWS"
    stop_pid "$PID"
    LIVE_PID=""
    return 0
  fi
  local misses_before="" misses_after verifications="" ticks_before ticks_after wrk_cpu_before wrk_cpu sys_before sys_after
  if [ "$server" = channelgate ]; then
    misses_before=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^channelgate_token_cache_misses(_total)? / { print $2 }')
  fi
  ticks_before=$(cpu_ticks "$PID")
  local aux_before=0 aux_after=0
  [ -z "$REDIS_PID" ] || aux_before=$(cpu_ticks "$REDIS_PID")
  read_children_cpu
  wrk_cpu_before=$CHILDREN_CPU
  sys_before=$(busy_ticks)
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$B/wrk/auth.lua" \
    "http://127.0.0.1:$PORT/pusher/auth" -- "$tokens" "$mode" >"$dir/wrk.txt" 2>&1
  sys_after=$(busy_ticks)
  ticks_after=$(cpu_ticks "$PID")
  [ -z "$REDIS_PID" ] || aux_after=$(cpu_ticks "$REDIS_PID")
  read_children_cpu
  wrk_cpu=$(awk -v a="$wrk_cpu_before" -v b="$CHILDREN_CPU" 'BEGIN { print b - a }')
  local rss threads
  rss=$(status_field "$PID" VmHWM)
  threads=$(status_field "$PID" Threads)
  if [ "$server" = channelgate ]; then
    misses_after=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^channelgate_token_cache_misses(_total)? / { print $2 }')
    verifications=$((${misses_after:-0} - ${misses_before:-0}))
  fi
  stop_pid "$PID"
  LIVE_PID=""
  grep -q '^BENCH ' "$dir/wrk.txt" || { cat "$dir/wrk.txt" >&2; die "wrk failed for $scenario $server"; }
  local requests duration_us
  requests=$(bench_field "$dir/wrk.txt" requests)
  duration_us=$(bench_field "$dir/wrk.txt" duration_us)
  # Interference: busy time of the whole machine minus the server's and
  # wrk's own, as a share of all cores.
  awk -v s="$scenario" -v srv="$server" -v req="$requests" -v dur="$duration_us" \
    -v p50="$(bench_field "$dir/wrk.txt" p50_us)" -v p99="$(bench_field "$dir/wrk.txt" p99_us)" \
    -v ticks=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v rss="$rss" -v ready="$READY_MS" \
    -v threads="$threads" -v se="$(bench_field "$dir/wrk.txt" status_errors)" \
    -v ke="$(bench_field "$dir/wrk.txt" socket_errors)" -v used="$(bench_field "$dir/wrk.txt" tokens_used)" \
    -v wraps="$(bench_field "$dir/wrk.txt" wraps)" -v ver="$verifications" -v check="$check" -v wrk_cpu="$wrk_cpu" \
    -v sys=$((sys_after - sys_before - aux_after + aux_before)) -v ncpu="$(nproc)" \
    'BEGIN {
       cpu_s = ticks / hz
       secs = dur / 1e6
       other = (sys / hz - cpu_s - wrk_cpu) / (secs * ncpu)
       if (other < 0) other = 0
       printf "%s\t%s\t%.0f\t%d\t%d\t%.1f\t%.2f\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.2f\t%.3f\t%s\n", s, srv, req / secs, p50, p99,
         (req > 0 ? cpu_s * 1e6 / req : 0), cpu_s / secs, rss, ready, threads, se, ke, req, used, wraps, ver,
         wrk_cpu / secs, other, check
     }' >"$dir/row.tsv"
  if [ -n "$REDIS_PID" ] && [ "$scenario" = lookup ]; then
    # Redis's own CPU per request (on wrk's core), beside the answer check.
    awk -F'\t' -v OFS='\t' -v t=$((aux_after - aux_before)) -v hz="$CLK_TCK" \
      '{ $19 = $19 sprintf(" (redis-server %.1f µs CPU/req)", $13 > 0 ? t / hz * 1e6 / $13 : 0); print }' \
      "$dir/row.tsv" >"$dir/row.tmp" && mv "$dir/row.tmp" "$dir/row.tsv"
  fi
  local other
  other=$(awk -F'\t' '{ print $18 }' "$dir/row.tsv")
  say "$(awk -F'\t' '{ printf "%-11s %-12s %8s req/s  p50 %6.2f ms  p99 %6.2f ms  %6s us CPU/req  %5.1f MiB  ready %s ms  (others used %.0f%% of the machine)",
    $1, $2, $3, $4 / 1000, $5 / 1000, $6, $8 / 1024, $9, $18 * 100 }' "$dir/row.tsv")"
  if awk -v o="$other" -v max="$MAX_INTERFERENCE" 'BEGIN { exit !(o * 100 > max) }'; then
    return 10
  fi
  cat "$dir/row.tsv" >>"$ROWS"
}

for scenario in "${SCENARIOS[@]}"; do
  alg=$(scenario_alg "$scenario")
  mode=$(scenario_mode "$scenario")
  tokens=$(token_file "$alg" "$mode")
  # Rounds alternate the servers, so a slow spell of a shared machine hits
  # all of them; each server's row is its median round by req/s.
  for round in $(seq 1 "$ROUNDS"); do
    for server in $(scenario_servers "$scenario"); do
      ROWS="$RUN/rows-$scenario-$server.tsv"
      attempt=1
      while :; do
        dir="$RUN/$scenario-$server-$round-$attempt"
        mkdir -p "$dir"
        status=0
        measure "$scenario" "$server" "$tokens" "$mode" "$dir" || status=$?
        [ "$status" = 10 ] || break
        if [ "$attempt" -ge "$RETRIES" ]; then
          say "$scenario $server: still disturbed after $attempt runs; keeping the last one"
          cat "$dir/row.tsv" >>"$ROWS"
          break
        fi
        attempt=$((attempt + 1))
        say "$scenario $server: other processes were busy; waiting ${RETRY_WAIT}s and running it again ($attempt/$RETRIES)"
        sleep "$RETRY_WAIT"
      done
    done
  done
  for server in $(scenario_servers "$scenario"); do
    ROWS="$RUN/rows-$scenario-$server.tsv"
    [ -s "$ROWS" ] || continue
    # A failed answer check wins over any number.
    if grep -q 'FAIL:' "$ROWS"; then
      grep 'FAIL:' "$ROWS" | head -n1 >>"$RESULTS"
    else
      n=$(wc -l <"$ROWS")
      sort -t"$(printf '\t')" -k3,3n "$ROWS" | sed -n "$(((n + 1) / 2))p" >>"$RESULTS"
    fi
  done
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/env.txt"
cp "$RUN/env.txt" "$RESULTS" "$OUT/"

# ---------------------------------------------------------------- table, targets, chart
awk -F'\t' -v smoke="$SMOKE" -v maxint="$MAX_INTERFERENCE" -f "$B/report.awk" "$OUT/results.tsv" >"$OUT/table.md"
{
  echo
  sed 's/^/    /' "$OUT/env.txt"
  echo
  cat "$OUT/table.md"
} >&2
if command -v gnuplot >/dev/null 2>&1; then
  awk -F'\t' -f "$B/chart.awk" "$OUT/results.tsv" >"$RUN/chart.dat"
  gnuplot -e "datafile='$RUN/chart.dat'; outfile='$OUT/chart.svg'; subtitle='$(head -n1 "$OUT/env.txt" | cut -d' ' -f2), ${DURATION}s per run, $CONNECTIONS connections'" \
    "$B/chart.gp" && say "chart: $OUT/chart.svg"
fi
if [ "$SMOKE" != 1 ] && grep -q '| FAIL' "$OUT/table.md"; then
  exit 3
fi
if grep -q 'FAIL:' "$OUT/results.tsv"; then
  exit 1
fi
