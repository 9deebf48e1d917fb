#!/usr/bin/env bash
# Memory of one fastgate process under steady load: `fastgate bench` keeps
# 64 kept-alive FastCGI connections busy with hello (48 of them) and echo of
# a 64 KiB body (16) for RSS_DURATION (10m), and the server's VmRSS, threads
# and fds are sampled every STEP (10 s). What it checks: after the first
# 2 minutes (allocator arenas and buffers warmed up) RSS stays flat, within
# 10 % of its value at minute 2.
set -euo pipefail
source "$(dirname "$0")/common.sh"

DURATION=${RSS_DURATION:-10m}
STEP=${STEP:-10}
CONNS=${CONNS:-64}

[ -x "$BIN" ] || build
start_fastgate "fastcgi:$TMP/fg.sock" "$TMP/fg.sock" --mount /=hello --mount /echo=echo

seconds() { # 10m, 90s, 2h -> seconds
    local v=$1
    case $v in
        *h) echo $(( ${v%h} * 3600 )) ;; *m) echo $(( ${v%m} * 60 )) ;;
        *s) echo "${v%s}" ;; *) echo "$v" ;;
    esac
}
TOTAL=$(seconds "$DURATION")
head -c 65536 /dev/urandom >"$TMP/body"

machine
echo "fastgate serve --mount /=hello --mount /echo=echo, pid $FASTGATE_PID; load: $CONNS connections for $DURATION"
# Two load generators side by side: hello, and echo with a 64 KiB body.
"$BIN" bench -c $(( CONNS * 3 / 4 )) -d "${TOTAL}s" "fastcgi:$TMP/fg.sock" / >"$TMP/hello.out" 2>&1 &
PIDS+=("$!")
"$BIN" bench -c $(( CONNS / 4 )) -d "${TOTAL}s" --data "@$TMP/body" "fastcgi:$TMP/fg.sock" /echo >"$TMP/echo.out" 2>&1 &
PIDS+=("$!")

sample() {
    local rss threads fds
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$FASTGATE_PID/status")
    threads=$(awk '/^Threads/{print $2}' "/proc/$FASTGATE_PID/status")
    fds=$(ls "/proc/$FASTGATE_PID/fd" | wc -l)
    echo "$1 $rss $threads $fds"
}
printf '%8s %10s %8s %6s\n' seconds "VmRSS kB" threads fds
: >"$TMP/samples"
for (( t = 0; t <= TOTAL; t += STEP )); do
    s=$(sample "$t")
    echo "$s" >>"$TMP/samples"
    printf '%8s %10s %8s %6s\n' $s
    [ "$t" -lt "$TOTAL" ] && sleep "$STEP"
done
wait "${PIDS[1]}" "${PIDS[2]}" || true
echo "hello: $(tail -n 3 "$TMP/hello.out" | tr '\n' ' ')"
echo "echo:  $(tail -n 3 "$TMP/echo.out" | tr '\n' ' ')"
awk -v from=120 '$1 >= from { if (!base) base = $2; if ($2 > max) max = $2; if (!min || $2 < min) min = $2 }
    END { if (!base) { print "run shorter than 2 minutes: nothing to judge"; exit 0 }
          printf "RSS from minute 2: %d kB at the start, %d..%d kB, %+.1f %% at most\n", base, min, max, 100 * (max - base) / base
          if (max > base * 1.10) { print "RSS grew by more than 10 %"; exit 1 } }' "$TMP/samples"
