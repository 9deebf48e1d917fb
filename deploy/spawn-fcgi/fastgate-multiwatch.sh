#!/bin/sh
# fastgate under spawn-fcgi and multiwatch, for a supervisor that runs a
# command in the foreground (runit's ./run, daemontools, s6, an init
# script with start-stop-daemon --background).
#
# spawn-fcgi (root) creates the socket, gives it to www-data, and execs
# multiwatch as www-data with the socket on fd 0; multiwatch keeps
# COPIES copies of fastgate on that socket, starting again any
# that dies. fastgate, given no --listen, serves fd 0. (fastgate's own
# --processes N does the same in one program, with rolling restarts and
# upgrades; this is for setups built around spawn-fcgi.)
#
# Stopping: send TERM to this script's pid (spawn-fcgi -n and multiwatch
# take it over by exec). multiwatch then signals every copy with the
# signal of -s, and fastgate's graceful stop is TERM or INT. multiwatch
# 1.0.0 (Debian 12's) sends the signal listed before the one named, in
# the order HUP INT QUIT TERM: -s TERM sends QUIT (fastgate stops at once,
# cutting requests in flight), -s QUIT sends INT (a graceful stop). So
# this script says QUIT; with a multiwatch that sends what it is told,
# say TERM. (Its default, USR1, only makes fastgate reopen its logs.)
#
# tests/deploy.rs runs this very script (the variables below set by the
# test; the paths of the programs come from PATH), serves requests
# through the socket, stops it with TERM and checks that no copy is left.
set -eu

SOCKET=${SOCKET:-/run/fastgate.sock}
FASTGATE=${FASTGATE:-/usr/local/bin/fastgate}
COPIES=${COPIES:-4}
# See above: QUIT for multiwatch 1.0.0, TERM for one without its bug.
MULTIWATCH_SIGNAL=${MULTIWATCH_SIGNAL:-QUIT}
RUN_AS=${RUN_AS:-www-data}

# spawn-fcgi drops to -u/-g only when it runs as root.
if [ "$(id -u)" -eq 0 ]; then
    set -- -u "$RUN_AS" -g "$RUN_AS" -U "$RUN_AS" -G "$RUN_AS"
else
    set --
fi

exec spawn-fcgi -n -s "$SOCKET" -M 0660 "$@" -- \
    "$(command -v multiwatch)" -f "$COPIES" -s "$MULTIWATCH_SIGNAL" -- \
    "$FASTGATE" serve --mount /=hello --mount /status=status
