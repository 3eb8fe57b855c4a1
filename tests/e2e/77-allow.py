#!/usr/bin/env python3
"""Per-route `allow` access lists (tlsgate.conf(5), ACCESS LISTS).

refused    a source no route on the address allows: the connection is
           closed without a byte read or sent, the upstream sees nothing,
           one "refused by allow" line
allowed    a network that contains the source: served as usual
shared     two routes on one address (match_path), each allowing another
           source: the one that does not allow the device answers 403
           before the body is read, with an access line; the other serves
log limit  refusals in a burst give one line; the next line, a second
           later, counts the ones left out (LISTENER_REFUSED_LOG_MS)
ipv6       a [::1] listener with ::1/128 serves, with ::2 refuses
reload     SIGHUP with a wider list: new connections are let in
The whole 127.0.0.0/8 is loopback on Linux, so 127.0.0.2 is a second
source address on the same machine."""

import errno
import os
import re
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

REFUSED = "refused by allow"


def refused_lines(gw):
    return [ln for ln in gw.lines() if REFUSED in ln]


def wait_refused(gw, n, timeout=5):
    end = time.monotonic() + timeout
    while True:
        got = refused_lines(gw)
        if len(got) >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


def raw_from(src, port, data, host="127.0.0.1", timeout=5):
    """Sends data from source address src; returns every byte received
    until the gateway closes (a reset counts as a close)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    got = b""
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect((host, port))
        try:
            s.sendall(data)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
        else:
            raise TestFailure("connection from %s still open after %ss"
                              % (src, timeout))
    finally:
        s.close()
    return got


def expect_refused(w, url, what, interface=None):
    args = ["--interface", interface] if interface else []
    r = curl(w.td, url, *args, max_time=5)
    expect(r.status is None and r.rc in (52, 56),
           "%s: expected the connection closed without a response, got %r"
           % (what, r))


def test_refused_before_parsing():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("lan", route(up, w.pki, allow="127.0.0.2/32"))])
        expect_refused(w, gw.url("/v1/t"), "curl from 127.0.0.1")
        got = raw_from("127.0.0.1", gw.port,
                       b"POST /v1/t HTTP/1.1\r\nHost: d\r\n"
                       b"Content-Length: 5\r\n\r\nhello")
        expect_eq(got, b"", "bytes sent to a refused source")
        lines = wait_refused(gw, 1)
        expect(lines, lambda: "no refused line; log:\n" + gw.log_text())
        want = "warning: listen %s: connection from 127.0.0.1 %s" % (
            gw.listen[0], REFUSED)
        expect_eq(lines[0], want, "refused line")
        # The allowed source on the same socket is served.
        r = curl(w.td, gw.url("/v1/ok"), "--interface", "127.0.0.2")
        expect_eq(r.status, 200, "curl from 127.0.0.2 (%r)" % r)
        recs = gw.wait_access(lambda a: a.get("status") == "200")
        expect_eq(len(recs), 1, "access lines with status=200")
        expect(recs[0]["client"].startswith("127.0.0.2:"),
               "client in %r" % recs[0])
        expect_eq([q.target for q in up.requests], ["/v1/ok"],
                  "requests the upstream saw")
        expect_eq(up.connections, 1, "upstream connections")
        expect_eq(len(gw.access()), 1, "access lines (refusals have none)")


def test_allowed_network():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("lan", route(up, w.pki,
                                      allow="10.0.0.0/8, 127.0.0.0/8"))])
        for src in ("127.0.0.1", "127.0.0.2", "127.1.2.3"):
            r = curl(w.td, gw.url("/v1/" + src), "--interface", src)
            expect_eq(r.status, 200, "curl from %s (%r)" % (src, r))
        expect_eq(len(up.requests), 3, "requests upstream")
        expect_eq(refused_lines(gw), [], "refused lines")


def test_shared_address_403():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([
            ("one", route(up, w.pki, listen="@a", match_path="/one/",
                          allow="127.0.0.1")),
            ("two", route(up, w.pki, listen="@a", match_path="/two/",
                          allow="127.0.0.2/32 ::1")),
        ])
        r = curl(w.td, gw.url("/one/x"))
        expect_eq(r.status, 200, "route one from 127.0.0.1 (%r)" % r)
        # Route two does not serve 127.0.0.1: 403, its body never read
        # and nothing sent upstream.
        resp, closed, raw = raw_request(
            gw.port, b"POST /two/x HTTP/1.1\r\nHost: d\r\n"
            b"Content-Length: 5\r\n\r\nhello", close_wait=2)
        expect(resp is not None, "no response (got %r)" % raw)
        expect_eq(resp.status, 403, "route two from 127.0.0.1")
        expect(any("close" in v.lower()
                   for v in hall(resp.headers, "connection")),
               "no Connection: close in %r" % resp.headers)
        expect(closed, "connection left open after 403")
        recs = gw.wait_access(lambda a: a.get("status") == "403")
        expect_eq(len(recs), 1, "access lines with status=403")
        expect_eq(recs[0]["route"], "two", "route of the 403")
        expect_eq(recs[0]["path"], "/two/x", "path of the 403")
        # The other source gets the opposite answers.
        r = curl(w.td, gw.url("/two/y"), "--interface", "127.0.0.2")
        expect_eq(r.status, 200, "route two from 127.0.0.2 (%r)" % r)
        r = curl(w.td, gw.url("/one/y"), "--interface", "127.0.0.2")
        expect_eq(r.status, 403, "route one from 127.0.0.2 (%r)" % r)
        expect_eq(sorted(q.target for q in up.requests), ["/one/x", "/two/y"],
                  "requests the upstream saw")
        # A source neither route allows is refused at accept.
        expect_refused(w, gw.url("/one/z"), "curl from 127.0.0.3",
                       interface="127.0.0.3")
        expect(wait_refused(gw, 1), "no refused line for 127.0.0.3")
        expect_eq(len(gw.access()), 4, "access lines")


def test_refused_log_limit():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("lan", route(up, w.pki, allow="127.0.0.2"))])
        t0 = time.monotonic()
        for _ in range(5):
            expect_eq(raw_from("127.0.0.1", gw.port, b"GET / HTTP/1.1\r\n"
                               b"Host: d\r\n\r\n"), b"", "bytes received")
        burst = time.monotonic() - t0
        wait_refused(gw, 1)
        time.sleep(0.3)
        first = refused_lines(gw)
        if burst < 0.9:
            expect_eq(len(first), 1, "refused lines after a burst of 5 "
                      "in %.2fs" % burst)
        time.sleep(1.1)
        raw_from("127.0.0.1", gw.port, b"")
        lines = wait_refused(gw, len(first) + 1)
        expect_eq(len(lines), len(first) + 1, "refused lines")
        # Every refusal is accounted for: logged, or counted by the
        # next line.
        quiet = [int(m.group(1)) for m in
                 (re.search(r"\(and (\d+) more not logged\)$", ln)
                  for ln in lines) if m]
        expect_eq(len(lines) + sum(quiet), 6, "refusals in %r" % lines)
        if burst < 0.9:
            expect(lines[-1].endswith("(and 4 more not logged)"),
                   "last refused line: %r" % lines[-1])
        expect_eq(up.connections, 0, "upstream connections")


def test_ipv6():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([
            ("v6", route(up, w.pki, listen="@6a", allow="::1/128")),
            ("other", route(up, w.pki, listen="@6b", allow="::2")),
        ])
        r = curl(w.td, gw.url("/v6", 0))
        expect_eq(r.status, 200, "[::1] with allow ::1 (%r)" % r)
        port = int(gw.listen[1].rsplit(":", 1)[1])
        got = raw_from("::1", port, b"GET / HTTP/1.1\r\nHost: d\r\n\r\n",
                       host="::1")
        expect_eq(got, b"", "bytes from a refusing [::1] listener")
        lines = wait_refused(gw, 1)
        expect(lines and lines[0].endswith("connection from ::1 " + REFUSED),
               "refused line: %r" % lines)
        expect_eq(len(up.requests), 1, "requests upstream")


def test_reload():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("lan", route(up, w.pki, allow="127.0.0.2"))])
        expect_refused(w, gw.url("/a"), "before the reload")
        text = gw.text.replace("allow = 127.0.0.2", "allow = 127.0.0.0/8")
        expect(text != gw.text, "allow line not found in the config")
        with open(gw.conf, "w") as f:
            f.write(text)
        gw.proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 5
        while not any("reloaded" in ln for ln in gw.lines()):
            expect(time.monotonic() < end, lambda: "no reload; log:\n" +
                   gw.log_text())
            time.sleep(0.05)
        r = curl(w.td, gw.url("/b"))
        expect_eq(r.status, 200, "after the reload (%r)" % r)
        expect_eq([q.target for q in up.requests], ["/b"], "upstream requests")


if __name__ == "__main__":
    run_tests(globals())
