#!/usr/bin/env bash
# Throughput of fastgate's `hello` behind nginx, against nginx answering the
# same bytes itself, in the same run: A B A B, so drift of the machine shows.
#
# fastgate listens on a Unix socket; nginx (one worker) talks to it with
# upstream keepalive and fastcgi_keep_conn on, as deploy/nginx/fastgate.conf.
# Load: wrk -t1 -c64 -d10s (DURATION, CONNS, ROUNDS override).
set -euo pipefail
source "$(dirname "$0")/common.sh"

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}

for tool in nginx wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-test-deps.sh)" >&2; exit 1; }
done
[ -x "$BIN" ] || build

start_fastgate "fastcgi:$TMP/fg.sock" "$TMP/fg.sock" --mount /=hello

PORT=$(free_port)
USER_LINE=""
# With a master process running as root, the worker would switch to nobody,
# who cannot enter the private temp dir holding the socket.
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
    scgi_temp_path $TMP/scgi;
    proxy_temp_path $TMP/proxy;
    uwsgi_temp_path $TMP/uwsgi;
    upstream fastgate {
        server unix:$TMP/fg.sock;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$PORT;
        location = /direct {
            default_type text/plain;
            return 200 "Hello, world!\n";
        }
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass fastgate;
            fastcgi_keep_conn on;
        }
    }
}
CONF
say "nginx -p $TMP -c $TMP/nginx.conf"
nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_for "curl -fs http://127.0.0.1:$PORT/direct >/dev/null" "nginx on port $PORT"

check() {
    local got
    got=$(curl -fs --max-time 5 "http://127.0.0.1:$PORT$1") || true
    if [ "$got" != "Hello, world!" ]; then
        echo "GET $1 gave '$got', not the hello body" >&2
        cat "$TMP/nginx.log" "$TMP/fastgate.log" >&2
        exit 1
    fi
}
check /
check /direct

# Context switches of every fastgate thread so far: each is a sleep or a
# preemption, so their count per request tracks the wakeups the server costs.
ctxsw() {
    cat /proc/"$FASTGATE_PID"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {n += $2} END {print n + 0}'
}

# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() {
    awk '{print $14 + $15}' /proc/"$1"/stat 2>/dev/null || echo 0
}

# nginx's worker: the one child of the master we started.
nginx_worker() {
    cat /proc/"$NGINX_PID"/task/"$NGINX_PID"/children 2>/dev/null | awk '{print $1}'
}

# per_request DELTA REQUESTS SCALE: DELTA * SCALE / REQUESTS, two decimals.
per_request() {
    awk -v d="$1" -v n="$2" -v k="$3" 'BEGIN { if (n > 0) printf "%.2f", d * k / n; else print "-" }'
}

# run_wrk NAME PATH: one wrk run, one summary line.
run_wrk() {
    local name=$1 path=$2 out worker tick_us
    worker=$(nginx_worker)
    tick_us=$((1000000 / $(getconf CLK_TCK)))
    local cs0 fg0 ng0 cs1 fg1 ng1
    cs0=$(ctxsw) fg0=$(cpu_ticks "$FASTGATE_PID") ng0=$(cpu_ticks "$worker")
    out=$(timeout 120 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$PORT$path")
    cs1=$(ctxsw) fg1=$(cpu_ticks "$FASTGATE_PID") ng1=$(cpu_ticks "$worker")
    local rps p50 p99 avg errs requests
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    avg=$(awk '$1 == "Latency" {print $2; exit}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    printf '%-20s %10s %9s %9s %9s %7s %7s %7s %5s  %s\n' "$name" "$rps" "$avg" "$p50" "$p99" \
        "$(per_request $((cs1 - cs0)) "$requests" 1)" \
        "$(per_request $((fg1 - fg0)) "$requests" "$tick_us")" \
        "$(per_request $((ng1 - ng0)) "$requests" "$tick_us")" \
        "$(load1)" "${errs:-}"
}

machine
echo "wrk -t1 -c$CONNS -d$DURATION --latency, nginx 1 worker, fastgate default threads"
say "warm-up"
timeout 30 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/" >/dev/null
printf '%-20s %10s %9s %9s %9s %7s %7s %7s %5s\n' "target" "req/s" "lat avg" "p50" "p99" \
    "fg cs" "fg us" "ngx us" "load"
echo "(per request: fg cs = fastgate context switches, fg us = fastgate CPU µs, ngx us = nginx worker CPU µs)"
for round in $(seq "$ROUNDS"); do
    run_wrk "fastgate hello (#$round)" /
    run_wrk "nginx direct (#$round)" /direct
done
