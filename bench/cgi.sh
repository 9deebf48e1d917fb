#!/usr/bin/env bash
# The CGI gateway against fcgiwrap, both behind the same nginx, at equal
# concurrency (fastgate --min/--max-threads N, fcgiwrap -c N, wrk -c N),
# with the spawn limit measured in the same run: N processes that
# posix_spawn + wait the same program in a loop (bench/cgi/spawnloop.c).
# Rounds interleave the targets, so drift of the machine shows.
#
# Programs: bench/cgi/hello.c (compiled) and a shell script. Then the peak
# RSS of fastgate (VmHWM) while it streams a 1 GB POST through a script that
# reads and discards its stdin.
#
# DURATION (5s), N (4), ROUNDS (2), UPLOAD_MB (1024) override.
set -euo pipefail
source "$(dirname "$0")/common.sh"

DURATION=${DURATION:-5s}
N=${N:-4}
ROUNDS=${ROUNDS:-2}
UPLOAD_MB=${UPLOAD_MB:-1024}

for tool in nginx wrk curl cc fcgiwrap python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
        { echo "$tool is required (scripts/install-test-deps.sh)" >&2; exit 1; }
done
FCGIWRAP=$(command -v fcgiwrap || echo /usr/sbin/fcgiwrap)
[ -x "$BIN" ] || build

CGI=$TMP/cgi-bin
mkdir -p "$CGI"
cc -O2 -o "$CGI/hello.cgi" "$ROOT/bench/cgi/hello.c"
cc -O2 -o "$TMP/spawnloop" "$ROOT/bench/cgi/spawnloop.c"
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nHello, world!\\n"\n' >"$CGI/hello.sh"
printf '#!/bin/sh\ncat >/dev/null\nprintf "Content-Type: text/plain\\r\\n\\r\\ndone\\n"\n' >"$CGI/discard.sh"
chmod 755 "$CGI"/*

# Root runs the benchmark: both gateways run the scripts as root.
start_fastgate "fastcgi:$TMP/fg.sock" "$TMP/fg.sock" --mount /=cgi --cgi-root "$CGI" \
    --cgi-allow-root --min-threads "$N" --max-threads "$N"
say "$FCGIWRAP -c $N -s unix:$TMP/fw.sock"
# In a session of its own: its N children outlive a TERM to the parent, so
# the whole group is killed at exit (by the group id of the pid we started).
setsid "$FCGIWRAP" -c "$N" -s "unix:$TMP/fw.sock" >/dev/null 2>"$TMP/fcgiwrap.log" &
FCGIWRAP_PID=$!
trap 'kill -- "-$FCGIWRAP_PID" 2>/dev/null || true; cleanup' EXIT
wait_for "[ -S '$TMP/fw.sock' ]" "fcgiwrap to listen"

PORT=$(free_port)
USER_LINE=""
if [ "$(id -u)" -eq 0 ]; then USER_LINE="user root;"; fi
cat >"$TMP/nginx.conf" <<CONF
daemon off;
$USER_LINE
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/client_body;
    fastcgi_temp_path $TMP/fastcgi;
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$PORT;
        location ~ ^/fastgate/(.*)\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $CGI/\$1;
            fastcgi_request_buffering off;
            fastcgi_pass unix:$TMP/fg.sock;
        }
        location ~ ^/fcgiwrap/(.*)\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $CGI/\$1;
            fastcgi_pass unix:$TMP/fw.sock;
        }
    }
}
CONF
say "nginx -p $TMP -c $TMP/nginx.conf"
nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx.log" &
PIDS+=("$!")
URL="http://127.0.0.1:$PORT"
wait_for "curl -fs $URL/fastgate/hello.cgi >/dev/null" "nginx on port $PORT"
for path in fastgate/hello.cgi fastgate/hello.sh fcgiwrap/hello.cgi fcgiwrap/hello.sh; do
    got=$(curl -fs --max-time 5 "$URL/$path") || true
    [ "$got" = "Hello, world!" ] || { echo "GET /$path gave '$got'" >&2; cat "$TMP"/*.log >&2; exit 1; }
done

vm() { awk -v k="$1:" '$1 == k {print $2}' /proc/"$FASTGATE_PID"/status; }

machine
echo "== peak RSS of fastgate streaming a $UPLOAD_MB MB POST (nginx fastcgi_request_buffering off) into discard.sh"
echo "before: VmRSS $(vm VmRSS) kB, VmHWM $(vm VmHWM) kB"
start=$(date +%s.%N)
got=$(head -c "${UPLOAD_MB}M" /dev/zero |
    timeout 300 curl -fsS -X POST -T - -H 'Content-Type: application/octet-stream' "$URL/fastgate/discard.sh")
end=$(date +%s.%N)
[ "$got" = "done" ] || { echo "upload gave '$got'" >&2; exit 1; }
echo "after:  VmRSS $(vm VmRSS) kB, VmHWM $(vm VmHWM) kB (peak), $(awk -v a="$start" -v b="$end" -v m="$UPLOAD_MB" 'BEGIN {printf "%.0f MB/s", m / (b - a)}')"

# CPU time (user + system, clock ticks) fastgate itself has used so far:
# its own threads, not the scripts it ran.
fg_ticks() { awk '{print $14 + $15}' /proc/"$FASTGATE_PID"/stat; }

# run_wrk NAME PATH: one wrk run, one line: req/s, ratio to the spawn
# limit, p50, p99, and for fastgate its own CPU µs per request.
run_wrk() {
    local out rps p50 p99 errs t0 t1 requests fg_us
    t0=$(fg_ticks)
    out=$(timeout 120 wrk -t1 -c"$N" -d"$DURATION" --latency "$URL/$2")
    t1=$(fg_ticks)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    fg_us=$(awk -v d=$((t1 - t0)) -v n="$requests" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0 && d > 0) printf "%.0f", d * 1e6 / hz / n; else print "-" }')
    case "$2" in fastgate/*) ;; *) fg_us="-" ;; esac
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print "non-2xx " $NF} /Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    printf '%-26s %9s %7s %9s %9s %6s %5s  %s\n' "$1" "$rps" \
        "$(awk -v r="$rps" -v l="$LIMIT" 'BEGIN {printf "%.2f", r / l}')" "$p50" "$p99" "$fg_us" \
        "$(load1)" "${errs:-}"
}

spawn_limit() {
    LIMIT=$("$TMP/spawnloop" "$1" "${DURATION%s}" "$N")
    printf '%-26s %9s %7s %9s %9s %6s %5s\n' "spawn limit ($2)" "$LIMIT" "1.00" "-" "-" "-" "$(load1)"
}

echo
echo "== wrk -t1 -c$N -d$DURATION --latency through nginx (1 worker); fastgate --min-threads $N --max-threads $N; fcgiwrap -c $N; spawn limit: $N x (posix_spawn + wait)"
say "warm-up"
timeout 30 wrk -t1 -c"$N" -d1s "$URL/fastgate/hello.cgi" >/dev/null
timeout 30 wrk -t1 -c"$N" -d1s "$URL/fcgiwrap/hello.cgi" >/dev/null
printf '%-26s %9s %7s %9s %9s %6s %5s\n' "target" "req/s" "ratio" "p50" "p99" "fg us" "load"
echo "(ratio: to the spawn limit of the same program just before; fg us: fastgate's own CPU per request, its scripts not counted)"
for round in $(seq "$ROUNDS"); do
    spawn_limit "$CGI/hello.cgi" "C #$round"
    run_wrk "fastgate C (#$round)" fastgate/hello.cgi
    run_wrk "fcgiwrap C (#$round)" fcgiwrap/hello.cgi
    spawn_limit "$CGI/hello.sh" "sh #$round"
    run_wrk "fastgate sh (#$round)" fastgate/hello.sh
    run_wrk "fcgiwrap sh (#$round)" fcgiwrap/hello.sh
done
