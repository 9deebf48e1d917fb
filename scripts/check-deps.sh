#!/usr/bin/env bash
# `make lint`'s dependency check: licenses, banned crates (no async
# runtime) and sources of the whole tree, as deny.toml sets them.
# Without cargo-deny it says so loudly and skips, or fails under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
    echo "check-deps: cargo-deny is missing; install it with: cargo install --locked cargo-deny" >&2
    if [ "${CI:-}" = true ]; then
        exit 1
    fi
    echo "check-deps: SKIPPED the dependency check" >&2
    exit 0
fi
exec cargo deny check bans licenses sources
