#!/usr/bin/env python3
"""Device-side errors, each with its status, a short body, Connection:
close, the connection closed, and an access line: malformed 400 (RFC 9112
§2.2, §3, §5, §6.3), head too slow 408, body too large 413 (also before a
100 Continue), URI too long 414, head too large 431, no route 404.  Also
routing by match_host (exact and *.suffix) and longest match_path, and the
max_clients limit."""

import os
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


def expect_error(gw, data, status, what, timeout=8, access_n=None):
    t = time.monotonic()
    resp, closed, raw = raw_request(gw.port, data, timeout=timeout,
                                    close_wait=2)
    dt = time.monotonic() - t
    expect(resp is not None, "%s: no response (got %r)" % (what, raw))
    expect_eq(resp.status, status, "%s: status (%r)" % (what, resp))
    expect(any("close" in v.lower() for v in hall(resp.headers, "connection")),
           "%s: no Connection: close in %r" % (what, resp.headers))
    expect(closed, "%s: connection left open after %d" % (what, status))
    expect(len(resp.body) < 1024, "%s: body of %d bytes" % (what, len(resp.body)))
    n = access_n or 1
    recs = gw.wait_access(lambda a: a.get("status") == str(status), n=n)
    expect(len(recs) >= n, "%s: no access line with status=%d\nlog:\n%s"
           % (what, status, gw.log_text()))
    say("  %s -> %d (%.1fs)" % (what, status, dt))
    return resp


MALFORMED = [
    ("garbage request line", b"GARBAGE\r\n\r\n"),
    ("bad version", b"GET / HTTP/9.z\r\nHost: d\r\n\r\n"),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: d\r\nNoColonHere\r\n\r\n"),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : d\r\n\r\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: 1\r\n  folded\r\n\r\n"),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
    ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bad Content-Length", b"POST / HTTP/1.1\r\nHost: d\r\n"
     b"Content-Length: 12abc\r\n\r\n"),
    ("conflicting Content-Lengths", b"POST / HTTP/1.1\r\nHost: d\r\n"
     b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: d\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: a\x00b\r\n\r\n"),
    ("signed Content-Length", b"POST / HTTP/1.1\r\nHost: d\r\n"
     b"Content-Length: +5\r\n\r\nabcde"),
    # RFC 9112 §6.1: chunked not final in a request -> 400 and close
    ("chunked not the final coding", b"POST / HTTP/1.1\r\nHost: d\r\n"
     b"Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: d\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n"
     b"10000000000000000000001\r\nabc\r\n0\r\n\r\n"),
]


def test_malformed_400():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        problems = []
        for i, (what, data) in enumerate(MALFORMED):
            try:
                expect_error(gw, data, 400, what, access_n=i + 1)
            except TestFailure as e:
                problems.append(str(e))
        expect(not problems, "\n  " + "\n  ".join(problems))
        # nothing malformed reached the upstream, except possibly the body
        # of the bad-chunk request's head (forwarded before the error)
        bad = [q for q in up.requests if q.method != "POST"]
        expect(not bad, "malformed requests reached the upstream: %r" % bad)
        # TE + CL: RFC 9112 §6.3 lets a server reject it or drop CL; either
        # way the connection must not be reused afterwards.
        resp, closed, raw = raw_request(gw.port, b"POST /tecl HTTP/1.1\r\n"
                                        b"Host: d\r\nContent-Length: 3\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n"
                                        b"3\r\nabc\r\n0\r\n\r\n",
                                        close_wait=2)
        expect(resp is not None and resp.status in (200, 400) and closed,
               "TE + CL: want 400, or 200 then close; got %r closed=%s"
               % (resp, closed))
        if resp.status == 200:
            q = [q for q in up.requests if q.target == "/tecl"][0]
            expect_eq(q.body, b"abc", "TE+CL body as chunked")
            expect(q.header("content-length") in (None, "3") and
                   not (q.header("content-length") and
                        q.header("transfer-encoding")),
                   "TE+CL forwarded with both: %r" % q.headers)


def test_head_too_slow_408():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"header_timeout": 1})
        # a partial head, then silence
        expect_error(gw, b"GET /slow HTTP/1.1\r\nHost: d\r\n", 408,
                     "partial head")
        # a head dribbled one byte at a time: the limit is on the whole head
        s = connect(gw.port)
        t = time.monotonic()
        got = b""
        try:
            for b in b"GET /drip HTTP/1.1\r\nHost: d\r\nX-Long: " + b"z" * 40:
                s.sendall(bytes([b]))
                time.sleep(0.1)
                s.setblocking(False)
                try:
                    got += s.recv(4096)
                except (BlockingIOError, OSError):
                    pass
                s.setblocking(True)
                if got or time.monotonic() - t > 5:
                    break
            s.settimeout(3)
            try:
                while b"\r\n\r\n" not in got:
                    d = s.recv(4096)
                    if not d:
                        break
                    got += d
            except (socket.timeout, OSError):
                pass
        finally:
            s.close()
        dt = time.monotonic() - t
        expect(got.startswith(b"HTTP/1.1 408") and dt < 3,
               "dribbled head: want 408 after ~1s, got %r after %.1fs"
               % (got[:60], dt))
        # an idle connection that never sent a byte may simply be closed
        resp, closed, raw = raw_request(gw.port, b"", timeout=4)
        expect(resp is None or resp.status == 408,
               "silent connection: %r" % resp)


def test_body_stalls_408():
    """A body that stops arriving: after idle_timeout without a byte the
    device gets 408 (RFC 9110 §15.5.9) and the connection is closed; a
    body that keeps trickling in within the limit is not cut off."""
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"idle_timeout": 1})
        t = time.monotonic()
        expect_error(gw, b"POST /stall HTTP/1.1\r\nHost: d\r\n"
                     b"Content-Length: 100\r\n\r\n0123456789", 408,
                     "stalled body")
        dt = time.monotonic() - t
        expect(dt < 4, "stalled body: 408 after %.1fs (idle_timeout 1)" % dt)
        # 15 bytes, one every 0.3 s: 4.5 s in all, never 1 s silent.
        s = connect(gw.port)
        try:
            s.sendall(b"POST /slow HTTP/1.1\r\nHost: d\r\n"
                      b"Content-Length: 15\r\n\r\n")
            for _ in range(15):
                time.sleep(0.3)
                s.sendall(b"x")
            resp = read_response(Reader(s), "POST")
        finally:
            s.close()
        expect_eq(resp.status, 200, "slow body within idle_timeout")


def test_body_too_large_413():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_body_size": 1000})
        # exactly at the limit passes
        r = curl(w.td, gw.url("/at-limit"), "--data-binary",
                 "@" + w.td.write("b1000", b"a" * 1000), "-H", "Expect:")
        expect_eq(r.status, 200, "body of max_body_size bytes (%r)" % r)
        expect_error(gw, b"POST /big HTTP/1.1\r\nHost: d\r\n"
                     b"Content-Length: 1001\r\n\r\n" + b"a" * 1001, 413,
                     "Content-Length above max_body_size")
        # with Expect: 100-continue the answer is 413, never 100 first
        s = connect(gw.port)
        try:
            s.sendall(b"POST /big-expect HTTP/1.1\r\nHost: d\r\n"
                      b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
            rd = Reader(s)
            first = read_response(rd, skip_interim=False)
            expect_eq(first.status, 413, "Expect with a too-large body")
        finally:
            s.close()
        # chunked bodies are counted as they stream
        chunks = b"".join(b"100\r\n" + b"c" * 256 + b"\r\n" for _ in range(8))
        expect_error(gw, b"POST /big-chunked HTTP/1.1\r\nHost: d\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunks +
                     b"0\r\n\r\n", 413, "chunked body above max_body_size",
                     access_n=3)
        big = [q for q in up.requests if q.target.startswith("/big")
               and q.body_len > 1000]
        expect(not big, "over-limit bodies reached the upstream whole: %r" % big)


def test_uri_too_long_414():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_header_size": 65536})
        uri = b"/" + b"u" * 10000
        expect_error(gw, b"GET " + uri + b" HTTP/1.1\r\nHost: d\r\n\r\n", 414,
                     "10001-byte URI")
        expect(not up.requests, "long URI reached the upstream")
        # a long but reasonable URI passes
        uri = b"/" + b"v" * 2000 + b"?q=" + b"w" * 1000
        resp, closed, raw = raw_request(gw.port, b"GET " + uri +
                                        b" HTTP/1.1\r\nHost: d\r\n\r\n")
        expect(resp is not None and resp.status == 200,
               "3 KB URI: %r" % resp)
        expect(up.wait_requests(1) and up.requests[0].target == uri.decode(),
               "3 KB URI not forwarded intact")


def test_head_too_large_431():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_header_size": 1024})
        expect_error(gw, b"GET /h HTTP/1.1\r\nHost: d\r\nX-Big: " +
                     b"b" * 2000 + b"\r\n\r\n", 431, "2 KB header field")
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"m" * 20) for i in range(60))
        expect_error(gw, b"GET /h HTTP/1.1\r\nHost: d\r\n" + many + b"\r\n",
                     431, "60 small fields over 1 KB", access_n=2)
        resp, closed, raw = raw_request(gw.port, b"GET /small HTTP/1.1\r\n"
                                        b"Host: d\r\nX-S: " + b"s" * 500 +
                                        b"\r\n\r\n")
        expect(resp is not None and resp.status == 200,
               "head under max_header_size: %r" % resp)


def test_routing_and_404():
    with World() as w:
        ups = {n: w.upstream(respond=(lambda n: lambda q: Response(
            body=n.encode()))(n)) for n in ("exact", "wild", "v1", "v1s")}
        lst = "@shared"                 # one listen address for all four
        gw = w.gateway([
            ("exact", route(ups["exact"], w.pki, listen=lst,
                            match_host="dev.example.test")),
            ("wild", route(ups["wild"], w.pki, listen=lst,
                           match_host="*.example.test")),
            ("v1", route(ups["v1"], w.pki, listen=lst, match_path="/v1/")),
            ("v1s", route(ups["v1s"], w.pki, listen=lst,
                          match_path="/v1/special/")),
        ])
        cases = [("dev.example.test", "/x", "exact"),
                 ("other.example.test", "/x", "wild"),
                 ("A.B.EXAMPLE.TEST", "/x", "wild"),
                 ("dev.example.test:8080", "/y", "exact"),
                 ("nomatch.test", "/v1/telemetry", "v1"),
                 ("nomatch.test", "/v1/special/cmd", "v1s"),
                 ("nomatch.test", "/v1/specialist", "v1")]
        problems = []
        for host, path, want in cases:
            r = curl(w.td, gw.url(path), "-H", "Host: " + host)
            if (r.status, r.body) != (200, want.encode()):
                problems.append("Host %s %s: want route %s, got %s %r"
                                % (host, path, want, r.status, r.body[:80]))
            recs = gw.wait_access(lambda a: a.get("path") == path and
                                  a.get("route") == want)
            if not recs and not problems:
                problems.append("Host %s %s: no access line with route=%s"
                                % (host, path, want))
        expect(not problems, "\n  " + "\n  ".join(problems))
        r = curl(w.td, gw.url("/nothing"), "-H", "Host: nomatch.test")
        expect_eq(r.status, 404, "no matching route (%r)" % r)
        expect(0 < len(r.body) < 1024, "404 body: %r" % r.body)
        recs = gw.wait_access(lambda a: a.get("path") == "/nothing")
        expect(recs and recs[0].get("route") == "-" and
               recs[0].get("status") == "404",
               "access line for no route: %r" % recs)
        # "example.test" itself is not under "*.example.test"
        r = curl(w.td, gw.url("/bare"), "-H", "Host: example.test")
        expect_eq(r.status, 404, "bare suffix vs *.example.test")
        expect(all(not q.target.startswith("/nothing") for u in ups.values()
                   for q in u.requests), "404 request reached an upstream")


def test_two_listeners():
    with World() as w:
        a = w.upstream(respond=lambda q: Response(body=b"A"))
        b = w.upstream(respond=lambda q: Response(body=b"B"))
        gw = w.gateway([("a", route(a, w.pki)), ("b", route(b, w.pki))])
        ra = curl(w.td, gw.url("/x", 0))
        rb = curl(w.td, gw.url("/x", 1))
        expect_eq([(ra.status, ra.body), (rb.status, rb.body)],
                  [(200, b"A"), (200, b"B")], "one route per listen address")
        routes = [r.get("route") for r in gw.wait_access(n=2)]
        expect_eq(sorted(routes), ["a", "b"], "access route names")


def test_pipelined_then_malformed():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body=q.target.encode()))
        gw = w.gateway([("r", route(up, w.pki))])
        s = connect(gw.port)
        try:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: d\r\n\r\n"
                      b"GET /second HTTP/1.1\r\nHost d\r\n\r\n"
                      b"GET /third HTTP/1.1\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            r1 = read_response(rd)
            r2 = read_response(rd)
            expect_eq((r1.status, r1.body), (200, b"/first"), "first response")
            expect_eq(r2.status, 400, "malformed second request")
            expect(peer_closed(s, rd, 3), "connection open after the 400 "
                   "(the third request must not be served)")
        finally:
            s.close()
        expect(all(q.target != "/third" for q in up.requests),
               "request after a malformed one was forwarded")


def test_device_disconnects_midway():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(delay=1 if q.target ==
                                                   "/slowresp" else 0))
        gw = w.gateway([("r", route(up, w.pki))])
        # mid-head, mid-body, and while waiting for a slow response
        for data in (b"GET /half HTTP/1.1\r\nHo",
                     b"POST /halfbody HTTP/1.1\r\nHost: d\r\n"
                     b"Content-Length: 50000\r\n\r\n" + b"x" * 1000,
                     b"GET /slowresp HTTP/1.1\r\nHost: d\r\n\r\n"):
            s = connect(gw.port)
            s.sendall(data)
            time.sleep(0.2)
            s.close()
        time.sleep(1.5)
        expect(gw.alive(), "daemon died after device disconnects")
        r = curl(w.td, gw.url("/after"))
        expect_eq(r.status, 200, "request after the disconnects")
        recs = gw.wait_access(lambda a: a.get("path") in ("/halfbody",
                                                          "/slowresp"), n=2)
        expect(len(recs) == 2, "access lines for aborted requests: %r" % recs)
        say("  aborted: " + "; ".join("%s status=%s error=%s" % (
            a.get("path"), a.get("status"), a.get("error")) for a in recs))


def test_many_concurrent_devices():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        socks = [connect(gw.port) for _ in range(200)]
        try:
            for i, s in enumerate(socks):
                s.sendall(b"GET /many/%d HTTP/1.1\r\nHost: d\r\n\r\n" % i)
            ok = 0
            for s in socks:
                try:
                    if read_response(Reader(s)).status == 200:
                        ok += 1
                except (Closed, OSError, ValueError):
                    pass
        finally:
            for s in socks:
                s.close()
        expect_eq(ok, 200, "responses to 200 simultaneous devices")


def test_max_clients():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_clients": 2, "header_timeout": 10})
        held = [connect(gw.port), connect(gw.port)]
        try:
            for s in held:                       # make them count: start heads
                s.sendall(b"GET /held HTTP/1.1\r\n")
            time.sleep(0.3)
            third = connect(gw.port, timeout=2)
            served = False
            try:
                third.sendall(b"GET /third HTTP/1.1\r\nHost: d\r\n\r\n")
                rd = Reader(third)
                third.settimeout(1.5)
                try:
                    resp = read_response(rd)
                    served = resp.status == 200
                    say("  third connection over max_clients=2 -> %d"
                        % resp.status)
                except (socket.timeout, Closed, OSError):
                    say("  third connection over max_clients=2 -> not served")
            finally:
                third.close()
            expect(not served, "a third device connection was served with "
                   "max_clients = 2")
        finally:
            for s in held:
                s.close()
        time.sleep(0.5)
        r = curl(w.td, gw.url("/after"), max_time=5)
        expect_eq(r.status, 200, "request after the held connections closed")


if __name__ == "__main__":
    run_tests(globals())
