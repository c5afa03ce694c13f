#!/usr/bin/env bash
# channelgate's soak test (run by hand, not in CI): page-load traffic at 80 %
# of the capacity measured first, for 10 minutes, with one config reload a
# minute; per minute it reports the request rate, p50/p99/max latency, the
# errors, RSS and the reloads. See BENCHMARKS.md.
#
#   bench/soak.sh
#
# Traffic: bench/wrk/auth.lua in `page` mode (each token asks for the ten
# channels of its page: one verification, nine cache hits), paced by
# bench/wrk/paced.lua, wrk and the server each pinned to a core as in
# bench/run.sh. The tokens come from bench/node/tokens.js and are cached in
# bench/.cache, shared with bench/run.sh. The pool (100,000 tokens) is ten
# times the gateway's token cache, so a token comes back only long after it
# was evicted: to the gateway every page is a new session.
# In the middle of every minute the policy file is rewritten (a comment
# changes) and SIGHUP reloads it; the reload must be counted `ok`.
# bench/node/check.js recomputes every signature of a page before and after.
#
# Pass: no error (non-2xx answer, socket error or timeout), every reload ok,
# RSS at the end of every minute after the first within 5 % of the first
# minute's, the answer checks ok, exit 0 on SIGTERM. Exits 1 otherwise.
#
# Environment:
#   SOAK_MINUTES=10            minutes of load
#   SOAK_LOAD=80               percent of the measured capacity
#   SOAK_ALG=rs256             token algorithm: hs256, rs256 or es256
#   SOAK_CONNECTIONS=256       paced wrk connections
#   SOAK_CAPACITY_SECONDS=10   the capacity run (unpaced, 64 connections)
#   SOAK_TOKENS=100000         token pool
#   SOAK_OUT=bench/results/soak   soak.tsv, soak.md, env.txt, server.log
#   BENCH_SERVER_CPU=0 BENCH_CLIENT_CPU=1 BENCH_CACHE=bench/.cache   as bench/run.sh
#   CHANNELGATE_BIN=...        the binary, as it is (default: target/release/channelgate, built first)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B="$ROOT/bench"
MINUTES=${SOAK_MINUTES:-10}
LOAD=${SOAK_LOAD:-80}
ALG=${SOAK_ALG:-rs256}
CONNECTIONS=${SOAK_CONNECTIONS:-256}
CAPACITY_SECONDS=${SOAK_CAPACITY_SECONDS:-10}
TOKENS=${SOAK_TOKENS:-100000}
OUT=${SOAK_OUT:-$B/results/soak}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
CACHE=${BENCH_CACHE:-$B/.cache}
CHANNELGATE=${CHANNELGATE_BIN:-$ROOT/target/release/channelgate}
ISSUER=https://auth.bench.example
AUDIENCE=bench
APP_KEY=bench-app-key

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *) echo "usage: bench/soak.sh (settings in the environment; see --help)" >&2; exit 2 ;;
esac
case "$ALG" in hs256 | rs256 | es256) ;; *) echo "SOAK_ALG must be hs256, rs256 or es256" >&2; exit 2 ;; esac

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in wrk node curl taskset openssl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (Debian: wrk nodejs curl util-linux openssl)"
done

if [ -z "${CHANNELGATE_BIN:-}" ]; then
  say "building channelgate (release)"
  (cd "$ROOT" && cargo build --release --locked --quiet --bin channelgate)
fi
[ -x "$CHANNELGATE" ] || die "no channelgate binary at $CHANNELGATE"

# ---------------------------------------------------------------- keys and tokens (bench/run.sh's cache layout)
mkdir -p "$CACHE/keys" "$CACHE/secrets" "$OUT"
if [ ! -s "$CACHE/secrets/pusher" ]; then
  openssl rand -hex 32 | tr -d '\n' >"$CACHE/secrets/pusher"
  openssl rand -hex 32 | tr -d '\n' >"$CACHE/secrets/jwt"
  rm -f "$CACHE"/tokens-*.tsv
fi
if [ "$ALG" = rs256 ] && [ ! -s "$CACHE/keys/rs256.pem" ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CACHE/keys/rs256.pem" 2>/dev/null
  openssl pkey -in "$CACHE/keys/rs256.pem" -pubout -out "$CACHE/keys/rs256.pub.pem"
  rm -f "$CACHE"/tokens-rs256*.tsv
fi
if [ "$ALG" = es256 ] && [ ! -s "$CACHE/keys/es256.pem" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CACHE/keys/es256.pem"
  openssl pkey -in "$CACHE/keys/es256.pem" -pubout -out "$CACHE/keys/es256.pub.pem"
  rm -f "$CACHE"/tokens-es256*.tsv
fi
PUSHER_SECRET=$(cat "$CACHE/secrets/pusher")

# The largest cached token file of at least $TOKENS tokens, not older than
# 5 days (tokens live 7), else a new one.
TOKEN_FILE=""
for file in $(ls -1 "$CACHE"/tokens-"$ALG"-*.tsv 2>/dev/null | sort -t- -k3 -n -r); do
  have=${file##*-}
  have=${have%.tsv}
  if [ "$have" -ge "$TOKENS" ] && [ -z "$(find "$file" -mmin +7200)" ]; then
    TOKEN_FILE=$file
    break
  fi
done
if [ -z "$TOKEN_FILE" ]; then
  TOKEN_FILE="$CACHE/tokens-$ALG-$TOKENS.tsv"
  case "$ALG" in hs256) key=$(cat "$CACHE/secrets/jwt") ;; *) key="$CACHE/keys/$ALG.pem" ;; esac
  say "minting $TOKENS ${ALG^^} tokens (cached in $CACHE)"
  node "$B/node/tokens.js" --alg "${ALG^^}" --key "$key" --count "$TOKENS" --out "$TOKEN_FILE.tmp" \
    --iss "$ISSUER" --aud "$AUDIENCE" >&2
  mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
fi

# ---------------------------------------------------------------- the server
RUN=$(mktemp -d "${TMPDIR:-/tmp}/channelgate-soak.XXXXXX")
PID=""
WRK_PID=""
cleanup() {
  [ -z "$WRK_PID" ] || kill "$WRK_PID" 2>/dev/null || true
  if [ -n "$PID" ] && [ -d "/proc/$PID" ]; then kill -9 "$PID" 2>/dev/null || true; fi
  rm -rf "$RUN"
}
trap cleanup EXIT
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
status_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" 'index($0, m " ") == 1 { print $2 }'; }
wrk_field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | head -n1; }

PORT=$(free_port)
ADMIN_PORT=$(free_port)
mkdir -p "$RUN/keys" "$RUN/secrets"
cp -r "$B/configs/policies" "$RUN/"
cp "$CACHE/secrets/pusher" "$CACHE/secrets/jwt" "$RUN/secrets/"
[ "$ALG" = hs256 ] || cp "$CACHE/keys/$ALG.pub.pem" "$RUN/keys/"
sed "s/@PORT@/$PORT/; s/@ADMIN_PORT@/$ADMIN_PORT/" "$B/configs/$ALG.yaml" >"$RUN/channelgate.yaml"
out=$(node "$B/node/launch.js" "http://127.0.0.1:$PORT/readyz" "$RUN/server.log" -- \
  taskset -c "$SERVER_CPU" "$CHANNELGATE" serve --config "$RUN/channelgate.yaml") || { cat "$RUN/server.log" >&2; die "the server did not start"; }
PID=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$out")
URL="http://127.0.0.1:$PORT/pusher/auth"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "binary: $CHANNELGATE"
  echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(nproc) cores"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "settings: $MINUTES min at $LOAD % of capacity, ${ALG^^} page traffic, $CONNECTIONS paced connections, pool of $(wc -l <"$TOKEN_FILE") tokens, server on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU"
} >"$RUN/env.txt"
sed 's/^/    /' "$RUN/env.txt" >&2

CHECK_BEFORE=$(node "$B/node/check.js" "$URL" page "$TOKEN_FILE" "$APP_KEY" "$PUSHER_SECRET" || true)
say "answers before: $CHECK_BEFORE"

# run_wrk SECONDS CONNECTIONS SCRIPT OUT [DELAY_MS]: one wrk run in the background (sets WRK_PID)
run_wrk() {
  SOAK_DELAY_MS=${5:-0} taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$1s" --timeout 5s -s "$3" "$URL" -- "$TOKEN_FILE" page >"$4" 2>&1 &
  WRK_PID=$!
}
wait_wrk() {
  wait "$WRK_PID" || true
  WRK_PID=""
  grep -q '^BENCH ' "$1" || { cat "$1" >&2; die "wrk failed"; }
}
rate() { awk -v r="$(wrk_field "$1" requests)" -v d="$(wrk_field "$1" duration_us)" 'BEGIN { printf "%.0f", r / (d / 1e6) }'; }

# ---------------------------------------------------------------- capacity and pacing
say "capacity: ${CAPACITY_SECONDS}s unpaced, 64 connections"
run_wrk "$CAPACITY_SECONDS" 64 "$B/wrk/auth.lua" "$RUN/capacity.txt"
wait_wrk "$RUN/capacity.txt"
CAPACITY=$(rate "$RUN/capacity.txt")
TARGET=$(awk -v c="$CAPACITY" -v l="$LOAD" 'BEGIN { printf "%.0f", c * l / 100 }')
# Each paced connection sends one request per (latency + delay): start from
# the period the target needs, then correct for the latency measured.
PERIOD=$(awk -v c="$CONNECTIONS" -v t="$TARGET" 'BEGIN { printf "%.3f", c * 1000 / t }')
DELAY=$PERIOD
for i in 1 2; do
  run_wrk 5 "$CONNECTIONS" "$B/wrk/paced.lua" "$RUN/calibrate-$i.txt" "$DELAY"
  wait_wrk "$RUN/calibrate-$i.txt"
  got=$(rate "$RUN/calibrate-$i.txt")
  DELAY=$(awk -v p="$PERIOD" -v d="$DELAY" -v c="$CONNECTIONS" -v g="$got" \
    'BEGIN { lat = c * 1000 / g - d; x = p - lat; if (x < 0) x = 0; printf "%.3f", x }')
  say "calibration $i: $got req/s (target $TARGET); delay now $DELAY ms"
done
say "capacity $CAPACITY req/s; soaking at $TARGET req/s ($LOAD %) for $MINUTES min, delay $DELAY ms per connection"

# ---------------------------------------------------------------- the soak
ROWS="$RUN/soak.tsv"
printf 'minute\treq_s\tp50_ms\tp99_ms\tmax_ms\terrors\trss_mib\tpeak_mib\treloads_ok\treloads_error\n' >"$ROWS"
for m in $(seq 1 "$MINUTES"); do
  run_wrk 60 "$CONNECTIONS" "$B/wrk/paced.lua" "$RUN/minute-$m.txt" "$DELAY"
  sleep 30
  printf '# soak reload %d at %s\n' "$m" "$(date -u +%H:%M:%S)" >>"$RUN/policies/bench.yaml"
  kill -HUP "$PID"
  wait_wrk "$RUN/minute-$m.txt"
  f="$RUN/minute-$m.txt"
  errors=$(($(wrk_field "$f" status_errors) + $(wrk_field "$f" socket_errors)))
  awk -v m="$m" -v req="$(rate "$f")" -v p50="$(wrk_field "$f" p50_us)" -v p99="$(wrk_field "$f" p99_us)" \
    -v max="$(wrk_field "$f" max_us)" -v e="$errors" -v rss="$(status_field "$PID" VmRSS)" \
    -v hwm="$(status_field "$PID" VmHWM)" -v ok="$(metric 'channelgate_reloads_total{result="ok"}')" \
    -v err="$(metric 'channelgate_reloads_total{result="error"}')" \
    'BEGIN { printf "%d\t%d\t%.2f\t%.2f\t%.1f\t%d\t%.1f\t%.1f\t%d\t%d\n", m, req, p50 / 1000, p99 / 1000, max / 1000, e, rss / 1024, hwm / 1024, ok, err }' >>"$ROWS"
  say "$(tail -n1 "$ROWS" | awk -F'\t' '{ printf "minute %d: %s req/s, p50 %s ms, p99 %s ms, max %s ms, %s errors, RSS %s MiB, reloads ok %s", $1, $2, $3, $4, $5, $6, $7, $9 }')"
done

CHECK_AFTER=$(node "$B/node/check.js" "$URL" page "$TOKEN_FILE" "$APP_KEY" "$PUSHER_SECRET" || true)
say "answers after: $CHECK_AFTER"
kill -TERM "$PID"
exit_code=""
for _ in $(seq 1 200); do
  [ -d "/proc/$PID" ] || { exit_code=0; break; }
  sleep 0.05
done
# launch.js detached the server; its exit status is not ours to read, but it
# must be gone within the drain grace.
[ -n "$exit_code" ] || { kill -9 "$PID" 2>/dev/null || true; exit_code="still running 10 s after SIGTERM"; }
PID=""
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/env.txt"

# ---------------------------------------------------------------- report
{
  echo "| minute | req/s | p50 ms | p99 ms | max ms | errors | RSS MiB | peak RSS MiB | reloads ok |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  tail -n +2 "$ROWS" | awk -F'\t' '{ printf "| %d | %d | %.2f | %.2f | %.1f | %d | %.1f | %.1f | %d |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
} >"$RUN/soak.md"
verdicts=$(awk -F'\t' -v minutes="$MINUTES" -v before="$CHECK_BEFORE" -v after="$CHECK_AFTER" -v stopped="$exit_code" \
  -v capacity="$CAPACITY" -v target="$TARGET" '
  NR == 1 { next }
  { errors += $6; if ($1 == 1) first = $7; else if ($7 > worst) worst = $7; last_ok = $9; last_err = $10; rate += $2; n++ }
  END {
    growth = (first > 0 && worst > 0) ? (worst - first) / first * 100 : 0
    v(errors == 0, sprintf("no errors (%d non-2xx or socket errors)", errors))
    v(last_ok == minutes && last_err == 0, sprintf("one reload a minute, each ok (%d ok, %d refused)", last_ok, last_err))
    v(minutes < 2 || growth < 5, sprintf("RSS after the first minute within 5 %% of it (%.1f MiB, then at most %.1f MiB: %+.1f %%)", first, worst, growth))
    v(before ~ /^ok/ && after ~ /^ok/, "signatures checked before and after (" before "; " after ")")
    v(stopped == "0", "exits on SIGTERM (" (stopped == "0" ? "yes" : stopped) ")")
    printf "INFO capacity %d req/s, target %d req/s, achieved %.0f req/s on average\n", capacity, target, rate / n
    printf "%d passed, %d failed\n", passed, failed
  }
  function v(ok, what) { if (ok) { passed++; print "PASS " what } else { failed++; print "FAIL " what } }' "$ROWS")
cp "$RUN/env.txt" "$ROWS" "$RUN/soak.md" "$RUN/server.log" "$OUT/"
{
  echo
  sed 's/^/    /' "$RUN/env.txt"
  echo
  cat "$RUN/soak.md"
  echo
  echo "$verdicts"
} | tee "$OUT/report.txt"
tail -n1 <<<"$verdicts" | grep -q ' 0 failed$'
