#!/usr/bin/env python3
"""Opens COUNT kept-alive FastCGI connections to a fastgate Unix socket and
reports the server's memory (VmRSS) and threads before, while they are
open, and after they close.

Each connection completes one GET / with FCGI_KEEP_CONN, then sits idle, as
a front server's keepalive pool does. The FastCGI framing is written out
here (FastCGI 1.0, section 3.3) so the script needs nothing but python3.

usage: idle_conns.py SOCKET COUNT PID
"""
import os
import socket
import struct
import sys
import time

FCGI_VERSION_1 = 1
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6
RESPONDER, KEEP_CONN = 1, 1
DEADLINE_S = 60  # the whole run; every loop below is bounded by it


def record(kind, content, request_id=1):
    header = struct.pack(">BBHHBx", FCGI_VERSION_1, kind, request_id, len(content), 0)
    return header + content


def pair(name, value):
    # Names and values here are short: 1-byte lengths.
    return bytes([len(name), len(value)]) + name + value


PARAMS_BODY = b"".join(pair(n, v) for n, v in [
    (b"REQUEST_METHOD", b"GET"),
    (b"REQUEST_URI", b"/"),
    (b"SCRIPT_NAME", b"/"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
])
REQUEST = (record(BEGIN_REQUEST, struct.pack(">HB5x", RESPONDER, KEEP_CONN))
           + record(PARAMS, PARAMS_BODY) + record(PARAMS, b"")
           + record(STDIN, b""))


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed mid-record")
        data += chunk
    return data


def one_request(sock):
    """Sends GET / and reads records up to END_REQUEST; returns STDOUT."""
    sock.sendall(REQUEST)
    out = b""
    for _ in range(1000):
        version, kind, _id, length, padding = struct.unpack(">BBHHBx", read_exact(sock, 8))
        content = read_exact(sock, length + padding)[:length]
        if kind == STDOUT:
            out += content
        if kind == END_REQUEST:
            return out
    raise RuntimeError("no END_REQUEST in 1000 records")


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def report(label, pid):
    s = status(pid)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    print(f"{label:<34} VmRSS {s['VmRSS']:>10}   VmHWM {s['VmHWM']:>10}   threads {s['Threads']:>3}   fds {fds}")
    return int(s["VmRSS"].split()[0])


def main():
    path, count, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    deadline = time.monotonic() + DEADLINE_S
    idle = report("idle, no connection", pid)

    conns = []
    for i in range(count):
        if time.monotonic() > deadline:
            sys.exit(f"deadline passed after {i} connections")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        body = one_request(sock)
        if b"Hello, world!" not in body:
            sys.exit(f"connection {i}: unexpected answer {body[:200]!r}")
        conns.append(sock)
    time.sleep(1)
    held = report(f"{count} idle keep-alive connections", pid)

    # They are still usable: one more request on each of a few.
    for sock in conns[:10]:
        one_request(sock)

    for sock in conns:
        sock.close()
    time.sleep(2)
    report("after they closed", pid)
    per_conn = (held - idle) * 1024 / count
    print(f"per idle connection: {per_conn:.0f} bytes of RSS")


if __name__ == "__main__":
    main()
