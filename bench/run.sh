#!/usr/bin/env bash
# All the figures of docs/BENCHMARKS.md: throughput behind nginx, then memory.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== bench/nginx-hello.sh"
./bench/nginx-hello.sh
echo
echo "== bench/rss.sh"
./bench/rss.sh
echo
echo "== bench/cgi.sh"
./bench/cgi.sh
