#!/usr/bin/env bash
# Installs what `make bench` drives and only what is missing: the front
# server and HTTP load tool of bench/nginx-hello.sh, and the peers that
# bench/peers.sh measures fastgate against (a C compiler for the null
# backend, libfcgi's headers and library, Go for net/http/fcgi, php-fpm).
# Debian/Ubuntu (apt-get) only; idempotent: a second run installs nothing.
#
# Not root, or no apt-get: print what is missing and go on; bench/peers.sh
# then skips the peers it cannot build, and says so.
#
# Package notes (Debian 12):
# - golang-go is Go 1.19; net/http/fcgi is in its standard library, so the
#   Go peer needs no module download.
# - libfcgi-dev brings fcgiapp.h and libfcgi.so (the FastCGI developer kit's
#   C library, FCGX_* calls).
# - php8.2-fpm ships a service that policy-rc.d below keeps down; the bench
#   starts its own php-fpm in the foreground with its own pool config.
set -euo pipefail

# what to look for → Debian package. A plain name is a program on PATH (or in
# /usr/sbin, /sbin); a path is a file that must exist.
TOOLS=(
    "nginx:nginx"
    "wrk:wrk"
    "curl:curl"
    "python3:python3"
    "gcc:gcc"
    "taskset:util-linux"
    "go:golang-go"
    "/usr/include/fcgiapp.h:libfcgi-dev"
    "php-fpm8.2:php8.2-fpm"
    # bench/cgi.sh: the CGI gateway's baseline.
    "fcgiwrap:fcgiwrap"
    # bench/hot-path.sh: syscalls and switches counted (perf stat), user-space
    # instructions counted (callgrind).
    "perf:linux-perf"
    "callgrind_control:valgrind"
)

source "$(dirname "$0")/install-tools.sh"
install_tools install-bench-deps "bench/peers.sh skips what is missing"
