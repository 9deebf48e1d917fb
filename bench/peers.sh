#!/usr/bin/env bash
# fastgate's hello against its FastCGI peers on the same Unix socket layout:
# a null C epoll responder (the practical limit), libfcgi with threads, Go's
# net/http/fcgi, php-fpm (pm = static) and fastgate; each loaded directly
# (fastgate bench, keep-conn) and through one nginx worker (wrk), with and
# without upstream keepalive; load generator on CPU 0, backend on CPU 1.
# Reports req/s, latency, errors, CPU µs and context switches per request,
# and each target's ratio to the null backend. bench/peers.py does the work
# (its docstring says how); this builds fastgate and gives it a temp dir.
#
# Overrides: DURATION (5s), ROUNDS (2), CONCURRENCY ("1 16 64 256"),
# TARGETS ("null libfcgi go php fastgate"), MODES ("direct nginx-ka nginx-nk"),
# LIBFCGI_THREADS (4), PHP_CHILDREN (4), BENCH_BIN. A quick run:
#   DURATION=1s ROUNDS=1 CONCURRENCY="1 64" ./bench/peers.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"

PATH=$PATH:/usr/sbin:/sbin
for tool in nginx wrk python3 taskset gcc; do
    command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-bench-deps.sh)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs: the load generator on CPU 0, the backend on CPU 1" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || build
[ -x "$BIN" ] || { echo "no fastgate binary at $BIN" >&2; exit 1; }

machine
# Not exec: common.sh's trap removes $TMP when the script ends. peers.py
# kills the processes it starts itself, by pid, on any exit.
PEERS_TMP=$TMP BENCH_BIN=$BIN python3 "$ROOT/bench/peers.py"
