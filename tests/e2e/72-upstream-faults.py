#!/usr/bin/env python3
"""Upstream faults at every stage of an exchange: connection refused, a
reset after accept or after the ClientHello, a TLS handshake that stalls
(before or inside the ServerHello: 502 at connect_timeout), garbage instead
of TLS, TLS that completes and then stalls (504 at upstream_timeout), a
close or a reset in the middle of a Content-Length or chunked body (the
device sees a short body and a closed connection, never a complete-looking
response).  After each fault, and during each stall, a request through a
second route still works."""

import os
import re
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403
from _faults import *  # noqa: E402,F403

CONNECT_TIMEOUT = 2
UPSTREAM_TIMEOUT = 3
FAST = 1.5              # an immediate failure, well below both timeouts


class Setup:
    """Routes: 0 -> a closed port, 1 -> a FaultServer, 2 -> a good
    upstream; each on its own listening port."""

    def __init__(self, w):
        self.w = w
        self.srv = FaultServer(hold, w.pki)
        w.add_cleanup(self.srv.close)
        self.up = w.upstream(respond=lambda q: Response(body=b"good\n"))
        keys = dict(connect_timeout=CONNECT_TIMEOUT,
                    upstream_timeout=UPSTREAM_TIMEOUT)
        self.gw = w.gateway([
            ("refused", route("127.0.0.1:%d" % free_port(), w.pki,
                              listen="@r", **keys)),
            ("bad", route(self.srv.addr, w.pki, listen="@b", **keys)),
            ("good", route(self.up, w.pki, listen="@g", **keys))])

    def good(self, what):
        t = time.monotonic()
        r = curl(self.w.td, self.gw.url("/good", 2), max_time=5)
        dt = time.monotonic() - t
        expect_eq((r.status, r.body), (200, b"good\n"),
                  "%s: request through the good route (%r)" % (what, r))
        return dt

    def fail(self, idx, path, status, err_re, lo, hi, what, post=False):
        """One request through route idx: want status after lo..hi s and
        an access error matching err_re.  While it is pending, a request
        through the good route is served at once."""
        out = {}

        def run():
            t = time.monotonic()
            args = ["--data-binary", "payload"] if post else []
            out["r"] = curl(self.w.td, self.gw.url(path, idx), *args,
                            max_time=hi + 5)
            out["dt"] = time.monotonic() - t
        th = threading.Thread(target=run)
        th.start()
        time.sleep(min(0.3, lo / 2) if lo else 0.05)
        dt_good = self.good(what + " (concurrent)")
        th.join()
        r, dt = out["r"], out["dt"]
        expect(r.status == status and lo <= dt <= hi,
               "%s: want %d after %.1f..%.1fs, got %s after %.2fs (%r)"
               % (what, status, lo, hi, r.status, dt, r))
        expect(dt_good < 1.5, "%s: good route took %.2fs during the fault"
               % (what, dt_good))
        recs = self.gw.wait_access(lambda a: a.get("path") == path)
        expect(recs and recs[0].get("status") == str(status) and
               re.search(err_re, recs[0].get("error", ""), re.I),
               "%s: access line %r does not match /%s/" % (what, recs, err_re))
        self.good(what + " (after)")
        say('  %-28s -> %d in %.2fs error="%s"' % (
            what, status, dt, recs[0].get("error")))


def test_connect_stage_faults():
    with World() as w:
        x = Setup(w)
        x.fail(0, "/refused", 502, r"refused", 0, FAST, "connection refused")
        x.srv.handler = reset
        x.fail(1, "/rst", 502, r"reset|closed|eof|connect|handshake", 0, FAST,
               "reset after accept")
        x.srv.handler = reset_after_hello
        x.fail(1, "/rst-hello", 502, r"reset|closed|eof|handshake", 0, FAST,
               "reset after ClientHello", post=True)
        x.srv.handler = garbage_instead_of_tls
        x.fail(1, "/garbage-tls", 502, r".", 0, FAST, "garbage instead of TLS")
        x.srv.handler = stall_handshake
        x.fail(1, "/stall-hs", 502, r"timeout", CONNECT_TIMEOUT * 0.9,
               CONNECT_TIMEOUT + 1.5, "silent in the handshake")
        x.srv.handler = stall_mid_handshake
        x.fail(1, "/stall-mid-hs", 502, r"timeout", CONNECT_TIMEOUT * 0.9,
               CONNECT_TIMEOUT + 1.5, "stall inside the ServerHello",
               post=True)


def test_response_stage_faults():
    with World() as w:
        x = Setup(w)
        x.srv.handler = tls_stall_after_request
        x.fail(1, "/stall", 504, r"timeout", UPSTREAM_TIMEOUT * 0.9,
               UPSTREAM_TIMEOUT + 1.5, "TLS ok, then no response")
        x.srv.handler = tls_answer(b"HTTP/1.1 200 OK\r\nContent-Le",
                                   then_hold=True)
        x.fail(1, "/stall-head", 504, r"timeout", UPSTREAM_TIMEOUT * 0.9,
               UPSTREAM_TIMEOUT + 1.5, "stall inside the head", post=True)
        x.srv.handler = tls_answer(b"", then_hold=False)
        x.fail(1, "/close-no-answer", 502, r"closed", 0, FAST,
               "close without an answer")
        x.srv.handler = tls_answer(b"\x00garbage\xff\r\n\r\n", then_hold=True)
        x.fail(1, "/garbage-answer", 502, r"malformed", 0, FAST,
               "garbage after TLS")


def truncating(head, body_part, rst):
    """Handler: TLS, read the request, send head + part of the body, then
    close (FIN, no close_notify) or reset the TCP connection."""
    def handler(c, srv):
        s = tls_wrap(c, srv)
        if s is None:
            return
        if read_request(s) is None:
            return
        s.sendall(head + body_part)
        time.sleep(0.2)
        if rst:
            reset(c, srv)
        else:
            c.shutdown(socket.SHUT_RDWR)
    return handler


CL_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
CH_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CH_PART = b"1000\r\n" + b"c" * 4096 + b"\r\n" + b"1000\r\n" + b"d" * 100


def raw_truncated(x, path, version=b"1.1"):
    """A raw device: returns (head, body bytes, eof) of what it received."""
    s = connect(int(x.gw.listen[1].rsplit(":", 1)[1]))
    try:
        s.sendall(b"GET %s HTTP/%s\r\nHost: d\r\n\r\n" % (path.encode(),
                                                          version))
        data, eof = recv_all(s, timeout=6)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, eof


def test_truncated_responses():
    with World() as w:
        x = Setup(w)
        for rst in (False, True):
            how = "reset" if rst else "close"
            # Content-Length: curl must report the short transfer (18)
            x.srv.handler = truncating(CL_HEAD, b"a" * 5000, rst)
            r = curl(w.td, x.gw.url("/cl-" + how, 1), max_time=8)
            expect(r.rc == 18 and r.status == 200 and len(r.body) == 5000,
                   "CL body cut by a %s: want curl exit 18 after 5000 bytes, "
                   "got %r (%d bytes)" % (how, r, len(r.body)))
            head, body, eof = raw_truncated(x, "/cl-raw-" + how)
            expect(head.startswith(b"HTTP/1.1 200") and eof and
                   len(body) == 5000 and b"content-length: 100000"
                   in head.lower(),
                   "raw device, CL body cut by a %s: head %r, %d body bytes, "
                   "eof=%s" % (how, head, len(body), eof))
            x.good("after a CL body cut by a " + how)
            # chunked: the device never gets the last chunk
            x.srv.handler = truncating(CH_HEAD, CH_PART, rst)
            r = curl(w.td, x.gw.url("/chunked-" + how, 1), max_time=8)
            expect(r.rc in (18, 56) and r.status == 200,
                   "chunked body cut by a %s: want curl exit 18 or 56, got %r"
                   % (how, r))
            head, body, eof = raw_truncated(x, "/chunked-raw-" + how)
            expect(head.startswith(b"HTTP/1.1 200") and eof and
                   b"c" * 4096 in body and not body.endswith(b"0\r\n\r\n"),
                   "raw device, chunked body cut by a %s: head %r, body ends "
                   "%r, eof=%s" % (how, head, body[-20:], eof))
            x.good("after a chunked body cut by a " + how)
            for p in ("/cl-", "/cl-raw-", "/chunked-", "/chunked-raw-"):
                recs = x.gw.wait_access(lambda a: a.get("path") == p + how)
                expect(recs and recs[0].get("error") not in (None, "-"),
                       "%s%s: access line without an error: %r"
                       % (p, how, recs))
            say("  body cut by a %s: curl exit 18, raw device saw EOF, no "
                "final chunk" % how)


def test_truncated_chunked_to_http10_device():
    """An HTTP/1.0 device gets a chunked upstream body close-delimited
    (it cannot take chunked): if the upstream dies mid-body, a plain close
    would look like the end.  The gateway must reset the connection
    instead, so that the device can tell."""
    with World() as w:
        x = Setup(w)
        x.srv.handler = truncating(CH_HEAD, CH_PART, False)
        port = int(x.gw.listen[1].rsplit(":", 1)[1])
        s = connect(port)
        got, how = b"", "?"
        try:
            s.sendall(b"GET /ten HTTP/1.0\r\nHost: d\r\n\r\n")
            s.settimeout(6)
            while True:
                try:
                    d = s.recv(65536)
                except ConnectionResetError:
                    how = "reset"
                    break
                except socket.timeout:
                    how = "timeout"
                    break
                if not d:
                    how = "clean close"
                    break
                got += d
        finally:
            s.close()
        head = got.partition(b"\r\n\r\n")[0]
        expect(head.startswith(b"HTTP/1.1 200") and
               b"transfer-encoding" not in head.lower() and
               b"content-length" not in head.lower(),
               "1.0 device: expected a close-delimited 200, got %r" % head)
        expect_eq(how, "reset", "how a truncated close-delimited body ends")
        say("  HTTP/1.0 device, truncated close-delimited body: connection "
            "reset (%d bytes)" % len(got))


if __name__ == "__main__":
    run_tests(globals())
