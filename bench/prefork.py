#!/usr/bin/env python3
"""Prefork figures: wakeups per accepted connection with and without the
herd avoidance (EPOLLEXCLUSIVE), and the time a HUP restart and a USR2
upgrade of 4 children take under a steady client loop, with the requests
that failed meanwhile.

    python3 bench/prefork.py [path/to/fastgate]

Every process it starts is stopped by pid; every loop is bounded in count
and time. Talks FastCGI itself over a Unix socket in a temp dir.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/fastgate")


def record(kind, rid, content):
    pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", 1, kind, rid, len(content), pad, 0) + content + b"\0" * pad


def pairs(params):
    out = b""
    for k, v in params.items():
        for x in (k.encode(), v.encode()):
            out += bytes([len(x)]) if len(x) < 128 else struct.pack(">I", len(x) | 0x80000000)
        out += k.encode() + v.encode()
    return out


def get(path, uri, timeout=5.0):
    """One FastCGI GET on a new connection; the body, or None on failure."""
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(path)
        p = {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "SCRIPT_NAME": uri.split("?")[0],
             "QUERY_STRING": uri.partition("?")[2]}
        s.sendall(record(1, 1, struct.pack(">HB5x", 1, 0)) + record(4, 1, pairs(p))
                  + record(4, 1, b"") + record(5, 1, b""))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        out, i = b"", 0
        ended = False
        while i + 8 <= len(data):
            _, kind, _, n, pad, _ = struct.unpack(">BBHHBB", data[i:i + 8])
            if kind == 6:
                out += data[i + 8:i + 8 + n]
            if kind == 3:
                ended = True
            i += 8 + n + pad
        return out.split(b"\r\n\r\n", 1)[-1] if ended else None
    except OSError:
        return None


class Server:
    def __init__(self, exe, processes, env=None):
        self.dir = tempfile.mkdtemp(prefix="fg-prefork-")
        self.sock = os.path.join(self.dir, "fg.sock")
        self.pidfile = os.path.join(self.dir, "fg.pid")
        e = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(
            [exe, "serve", "--listen", "fastcgi:" + self.sock, "--processes", str(processes),
             "--mount", "/=ping", "--mount", "/status=status", "--pidfile", self.pidfile, "-q"],
            env=e, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while get(self.sock, "/") != b"pong\n" and time.time() < deadline:
            time.sleep(0.05)
        self.wait_children(processes)

    def master(self):
        with open(self.pidfile) as f:
            return int(f.read())

    def status(self):
        return json.loads(get(self.sock, "/status?json"))

    def children(self):
        return sorted(c["pid"] for c in self.status()["children"])

    def wait_children(self, n, old=(), limit=20.0):
        deadline = time.time() + limit
        while time.time() < deadline:
            kids = self.children()
            if len(kids) == n and not set(kids) & set(old):
                return kids
            time.sleep(0.02)
        return self.children()

    def stop(self):
        try:
            os.kill(self.master(), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wakeups_per_accept(herd):
    env = {"FASTGATE_ACCEPT_HERD": "1"} if herd else {}
    srv = Server(BIN, 2, env)
    before = srv.status()
    n = 2000
    for _ in range(n):
        get(srv.sock, "/")
    after = srv.status()
    srv.stop()
    accepted = after["accepted_conns"] - before["accepted_conns"]
    wakes = after["accept_wakeups"] - before["accept_wakeups"]
    return wakes / max(accepted, 1)


def under_load(action):
    """Time from the signal until every child is new and serving, and the
    requests that failed meanwhile (4 children, 4 client threads)."""
    exe = os.path.join(tempfile.mkdtemp(prefix="fg-exe-"), "fastgate")
    shutil.copy(BIN, exe)
    srv = Server(exe, 4)
    old = srv.children()
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            ok = get(srv.sock, "/") == b"pong\n"
            with lock:
                counts["ok" if ok else "failed"] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    master = srv.master()
    t0 = time.time()
    os.kill(master, action)
    new = srv.wait_children(4, old)
    took = time.time() - t0
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    srv.stop()
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)
    return took, counts, len(new) == 4 and not set(new) & set(old)


def main():
    print(f"binary: {BIN}; load average {os.getloadavg()[0]:.2f}")
    for herd in (False, True):
        name = "herd (no EPOLLEXCLUSIVE)" if herd else "EPOLLEXCLUSIVE"
        print(f"wakeups per accepted connection, 2 children, {name}: {wakeups_per_accept(herd):.2f}")
    for name, sig in (("HUP rolling restart", signal.SIGHUP), ("USR2 binary upgrade", signal.SIGUSR2)):
        took, counts, replaced = under_load(sig)
        print(f"{name} of 4 children under load: {took * 1000:.0f} ms, "
              f"{counts['ok']} requests answered, {counts['failed']} failed, all replaced: {replaced}")


if __name__ == "__main__":
    main()
