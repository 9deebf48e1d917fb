#!/usr/bin/env bash
# What one `hello` request costs fastgate, counted rather than timed, so the
# figures hold on a shared, noisy machine: syscalls and context switches per
# request (perf stat on the server while `fastgate bench` loads it directly,
# keep-conn, backend on CPU 1 and load on CPU 0) at each concurrency, CPU
# time per request beside them, and user-space instructions per request
# (callgrind, which counts them exactly whatever the load).
#
# Overrides: BENCH_BIN (the fastgate to measure; the load generator is
# always this tree's release build), CONCURRENCY ("1 16 64 256"),
# DURATION (5s), CALLGRIND_REQUESTS (20000; 0 skips callgrind).
set -euo pipefail
source "$(dirname "$0")/common.sh"

CONCURRENCY=${CONCURRENCY:-1 16 64 256}
DURATION=${DURATION:-5s}
CALLGRIND_REQUESTS=${CALLGRIND_REQUESTS:-20000}
LOAD="$ROOT/target/release/fastgate"
[ -x "$LOAD" ] || build
[ -x "$BIN" ] || { echo "no fastgate binary at $BIN" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is required (linux-perf)" >&2; exit 1; }

EVENTS=syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_read
EVENTS=$EVENTS,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex
EVENTS=$EVENTS,syscalls:sys_enter_sched_yield,context-switches,task-clock

requests_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }

# serve SOCKET [RUNNER...]: fastgate's hello in the background ($SERVER).
serve() {
    local sock=$1
    shift
    "$@" "$BIN" serve --listen "fastcgi:$sock" --mount /=hello -qq &
    SERVER=$!
    PIDS+=("$SERVER")
    wait_for "[ -S '$sock' ]" "fastgate on $sock"
}

stop_server() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
}

# One concurrency: a warm-up, then perf stat over a timed run.
count_at() {
    local c=$1 sock="$TMP/fg-$1.sock" n
    serve "$sock" taskset -c 1
    taskset -c 0 "$LOAD" bench -c "$c" -d 1s "fastcgi:$sock" / >/dev/null
    perf stat -x, -e "$EVENTS" -p "$SERVER" -o "$TMP/perf.txt" &
    local perf=$!
    sleep 0.2
    taskset -c 0 "$LOAD" bench -c "$c" -d "$DURATION" --json "fastcgi:$sock" / >"$TMP/run.json"
    kill -INT "$perf"
    wait "$perf" || true
    stop_server
    n=$(requests_of <"$TMP/run.json")
    awk -F, -v n="$n" -v c="$c" -v dur="$DURATION" '
        !/^#/ && NF > 2 { split($3, a, "_"); v[a[length(a)]] = $1 }
        END {
            printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", c, n / (dur + 0),
                v["recvfrom"] / n, v["sendto"] / n, (v["read"] + v["write"]) / n,
                v["epoll"] / n + v["wait"] / n, v["futex"] / n, v["context-switches"] / n,
                v["task-clock"] * 1000 / n
        }' "$TMP/perf.txt"
}

# User-space instructions per request, all threads, under callgrind.
instructions() {
    local sock="$TMP/cg.sock" out="$TMP/callgrind.out" n total
    serve "$sock" valgrind --tool=callgrind --callgrind-out-file="$out" --log-file="$TMP/valgrind.log"
    "$LOAD" bench -c 64 -n 2000 "fastcgi:$sock" / >/dev/null
    callgrind_control -z "$SERVER" >/dev/null 2>&1
    "$LOAD" bench -c 64 -n "$CALLGRIND_REQUESTS" --json "fastcgi:$sock" / >"$TMP/cg.json"
    callgrind_control -d "$SERVER" >/dev/null 2>&1
    stop_server
    n=$(requests_of <"$TMP/cg.json")
    total=$(awk '/^summary:|^totals:/ { print $2; exit }' "$out.1")
    echo "user-space instructions per request (callgrind, 64 connections, $n requests): $(( total / n ))"
}

machine
echo "server: $BIN"
echo
echo "| c | req/s | recvfrom | sendto | read+write | epoll_wait | futex | context switches | CPU µs |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $CONCURRENCY; do
    count_at "$c"
done
echo "(per request; read+write are the eventfd's, the workers' wakeups of the loop)"
if [ "$CALLGRIND_REQUESTS" -gt 0 ] && command -v valgrind >/dev/null; then
    echo
    instructions
fi
