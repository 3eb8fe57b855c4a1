#!/usr/bin/env python3
"""Keep-alive and the upstream pool: N sequential device requests cost one
TLS handshake, whether they share a device connection or not; when the
upstream closes, the next connection resumes the TLS session; pipelined
requests are answered in order (RFC 9112 §9.3.2); idle device
connections are closed after idle_timeout."""

import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


def curl_many(urls, max_time=30):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time",
                        str(max_time), "-w", "%{http_code} %{num_connects}\n"]
                       + urls, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=max_time + 10)
    return r


def test_100_requests_one_device_connection():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body=b"ok\n"))
        gw = w.gateway([("r", route(up, w.pki))])
        urls = [gw.url("/ka/%d" % i) for i in range(100)]
        r = curl_many(urls)
        out = r.stdout.decode()
        expect_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
        lines = out.split("ok\n")
        codes = [ln.split()[0] for ln in lines if ln.strip()]
        connects = sum(int(ln.split()[1]) for ln in lines if ln.strip())
        expect_eq(codes, ["200"] * 100, "statuses")
        expect_eq(connects, 1, "device connections curl opened (keep-alive)")
        expect(up.wait_requests(100), "upstream saw %d requests"
               % len(up.requests))
        expect_eq([q.target for q in up.requests], ["/ka/%d" % i
                                                    for i in range(100)],
                  "order of requests upstream")
        expect_eq(up.handshakes, 1, "upstream TLS handshakes for 100 requests")
        expect_eq(up.connections, 1, "upstream TCP connections")
        recs = gw.wait_access(lambda a: a.get("path", "").startswith("/ka/"),
                              n=100)
        tls = [a.get("tls") for a in recs]
        expect(len(recs) == 100 and tls[0] == "new" and
               set(tls[1:]) == {"reused"},
               "access tls fields: %d lines, first %r, others %r"
               % (len(recs), tls[:1], sorted(set(tls[1:]))))
        say("  100 requests: %d upstream handshake(s), %d connection(s)"
            % (up.handshakes, up.connections))


def test_separate_device_connections_share_the_pool():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        for i in range(20):
            r = curl(w.td, gw.url("/sep/%d" % i))
            expect_eq(r.status, 200, "request %d (%r)" % (i, r))
        expect(up.wait_requests(20), "upstream saw %d" % len(up.requests))
        expect_eq(up.handshakes, 1,
                  "upstream handshakes for 20 separate device connections")
        recs = gw.wait_access(lambda a: a.get("path", "").startswith("/sep/"),
                              n=20)
        clients = set(a.get("client") for a in recs)
        expect(len(clients) == 20, "want 20 distinct device connections in "
               "the access log, got %d" % len(clients))
        expect(set(a.get("tls") for a in recs[1:]) == {"reused"},
               "tls of requests 2..20: %r" % [a.get("tls") for a in recs])


def test_upstream_close_then_resumed_session():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(close=True))
        gw = w.gateway([("r", route(up, w.pki))])
        for i in range(4):
            r = curl(w.td, gw.url("/close/%d" % i))
            expect_eq(r.status, 200, "request %d (%r)" % (i, r))
            time.sleep(0.1)
        expect(up.wait_requests(4), "upstream saw %d" % len(up.requests))
        conns = [q.conn_id for q in up.requests]
        resumed = [q.resumed for q in up.requests]
        expect_eq(len(set(conns)), 4, "new upstream connection after each "
                  "Connection: close (ids %r)" % conns)
        expect_eq(resumed, [False, True, True, True],
                  "TLS session resumed on the new connections")
        recs = gw.wait_access(lambda a: a.get("path", "").startswith("/close/"),
                              n=4)
        expect_eq([a.get("tls") for a in recs],
                  ["new", "resumed", "resumed", "resumed"], "access tls")


def test_pooled_connection_closed_by_upstream_while_idle():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(idle_close=0.2))
        gw = w.gateway([("r", route(up, w.pki))])
        for i in range(3):
            r = curl(w.td, gw.url("/idle/%d" % i))
            expect_eq(r.status, 200, "request %d after the upstream closed "
                      "the pooled connection (%r)" % (i, r))
            time.sleep(0.8)
        expect(up.wait_requests(3), "upstream saw %d" % len(up.requests))
        expect_eq([q.resumed for q in up.requests], [False, True, True],
                  "resumed sessions after idle closes")


def test_pipelining_in_order():
    def respond(q):
        # the first answer is the slowest: order must still hold
        d = {"/p/1": 0.6, "/p/2": 0.2}.get(q.target, 0)
        return Response(body=("%s %s %s" % (q.method, q.target,
                                            q.body_sha[:8])).encode(),
                        delay=d)
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki))])
        s = connect(gw.port)
        try:
            s.sendall(b"GET /p/1 HTTP/1.1\r\nHost: d\r\n\r\n"
                      b"POST /p/2 HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n"
                      b"\r\nhello"
                      b"HEAD /p/3 HTTP/1.1\r\nHost: d\r\n\r\n"
                      b"GET /p/4 HTTP/1.1\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            got = []
            for m in ("GET", "POST", "HEAD", "GET"):
                resp = read_response(rd, m)
                got.append((resp.status, resp.body))
        finally:
            s.close()
        h0 = sha256(b"")[:8]
        want = [(200, ("GET /p/1 %s" % h0).encode()),
                (200, ("POST /p/2 %s" % sha256(b"hello")[:8]).encode()),
                (200, b""),
                (200, ("GET /p/4 %s" % h0).encode())]
        expect_eq(got, want, "pipelined responses")


def test_pipelining_past_read_watermark():
    """More pipelined requests than the device-side read watermark (64 KiB)
    holds, while the first waits for a slow upstream: reading stops at the
    watermark and must start again as the requests are answered, or the
    rest would never be read."""
    n, pad = 700, b"p" * 120
    def respond(q):
        return Response(body=q.target.encode(),
                        delay=0.5 if q.target == "/w/0" else 0)
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki))])
        s = connect(gw.port)
        data = b"".join(b"GET /w/%d HTTP/1.1\r\nHost: d\r\nX-Pad: %s\r\n\r\n"
                        % (i, pad) for i in range(n))
        expect(len(data) > 64 * 1024, "%d bytes pipelined" % len(data))
        sender = threading.Thread(target=s.sendall, args=(data,))
        sender.start()
        try:
            rd = Reader(s)
            for i in range(n):
                resp = read_response(rd, "GET")
                expect_eq((resp.status, resp.body),
                          (200, ("/w/%d" % i).encode()),
                          "pipelined response %d" % i)
        finally:
            sender.join(timeout=30)
            s.close()
        say("  %d pipelined requests (%d bytes) answered in order"
            % (n, len(data)))


def test_idle_device_connection_closed():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"idle_timeout": 1})
        s = connect(gw.port)
        try:
            s.sendall(b"GET /i HTTP/1.1\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            resp = read_response(rd)
            expect_eq(resp.status, 200, "status")
            t = time.monotonic()
            closed = peer_closed(s, rd, 4)
            dt = time.monotonic() - t
            expect(closed and 0.5 < dt < 3.5,
                   "idle keep-alive connection: closed=%s after %.1fs "
                   "(idle_timeout = 1)" % (closed, dt))
        finally:
            s.close()
        # an active connection within idle_timeout stays usable
        s = connect(gw.port)
        try:
            rd = Reader(s)
            for i in range(3):
                s.sendall(b"GET /active HTTP/1.1\r\nHost: d\r\n\r\n")
                expect_eq(read_response(rd).status, 200, "request %d" % i)
                time.sleep(0.5)
        finally:
            s.close()


def test_concurrent_requests_not_crossed():
    def respond(q):
        return Response(body=("%s|%s" % (q.target, q.body_sha)).encode(),
                        delay=0.3)
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki))])
        results = {}

        def one(i):
            body = ("device %d " % i).encode() * (i + 1)
            try:
                s = connect(gw.port)
                try:
                    s.sendall(b"POST /c/%d HTTP/1.1\r\nHost: d\r\n"
                              b"Content-Length: %d\r\n\r\n%s"
                              % (i, len(body), body))
                    results[i] = (read_response(Reader(s)), body)
                finally:
                    s.close()
            except Exception as e:          # reported below
                results[i] = (e, body)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        t = time.monotonic()
        for th in ts:
            th.start()
        for th in ts:
            th.join(20)
        dt = time.monotonic() - t
        bad = []
        for i in range(30):
            resp, body = results.get(i, (None, None))
            want = ("/c/%d|%s" % (i, sha256(body or b""))).encode()
            if not isinstance(resp, RawResponse) or resp.status != 200 \
                    or resp.body != want:
                bad.append("%d: %r" % (i, resp))
        expect(not bad, "concurrent requests: %d wrong:\n  %s"
               % (len(bad), "\n  ".join(bad[:5])))
        expect(dt < 8, "30 concurrent requests with a 0.3 s upstream took "
               "%.1fs (serialised?)" % dt)
        say("  30 concurrent requests in %.1fs over %d upstream connections"
            % (dt, up.connections))
        # the connections go back to the pool: sequential requests reuse
        n = up.handshakes
        for i in range(5):
            r = curl(w.td, gw.url("/seq/%d" % i))
            expect_eq(r.status, 200, "sequential request %d" % i)
        expect_eq(up.handshakes, n, "handshakes for 5 requests after the burst")


def test_connection_semantics_http10_and_close():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body=b"abc"))
        gw = w.gateway([("r", route(up, w.pki))])
        # HTTP/1.0 without keep-alive: closed after the response
        # (RFC 9112 §9.3)
        s = connect(gw.port)
        try:
            s.sendall(b"GET /ten HTTP/1.0\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            resp = read_response(rd, deadline=time.monotonic() + 5)
            expect_eq((resp.status, resp.body), (200, b"abc"), "HTTP/1.0")
            expect(resp.framing == "close" or peer_closed(s, rd, 3),
                   "HTTP/1.0 device connection left open")
        finally:
            s.close()
        # HTTP/1.0 with Connection: keep-alive: either kept (and said so)
        # or closed
        s = connect(gw.port)
        try:
            s.sendall(b"GET /ten-ka HTTP/1.0\r\nHost: d\r\n"
                      b"Connection: keep-alive\r\n\r\n")
            rd = Reader(s)
            resp = read_response(rd, deadline=time.monotonic() + 5)
            expect_eq((resp.status, resp.body), (200, b"abc"),
                      "HTTP/1.0 keep-alive")
            kept = any("keep-alive" in v.lower()
                       for v in hall(resp.headers, "connection"))
            if kept:
                expect(resp.framing == "cl", "kept-alive HTTP/1.0 response "
                       "needs Content-Length, got %s" % resp.framing)
                s.sendall(b"GET /ten-ka2 HTTP/1.0\r\nHost: d\r\n\r\n")
                resp = read_response(rd, deadline=time.monotonic() + 5)
                expect_eq(resp.status, 200, "second HTTP/1.0 request")
            else:
                expect(resp.framing == "close" or peer_closed(s, rd, 3),
                       "HTTP/1.0 response without keep-alive, left open")
            say("  HTTP/1.0 + Connection: keep-alive -> %s"
                % ("kept" if kept else "closed"))
        finally:
            s.close()
        # HTTP/1.1 with Connection: close: answered with close, then closed
        s = connect(gw.port)
        try:
            s.sendall(b"GET /close11 HTTP/1.1\r\nHost: d\r\n"
                      b"Connection: close\r\n\r\n")
            rd = Reader(s)
            resp = read_response(rd, deadline=time.monotonic() + 5)
            expect_eq(resp.status, 200, "status")
            expect(any("close" in v.lower() for v in
                       hall(resp.headers, "connection")),
                   "no Connection: close echoed: %r" % resp.headers)
            expect(peer_closed(s, rd, 3), "connection left open after close")
        finally:
            s.close()


def test_device_connection_survives_upstream_close():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body=q.target.encode(),
                                                   close=True))
        gw = w.gateway([("r", route(up, w.pki))])
        s = connect(gw.port)
        try:
            rd = Reader(s)
            for i in range(3):
                s.sendall(b"GET /dc/%d HTTP/1.1\r\nHost: d\r\n\r\n" % i)
                resp = read_response(rd, deadline=time.monotonic() + 5)
                expect_eq((resp.status, resp.body),
                          (200, b"/dc/%d" % i), "request %d" % i)
        finally:
            s.close()
        expect_eq(up.connections, 3, "upstream connections (one per request)")


if __name__ == "__main__":
    run_tests(globals())
