#!/usr/bin/env python3
"""Request rewriting: Host and SNI come from the route, never from the
device; hop-by-hop headers go (RFC 9110 §7.6.1), Via is added (§7.6.3),
X-Forwarded-For appended; other headers keep their order; absolute-form
targets become origin-form (RFC 9112 §3.2.2); the query string is kept.
Also the access-log line's fields and an IPv6 listener."""

import os
import re
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


def names(req):
    return [n.lower() for n, _ in req.headers]


def test_host_and_sni_rewritten():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("drogue", route(up, w.pki))])
        r = curl(w.td, gw.url("/v1/telemetry?ct=0"), "-H", "Host: device.local",
                 "-d", "temp=21")
        expect_eq(r.status, 200, "device status (%r)" % r)
        expect_eq(r.body, b"ok\n", "device body")
        expect(up.wait_requests(1), "upstream saw no request")
        q = up.requests[0]
        expect_eq(hall(q.headers, "host"), [CLOUD], "Host headers upstream")
        expect_eq(q.sni, CLOUD, "SNI upstream")
        expect_eq(q.target, "/v1/telemetry?ct=0", "target upstream")
        expect_eq(q.body, b"temp=21", "body upstream")
        expect(q.tls_version in ("TLSv1.3", "TLSv1.2"),
               "TLS version %r" % q.tls_version)
        say("  upstream TLS version: %s" % q.tls_version)


def test_host_and_sni_set_differently():
    with World() as w:
        up = w.upstream()
        # Host header api.cloud.test, TLS name cloud.test (the cert's name).
        gw = w.gateway([("a", route(up, w.pki, host="api." + CLOUD,
                                    sni=CLOUD))])
        r = curl(w.td, gw.url("/a"), "-H", "Host: device.local")
        expect_eq(r.status, 200, "status with host != sni (%r)" % r)
        expect(up.wait_requests(1), "upstream saw no request")
        q = up.requests[0]
        expect_eq(q.header("host"), "api." + CLOUD, "Host upstream")
        expect_eq(q.sni, CLOUD, "SNI upstream")
        gw.stop()
        # sni defaults to host: host = x.cloud.test matches *.cloud.test.
        up2 = w.upstream()
        gw2 = w.gateway([("b", route(up2, w.pki, host="x." + CLOUD))],
                        name="gw2")
        r = curl(w.td, gw2.url("/b"), "-H", "Host: " + CLOUD)
        expect_eq(r.status, 200, "status with sni defaulting to host (%r)" % r)
        expect(up2.wait_requests(1), "upstream saw no request")
        expect_eq(up2.requests[0].sni, "x." + CLOUD, "SNI (default = host)")
        expect_eq(up2.requests[0].header("host"), "x." + CLOUD, "Host")


HOP_REQ = (b"GET /hop/path?q=1&r=%2F HTTP/1.1\r\n"
           b"Host: device.local\r\n"
           b"X-First: 1\r\n"
           b"Connection: foo, keep-alive\r\n"
           b"Foo: bar\r\n"
           b"Keep-Alive: timeout=5\r\n"
           b"Proxy-Connection: keep-alive\r\n"
           b"TE: trailers\r\n"
           b"Upgrade: h2c\r\n"
           b"X-Second: 2\r\n"
           b"Via: 1.0 devproxy\r\n"
           b"X-Forwarded-For: 10.0.0.9\r\n"
           b"Authorization: Basic ZGV2aWNlQGFwcDpwYXNz\r\n"
           b"X-Third: 3\r\n"
           b"\r\n")


def via_elements(req):
    return [e.strip() for v in hall(req.headers, "via") for e in v.split(",")]


def test_hop_by_hop_removed_via_xff():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(headers=[
            ("Connection", "x-up-hop"), ("X-Up-Hop", "1"),
            ("Keep-Alive", "timeout=99"), ("X-Up-E2e", "kept")]))
        gw = w.gateway([("r", route(up, w.pki))])
        resp, closed, raw = raw_request(gw.port, HOP_REQ)
        expect(resp is not None, "no response; got %r" % raw)
        expect_eq(resp.status, 200, "status")
        expect(up.wait_requests(1), "upstream saw no request")
        q = up.requests[0]
        n = names(q)
        for h in ("foo", "keep-alive", "proxy-connection", "te", "upgrade",
                  "transfer-encoding"):
            expect(h not in n, "hop-by-hop %r forwarded: %r" % (h, q.headers))
        for v in hall(q.headers, "connection"):
            expect("foo" not in v.lower() and "upgrade" not in v.lower(),
                   "device's Connection options forwarded: %r" % v)
        expect_eq(q.target, "/hop/path?q=1&r=%2F", "target (query kept)")
        expect_eq(hall(q.headers, "host"), [CLOUD], "Host")
        v = via_elements(q)
        expect(len(v) == 2 and v[0] == "1.0 devproxy" and
               re.match(r"^(HTTP/)?1\.1 \S+", v[1]),
               "Via: want '1.0 devproxy, 1.1 <gateway>', got %r" % v)
        xff = [e.strip() for x in hall(q.headers, "x-forwarded-for")
               for e in x.split(",")]
        expect_eq(xff, ["10.0.0.9", "127.0.0.1"], "X-Forwarded-For elements")
        order = [x for x in n if x in ("x-first", "x-second", "authorization",
                                       "x-third")]
        expect_eq(order, ["x-first", "x-second", "authorization", "x-third"],
                  "order of end-to-end headers")
        expect_eq(q.header("authorization"), "Basic ZGV2aWNlQGFwcDpwYXNz",
                  "Authorization passed untouched")
        # and in the other direction
        rn = [h.lower() for h, _ in resp.headers]
        expect("x-up-hop" not in rn, "upstream's Connection option reached "
               "the device: %r" % resp.headers)
        expect_eq(resp.header("x-up-e2e"), "kept", "end-to-end response header")
        for v in hall(resp.headers, "keep-alive"):
            expect("99" not in v, "upstream's Keep-Alive forwarded: %r" % v)


def test_via_and_xff_added_when_absent():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        r = curl(w.td, gw.url("/plain"), "-0")         # HTTP/1.0 device
        expect_eq(r.status, 200, "status")
        r = curl(w.td, gw.url("/plain11"))
        expect_eq(r.status, 200, "status")
        expect(up.wait_requests(2), "upstream saw %d requests" % len(up.requests))
        v10, v11 = via_elements(up.requests[0]), via_elements(up.requests[1])
        expect(len(v10) == 1 and re.match(r"^(HTTP/)?1\.0 \S+", v10[0]),
               "Via for an HTTP/1.0 device: %r" % v10)
        expect(len(v11) == 1 and re.match(r"^(HTTP/)?1\.1 \S+", v11[0]),
               "Via for an HTTP/1.1 device: %r" % v11)
        for q in up.requests:
            expect_eq(hall(q.headers, "x-forwarded-for"), ["127.0.0.1"],
                      "X-Forwarded-For")


def test_absolute_form_target():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        req = (b"POST http://device.local/abs/v1/x?ct=5 HTTP/1.1\r\n"
               b"Host: device.local\r\nContent-Length: 4\r\n\r\nabcd")
        resp, closed, raw = raw_request(gw.port, req)
        expect(resp is not None and resp.status == 200,
               "absolute-form: %r %r" % (resp, raw))
        expect(up.wait_requests(1), "upstream saw no request")
        q = up.requests[0]
        expect_eq(q.target, "/abs/v1/x?ct=5", "origin-form target upstream")
        expect_eq(hall(q.headers, "host"), [CLOUD], "Host")
        expect_eq(q.body, b"abcd", "body")
        recs = gw.wait_access(lambda a: a.get("method") == "POST")
        expect(recs and recs[0].get("path") == "/abs/v1/x",
               "access path for absolute-form (query dropped): %r" % recs)


def test_access_log_fields():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(status=202,
                                                   body=b"accepted\n"))
        gw = w.gateway([("drogue", route(up, w.pki))])
        body = b"x" * 312
        r = curl(w.td, gw.url("/v1/telemetry?ct=30&x=1"), "--data-binary",
                 "@" + w.td.write("b", body))
        expect_eq(r.status, 202, "status")
        recs = gw.wait_access(lambda a: a.get("path", "").startswith("/v1/"))
        expect(len(recs) == 1, "want one access line, got %r\nlog:\n%s"
               % (recs, gw.log_text()))
        a = recs[0]
        line = [ln for ln in gw.lines() if ln.startswith("info: access ")][-1]
        say("  " + line)
        expect(re.match(r"^127\.0\.0\.1:\d+$", a.get("client", "")),
               "client=%r" % a.get("client"))
        expect_eq(a.get("route"), "drogue", "route")
        expect_eq(a.get("method"), "POST", "method")
        expect_eq(a.get("path"), "/v1/telemetry", "path (no query)")
        expect_eq(a.get("status"), "202", "status")
        for k in ("bytes_in", "bytes_out", "duration_ms"):
            expect(re.match(r"^\d+$", a.get(k, "")), "%s=%r" % (k, a.get(k)))
        expect(int(a["bytes_in"]) >= len(body),
               "bytes_in=%s below the body size %d" % (a["bytes_in"], len(body)))
        expect(int(a["bytes_out"]) >= len(b"accepted\n"),
               "bytes_out=%s" % a["bytes_out"])
        expect(a.get("upstream", "") not in ("", "-"), "upstream=%r"
               % a.get("upstream"))
        expect(a.get("tls") in ("new", "resumed", "reused"), "tls=%r"
               % a.get("tls"))
        expect_eq(a.get("tls"), "new", "tls of the first request")
        expect_eq(a.get("error"), "-", "error")


def test_repeated_and_long_fields_pass():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(headers=[
            ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"),
            ("X-Long", "L" * 6000)]))
        gw = w.gateway([("r", route(up, w.pki))])
        long_val = "v" * 8000
        r = curl(w.td, gw.url("/fields"), "-H", "X-Dev-Long: " + long_val,
                 "-H", "X-Multi: one", "-H", "X-Multi: two")
        expect_eq(r.status, 200, "status")
        expect_eq(hall(r.headers, "set-cookie"), ["a=1; Path=/", "b=2; Path=/"],
                  "repeated Set-Cookie kept apart (RFC 9110 §5.3)")
        expect_eq(r.header("x-long"), "L" * 6000, "6 KB response field")
        q = up.requests[0]
        expect_eq(q.header("x-dev-long"), long_val, "8 KB request field")
        multi = [e.strip() for v in hall(q.headers, "x-multi")
                 for e in v.split(",")]
        expect_eq(multi, ["one", "two"], "repeated request field, in order")


def test_drogue_long_poll_command():
    """Drogue's ?ct=N: the cloud holds the request up to N seconds and
    answers 200 with a `command` header (or 202): within upstream_timeout
    the answer passes through unchanged."""
    def respond(q):
        if q.target.startswith("/v1/telemetry?ct=") and \
                q.header("authorization", "").startswith("Basic "):
            return Response(status=200, delay=1.5, body=b'{"cmd":1}',
                            headers=[("command", "set-led"),
                                     ("Content-Type", "application/json")])
        return Response(status=401, body=b"no auth\n")
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("drogue", route(up, w.pki, upstream_timeout=5))])
        r = curl(w.td, gw.url("/v1/telemetry?ct=2"), "-u",
                 "device1@app1:hey-rodney", "-H", "Content-Type: "
                 "application/json", "-d", '{"temp":42}')
        expect_eq((r.status, r.header("command"), r.body),
                  (200, "set-led", b'{"cmd":1}'), "long-poll answer (%r)" % r)
        r = curl(w.td, gw.url("/v1/telemetry"), "-d", "x")
        expect_eq(r.status, 401, "upstream status passed through")


def test_ipv6_listener():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("six", route(up, w.pki, listen="@6"))])
        r = curl(w.td, gw.url("/six"), "-g")
        expect_eq(r.status, 200, "status over IPv6 (%r)" % r)
        expect(up.wait_requests(1), "upstream saw no request")
        expect_eq(hall(up.requests[0].headers, "x-forwarded-for"), ["::1"],
                  "X-Forwarded-For of an IPv6 device")
        recs = gw.wait_access(lambda a: a.get("path") == "/six")
        expect(recs, "no access line")


if __name__ == "__main__":
    run_tests(globals())
