#!/usr/bin/env python3
"""Malformed responses from the upstream: a bad status line, CL/TE
conflicts, duplicate or malformed Content-Length, a transfer coding we do
not relay, an oversized head, garbage bytes, 101 Switching Protocols -> the
device gets 502 with a short body and an access line, its connection stays
usable, and the next request through the same device connection works."""

import os
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403
from _faults import FaultServer, tls_answer  # noqa: E402

MAX_HEAD = 4096

OK = b"HTTP/1.1 200 OK\r\n"
BAD = {
    # RFC 9112 §4: status-line = HTTP-version SP 3DIGIT SP reason
    "/status-letters": b"HTTP/1.1 2x0 Bad\r\nContent-Length: 3\r\n\r\nabc",
    "/status-2-digits": b"HTTP/1.1 20 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/status-4-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/status-099": b"HTTP/1.1 099 Low\r\nContent-Length: 3\r\n\r\nabc",
    "/status-negative": b"HTTP/1.1 -200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/not-http": b"ICY 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/http-lowercase": b"http/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/http2-version": b"HTTP/2 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/tab-separator": b"HTTP/1.1\t200 OK\r\nContent-Length: 3\r\n\r\nabc",
    # RFC 9112 §6.1, §6.3: framing conflicts
    "/cl-and-te": OK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"
                  b"\r\n3\r\nabc\r\n0\r\n\r\n",
    "/te-and-cl": OK + b"Transfer-Encoding: chunked\r\nContent-Length: 14\r\n"
                  b"\r\n3\r\nabc\r\n0\r\n\r\n",
    "/dup-cl-same": OK + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "/dup-cl-different": OK + b"Content-Length: 3\r\nContent-Length: 5\r\n"
                         b"\r\nabcde",
    "/cl-not-a-number": OK + b"Content-Length: 3x\r\n\r\nabc",
    "/cl-negative": OK + b"Content-Length: -1\r\n\r\nabc",
    "/cl-list": OK + b"Content-Length: 3, 3\r\n\r\nabc",
    "/te-twice-chunked": OK + b"Transfer-Encoding: chunked, chunked\r\n\r\n"
                         b"3\r\nabc\r\n0\r\n\r\n",
    "/te-in-http10": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\n\r\n",
    "/te-gzip-chunked": OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                        b"3\r\nabc\r\n0\r\n\r\n",
    # RFC 9112 §2.2, §5: lines and fields
    "/bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
    "/obs-fold": OK + b"X-A: 1\r\n folded\r\nContent-Length: 3\r\n\r\nabc",
    "/space-before-colon": OK + b"Content-Length : 3\r\n\r\nabc",
    "/nul-in-value": OK + b"X-A: a\x00b\r\nContent-Length: 3\r\n\r\nabc",
    "/cr-in-value": OK + b"X-A: a\rb\r\nContent-Length: 3\r\n\r\nabc",
    # limits: max_header_size and HTTP1_MAX_HEADERS (100 fields)
    "/oversized-head": OK + b"X-Big: " + b"b" * (2 * MAX_HEAD) +
                       b"\r\nContent-Length: 3\r\n\r\nabc",
    "/too-many-fields": OK + b"".join(b"X-%d: v\r\n" % i for i in range(150))
                        + b"Content-Length: 3\r\n\r\nabc",
    # not HTTP at all
    "/garbage": bytes(range(256)) * 8,
    "/garbage-lines": b"\x00\x01\x02 hello\r\n\xff\xfe\r\n\r\n",
    # RFC 9110 §15.2.2: no Upgrade was sent, so no switch is acceptable
    "/101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
    "/101-with-body": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                      b"Connection: Upgrade\r\n\r\nPRI * HTTP/2.0\r\n",
}


def respond(q):
    if q.target in BAD:
        return Response(raw=BAD[q.target])
    return Response(body=b"good\n")


def exchange(s, rd, path, method="GET"):
    s.sendall(b"%s %s HTTP/1.1\r\nHost: d\r\n%s\r\n" % (
        method.encode(), path.encode(),
        b"Content-Length: 2\r\n\r\nhi" if method == "POST" else b""))
    return read_response(rd, method, deadline=time.monotonic() + 8)


def test_malformed_responses_502():
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki, upstream_timeout=5))],
                       gateway={"max_header_size": MAX_HEAD})
        problems = []
        for i, path in enumerate(BAD):
            method = "POST" if i % 2 else "GET"
            s = connect(gw.port, timeout=10)
            try:
                rd = Reader(s)
                t = time.monotonic()
                try:
                    r1 = exchange(s, rd, path, method)
                    dt = time.monotonic() - t
                    r2 = exchange(s, rd, "/good")
                except (Closed, OSError, ValueError) as e:
                    problems.append("%s: %r" % (path, e))
                    continue
            finally:
                s.close()
            if r1.status != 502 or not r1.body.startswith(b"502 ") or dt > 4:
                problems.append("%s: want 502 quickly, got %r after %.1fs"
                                % (path, r1, dt))
            if (r2.status, r2.body) != (200, b"good\n"):
                problems.append("%s: next request on the same device "
                                "connection: %r" % (path, r2))
            recs = gw.wait_access(lambda a: a.get("path") == path)
            if not recs or recs[0].get("status") != "502" or \
                    recs[0].get("error") in (None, "", "-"):
                problems.append("%s: access line %r" % (path, recs))
        expect(not problems, "%d of %d cases:\n  %s" % (
            len(problems), len(BAD), "\n  ".join(problems)))
        expect_eq(len([q for q in up.requests if q.target == "/good"]),
                  len(BAD), "good requests served")
        say("  %d malformed responses -> 502, device connection kept each "
            "time" % len(BAD))


def test_oversized_head_that_never_ends():
    """A server that keeps sending header bytes and never closes: 502 as
    soon as max_header_size is passed, not at upstream_timeout."""
    with World() as w:
        big = (OK + b"X-Big: " + b"b" * (4 * MAX_HEAD))
        srv = FaultServer(tls_answer(big), w.pki)
        w.add_cleanup(srv.close)
        up = w.upstream(respond=respond)
        gw = w.gateway([("bad", route(srv.addr, w.pki, upstream_timeout=8,
                                      listen="@a")),
                        ("good", route(up, w.pki, listen="@b"))],
                       gateway={"max_header_size": MAX_HEAD})
        t = time.monotonic()
        r = curl(w.td, gw.url("/endless", 0), max_time=12)
        dt = time.monotonic() - t
        expect(r.status == 502 and dt < 3,
               "endless head: want 502 before upstream_timeout=8, got %s "
               "after %.1fs" % (r.status, dt))
        say("  endless head -> 502 in %.2fs" % dt)
        # garbage without any line end, held open: bounded as well
        srv.handler = tls_answer(b"\x00\xff" * (3 * MAX_HEAD))
        t = time.monotonic()
        r = curl(w.td, gw.url("/endless-garbage", 0), max_time=12)
        dt = time.monotonic() - t
        expect(r.status == 502 and dt < 3,
               "endless garbage: want 502 quickly, got %s after %.1fs"
               % (r.status, dt))
        say("  endless garbage -> 502 in %.2fs" % dt)
        r = curl(w.td, gw.url("/other", 1))
        expect_eq((r.status, r.body), (200, b"good\n"), "the other route")


def injecting(delay):
    """Handler: answers every request with a good response followed by a
    second, unrequested one (at once, or `delay` seconds later), keeping
    the connection open: a pooled connection that kept those bytes would
    hand them to the next device as its response."""
    def handler(c, srv):
        s = srv.tls_ctx.wrap_socket(c, server_side=True)
        s.settimeout(10)
        rd = Reader(s)
        while True:
            try:
                rd.head()
            except (Closed, OSError):
                return
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nlegit\n")
            if delay:
                time.sleep(delay)
            try:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
                          b"INJECTED\n")
            except OSError:
                return
    return handler


def test_unrequested_bytes_never_reach_the_next_device():
    with World() as w:
        srv = FaultServer(injecting(0), w.pki)
        w.add_cleanup(srv.close)
        gw = w.gateway([("r", route(srv.addr, w.pki))])
        for delay in (0, 0.2):
            srv.handler = injecting(delay)
            bodies = []
            for i in range(4):
                r = curl(w.td, gw.url("/inject%d" % i))
                bodies.append(r.body)
                time.sleep(delay + 0.1)
            expect_eq(bodies, [b"legit\n"] * 4,
                      "bodies with unrequested bytes after each response "
                      "(sent %ss later)" % delay)
        say("  unrequested response bytes (at once or 0.2 s later): the "
            "connection is dropped, never pooled; %d uplink connections "
            "for 8 requests" % srv.accepted)


if __name__ == "__main__":
    run_tests(globals())
