#!/usr/bin/env python3
"""fastgate and its peers side by side: hello over FastCGI, same socket layout.

What it measures, and why: how far fastgate's hello is from the practical
limit of a FastCGI backend on this machine (bench/peers/null.c, a one-thread
epoll responder that answers with canned bytes), and from the FastCGI
servers people would otherwise use (libfcgi with threads, Go's
net/http/fcgi, php-fpm). Every backend answers the same 14 bytes on a Unix
socket in the same temp dir, and is loaded three ways:

  direct    fastgate bench --json -c C -d DURATION fastcgi:SOCK URI
            (FastCGI keep-conn connections straight to the backend)
  nginx-ka  wrk -t1 -cC through nginx (1 worker), upstream keepalive 32 and
            fastcgi_keep_conn on
  nginx-nk  the same without upstream keepalive: a FastCGI connection per
            request, closed by the backend after its answer

The load generator runs on CPU 0, the backend (and nginx) on CPU 1
(taskset), so each side has one vCPU of the two. Rounds are interleaved:
within a round every target is run at a point before the next point, so
drift of a shared machine shows up between rounds, not between targets.
nginx is started afresh for each mode's block of runs, and is not running
during the direct runs: a connection parked in an upstream keepalive pool
would otherwise hold a thread of libfcgi or a child of php-fpm.

Per point: req/s, p50, p99, errors (wrk: non-2xx and socket errors), CPU
microseconds per request of all the backend's processes (user + system from
/proc/PID/stat) and of the nginx worker, backend context switches per
request (voluntary + nonvoluntary of every thread, /proc/PID/task/*/status),
and the backend's accepted connections sampled mid-run ("held"): fewer than
the client's connections means some wait in the listen backlog, unserved.

Driven by bench/peers.sh (which builds fastgate and gives the temp dir);
environment: DURATION (5s), ROUNDS (2), CONCURRENCY ("1 16 64 256"),
TARGETS ("null libfcgi go php fastgate"), MODES ("direct nginx-ka nginx-nk"),
LIBFCGI_THREADS (4), PHP_CHILDREN (4), BENCH_BIN (fastgate binary).
Writes bench/results/peers-<UTC time>.csv and .md, and docs/bench-peers.svg
(SVG=path to write elsewhere, SVG= to skip).

`python3 bench/peers.py --from A.csv [B.csv...]` prints the tables and
redraws the plot from results files, the rounds of each run after those of
the one before (several quick runs make one longer one).
"""

import csv
import datetime
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_SRC = os.path.join(ROOT, "bench", "peers")

ALL_TARGETS = ["null", "libfcgi", "go", "php", "fastgate"]
ALL_MODES = ["direct", "nginx-ka", "nginx-nk"]
LABEL = {
    "null": "null (C epoll)",
    "libfcgi": "libfcgi threads",
    "go": "Go net/http/fcgi",
    "php": "php-fpm static",
    "fastgate": "fastgate",
}
MODE_LABEL = {
    "direct": "direct (fastgate bench, keep-conn)",
    "nginx-ka": "through nginx, upstream keepalive",
    "nginx-nk": "through nginx, no upstream keepalive",
}
COLOR = {
    "null": "#7f7f7f",
    "libfcgi": "#1f77b4",
    "go": "#17becf",
    "php": "#9467bd",
    "fastgate": "#d62728",
}

CLK_TCK = os.sysconf("SC_CLK_TCK")
HELLO = "Hello, world!\n"


def say(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def seconds(d):
    """'5s', '500ms', '1m' -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", d)
    if not m:
        sys.exit(f"bad duration {d!r}")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "ms" else v * 60 if m.group(2) == "m" else v


# ---------------------------------------------------------------- processes

STARTED = []  # (name, Popen) of every long-running process we started


def start(name, argv, log):
    """Start argv pinned to CPU 1 (taskset execs, so the pid is the program's)."""
    say(f"start {name}: {' '.join(argv)}")
    f = open(log, "ab")
    p = subprocess.Popen(["taskset", "-c", "1"] + argv, stdout=f, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    STARTED.append((name, p))
    return p


def descendants(pid):
    """pid and every process below it (php-fpm's children, nginx's worker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def pin(pid):
    """Every thread of pid and its descendants on CPU 1 (taskset -a -p)."""
    for p in descendants(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", "1", str(p)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def stop_all():
    """TERM every process we started (by pid), KILL what is left after 5 s,
    and then any descendant of theirs still there (by the pids we saw)."""
    seen = []
    for _, p in STARTED:
        if p.poll() is None:
            seen.extend(descendants(p.pid)[1:])
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.time() + 5
    for _, p in STARTED:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    STARTED.clear()


def stop(proc):
    """Stop one process we started (TERM, then KILL after 5 s) and forget it."""
    rest = descendants(proc.pid)[1:]
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in rest:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    STARTED[:] = [(n, p) for n, p in STARTED if p is not proc]


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def wait_for(test, what, limit=10.0):
    end = time.time() + limit
    while time.time() < end:
        if test():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def unix_accepts(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------- /proc

def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total


def ctx_switches(pids):
    total = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def held_conns(pids, sock):
    """Accepted connections on `sock` that the backend's processes hold now."""
    ours, listening = set(), set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            cols = line.split()
            if len(cols) >= 8 and cols[7] == sock:
                (listening if cols[3] == "00010000" else ours).add(cols[6])
    held = set()
    for p in pids:
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = link[8:-1]
                if ino in ours:
                    held.add(ino)
    return len(held)


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- build

def build(targets, tmp):
    """Compile the peers into tmp/bin; drop (loudly) those that cannot be built."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    ok = []
    for t in targets:
        try:
            if t == "null":
                subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", f"{bindir}/null",
                                f"{PEERS_SRC}/null.c"], check=True)
            elif t == "libfcgi":
                subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", f"{bindir}/libfcgi_hello",
                                f"{PEERS_SRC}/libfcgi_hello.c", "-lfcgi", "-lpthread"], check=True)
            elif t == "go":
                # Cache and GOPATH under target/ so it works as root, offline.
                env = dict(os.environ, GOCACHE=os.path.join(ROOT, "target", "peers-go", "cache"),
                           GOPATH=os.path.join(ROOT, "target", "peers-go", "gopath"),
                           GOPROXY="off", GOFLAGS="", CGO_ENABLED="0")
                subprocess.run(["go", "build", "-o", f"{bindir}/gofcgi", "."], check=True, env=env,
                               cwd=f"{PEERS_SRC}/gofcgi")
            elif t == "php":
                if not os.path.isabs(php_fpm_path()):
                    raise FileNotFoundError("php-fpm8.2")
            ok.append(t)
        except (OSError, subprocess.CalledProcessError) as e:
            say(f"SKIPPING {t}: cannot build or find it ({e}); scripts/install-bench-deps.sh installs what it needs")
    return ok


# ---------------------------------------------------------------- backends

def php_fpm_path():
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]:
        if os.access(os.path.join(d, "php-fpm8.2"), os.X_OK):
            return os.path.join(d, "php-fpm8.2")
    return "php-fpm8.2"


def start_backend(t, tmp, cfg):
    sock = f"{tmp}/{t}.sock"
    log = f"{tmp}/{t}.log"
    b = f"{tmp}/bin"
    if t == "null":
        p = start(t, [f"{b}/null", sock], log)
    elif t == "libfcgi":
        p = start(t, [f"{b}/libfcgi_hello", sock, str(cfg["libfcgi_threads"])], log)
    elif t == "go":
        p = start(t, [f"{b}/gofcgi", sock], log)
    elif t == "fastgate":
        p = start(t, [cfg["bin"], "serve", "--listen", f"fastcgi:{sock}", "--mount", "/=hello"], log)
    elif t == "php":
        with open(f"{tmp}/hello.php", "w") as f:
            f.write("<?php header('Content-Type: text/plain'); echo \"Hello, world!\\n\";\n")
        conf = f"{tmp}/php-fpm.conf"
        with open(conf, "w") as f:
            f.write(f"""[global]
pid = {tmp}/php-fpm.pid
error_log = {tmp}/php-fpm.log
daemonize = no
[hello]
; root only because the bench runs as root (php-fpm then needs -R)
user = root
group = root
listen = {sock}
listen.mode = 0666
listen.backlog = 1024
pm = static
pm.max_children = {cfg["php_children"]}
""")
        argv = [php_fpm_path(), "-F", "-y", conf]
        if os.getuid() == 0:
            argv.insert(2, "-R")
        p = start(t, argv, log)
    else:
        raise SystemExit(f"unknown target {t}")
    try:
        wait_for(lambda: p.poll() is None and os.path.exists(sock) and unix_accepts(sock), f"{t} on {sock}")
    except SystemExit:
        with open(log, errors="replace") as f:
            sys.stderr.write(f.read())
        raise
    if t == "php":
        want = cfg["php_children"] + 1
        wait_for(lambda: len(descendants(p.pid)) >= want, "php-fpm's children")
    pin(p.pid)
    # php-fpm runs the file SCRIPT_FILENAME names, which nginx's fastcgi_params
    # (what fastgate bench sends) lack: given here as nginx's location does.
    params = ["--param", f"SCRIPT_FILENAME={tmp}/hello.php"] if t == "php" else []
    return {"name": t, "proc": p, "sock": sock, "pids": descendants(p.pid),
            "uri": "/hello.php" if t == "php" else "/", "params": params}


def nginx_conf(tmp, port, backends):
    ups, locs = [], []
    for be in backends:
        t, sock = be["name"], be["sock"]
        # php-fpm runs the file SCRIPT_FILENAME names; fastcgi_params has none.
        script = f"            fastcgi_param SCRIPT_FILENAME {tmp}/hello.php;\n" if t == "php" else ""
        ups.append(f"    upstream {t}_ka {{ server unix:{sock}; keepalive 32; }}\n"
                   f"    upstream {t}_nk {{ server unix:{sock}; }}\n")
        locs.append(f"""        location /{t}/ka/ {{
            include /etc/nginx/fastcgi_params;
{script}            fastcgi_pass {t}_ka;
            fastcgi_keep_conn on;
        }}
        location /{t}/nk/ {{
            include /etc/nginx/fastcgi_params;
{script}            fastcgi_pass {t}_nk;
        }}
""")
    # As root the worker would switch to nobody, who cannot enter the temp dir.
    user = "user root;\n" if os.getuid() == 0 else ""
    return f"""daemon off;
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    fastcgi_temp_path {tmp}/fastcgi;
    scgi_temp_path {tmp}/scgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
{''.join(ups)}    server {{
        listen 127.0.0.1:{port};
{''.join(locs)}    }}
}}
"""


def start_nginx(tmp, backends):
    """nginx (one worker, on CPU 1) in front of every backend; each answers hello through it."""
    port = free_port()
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(nginx_conf(tmp, port, backends))
    proc = start("nginx", ["nginx", "-p", tmp, "-c", f"{tmp}/nginx.conf", "-e", f"{tmp}/nginx.log"],
                 f"{tmp}/nginx.out")
    wait_for(lambda: proc.poll() is None and http_get(f"http://127.0.0.1:{port}/none")[0] == 404,
             f"nginx on port {port}")
    pin(proc.pid)
    for be in backends:
        for kind in ("ka", "nk"):
            st, ctype, body = http_get(f"http://127.0.0.1:{port}/{be['name']}/{kind}/")
            if st != 200 or body != HELLO or not ctype.startswith("text/plain"):
                raise SystemExit(f"{be['name']} through nginx ({kind}) gave {st} {ctype} {body!r}")
    return {"proc": proc, "port": port}


def nginx_log_summary(path):
    """nginx's error log, by kind of message: upstream timeouts, refused or
    reset connections are how a starved backend shows through nginx."""
    kinds = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.search(r"\[(error|warn|alert|crit)\] \d+#\d+: \*?\d* ?(.*?)(, client:|$)", line)
                if not m or '/html/none"' in line:  # start_nginx's own readiness probe
                    continue
                msg = re.sub(r"\d+", "N", m.group(2))
                up = re.search(r'upstream: "fastcgi://unix:[^"]*/(\w+)\.sock', line)
                key = f"{up.group(1) if up else '-'}: [{m.group(1)}] {msg}"
                kinds[key] = kinds.get(key, 0) + 1
    except OSError:
        return []
    return [f"nginx error log, {n}×: {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), ""
    except OSError as e:
        return None, "", str(e)


# ---------------------------------------------------------------- load

def ms(v):
    """wrk's '1.23ms', '456.00us', '1.02s' -> milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v or "")
    if not m:
        return None
    x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000, "m": x * 60000}[m.group(2)]


def run_point(cfg, mode, be, c, nginx):
    """One measured run; returns the row of the results file."""
    dur = cfg["duration"]
    limit = seconds(dur) + 30  # a starved or stuck run still ends
    if mode == "direct":
        argv = ["taskset", "-c", "0", cfg["bin"], "bench", "--json", "-c", str(c), "-d", dur,
                *be["params"], f"fastcgi:{be['sock']}", be["uri"]]
    else:
        kind = "ka" if mode == "nginx-ka" else "nk"
        argv = ["taskset", "-c", "0", "wrk", "-t1", f"-c{c}", f"-d{dur}", "--latency",
                f"http://127.0.0.1:{nginx['port']}/{be['name']}/{kind}/"]
    pids = descendants(be["proc"].pid)
    worker = descendants(nginx["proc"].pid)[1:] if nginx else []
    t0, cs0, ng0 = cpu_ticks(pids), ctx_switches(pids), cpu_ticks(worker)
    load = load1()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(seconds(dur) / 2)
        held = held_conns(pids, be["sock"])
        out, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        err += " (killed: ran past its duration)"
    except BaseException:
        p.kill()  # stopped by a signal: the load generator goes too
        p.wait()
        raise
    t1, cs1, ng1 = cpu_ticks(pids), ctx_switches(pids), cpu_ticks(worker)
    row = {"mode": mode, "target": be["name"], "c": c, "req_s": None, "p50_ms": None, "p99_ms": None,
           "requests": 0, "errors": 0, "error_note": "", "backend_us": None, "backend_cs": None,
           "nginx_us": None, "held": held, "load1": load}
    if mode == "direct":
        try:
            j = json.loads(out.strip().splitlines()[-1])
            row.update(req_s=j["req_per_sec"], p50_ms=j["latency_ms"]["p50"], p99_ms=j["latency_ms"]["p99"],
                       requests=j["requests"], errors=j["errors"], error_note=j.get("first_error") or "")
        except (ValueError, IndexError, KeyError):
            row["error_note"] = ("no JSON from fastgate bench: " + (err or out).strip())[:200]
    else:
        m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
        row["req_s"] = float(m.group(1)) if m else None
        m = re.search(r"^\s+50%\s+(\S+)", out, re.M)
        row["p50_ms"] = ms(m.group(1)) if m else None
        m = re.search(r"^\s+99%\s+(\S+)", out, re.M)
        row["p99_ms"] = ms(m.group(1)) if m else None
        m = re.search(r"^\s+(\d+) requests in", out, re.M)
        row["requests"] = int(m.group(1)) if m else 0
        notes, errs = [], 0
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if m:
            errs += int(m.group(1))
            notes.append(f"non-2xx {m.group(1)}")
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            errs += sum(int(x) for x in m.groups())
            notes.append("socket errors: connect {}, read {}, write {}, timeout {}".format(*m.groups()))
        if row["req_s"] is None:
            notes.append(("wrk failed: " + err.strip())[:200])
        row["errors"], row["error_note"] = errs, "; ".join(notes)
    n = row["requests"]
    tick_us = 1e6 / CLK_TCK
    if n > 0:
        row["backend_us"] = round((t1 - t0) * tick_us / n, 2)
        row["backend_cs"] = round((cs1 - cs0) / n, 3)
        if nginx and mode != "direct":
            row["nginx_us"] = round((ng1 - ng0) * tick_us / n, 2)
    return row


# ---------------------------------------------------------------- reports

def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt(v, nd=2):
    return "–" if v is None else f"{v:.{nd}f}"


def report(rows, cfg, targets, modes, notes):
    conc = cfg["concurrency"]
    agg = {}
    for r in rows:
        agg.setdefault((r["mode"], r["target"], r["c"]), []).append(r)
    rounds = sorted({r["round"] for r in rows})
    by_round = {(r["mode"], r["target"], r["c"], r["round"]): r["req_s"] for r in rows}
    # Points where a target failed some of its load: errors, nothing
    # answered, or (direct) connections it never served. Its req/s there is
    # not what the load asked, so it is no "best peer" to compare against.
    failed = {(r["mode"], r["target"], r["c"]) for r in rows
              if r["errors"] or not r["requests"] or (r["mode"] == "direct" and r["held"] < r["c"])}

    def ratios(mode, c, num, den):
        """Per-round ratios num/den at one point: each round compares the two
        at the same moment of a shared machine; den is a target or a function
        of the round giving the value to divide by."""
        out = []
        for rnd in rounds:
            a = by_round.get((mode, num, c, rnd))
            b = den(rnd) if callable(den) else by_round.get((mode, den, c, rnd))
            if a is not None and b:
                out.append(a / b)
        return out

    def ratio_text(rs):
        if not rs:
            return ""
        if len(rs) == 1:
            return f"×{rs[0]:.2f}"
        return f"×{statistics.median(rs):.2f} [{min(rs):.2f}–{max(rs):.2f}]"

    out = []
    out.append(f"req/s: median of {len(rounds)} rounds. ×R: median over the rounds of that target's req/s "
               "divided by the null backend's in the same round at the same point, [lowest–highest] of "
               "those per-round ratios. fastgate's last line: the same against the best peer other than "
               "null in each round, among the peers with no ‡ at that point.\n")
    for mode in modes:
        out.append(f"\n### {MODE_LABEL[mode]}\n")
        out.append("| target | " + " | ".join(f"c={c}" for c in conc) + " |")
        out.append("|---|" + "---:|" * len(conc))
        for t in targets:
            cells = []
            for c in conc:
                rs = agg.get((mode, t, c))
                if not rs:
                    cells.append("n/a")
                    continue
                v = med(rs, "req_s")
                ratio = ratio_text(ratios(mode, c, t, "null")) if t != "null" else ""
                bad = any(r["errors"] or not r["requests"] or (mode == "direct" and r["held"] < c) for r in rs)
                cells.append(f"{fmt_int(v)} {ratio}".rstrip() + (" ‡" if bad else ""))
            out.append(f"| {LABEL[t]} | " + " | ".join(cells) + " |")
        if "fastgate" in targets:
            cells = []
            for c in conc:
                peers = [t for t in targets if t not in ("null", "fastgate") and (mode, t, c) not in failed]

                def best(rnd, mode=mode, c=c, peers=peers):
                    vals = [by_round.get((mode, t, c, rnd)) for t in peers]
                    return max([v for v in vals if v is not None] or [0])

                winners = {}
                for rnd in rounds:
                    vals = {t: by_round.get((mode, t, c, rnd)) for t in peers}
                    vals = {t: v for t, v in vals.items() if v is not None}
                    if vals:
                        w = max(vals, key=vals.get)
                        winners[w] = winners.get(w, 0) + 1
                who = "/".join(sorted(winners, key=lambda t: -winners[t]))
                text = ratio_text(ratios(mode, c, "fastgate", best))
                cells.append(f"{text} vs {who}" if text else "–")
            out.append("| fastgate / best peer | " + " | ".join(cells) + " |")
    out.append("\n‡ errors, no request answered, or (direct) connections left unserved at that point: "
               "see below.\n")
    out.append("\n### Details (medians over rounds; errors summed)\n")
    out.append("| mode | target | c | req/s | p50 ms | p99 ms | errors | backend µs/req | backend cs/req "
               "| nginx µs/req | held conns | load |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        for t in targets:
            for c in conc:
                rs = agg.get((mode, t, c))
                if not rs:
                    continue
                errs = sum(r["errors"] for r in rs)
                held = min(r["held"] for r in rs)
                out.append(f"| {mode} | {LABEL[t]} | {c} | {fmt_int(med(rs, 'req_s'))} | {fmt(med(rs, 'p50_ms'), 3)} "
                           f"| {fmt(med(rs, 'p99_ms'), 3)} | {errs} | {fmt(med(rs, 'backend_us'), 1)} "
                           f"| {fmt(med(rs, 'backend_cs'))} | {fmt(med(rs, 'nginx_us'), 1)} | {held} "
                           f"| {fmt(med(rs, 'load1'))} |")
    errs = [r for r in rows if r["errors"] or r["error_note"]]
    if errs:
        out.append("\n### Errors seen\n")
        for r in errs:
            out.append(f"- round {r['round']}, {r['mode']}, {LABEL[r['target']]}, c={r['c']}: "
                       f"{r['errors']} errors of {r['requests'] + r['errors']}; {r['error_note']}")
    starved = [r for r in rows if r["mode"] == "direct" and r["held"] < r["c"]]
    if starved:
        out.append("\n### Connections left unserved (direct; held < c)\n")
        for r in starved:
            out.append(f"- round {r['round']}, {LABEL[r['target']]}, c={r['c']}: the backend held {r['held']} "
                       f"of {r['c']} connections mid-run; the others waited unanswered in the listen backlog "
                       "(fastgate bench counts no error for a request that never completes)")
    if notes:
        out.append("\n### Notes\n")
        out.extend(f"- {n}" for n in notes)
    loads = {}
    for r in rows:
        loads.setdefault(r["round"], []).append(r["load1"])
    out.append("\nLoad average (1 min) per round: " + ", ".join(
        f"round {k}: {min(v):.2f}–{max(v):.2f}" for k, v in sorted(loads.items())) + "\n")
    return "\n".join(out)


def svg_plot(rows, cfg, targets, modes):
    """req/s against concurrency, one panel per mode, one line per target."""
    conc = cfg["concurrency"]
    pw, ph, ml, mt, mb, gap = 340, 260, 70, 50, 50, 30
    width = ml + len(modes) * (pw + gap) + 10
    height = mt + ph + mb + 60
    agg, flagged = {}, set()
    for r in rows:
        if r["req_s"] is not None:
            agg.setdefault((r["mode"], r["target"], r["c"]), []).append(r["req_s"])
        if r["errors"] or not r["requests"] or (r["mode"] == "direct" and r["held"] < r["c"]):
            flagged.add((r["mode"], r["target"], r["c"]))

    def axis(mode):
        """A round top and step for the panel of `mode` (each panel has its own scale)."""
        ymax = max([statistics.median(v) for k, v in agg.items() if k[0] == mode] or [1]) or 1
        mag = 10 ** math.floor(math.log10(ymax))
        for k in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10):
            if ymax / (mag * k) <= 6:
                step = mag * k
                break
        return step * (math.floor(ymax / step) + 1), step

    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    e.append(f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">hello over FastCGI: req/s '
             f'against concurrency (median of {cfg["rounds"]} rounds of {cfg["duration"]}; 2 vCPUs, '
             'load generator on CPU 0, backend and nginx on CPU 1)</text>')
    for i, mode in enumerate(modes):
        x0 = ml + i * (pw + gap)
        y0 = mt
        e.append(f'<text x="{x0 + pw / 2}" y="{y0 - 10}" text-anchor="middle" font-weight="bold">'
                 f'{MODE_LABEL[mode]}</text>')
        e.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        ytop, step = axis(mode)
        n = 0
        while n * step <= ytop + 1e-9:
            y = y0 + ph - ph * (n * step) / ytop
            e.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#eee"/>')
            e.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{n * step / 1000:g}k</text>')
            n += 1

        def xpos(j):
            return x0 + 25 + j * (pw - 50) / max(1, len(conc) - 1)

        for j, c in enumerate(conc):
            e.append(f'<text x="{xpos(j):.1f}" y="{y0 + ph + 16}" text-anchor="middle">{c}</text>')
        e.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 34}" text-anchor="middle">connections (c)</text>')
        for t in targets:
            pts = []
            for j, c in enumerate(conc):
                v = agg.get((mode, t, c))
                if v:
                    pts.append((xpos(j), y0 + ph - ph * statistics.median(v) / ytop, c))
            if not pts:
                continue
            width_px = 3 if t == "fastgate" else 2
            e.append(f'<polyline fill="none" stroke="{COLOR[t]}" stroke-width="{width_px}" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts) + '"/>')
            for x, y, c in pts:
                fill = "white" if (mode, t, c) in flagged else COLOR[t]
                e.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{COLOR[t]}" '
                         'stroke-width="1.5"/>')
    e.append(f'<text x="14" y="{mt + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {mt + ph / 2})">'
             'requests per second</text>')
    lx = ml
    ly = mt + ph + mb + 20
    for t in targets:
        e.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{COLOR[t]}" stroke-width="3"/>')
        e.append(f'<text x="{lx + 30}" y="{ly}">{LABEL[t]}</text>')
        lx += 40 + 8 * len(LABEL[t])
    e.append(f'<text x="{ml}" y="{ly + 22}" fill="#555">(hollow dot: errors, or connections left unserved; '
             'each panel has its own scale)</text>')
    e.append("</svg>")
    return "\n".join(e) + "\n"


# ---------------------------------------------------------------- main

def redraw(paths):
    """`peers.py --from RESULTS.csv...`: the tables and the plot again from
    results files, the rounds of each following those of the one before
    (DURATION names the runs' duration in the plot's title)."""
    rows = []
    for path in paths:
        base = max([r["round"] for r in rows] or [0])
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                for k in ("round", "c", "requests", "errors", "held"):
                    r[k] = int(r[k])
                for k in ("req_s", "p50_ms", "p99_ms", "backend_us", "backend_cs", "nginx_us", "load1"):
                    r[k] = float(r[k]) if r[k] != "" else None
                r["round"] += base
                rows.append(r)
    cfg = {"rounds": max(r["round"] for r in rows), "duration": os.environ.get("DURATION", "5s"),
           "concurrency": sorted({r["c"] for r in rows})}
    targets = [t for t in ALL_TARGETS if any(r["target"] == t for r in rows)]
    modes = [m for m in ALL_MODES if any(r["mode"] == m for r in rows)]
    notes = []
    if "php" in targets and not any(r["target"] == "php" and r["mode"] == "direct" for r in rows):
        notes.append("php-fpm static not measured direct in this run (fastgate bench had no --param yet)")
    print(report(rows, cfg, targets, modes, notes))
    svg = os.environ.get("SVG", os.path.join(ROOT, "docs", "bench-peers.svg"))
    if svg:
        with open(svg, "w") as f:
            f.write(svg_plot(rows, cfg, targets, modes))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--from":
        redraw(sys.argv[2:])
        return
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = os.environ["PEERS_TMP"]
    cfg = {
        "bin": os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "fastgate"),
        "duration": os.environ.get("DURATION", "5s"),
        "rounds": int(os.environ.get("ROUNDS", "2")),
        "concurrency": [int(x) for x in os.environ.get("CONCURRENCY", "1 16 64 256").split()],
        "libfcgi_threads": int(os.environ.get("LIBFCGI_THREADS", "4")),
        "php_children": int(os.environ.get("PHP_CHILDREN", "4")),
    }
    seconds(cfg["duration"])
    targets = os.environ.get("TARGETS", " ".join(ALL_TARGETS)).split()
    modes = os.environ.get("MODES", " ".join(ALL_MODES)).split()
    for t in targets:
        if t not in ALL_TARGETS:
            sys.exit(f"unknown target {t}; known: {' '.join(ALL_TARGETS)}")
    for m in modes:
        if m not in ALL_MODES:
            sys.exit(f"unknown mode {m}; known: {' '.join(ALL_MODES)}")
    targets = [t for t in ALL_TARGETS if t in targets]
    modes = [m for m in ALL_MODES if m in modes]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    notes = []
    try:
        targets = build(targets, tmp)
        backends = [start_backend(t, tmp, cfg) for t in targets]
        # Check every backend once directly: hello, or a note why it is left out.
        skip = set()
        for be in backends:
            r = subprocess.run([cfg["bin"], "request", *be["params"], f"fastcgi:{be['sock']}", be["uri"]],
                               capture_output=True, text=True, timeout=10)
            if "direct" in modes and not r.stdout.endswith(HELLO):
                first = (r.stdout.strip().splitlines() or [r.stderr.strip()])[0]
                note = f"{LABEL[be['name']]} not measured direct: answered “{first}”"
                say(note)
                notes.append(note)
                skip.add(("direct", be["name"]))
        rows = []
        results = f"{tmp}/peers.csv"
        fields = ["round", "mode", "target", "c", "req_s", "p50_ms", "p99_ms", "requests", "errors",
                  "backend_us", "backend_cs", "nginx_us", "held", "load1", "error_note"]
        with open(results, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for rnd in range(1, cfg["rounds"] + 1):
                say(f"round {rnd} of {cfg['rounds']}, load {load1():.2f}")
                for mode in modes:
                    # A fresh nginx for each block of an nginx mode (none for
                    # direct): connections that one mode left cached in an
                    # upstream keepalive pool would otherwise hold a thread
                    # or child of libfcgi or php-fpm through the next mode.
                    nginx = start_nginx(tmp, backends) if mode != "direct" else None
                    if rnd == 1:
                        say(f"warm-up {mode}: 1 s per backend at c={cfg['concurrency'][0]}")
                        for be in backends:
                            if (mode, be["name"]) not in skip:
                                run_point(dict(cfg, duration="1s"), mode, be, cfg["concurrency"][0], nginx)
                    for c in cfg["concurrency"]:
                        for be in backends:
                            if (mode, be["name"]) in skip:
                                continue
                            row = run_point(cfg, mode, be, c, nginx)
                            row["round"] = rnd
                            rows.append(row)
                            w.writerow(row)
                            f.flush()
                            say(f"r{rnd} {mode:8} c={c:<3} {be['name']:8} {fmt_int(row['req_s']):>9} req/s "
                                f"p99 {fmt(row['p99_ms'], 3)} ms, errors {row['errors']}, held {row['held']}, "
                                f"backend {fmt(row['backend_us'], 1)} µs/req, load {row['load1']:.2f}")
                            if be["proc"].poll() is not None:
                                raise SystemExit(f"{be['name']} exited during the run")
                    if nginx:
                        stop(nginx["proc"])
    finally:
        stop_all()
    notes.extend(nginx_log_summary(f"{tmp}/nginx.log"))
    md = report(rows, cfg, targets, modes, notes)
    resdir = os.path.join(ROOT, "bench", "results")
    os.makedirs(resdir, exist_ok=True)
    dest = os.path.join(resdir, f"peers-{stamp}.csv")
    with open(results) as src, open(dest, "w") as dst:
        dst.write(src.read())
    with open(dest[:-4] + ".md", "w") as f:
        f.write(md)
    svg = os.environ.get("SVG", os.path.join(ROOT, "docs", "bench-peers.svg"))
    if svg:
        with open(svg, "w") as f:
            f.write(svg_plot(rows, cfg, targets, modes))
    print(md)
    print(f"results: {os.path.relpath(dest, ROOT)} (and .md); plot: {svg or 'not drawn'}")


if __name__ == "__main__":
    main()
