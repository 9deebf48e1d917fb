#!/usr/bin/env bash
# All the figures of docs/BENCHMARKS.md: throughput behind nginx, memory, then
# fastgate against its FastCGI peers (null C backend, libfcgi, Go, php-fpm).
# DURATION, ROUNDS, CONCURRENCY, TARGETS, BENCH_BIN pass through to the scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== bench/nginx-hello.sh"
./bench/nginx-hello.sh
echo
echo "== bench/rss.sh"
./bench/rss.sh
echo
echo "== bench/peers.sh"
./bench/peers.sh
echo
echo "== bench/cgi.sh"
./bench/cgi.sh
