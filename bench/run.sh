#!/usr/bin/env bash
# All the figures of docs/BENCHMARKS.md: throughput behind nginx, memory, then
# fastgate against its FastCGI peers (null C backend, libfcgi, Go, php-fpm),
# the hot path counted, RSS over a 10-minute run, and the CGI gateway.
# DURATION, ROUNDS, CONCURRENCY, TARGETS, BENCH_BIN, RSS_DURATION pass
# through to the scripts.
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
echo "== bench/hot-path.sh"
./bench/hot-path.sh
echo
echo "== bench/rss-over-time.sh"
./bench/rss-over-time.sh
echo
echo "== bench/cgi.sh"
./bench/cgi.sh
