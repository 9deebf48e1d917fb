# Shared by install-test-deps.sh and install-bench-deps.sh (sourced, not
# run): install, with apt-get as root, the Debian package of each tool in
# the caller's TOOLS array ("tool:package") that is missing, and only those.
#
# A tool is a program on PATH (or in /usr/sbin, /sbin), a path that must
# exist (/...), or python3/MODULE: a module python3 on PATH, or Debian's
# /usr/bin/python3 (the one Debian's python3-* packages install for),
# imports.
#
# Not root, or no apt-get: print what is missing and return; the caller's
# `skips` says what happens then.

have() {
    case "$1" in
    /*)
        [ -e "$1" ]
        return
        ;;
    python3/*)
        local py
        for py in python3 /usr/bin/python3; do
            "$py" -c "import ${1#python3/}" >/dev/null 2>&1 && return 0
        done
        return 1
        ;;
    esac
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# install_tools NAME SKIPS: NAME prefixes every line printed; SKIPS says what
# becomes of a missing tool when nothing can be installed.
install_tools() {
    local name=$1 skips=$2 entry tool pkg
    local missing=()
    for entry in "${TOOLS[@]}"; do
        tool=${entry%%:*}
        pkg=${entry#*:}
        if ! have "$tool" && [[ " ${missing[*]} " != *" $pkg "* ]]; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "$name: all present"
        return 0
    fi
    echo "$name: missing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$name: not root or no apt-get; not installing ($skips)"
        return 0
    fi
    apt_install "${missing[@]}"
    for entry in "${TOOLS[@]}"; do
        tool=${entry%%:*}
        have "$tool" || { echo "$name: $tool still missing after install" >&2; return 1; }
    done
    echo "$name: done"
}

# Installing a server package (nginx, apache2, php8.2-fpm...) would start its
# daemon, and on a machine without an init system the failed start fails
# the install. The tests and benches start their own instances, so the
# packages' services stay down while installing (the policy-rc.d
# convention, removed afterwards).
apt_install() {
    local policy=/usr/sbin/policy-rc.d created=no status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created=yes
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "+ apt-get update"
    echo "+ apt-get install --no-install-recommends $*"
    apt-get update -q && apt-get install -y -q --no-install-recommends "$@" || status=$?
    if [ "$created" = yes ]; then rm -f "$policy"; fi
    return "$status"
}
