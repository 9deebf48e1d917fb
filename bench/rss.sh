#!/usr/bin/env bash
# Memory of one fastgate process (VmRSS from /proc/PID/status): idle, then
# holding COUNT (1000) idle kept-alive FastCGI connections, then after they
# close. Each connection first completes one request with FCGI_KEEP_CONN, so
# it is a real idle keep-alive connection, not a half-open one waiting for
# its params.
set -euo pipefail
source "$(dirname "$0")/common.sh"

COUNT=${COUNT:-1000}

command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
[ -x "$BIN" ] || build

# Both ends hold COUNT descriptors.
ulimit -n "$(( COUNT * 2 + 256 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

start_fastgate "fastcgi:$TMP/fg.sock" "$TMP/fg.sock" --mount /=hello --idle-timeout 5m

machine
echo "fastgate serve --listen fastcgi:SOCK --mount /=hello --idle-timeout 5m, pid $FASTGATE_PID"
timeout 120 python3 "$(dirname "$0")/idle_conns.py" "$TMP/fg.sock" "$COUNT" "$FASTGATE_PID"
