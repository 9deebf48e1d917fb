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

have() {
    case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
    esac
}

missing=()
for entry in "${TOOLS[@]}"; do
    tool=${entry%%:*}
    pkg=${entry#*:}
    if ! have "$tool"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-bench-deps: all bench tools present"
    exit 0
fi

echo "install-bench-deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-bench-deps: not root or no apt-get; not installing (bench/peers.sh skips what is missing)"
    exit 0
fi

# nginx and php8.2-fpm would start their services on install, and on a
# machine without an init system the failed start fails the install: keep
# them down (the policy-rc.d convention, removed afterwards).
policy=/usr/sbin/policy-rc.d
created_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=yes
fi
cleanup() {
    if [ "$created_policy" = yes ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "+ apt-get update"
apt-get update -q
echo "+ apt-get install --no-install-recommends ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"

for entry in "${TOOLS[@]}"; do
    tool=${entry%%:*}
    have "$tool" || { echo "install-bench-deps: $tool still missing after install" >&2; exit 1; }
done
echo "install-bench-deps: done"
