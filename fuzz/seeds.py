#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets, fuzz/corpus/<target>/<name>:
a handful of small, real inputs each (requests as nginx, HAProxy, Apache
and curl send them; CGI heads; the listen specs of DESIGN.md; sizes,
durations and networks), so the fuzzers start from the shapes that
matter. Run from anywhere: python3 fuzz/seeds.py (the files are
committed; rerun after changing this script).

Targets that cut their input (`fastgate_fuzz::split`) take a first byte
(how many size bytes follow, minus one) and the sizes before the payload:
`whole` feeds it in 255-byte reads, `bytes` one byte a read."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
WHOLE = bytes([0, 255])
BYTES = bytes([0, 1])
ODD = bytes([2, 7, 1, 64])

# ---- FastCGI (FastCGI 1.0 §3) ----
BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR, DATA, GET_VALUES = 1, 2, 3, 4, 5, 6, 7, 8, 9
RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
KEEP_CONN = 1


def record(kind, rid, content=b"", padding=None):
    if padding is None:
        padding = (8 - len(content) % 8) % 8
    head = struct.pack(">BBHHBB", 1, kind, rid, len(content), padding, 0)
    return head + content + b"\0" * padding


def pair(name, value):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def nginx_params(method, uri, body_len=None, extra=()):
    path = uri.split(b"?")[0]
    query = uri.split(b"?")[1] if b"?" in uri else b""
    pairs = [
        (b"QUERY_STRING", query), (b"REQUEST_METHOD", method),
        (b"CONTENT_TYPE", b"text/plain" if body_len else b""),
        (b"CONTENT_LENGTH", str(body_len).encode() if body_len else b""),
        (b"SCRIPT_NAME", path), (b"REQUEST_URI", uri), (b"DOCUMENT_URI", path),
        (b"DOCUMENT_ROOT", b"/var/www"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"), (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"nginx/1.22.1"), (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"51234"), (b"SERVER_ADDR", b"127.0.0.1"),
        (b"SERVER_PORT", b"80"), (b"SERVER_NAME", b"localhost"),
        (b"REDIRECT_STATUS", b"200"), (b"HTTP_HOST", b"localhost"),
        (b"HTTP_USER_AGENT", b"curl/7.88.1"), (b"HTTP_ACCEPT", b"*/*"),
    ]
    return b"".join(pair(n, v) for n, v in pairs + list(extra))


def fcgi_request(rid, method, uri, body=b"", flags=KEEP_CONN, role=RESPONDER):
    out = record(BEGIN, rid, struct.pack(">HB5x", role, flags))
    out += record(PARAMS, rid, nginx_params(method, uri, len(body) or None)) + record(PARAMS, rid)
    if body:
        out += record(STDIN, rid, body)
    return out + record(STDIN, rid)


def fastcgi_seeds():
    nginx_get = fcgi_request(1, b"GET", b"/?a=1", flags=0)
    nginx_post = fcgi_request(1, b"POST", b"/echo", b"name=value&x=1")
    # Apache splits PARAMS anywhere, a pair straddling two records.
    block = nginx_params(b"GET", b"/")
    apache = record(BEGIN, 1, struct.pack(">HB5x", RESPONDER, 0))
    apache += record(PARAMS, 1, block[:37]) + record(PARAMS, 1, block[37:]) + record(PARAMS, 1)
    apache += record(STDIN, 1)
    # HAProxy: GET_VALUES, two requests multiplexed, one aborted.
    haproxy = record(GET_VALUES, 0, pair(b"FCGI_MAX_CONNS", b"") + pair(b"FCGI_MAX_REQS", b"")
                     + pair(b"FCGI_MPXS_CONNS", b""))
    haproxy += record(BEGIN, 1, struct.pack(">HB5x", RESPONDER, KEEP_CONN))
    haproxy += record(BEGIN, 2, struct.pack(">HB5x", RESPONDER, KEEP_CONN))
    haproxy += record(PARAMS, 2, nginx_params(b"POST", b"/echo", 3)) + record(PARAMS, 2)
    haproxy += record(PARAMS, 1, nginx_params(b"GET", b"/")) + record(PARAMS, 1)
    haproxy += record(STDIN, 2, b"abc") + record(STDIN, 1) + record(STDIN, 2)
    haproxy += record(BEGIN, 3, struct.pack(">HB5x", RESPONDER, KEEP_CONN)) + record(ABORT, 3)
    filt = record(BEGIN, 1, struct.pack(">HB5x", FILTER, 0))
    filt += record(PARAMS, 1, nginx_params(b"GET", b"/echo")) + record(PARAMS, 1)
    filt += record(STDIN, 1) + record(DATA, 1, b"filtered") + record(DATA, 1)
    # A server's answer, as the client side decodes it; odd padding.
    answer = record(STDOUT, 1, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhi\n", 3)
    answer += record(STDERR, 1, b"warn\n") + record(STDOUT, 1)
    answer += record(END, 1, struct.pack(">IB3x", 0, 0)) + record(11, 0, b"\x09" + b"\0" * 7)
    return {"nginx-get": nginx_get, "nginx-post-keepconn": nginx_post, "apache-split-params": apache,
            "haproxy-multiplexed": haproxy, "filter": filt, "answer": answer}


def scgi_request(body=b"", uri=b"/"):
    pairs = [(b"CONTENT_LENGTH", str(len(body)).encode()), (b"SCGI", b"1"),
             (b"REQUEST_METHOD", b"POST" if body else b"GET"), (b"REQUEST_URI", uri),
             (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"HTTP_HOST", b"localhost")]
    block = b"".join(n + b"\0" + v + b"\0" for n, v in pairs)
    return str(len(block)).encode() + b":" + block + b"," + body


HTTP = {
    "curl-get": b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    "post-length": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n3\r\n ok\r\n0\r\nTrailer: t\r\n\r\n",
    "keepalive-pipelined": b"GET /?a=%20b HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "http10": b"GET /a/../b//c HTTP/1.0\r\n\r\n",
    "expect-continue": b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
}

CGI = {
    "status": b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope\n",
    "location": b"Location: /elsewhere\n\n",
    "nph": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-A:\tb \r\n\r\n<p>",
    "plain": b"Content-Type: text/plain\r\n\r\nHello, world!\n",
}

SPECS = ["fastcgi://127.0.0.1:9000", "scgi://[::1]:4000", "http://127.0.0.1:8080",
         "fastcgi:/run/fastgate.sock", "scgi:/run/a.sock", "http:/tmp/h.sock",
         "127.0.0.1:9000", "/run/fastgate.sock", "unix:/run/fastgate.sock",
         "unix:///run/fastgate.sock", "localhost:9000"]

UNITS = ["65536", "64k", "10M", "1g", "500ms", "30s", "5m", "1h", "0",
         "10.0.0.0/8", "fd00::/8", "127.0.0.1", "::ffff:10.1.2.3/104"]


def write(target, name, data):
    assert len(data) < 4096, (target, name, len(data))
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def split_seeds(target, payloads, cuts=(("whole", WHOLE), ("bytes", BYTES))):
    for name, payload in payloads.items():
        for cut, prefix in cuts:
            write(target, f"{name}-{cut}", prefix + payload)


def connection_seeds():
    fcgi = fastcgi_seeds()
    seeds = {
        "fastcgi-get": fcgi["nginx-get"],
        "fastcgi-post-echo": fcgi["nginx-post-keepconn"],
        "fastcgi-haproxy": fcgi["haproxy-multiplexed"],
        "fastcgi-filter": fcgi["filter"],
        "scgi-get": scgi_request(),
        "scgi-post-echo": scgi_request(b"hello", b"/echo"),
        "http-get": HTTP["curl-get"],
        "http-chunked-echo": HTTP["post-chunked"],
        "http-keepalive": HTTP["keepalive-pipelined"],
    }
    # A connection is cut in few reads (each costs a round trip).
    split_seeds("connection", seeds, (("whole", WHOLE), ("odd", ODD)))


def main():
    fcgi = fastcgi_seeds()
    split_seeds("fastcgi_decode", fcgi)
    split_seeds("params", {"nginx": nginx_params(b"GET", b"/x?y"),
                           "long-value": pair(b"HTTP_COOKIE", b"c" * 200) + pair(b"A", b""),
                           "scgi": b"CONTENT_LENGTH\x000\x00SCGI\x001\x00"})
    split_seeds("scgi_header", {"get": scgi_request(), "post": scgi_request(b"body", b"/echo")})
    split_seeds("cgi_response", CGI)
    split_seeds("http_request", HTTP)
    for i, spec in enumerate(SPECS):
        write("listen_spec", f"spec-{i}", spec.encode())
    for i, unit in enumerate(UNITS):
        write("units", f"value-{i}", unit.encode())
    connection_seeds()


if __name__ == "__main__":
    main()
