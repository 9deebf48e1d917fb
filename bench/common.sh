# Shared by the bench scripts: the release binary, a temp dir removed on exit,
# background processes killed (by the pids we started) on exit, and bounded
# waits. Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# BENCH_BIN: another fastgate binary to measure (default: the release build).
BIN="${BENCH_BIN:-$ROOT/target/release/fastgate}"
TMP=$(mktemp -d /tmp/fastgate-bench.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

say() { echo "# $*" >&2; }

build() {
    say "cargo build --release"
    (cd "$ROOT" && cargo build --release -q)
}

# wait_for TEST-EXPRESSION WHAT: at most 10 s.
wait_for() {
    local i
    for i in $(seq 200); do
        if eval "$1"; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $2" >&2
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_fastgate SOCKET-SPEC SOCKET-PATH [ARGS...]: serve in the background.
start_fastgate() {
    local spec=$1 path=$2
    shift 2
    say "$BIN serve --listen $spec $*"
    "$BIN" serve --listen "$spec" "$@" 2>"$TMP/fastgate.log" &
    FASTGATE_PID=$!
    PIDS+=("$FASTGATE_PID")
    wait_for "[ -S '$path' ]" "fastgate to listen on $path" || { cat "$TMP/fastgate.log" >&2; exit 1; }
}

machine() {
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
}

# The 1-minute load average now: printed beside each figure.
load1() { cut -d' ' -f1 /proc/loadavg; }
