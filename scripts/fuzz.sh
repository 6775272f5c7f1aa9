#!/usr/bin/env bash
# The fuzzing campaign (docs/FUZZING.md): every target of crates/fuzz, one after the other,
# one job each. With a nightly toolchain and cargo-fuzz it runs libFuzzer (`cargo +nightly
# fuzz run`); otherwise the stable, proptest-driven harness (`flotilla-fuzz`).
#
# Each target runs FUZZ_RUNS executions or FUZZ_SECONDS seconds, whichever comes first,
# and the campaign at most FUZZ_TOTAL_SECONDS: a target gets at most its fair share of
# what is left, so the last ones are not starved. Defaults: 10,000,000 runs, 1800 s,
# 7200 s in all.
#
# Seeds come from crates/fuzz/corpus/<target>/ and crates/fuzz/crashes/<target>/; new
# corpus entries go to $FUZZ_SCRATCH (outside the clone), never into the repository. A
# crash's input is copied to crates/fuzz/crashes/<target>/, where `cargo test -p
# flotilla-fuzz` replays it from then on; the reproducers listed in crates/fuzz/crashes/KNOWN
# (bugs not fixed yet) are left out of the seeds.
#
# Environment: FUZZ_RUNS, FUZZ_SECONDS, FUZZ_TOTAL_SECONDS, FUZZ_TARGETS (names, space
# separated), FUZZ_ENGINE (auto | libfuzzer | proptest), FUZZ_SCRATCH (default
# ${TMPDIR:-/tmp}/flotilla-fuzz), FUZZ_TARGET_DIR (cargo-fuzz's target dir, default
# ~/.cache/flotilla/fuzz-target), CARGO_TARGET_DIR (the stable one, default
# ~/.cache/flotilla/target).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CRATE="$ROOT/crates/fuzz"
RUNS=${FUZZ_RUNS:-10000000}
PER_TARGET=${FUZZ_SECONDS:-1800}
TOTAL=${FUZZ_TOTAL_SECONDS:-7200}
TARGETS=${FUZZ_TARGETS:-spec raft snapshot_header agent_request client_request credentials dns}
ENGINE=${FUZZ_ENGINE:-auto}
SCRATCH=${FUZZ_SCRATCH:-${TMPDIR:-/tmp}/flotilla-fuzz}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/flotilla/fuzz-target}
STABLE_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}

die() { echo "fuzz.sh: $*" >&2; exit 2; }
for n in "$RUNS" "$PER_TARGET" "$TOTAL"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "FUZZ_RUNS, FUZZ_SECONDS and FUZZ_TOTAL_SECONDS are whole numbers (got $n)"
done

has_libfuzzer() {
    cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1
}
case "$ENGINE" in
    auto) if has_libfuzzer; then ENGINE=libfuzzer; else ENGINE=proptest; fi ;;
    libfuzzer) has_libfuzzer || die "FUZZ_ENGINE=libfuzzer needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked)" ;;
    proptest) ;;
    *) die "FUZZ_ENGINE is auto, libfuzzer or proptest (got $ENGINE)" ;;
esac

mkdir -p "$SCRATCH/logs" || die "cannot create $SCRATCH"
echo "fuzz.sh: engine $ENGINE; targets: $TARGETS"
echo "fuzz.sh: each at most $RUNS runs or $PER_TARGET s; at most $TOTAL s in all; scratch $SCRATCH"

# Build first, so a target's time is fuzzing only.
if [[ $ENGINE == libfuzzer ]]; then
    # The cargo-fuzz project is a workspace of its own: it starts from the main lock file,
    # so the targets build with the versions flotilla ships (cargo adds libfuzzer-sys).
    [[ -f "$CRATE/fuzz/Cargo.lock" ]] || cp "$ROOT/Cargo.lock" "$CRATE/fuzz/Cargo.lock"
    (cd "$CRATE" && env -u CARGO_TARGET_DIR cargo +nightly fuzz build -O -a \
        --target-dir "$FUZZ_TARGET_DIR" --fuzz-dir fuzz) || die "cargo fuzz build failed"
    LIBFUZZER_BINS="$FUZZ_TARGET_DIR/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
else
    (cd "$ROOT" && CARGO_TARGET_DIR="$STABLE_TARGET_DIR" cargo build -p flotilla-fuzz --bin flotilla-fuzz) \
        || die "cargo build -p flotilla-fuzz failed"
    HARNESS="$STABLE_TARGET_DIR/debug/flotilla-fuzz"
fi

read -r -a LIST <<<"$TARGETS"
START=$(date +%s)
ROWS=()
CRASHED=0

# Copies libFuzzer's crash, timeout and out-of-memory inputs into the repository.
keep_artifacts() {
    local t=$1 dir=$2 n=0 f
    mkdir -p "$CRATE/crashes/$t"
    for f in "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-*; do
        [[ -f "$f" ]] || continue
        cp "$f" "$CRATE/crashes/$t/"
        echo "fuzz.sh: $t: reproducer crates/fuzz/crashes/$t/$(basename "$f")" >&2
        n=$((n + 1))
    done
    echo "$n"
}

for i in "${!LIST[@]}"; do
    t=${LIST[$i]}
    [[ -d "$CRATE/corpus/$t" ]] || die "no target $t (crates/fuzz/corpus/$t is missing)"
    left=$((${#LIST[@]} - i))
    remaining=$((TOTAL - ($(date +%s) - START)))
    secs=$((remaining / left))
    ((secs > PER_TARGET)) && secs=$PER_TARGET
    if ((secs < 1)); then
        ROWS+=("| $t | $ENGINE | 0 | 0 | 0 | skipped: the total time is spent |")
        continue
    fi
    log="$SCRATCH/logs/$t.log"
    echo "fuzz.sh: $t: up to $RUNS runs or $secs s (log $log)"
    began=$(date +%s.%N)
    if [[ $ENGINE == libfuzzer ]]; then
        corpus="$SCRATCH/corpus/$t"
        artifacts="$SCRATCH/artifacts/$t"
        rm -rf "$artifacts"
        mkdir -p "$corpus" "$artifacts" "$CRATE/crashes/$t"
        # The reproducers, less the known ones (crashes/KNOWN), each of which would stop
        # the target at once.
        reproducers="$SCRATCH/reproducers/$t"
        rm -rf "$reproducers"
        mkdir -p "$reproducers"
        for f in "$CRATE/crashes/$t"/*; do
            [[ -f "$f" ]] || continue
            grep -q "^$t/$(basename "$f")[[:space:]]" "$CRATE/crashes/KNOWN" 2>/dev/null || cp "$f" "$reproducers/"
        done
        # The binary cargo-fuzz built, run directly: a source edit meanwhile does not
        # rebuild it inside the measured time.
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$LIBFUZZER_BINS/$t" \
            -runs="$RUNS" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -dict="$CRATE/fuzz/dict/$t.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 \
            "$corpus" "$CRATE/corpus/$t" "$reproducers" >"$log" 2>&1
        status=$?
        took=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        crashes=$(keep_artifacts "$t" "$artifacts")
        if ((status != 0)) && ((crashes == 0)); then
            tail -20 "$log" >&2
            crashes="? (exit $status, see $log)"
        fi
    else
        "$HARNESS" "$t" --runs "$RUNS" --seconds "$secs" --crashes "$CRATE/crashes/$t" >"$log" 2>&1
        status=$?
        took=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        line=$(grep '^flotilla-fuzz: target=' "$log" | tail -1)
        execs=$(sed -n 's/.* executions=\([0-9]*\).*/\1/p' <<<"$line")
        crashes=$(sed -n 's/.* crashes=\([0-9]*\).*/\1/p' <<<"$line")
        grep -A2 'CRASH' "$log" >&2
        [[ -n "$crashes" ]] || crashes="? (exit $status, see $log)"
    fi
    execs=${execs:-0}
    rate=$(awk -v n="$execs" -v s="$took" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    [[ "$crashes" == 0 ]] || CRASHED=1
    ROWS+=("| $t | $ENGINE | $execs | $(printf '%.0f' "$took") | $rate | $crashes |")
    echo "fuzz.sh: $t: $execs executions in $(printf '%.0f' "$took") s ($rate/s), crashes: $crashes"
done

{
    echo
    echo "| target | engine | executions | seconds | exec/s | crashes |"
    echo "| --- | --- | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "total: $(($(date +%s) - START)) s; runs=$RUNS seconds=$PER_TARGET total=$TOTAL; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} | tee "$SCRATCH/summary.md"
exit "$CRASHED"
