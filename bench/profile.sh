#!/usr/bin/env bash
# Deterministic measurements of channelgate's request path, for a shared
# machine where wall-clock numbers are noise (see BENCHMARKS.md):
#
#   bench/profile.sh callgrind [SCENARIO]   instructions per request (valgrind)
#   bench/profile.sh perf [SCENARIO]        where the CPU time goes (perf record -g)
#   bench/profile.sh cpu [SCENARIO]         CPU µs per request only (no profiler)
#
# Scenarios as in bench/run.sh: hs256 (default) rs256-page es256-page
# presence batch deny10. Fresh tokens are minted for every run (each token
# used exactly as the scenario says, so the token cache gets no unearned
# hits), the release binary serves them with the benchmark's config, and
# wrk drives it from another core.
#
# callgrind: channelgate runs under `valgrind --tool=callgrind` with
# instrumentation off until it is ready; it is switched on just before wrk
# starts and off when wrk ends, so startup and shutdown are not counted.
# Prints instructions per request (total and the top inclusive entries).
# Valgrind hides SHA-NI and AES-NI: SHA-256 runs in software there, so
# digests and HMACs count 5-10x what they cost on the real CPU.
#
# perf: `perf record -g` of the server process over the wrk run; prints the
# top self-time entries and CPU µs per request from /proc.
#
# Environment:
#   PROFILE_SECONDS      wrk run length (callgrind 20, perf 10)
#   PROFILE_CONNECTIONS  wrk connections (16)
#   PROFILE_CPUS         cores channelgate may use (taskset list; default 0).
#                        With two or more, tokio's multi-threaded runtime runs
#                        (the two-core scenario); wrk then shares a core.
#   PROFILE_CLIENT_CPU   core wrk is pinned to (1)
#   PROFILE_OUT          where the raw profile is kept (bench/results/profile)
#   PROFILE_AUDIT=0      audit log off, to see what writing it costs
#   PROFILE_RATE_LIMIT=1 rate limits on (per IP and per user, limits too high
#                        to refuse anything), to profile the limiters' cost
#   CHANNELGATE_BIN      binary to measure (default target/release/channelgate,
#                        not rebuilt: run `cargo build --release` first)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B="$ROOT/bench"
TOOL=${1:-}
SCENARIO=${2:-hs256}
case "$TOOL" in
  callgrind | perf | cpu) ;;
  -h | --help | "")
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) echo "unknown tool $TOOL: callgrind, perf or cpu" >&2; exit 2 ;;
esac
case "$SCENARIO" in
  hs256) ALG=hs256 MODE=single ;;
  rs256-page) ALG=rs256 MODE=page ;;
  es256-page) ALG=es256 MODE=page ;;
  presence | batch | deny10) ALG=hs256 MODE=$SCENARIO ;;
  *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
if [ "$TOOL" = callgrind ]; then DEFAULT_SECONDS=20; else DEFAULT_SECONDS=10; fi
SECONDS_RUN=${PROFILE_SECONDS:-$DEFAULT_SECONDS}
CONNECTIONS=${PROFILE_CONNECTIONS:-16}
CPUS=${PROFILE_CPUS:-0}
CLIENT_CPU=${PROFILE_CLIENT_CPU:-1}
OUT=${PROFILE_OUT:-$B/results/profile}
CHANNELGATE=${CHANNELGATE_BIN:-$ROOT/target/release/channelgate}
ISSUER=https://auth.bench.example
AUDIENCE=bench

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
say() { printf '== %s\n' "$*" >&2; }
for tool in wrk node openssl curl taskset "$(case "$TOOL" in callgrind) echo valgrind ;; perf) echo perf ;; *) echo cat ;; esac)"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
[ -x "$CHANNELGATE" ] || die "no binary at $CHANNELGATE (cargo build --release --locked first)"
mkdir -p "$OUT"

RUN=$(mktemp -d "${TMPDIR:-/tmp}/channelgate-profile.XXXXXX")
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- keys, tokens, config
mkdir -p "$RUN/secrets" "$RUN/keys"
openssl rand -hex 32 | tr -d '\n' >"$RUN/secrets/pusher"
openssl rand -hex 32 | tr -d '\n' >"$RUN/secrets/jwt"
for alg in rs256 es256; do
  if [ "$alg" = rs256 ]; then opt=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048); else opt=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256); fi
  openssl genpkey "${opt[@]}" -out "$RUN/keys/$alg.pem" 2>/dev/null
  openssl pkey -in "$RUN/keys/$alg.pem" -pubout -out "$RUN/keys/$alg.pub.pem"
done
# Enough tokens for the run: valgrind serves ~1-3k requests/s, perf ~50k.
if [ "$TOOL" = callgrind ]; then RATE=4000; else RATE=$([ "$CPUS" = 0 ] && echo 40000 || echo 60000); fi
COUNT=$((SECONDS_RUN * RATE + 1000))
[ "$MODE" = page ] && COUNT=$((COUNT / 10 + 100))
case "$ALG" in hs256) KEY=$(cat "$RUN/secrets/jwt") ;; *) KEY="$RUN/keys/$ALG.pem" ;; esac
say "minting $COUNT ${ALG^^} tokens"
node "$B/node/tokens.js" --alg "${ALG^^}" --key "$KEY" --count "$COUNT" --out "$RUN/tokens.tsv" \
  --iss "$ISSUER" --aud "$AUDIENCE"
PORT=$(free_port)
ADMIN_PORT=$(free_port)
cp -r "$B/configs/policies" "$RUN/"
sed "s/@PORT@/$PORT/; s/@ADMIN_PORT@/$ADMIN_PORT/" "$B/configs/$ALG.yaml" >"$RUN/channelgate.yaml"
if [ "${PROFILE_RATE_LIMIT:-0}" = 1 ]; then
  sed -i 's|^rate_limit: .*|rate_limit: { per_ip: 10000000/s, per_ip_burst: 10000000, per_user: 10000/s, per_user_burst: 10000 }|' \
    "$RUN/channelgate.yaml"
fi
if [ "${PROFILE_AUDIT:-1}" = 0 ]; then
  sed -i '/^audit:/,/^  to:/d' "$RUN/channelgate.yaml"
  echo 'audit: { enabled: false }' >>"$RUN/channelgate.yaml"
fi

# ---------------------------------------------------------------- start
cd "$RUN"
if [ "$TOOL" = callgrind ]; then
  taskset -c "$CPUS" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$RUN/callgrind.out" "$CHANNELGATE" serve --config "$RUN/channelgate.yaml" \
    >"$RUN/server.log" 2>&1 &
  PID=$!
  wait_s=120
else
  taskset -c "$CPUS" "$CHANNELGATE" serve --config "$RUN/channelgate.yaml" >"$RUN/server.log" 2>&1 &
  PID=$!
  wait_s=10
fi
for _ in $(seq 1 $((wait_s * 10))); do
  curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" && break
  kill -0 "$PID" 2>/dev/null || { cat "$RUN/server.log" >&2; die "channelgate exited"; }
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" || die "channelgate not ready after ${wait_s}s"

load() {
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --timeout 10s -s "$B/wrk/auth.lua" \
    "http://127.0.0.1:$PORT/pusher/auth" -- "$RUN/tokens.tsv" "$MODE" >"$RUN/wrk.txt" 2>&1
  grep -q '^BENCH ' "$RUN/wrk.txt" || { cat "$RUN/wrk.txt" >&2; die "wrk failed"; }
  REQUESTS=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' "$RUN/wrk.txt")
  WRAPS=$(sed -n 's/.* wraps=\([0-9]*\).*/\1/p' "$RUN/wrk.txt")
  local errors
  errors=$(sed -n 's/.* status_errors=\([0-9]*\).*/\1/p' "$RUN/wrk.txt")
  [ "$WRAPS" = 0 ] || say "warning: the token pool wrapped $WRAPS times (cache hits counted)"
  say "$REQUESTS requests, $errors non-2xx"
}

if [ -n "${CHANNELGATE_BIN:-}" ]; then
  STAMP="$SCENARIO-$(basename "$CHANNELGATE")"
else
  STAMP="$SCENARIO-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
fi
if [ "$TOOL" = callgrind ]; then
  callgrind_control -i on "$PID" >/dev/null
  load
  callgrind_control -i off "$PID" >/dev/null
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  cp "$RUN/callgrind.out" "$OUT/callgrind-$STAMP.out"
  TOTAL=$(awk '/^totals:/ { print $2; exit }' "$RUN/callgrind.out")
  printf 'scenario %s, %s requests, %s connections, cpus %s\n' "$SCENARIO" "$REQUESTS" "$CONNECTIONS" "$CPUS"
  printf 'instructions per request: %.0f\n\n' "$(awk -v t="$TOTAL" -v r="$REQUESTS" 'BEGIN { print t / r }')"
  echo "top inclusive entries (instructions per request):"
  { callgrind_annotate --inclusive=yes --threshold=100 "$RUN/callgrind.out" 2>/dev/null |
    sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%)  \(.*\)$/\1 \2/p' | sed 's/ \[[^]]*\]$//; s/ ???:/ /' |
    awk -v r="$REQUESTS" '{ n = $1; gsub(",", "", n); $1 = ""; if (n / r >= 500 && shown++ < 70) printf "%9.0f %s\n", n / r, substr($0, 1, 140) }'; } || true
  echo
  echo "raw profile: $OUT/callgrind-$STAMP.out (callgrind_annotate / kcachegrind)"
else
  ticks_before=$(cpu_ticks "$PID")
  if [ "$TOOL" = perf ]; then
    perf record -g -o "$RUN/perf.data" -p "$PID" -- sleep "$((SECONDS_RUN + 1))" >/dev/null 2>&1 &
    PERF=$!
    sleep 0.5
  fi
  busy_before=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  load
  busy_after=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  ticks_after=$(cpu_ticks "$PID")
  [ "$TOOL" = perf ] && { wait "$PERF" || true; }
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  cpu_s=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')
  printf 'scenario %s, %s requests in %s s, %s connections, cpus %s\n' "$SCENARIO" "$REQUESTS" "$SECONDS_RUN" "$CONNECTIONS" "$CPUS"
  printf 'CPU µs per request: %.1f (server CPU %.2f s; the whole machine was busy %.2f s)\n\n' \
    "$(awk -v c="$cpu_s" -v r="$REQUESTS" 'BEGIN { print c * 1e6 / r }')" "$cpu_s" \
    "$(awk -v t=$((busy_after - busy_before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')"
  [ "$TOOL" = perf ] || exit 0
  cp "$RUN/perf.data" "$OUT/perf-$STAMP.data"
  { perf report -i "$RUN/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed 's/[ -]*$//' | head -8
    echo
    perf report -i "$RUN/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed 's/[ -]*$//' | head -45; } || true
  echo
  echo "raw profile: $OUT/perf-$STAMP.data (perf report -i ...)"
fi
