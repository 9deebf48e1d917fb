#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each, or the
# targets named after it: `make fuzz SECONDS=N` calls this. Each target
# runs from a scratch corpus seeded with the committed one (fuzz/corpus/T
# is read, never written, so it stays small); crashes go to
# fuzz/artifacts/T/, logs and the scratch corpora to $FUZZ_WORK (a new
# temporary directory by default). FUZZ_JOBS targets run at once (1).
# Exits 1 if any target found a crash, a hang or an OOM.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed with `cargo install --locked cargo-fuzz` if
# missing); the stable toolchain builds the targets with RUSTC_BOOTSTRAP=1.
set -euo pipefail

SECONDS_EACH=${1:-60}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FUZZ_WORK:-$(mktemp -d /tmp/fastgate-fuzz.XXXXXX)}
JOBS=${FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1

# The longest input per target: enough for several whole requests.
max_len() {
    case "$1" in
    listen_spec | units) echo 256 ;;
    *) echo 4096 ;;
    esac
}

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install --locked cargo-fuzz
    fi
}

# One target: its scratch corpus, its run, its log; its exit status.
run_target() {
    local t=$1 corpus="$WORK/corpus-$1" log="$WORK/$1.log"
    mkdir -p "$corpus" "$ROOT/fuzz/artifacts/$t"
    echo "== $t: ${SECONDS_EACH}s, log $log"
    (cd "$ROOT/fuzz" && cargo fuzz run "$t" "$corpus" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -max_len="$(max_len "$t")" -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1) >"$log" 2>&1
}

# A line per target: executions, rate, corpus and outcome, from its log.
summary() {
    local t=$1 log="$WORK/$1.log" status=$2
    local runs rate corpus
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    printf '%-16s %6ss %12s runs %8s exec/s %6s corpus entries  %s\n' \
        "$t" "$SECONDS_EACH" "$runs" "$rate" "$corpus" "$status"
}

main() {
    ensure_cargo_fuzz
    cd "$ROOT/fuzz"
    local targets=("$@")
    if [ ${#targets[@]} -eq 0 ]; then
        mapfile -t targets < <(cargo fuzz list)
    fi
    cargo fuzz build
    local failed=0 t pids=() names=()
    for t in "${targets[@]}"; do
        run_target "$t" & pids+=($!) names+=("$t")
        if [ ${#pids[@]} -ge "$JOBS" ]; then
            wait "${pids[0]}" && summary "${names[0]}" ok || { summary "${names[0]}" FAILED; failed=1; }
            pids=("${pids[@]:1}") names=("${names[@]:1}")
        fi
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" && summary "${names[$i]}" ok || { summary "${names[$i]}" FAILED; failed=1; }
    done
    [ "$failed" -eq 0 ] || echo "crashes: see the logs in $WORK and fuzz/artifacts/"
    return "$failed"
}

main "$@"
