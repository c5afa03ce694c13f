#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one at a time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]       # default 10; CI uses a few seconds
#
# Installs cargo-fuzz when it is missing, builds all targets once (release,
# AddressSanitizer), then runs each target on its committed seeds
# (fuzz/seeds/<target>) and regression inputs (fuzz/regressions/<target>),
# with its dictionary (fuzz/dicts/<target>.dict) when there is one, and a
# scratch corpus that is deleted at the end. Prints the executions of
# each target and a last line `N passed, M failed`; exits 1 when a target
# found a crash (the input is kept in fuzz/artifacts/<target>/, and the
# panic and stack are printed). Runnable from any directory.
#
# Environment:
#   FUZZ_SANITIZER   address (default) or none
#   FUZZ_TARGET_DIR  cargo target dir of the fuzz build (default fuzz/target);
#                    point it at a kept folder to reuse builds across clones
#                    (pruned before each build: see prune_stale below)
#   FUZZ_TARGETS     space-separated subset of targets (default: all)
#
# The toolchain is stable; cargo-fuzz needs nightly flags, which
# RUSTC_BOOTSTRAP=1 lets stable accept (for this build only).
set -euo pipefail

secs="${1:-10}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$repo/fuzz"
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir="${FUZZ_TARGET_DIR:-$fuzz/target}"
[[ "$target_dir" == /* ]] || target_dir="$PWD/$target_dir"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/channelgate-fuzz.XXXXXX")"
cleanup() {
    rm -rf "$scratch"
    # fuzz/artifacts/<target>/ keeps crash inputs; drop the empty ones.
    find "$fuzz/artifacts" -mindepth 1 -maxdepth 1 -type d -empty -delete 2>/dev/null || true
    rmdir "$fuzz/artifacts" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$fuzz"

# A target dir kept across clones grows by a whole copy of channelgate and
# of every fuzz binary (about 1.3 GB) each time their cargo hash changes,
# which it does from clone to clone; cargo never removes the old copies, and
# a CI machine ran out of disk that way. Before and after building, keep only
# the newest artifact of each of our own crates and binaries in deps/ (the
# ones cargo rebuilds when channelgate changes; a missing one is rebuilt);
# third-party crates and .fingerprint/ (small) stay. A kept dir still larger
# than FUZZ_TARGET_DIR_MAX_GB (default 8) is emptied before building.
own_names="$(cargo fuzz list | tr '\n' '|')channelgate|channelgate-fuzz|channelgate_fuzz"
prune_stale() {
    [[ -d "$target_dir" ]] || return 0
    local removed
    # Artifacts are `[lib]NAME-HASH[.ext]` in deps/; newest first, the
    # first of each NAME and .ext is kept. (Not .fingerprint/: one package
    # has a fingerprint per binary there, all under the package's name.)
    removed="$(find "$target_dir" -mindepth 3 -maxdepth 4 -regextype posix-extended \
        -regex ".*/deps/(lib)?($own_names)-[0-9a-f]{16}(\.[a-z]+)?" \
        -printf '%T@ %p\n' |
        sort -rn | cut -d' ' -f2- |
        sed -E 's/^(.*)-[0-9a-f]{16}((\.[a-z]+)?)$/\1\2\t&/' |
        awk -F'\t' 'seen[$1]++ { print $2 }' |
        while IFS= read -r stale; do rm -rf -- "$stale" && echo x; done | wc -l)"
    ((removed == 0)) || echo "fuzz: removed $removed stale build artifacts from $target_dir" >&2
    [[ ${1:-} == before ]] || return 0
    local kb max_gb="${FUZZ_TARGET_DIR_MAX_GB:-8}"
    kb="$(du -sk "$target_dir" | cut -f1)"
    if ((kb > max_gb * 1024 * 1024)); then
        echo "fuzz: $target_dir holds $((kb / 1024 / 1024)) GB (over $max_gb); emptying it" >&2
        rm -rf -- "$target_dir"
    fi
}
prune_stale before

build_flags=(-O --sanitizer "$sanitizer" --target-dir "$target_dir")
start=$SECONDS
echo "fuzz: building targets (sanitizer: $sanitizer)" >&2
nice cargo fuzz build "${build_flags[@]}" >&2
echo "fuzz: built in $((SECONDS - start)) s" >&2
prune_stale after

# Run the binaries just built (not `cargo fuzz run`, which would rebuild
# first whenever the main crate changed in the meantime).
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$host/release"
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
passed=0
failed=0
failed_names=()
for t in "${targets[@]}"; do
    corpus=("$scratch/corpus/$t")
    mkdir -p "${corpus[0]}"
    [[ -d "seeds/$t" ]] && corpus+=("seeds/$t")
    [[ -d "regressions/$t" ]] && corpus+=("regressions/$t")
    extra=()
    [[ -f "dicts/$t.dict" ]] && extra+=(-dict="dicts/$t.dict")
    log="$scratch/$t.log"
    t0=$SECONDS
    # -timeout: one input running longer than 20 s counts as a failure.
    mkdir -p "artifacts/$t"
    if nice "$bin_dir/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${extra[@]}" "${corpus[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
    fi
    # libFuzzer's last words: "Done N runs in S second(s)" (or "#N DONE").
    runs="$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)"
    [[ -n "$runs" ]] || runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
    [[ -n "$runs" ]] || runs="$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)"
    printf 'fuzz %-14s %10s execs in %3d s  %s\n' "$t" "${runs:-?}" "$((SECONDS - t0))" "$status"
    if [[ $status == ok ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names+=("$t")
        echo "---- $t: libFuzzer's report" >&2
        grep -E -A14 'panicked at|==[0-9]+==ERROR|ERROR: libFuzzer' "$log" | head -n 40 >&2 || true
        grep -E '^SUMMARY|Test unit written to' "$log" >&2 || tail -n 20 "$log" >&2
        unit="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
        echo "---- reproduce: cd $fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O $t ${unit:-artifacts/$t/<file>}" >&2
    fi
done

if ((failed > 0)); then
    echo "fuzz: crashes in: ${failed_names[*]}" >&2
fi
echo "$passed passed, $failed failed"
((failed == 0))
