#!/usr/bin/env bash
# Installs the programs the integration tests drive (front servers, spawners,
# load tools) and the C++ compiler the fuzz-target check needs, and only
# those that are missing. Debian/Ubuntu (apt-get) only.
#
# Not root, or no apt-get: print what is missing and go on; the tests that need
# a missing tool then skip loudly (or fail under CI=true, which is the point).
#
# Package notes (Debian 12):
# - `nginx` is the build with fastcgi, scgi and upstream keepalive compiled in;
#   `nginx-light` is only a transitional package pulling it plus an extra module.
# - haproxy 2.6 has `fcgi-app`.
# - caddy 2.6 (`reverse_proxy` with `transport fastcgi`) and h2o 2.2
#   (`fastcgi.connect`) are the other front servers the tests drive; both
#   packages ship a service the policy-rc.d trick below keeps down.
# - `systemd` (for systemd-analyze and systemd-socket-activate) installs
#   fine in a container where systemd is not PID 1; nothing is started.
set -euo pipefail

# tool name (what the tests look for on PATH) → Debian package
TOOLS=(
    "nginx:nginx"
    "haproxy:haproxy"
    "lighttpd:lighttpd"
    "spawn-fcgi:spawn-fcgi"
    "multiwatch:multiwatch"
    "apache2:apache2"
    "caddy:caddy"
    "h2o:h2o"
    "git:git"
    # The cgi gateway's tests: git smart HTTP (git-http-backend comes with
    # git), gitweb through nginx, and fcgiwrap as the benchmark's baseline.
    # An absolute path is a file that must exist.
    "/usr/lib/git-core/git-http-backend:git"
    "/usr/share/gitweb/gitweb.cgi:gitweb"
    "/usr/share/perl5/CGI.pm:libcgi-pm-perl"
    "fcgiwrap:fcgiwrap"
    "wrk:wrk"
    "curl:curl"
    # tests/deploy.rs: `systemd-analyze verify` on the units, and
    # systemd-socket-activate to hand fastgate a socket as systemd does;
    # `logrotate -d` on the logrotate file. tests/docs.rs: `mandoc -Tlint`
    # on the man page. tests/install.rs: `make install`.
    "systemd-analyze:systemd"
    "systemd-socket-activate:systemd"
    "logrotate:logrotate"
    "mandoc:mandoc"
    "make:make"
    # `make test` checks the fuzz targets: libfuzzer-sys compiles libFuzzer's C++.
    "c++:g++"
    # A python3/MODULE entry is a Python module (see have): the status
    # tests parse `?openmetrics` with prometheus_client's own parser.
    "python3/prometheus_client:python3-prometheus-client"
    # tests/http.rs renders the status page over the HTTP listener in a
    # real headless browser.
    "chromium:chromium"
)

source "$(dirname "$0")/install-tools.sh"
install_tools install-test-deps "tests needing them will skip, or fail under CI=true"

# `make lint` checks the dependency tree against deny.toml with cargo-deny,
# built from crates.io (a few minutes, once; no root needed).
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version >/dev/null 2>&1; then
    echo "install-test-deps: cargo install --locked cargo-deny@$CARGO_DENY_VERSION"
    cargo install --locked "cargo-deny@$CARGO_DENY_VERSION" ||
        echo "install-test-deps: cargo-deny could not be installed; make lint will skip the dependency check (fail under CI=true)" >&2
fi
