#!/usr/bin/env python3
"""Bodies through the gateway, both directions: Content-Length (small,
1 MB, 10 MB), chunked requests re-framed (RFC 9112 §7), chunked /
close-delimited / Content-Length responses, HEAD / 204 / 304 without a
body (RFC 9112 §6.3), 1xx from upstream, Expect: 100-continue (RFC 9110
§10.1.1), and an HTTP/1.0 device never gets chunked (RFC 9112 §7.1)."""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


def echo_sha(q):
    """Answers with the digest and length of what the upstream received."""
    return Response(body=("%s %d" % (q.body_sha, q.body_len)).encode())


def check_upload(w, gw, up, size, chunked, name):
    path, digest = make_file(w.td, name, size, seed=size % 251)
    n0 = len(up.requests)
    args = ["--data-binary", "@" + path, "-H", "Expect:",
            "-H", "Content-Type: application/octet-stream"]
    if chunked:
        args += ["-H", "Transfer-Encoding: chunked"]
    r = curl(w.td, gw.url("/up/%s" % name), *args, max_time=30)
    expect_eq(r.status, 200, "%s: status (%r)" % (name, r))
    expect_eq(r.body.decode(errors="replace"), "%s %d" % (digest, size),
              "%s: digest and length the upstream received" % name)
    q = up.requests[n0]
    te = hall(q.headers, "transfer-encoding")
    cl = hall(q.headers, "content-length")
    expect(not (te and cl), "%s: both Transfer-Encoding and Content-Length "
           "upstream: %r" % (name, q.headers))
    if cl:
        expect_eq(cl, [str(size)], "%s: Content-Length upstream" % name)
    if chunked:
        expect(te == ["chunked"] or cl == [str(size)],
               "%s: chunked request re-framed as %r" % (name, q.headers))
    else:
        expect_eq(cl, [str(size)], "%s: Content-Length upstream" % name)
    os.unlink(path)
    say("  %s: %d bytes intact, upstream framing %s" % (name, size, q.framing))


def test_content_length_bodies():
    with World() as w:
        up = w.upstream(respond=echo_sha)
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_body_size": 0})
        check_upload(w, gw, up, 13, False, "small")
        check_upload(w, gw, up, 1 << 20, False, "1MB")
        check_upload(w, gw, up, 10 << 20, False, "10MB")
        # an empty POST
        r = curl(w.td, gw.url("/empty"), "-X", "POST", "-H",
                 "Content-Length: 0")
        expect_eq(r.status, 200, "empty POST")
        expect_eq(r.body.decode(), "%s 0" % sha256(b""), "empty body upstream")


def test_upload_sent_before_the_uplink_is_up():
    """The first request of a fresh gateway is an 80 KiB upload sent in one
    go: the device side stops reading at its read watermark (64 KiB) while
    the uplink connects, and must read the rest once the body moves on."""
    body = bytes(range(256)) * 320
    with World() as w:
        up = w.upstream(respond=echo_sha)
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_body_size": 0})
        s = connect(gw.port)
        data = (b"POST /first HTTP/1.1\r\nHost: d\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body
        sender = threading.Thread(target=s.sendall, args=(data,))
        sender.start()
        try:
            resp = read_response(Reader(s), "POST")
        finally:
            sender.join(timeout=30)
            s.close()
        expect_eq((resp.status, resp.body.decode()),
                  (200, "%s %d" % (sha256(body), len(body))),
                  "80 KiB upload as the first request")


def test_chunked_request_bodies():
    with World() as w:
        up = w.upstream(respond=echo_sha)
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_body_size": 0})
        check_upload(w, gw, up, 100, True, "chunked-small")
        check_upload(w, gw, up, 10 << 20, True, "chunked-10MB")
        # chunk extensions and trailer fields, by hand
        req = (b"POST /raw-chunked HTTP/1.1\r\nHost: d\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n"
               b"1\r\n \r\n"
               b"5\r\nworld\r\n"
               b"0\r\nX-Trailer: t\r\n\r\n")
        resp, closed, raw = raw_request(gw.port, req)
        expect(resp is not None and resp.status == 200,
               "raw chunked: %r %r" % (resp, raw))
        expect_eq(resp.body.decode(), "%s 11" % sha256(b"hello world"),
                  "raw chunked body upstream")
        # coding names are case-insensitive (RFC 9112 §7)
        req = (b"POST /raw-chunked-uc HTTP/1.1\r\nHost: d\r\n"
               b"Transfer-Encoding: CHUNKED\r\n\r\n"
               b"A\r\n0123456789\r\n0\r\n\r\n")
        resp, closed, raw = raw_request(gw.port, req)
        expect(resp is not None and resp.status == 200 and
               resp.body.decode() == "%s 10" % sha256(b"0123456789"),
               "Transfer-Encoding: CHUNKED: %r %r" % (resp, raw))


def test_response_framings_to_device():
    big = 1 << 20
    modes = {"/cl": "cl", "/chunked": "chunked", "/close": "close"}
    with World() as w:
        up = w.upstream(respond=lambda q: Response(
            body_size=(10 << 20) if "big" in q.target else big,
            mode=modes[q.target.replace("-big", "")], seed=3))
        gw = w.gateway([("r", route(up, w.pki))])
        want = Response(body_size=big, seed=3).body_sha()
        for p in ("/cl", "/chunked", "/close"):
            r = curl(w.td, gw.url(p))
            expect_eq(r.status, 200, "%s: status (%r)" % (p, r))
            expect(len(r.body) == big and sha256(r.body) == want,
                   "%s: body of %d bytes, digest %s; want %d, %s"
                   % (p, len(r.body), sha256(r.body), big, want))
        want = Response(body_size=10 << 20, seed=3).body_sha()
        r = curl(w.td, gw.url("/chunked-big"), max_time=30)
        expect(r.status == 200 and sha256(r.body) == want,
               "10 MB chunked response: status %s, %d bytes"
               % (r.status, len(r.body)))
        # And a raw device: after a close-delimited upstream response the
        # device must still be able to find the end of the body.
        resp, closed, raw = raw_request(gw.port, b"GET /close HTTP/1.1\r\n"
                                        b"Host: d\r\n\r\n")
        expect(resp is not None and len(resp.body) == big,
               "raw device, close-delimited upstream: %r" % resp)
        say("  close-delimited upstream reached an HTTP/1.1 device as %s"
            % resp.framing)


def test_head_204_304_have_no_body():
    def respond(q):
        if q.target == "/204":
            return Response(status=204, mode="none")
        if q.target == "/304":
            # RFC 9110 §15.4.5: a 304 may carry the representation's
            # Content-Length; still no body follows.
            return Response(status=304, mode="none",
                            headers=[("Content-Length", "1000"),
                                     ("ETag", '"abc"')])
        return Response(body=b"B" * 1000)      # HEAD: CL 1000, no body
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki))])
        s = connect(gw.port)
        rd = Reader(s)
        try:
            for method, path, status in (("HEAD", "/head", 200),
                                         ("GET", "/204", 204),
                                         ("GET", "/304", 304),
                                         ("GET", "/after", 200)):
                s.sendall(("%s %s HTTP/1.1\r\nHost: d\r\n\r\n"
                           % (method, path)).encode())
                resp = read_response(rd, method)
                expect_eq(resp.status, status, "%s %s status" % (method, path))
                if method == "HEAD":
                    expect_eq(resp.header("content-length"), "1000",
                              "HEAD keeps the Content-Length")
                if path == "/after":
                    expect_eq(resp.body, b"B" * 1000,
                              "body after HEAD/204/304 on one connection")
                else:
                    expect(resp.header("transfer-encoding") is None,
                           "%s %s: Transfer-Encoding on a bodiless response"
                           % (method, path))
            # nothing stray after the last response
            expect(not rd.buf, "stray bytes after the responses: %r"
                   % bytes(rd.buf[:100]))
        finally:
            s.close()
        r = curl(w.td, gw.url("/head"), "-I")
        expect(r.rc == 0 and r.status == 200, "curl -I: %r" % r)


def test_interim_1xx_from_upstream():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(
            body=b"final\n", interim=[(103, [("Link", "</s.css>; rel=preload")])]))
        gw = w.gateway([("r", route(up, w.pki))])
        r = curl(w.td, gw.url("/hints"))
        expect_eq(r.status, 200, "final status after a 103 (%r)" % r)
        expect_eq(r.body, b"final\n", "final body")
        recs = gw.wait_access(lambda a: a.get("path") == "/hints")
        expect(recs and recs[0].get("status") == "200",
               "access status after 1xx: %r" % recs)
        # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client
        s = connect(gw.port)
        try:
            s.sendall(b"GET /hints10 HTTP/1.0\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            first = read_response(rd, skip_interim=False,
                                  deadline=time.monotonic() + 5)
        finally:
            s.close()
        expect_eq((first.status, first.body), (200, b"final\n"),
                  "first response an HTTP/1.0 device sees")


def test_expect_100_continue():
    with World() as w:
        up = w.upstream(respond=echo_sha)
        gw = w.gateway([("r", route(up, w.pki))])
        data = pattern_bytes(40000)
        path = w.td.write("e.bin", data)
        t = time.monotonic()
        r = curl(w.td, gw.url("/expect"), "--data-binary", "@" + path,
                 "-H", "Expect: 100-continue", "--expect100-timeout", "5")
        dt = time.monotonic() - t
        expect_eq(r.status, 200, "status with Expect (%r)" % r)
        expect_eq(r.body.decode(), "%s %d" % (sha256(data), len(data)),
                  "body upstream")
        expect(r.responses and r.responses[0][0] == 100 and dt < 4,
               "curl got no 100 Continue (heads %r, %.1fs)"
               % ([c for c, _ in r.responses], dt))
        # By hand: the 100 must come before we send the body.
        s = connect(gw.port)
        try:
            s.sendall(b"PUT /expect-raw HTTP/1.1\r\nHost: d\r\n"
                      b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n")
            rd = Reader(s)
            s.settimeout(5)
            try:
                first = read_response(rd, skip_interim=False)
            except (socket.timeout, Closed) as e:
                raise TestFailure("no 100 Continue within 5 s (%r)" % e)
            expect_eq(first.status, 100, "first response to Expect")
            s.sendall(b"0123456789")
            final = read_response(rd)
            expect_eq(final.status, 200, "final status")
            expect_eq(final.body.decode(),
                      "%s 10" % sha256(b"0123456789"), "body upstream")
        finally:
            s.close()
        q = [q for q in up.requests if q.target == "/expect-raw"][0]
        expect_eq(q.body, b"0123456789", "raw Expect body upstream")


def test_http10_device_never_gets_chunked():
    size = 300000
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body_size=size,
                                                   mode="chunked", seed=5))
        gw = w.gateway([("r", route(up, w.pki))])
        want = Response(body_size=size, seed=5).body_sha()
        s = connect(gw.port)
        try:
            s.sendall(b"GET /ten HTTP/1.0\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            resp = read_response(rd, deadline=time.monotonic() + 10)
        finally:
            s.close()
        expect_eq(resp.status, 200, "status")
        expect(resp.header("transfer-encoding") is None,
               "HTTP/1.0 device got Transfer-Encoding: %r" % resp.headers)
        expect(len(resp.body) == size and sha256(resp.body) == want,
               "body for the HTTP/1.0 device: %d bytes (framing %s)"
               % (len(resp.body), resp.framing))
        r = curl(w.td, gw.url("/ten-curl"), "-0")
        expect(r.status == 200 and len(r.body) == size and
               r.header("transfer-encoding") is None,
               "curl -0: status %s, %d bytes, TE %r" % (
                   r.status, len(r.body), r.header("transfer-encoding")))
        say("  HTTP/1.0 device got a %s-framed body" % resp.framing)


if __name__ == "__main__":
    run_tests(globals())
