#!/usr/bin/env python3
"""Upstream failures: an untrusted chain, a wrong name, an expired
certificate, a refused connection, a non-TLS or silent server, a server
that closes without answering -> 502 with the reason in the access line;
a slow upstream -> 504 after upstream_timeout; verify = no works and
warns at start-up; TLS below 1.2 is refused; mutual TLS with client_cert."""

import os
import re
import socket
import ssl
import sys
import threading
import time
import warnings

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


def expect_failure(w, gw, path, status, reason_re, what, method="GET",
                   max_s=8):
    t = time.monotonic()
    args = ["-d", "x=1"] if method == "POST" else []
    r = curl(w.td, gw.url(path), *args, max_time=max_s + 5)
    dt = time.monotonic() - t
    expect_eq(r.status, status, "%s: device status (%r)" % (what, r))
    expect(dt < max_s, "%s: answer took %.1fs" % (what, dt))
    expect(0 < len(r.body) < 1024, "%s: want a short body, got %d bytes"
           % (what, len(r.body)))
    recs = gw.wait_access(lambda a: a.get("path") == path)
    expect(len(recs) == 1, "%s: want one access line for %s, got %r\nlog:\n%s"
           % (what, path, recs, gw.log_text()))
    a = recs[0]
    expect_eq(a.get("status"), str(status), "%s: access status" % what)
    err = a.get("error", "")
    expect(err not in ("", "-") and re.search(reason_re, err, re.I),
           "%s: access error=%r does not match /%s/" % (what, err, reason_re))
    say('  %s -> %d in %.1fs, error="%s"' % (what, status, dt, err))
    return r


def test_untrusted_chain():
    with World() as w:
        up = w.upstream(cert=w.pki.untrusted)
        gw = w.gateway([("r", route(up, w.pki))])
        expect_failure(w, gw, "/untrusted", 502,
                       r"issuer|unknown.ca|self.signed|untrusted|verif",
                       "untrusted CA")
        expect_eq(len(up.requests), 0, "requests that reached the upstream")


def test_wrong_name():
    with World() as w:
        up = w.upstream(cert=w.pki.wrong)
        gw = w.gateway([("r", route(up, w.pki))])
        expect_failure(w, gw, "/wrong", 502, r"hostname|mismatch|name",
                       "wrong name")
        expect_eq(len(up.requests), 0, "requests that reached the upstream")


def test_name_verified_against_sni_not_host():
    with World() as w:
        up = w.upstream()           # cert: cloud.test, *.cloud.test
        # Host matches the cert, but the verified name (sni) does not.
        gw = w.gateway([("r", route(up, w.pki, host=CLOUD,
                                    sni="other.test"))])
        expect_failure(w, gw, "/sni-mismatch", 502, r"hostname|mismatch|name",
                       "sni not in the certificate")


def test_expired():
    with World() as w:
        up = w.upstream(cert=w.pki.expired)
        gw = w.gateway([("r", route(up, w.pki))])
        expect_failure(w, gw, "/expired", 502, r"expired", "expired cert")


def test_connection_refused():
    with World() as w:
        port = free_port()
        gw = w.gateway([("r", route("127.0.0.1:%d" % port, w.pki))])
        expect_failure(w, gw, "/refused", 502, r"refused", "closed port")


def test_not_tls_and_silent_servers():
    with World() as w:
        plain = w.upstream(tls=False)
        gw = w.gateway([("r", route(plain, w.pki, connect_timeout=2))])
        expect_failure(w, gw, "/plain", 502, r".", "plain HTTP upstream")
        gw.stop()
        # accepts TCP, never says a word: bounded by the timeouts
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        w.add_cleanup(silent.close)
        held = []

        def hold():
            try:
                while True:
                    c, _ = silent.accept()
                    held.append(c)
            except OSError:
                pass
        threading.Thread(target=hold, daemon=True).start()
        w.add_cleanup(lambda: [c.close() for c in held])
        gw2 = w.gateway([("r", route("127.0.0.1:%d" % silent.getsockname()[1],
                                     w.pki, connect_timeout=1,
                                     upstream_timeout=2))], name="gw2")
        t = time.monotonic()
        r = curl(w.td, gw2.url("/silent"), max_time=10)
        dt = time.monotonic() - t
        expect(r.status in (502, 504) and dt < 4,
               "silent TLS server: want 502/504 within the timeouts, got "
               "%s after %.1fs" % (r.status, dt))
        say("  silent TLS server -> %s in %.1fs" % (r.status, dt))


def test_connect_timeout():
    with World() as w:
        # A listen queue that is full: the kernel drops further SYNs, so
        # the gateway's connect() hangs until connect_timeout.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        w.add_cleanup(ls.close)
        port = ls.getsockname()[1]
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            w.add_cleanup(s.close)
        time.sleep(0.2)
        gw = w.gateway([("r", route("127.0.0.1:%d" % port, w.pki,
                                    connect_timeout=1, upstream_timeout=5))])
        t = time.monotonic()
        r = curl(w.td, gw.url("/blackhole"), max_time=10)
        dt = time.monotonic() - t
        expect(r.status == 502 and 0.8 < dt < 3,
               "connect timeout: want 502 after ~connect_timeout=1s, got %s "
               "after %.1fs" % (r.status, dt))
        recs = gw.wait_access(lambda a: a.get("path") == "/blackhole")
        expect(recs and re.search(r"time", recs[0].get("error", ""), re.I),
               "access error for a connect timeout: %r" % recs)
        say('  connect timeout -> 502 in %.1fs, error="%s"'
            % (dt, recs[0].get("error")))


def test_malformed_upstream_response():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(
            raw=b"HTTP/1.1 2x0 Bad\r\nContent-Length: 3\r\n\r\nabc"))
        gw = w.gateway([("r", route(up, w.pki))])
        expect_failure(w, gw, "/badresp", 502, r".", "malformed status line",
                       method="POST")
        up.respond = lambda q: Response(
            raw=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                b"Content-Length: 5\r\n\r\nabcde")
        expect_failure(w, gw, "/badcl", 502, r".", "conflicting Content-Length "
                       "from upstream", method="POST")


def test_truncated_upstream_body():
    """An upstream that dies mid-body must not turn into a complete
    response for the device (RFC 9112 §8: an incomplete message)."""
    with World() as w:
        up = w.upstream(respond=lambda q: Response(raw=(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
            if q.target == "/trunc-cl" else
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1388\r\n") + b"t" * 5000))
        gw = w.gateway([("r", route(up, w.pki))])
        for path in ("/trunc-cl", "/trunc-chunked"):
            s = connect(gw.port)
            got = b""
            try:
                s.sendall(b"GET %s HTTP/1.1\r\nHost: d\r\n\r\n"
                          % path.encode())
                rd = Reader(s)
                try:
                    resp = read_response(rd, deadline=time.monotonic() + 8)
                    got = "complete %r" % resp
                except Closed:
                    got = None          # closed before the end: right
                except socket.timeout:
                    got = "no close within the timeout"
                except ValueError as e:
                    got = None if "chunk" in str(e) else repr(e)
            finally:
                s.close()
            expect(got is None, "%s: device got %s" % (path, got))
            recs = gw.wait_access(lambda a: a.get("path") == path)
            expect(recs and recs[0].get("error") not in (None, "-"),
                   "%s: access line without an error: %r" % (path, recs))
            say('  %s: device connection closed early; status=%s error="%s"'
                % (path, recs[0].get("status"), recs[0].get("error")))


def test_upstream_closes_without_response():
    with World() as w:
        up = w.upstream(respond=lambda q: None)
        gw = w.gateway([("r", route(up, w.pki))])
        expect_failure(w, gw, "/drop", 502, r".", "upstream closed mid-request",
                       method="POST")


def test_slow_upstream_504():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(delay=5))
        gw = w.gateway([("r", route(up, w.pki, upstream_timeout=2))])
        t = time.monotonic()
        r = expect_failure(w, gw, "/slow", 504, r"time", "slow upstream",
                           max_s=4.5)
        dt = time.monotonic() - t
        expect(dt >= 1.8, "504 came after %.1fs, before upstream_timeout=2" % dt)
        a = gw.wait_access(lambda a: a.get("path") == "/slow")[0]
        expect(1800 <= int(a.get("duration_ms", "0")) <= 4500,
               "duration_ms=%s for a 2 s timeout" % a.get("duration_ms"))
        # the gateway still works afterwards (a fresh request, fast upstream)
        up.respond = lambda q: Response(body=b"fast\n")
        r = curl(w.td, gw.url("/after-slow"))
        expect_eq((r.status, r.body), (200, b"fast\n"), "request after a 504")


def test_verify_no():
    with World() as w:
        up = w.upstream(cert=w.pki.untrusted)
        gw = w.gateway([("r", route(up, None, verify="no"))])
        warn = [ln for ln in gw.lines() if ln.startswith("warning: ")]
        expect(warn, "verify = no: no 'warning:' line at start-up:\n"
               + gw.log_text())
        say("  " + warn[0])
        r = curl(w.td, gw.url("/noverify"))
        expect_eq((r.status, r.body), (200, b"ok\n"),
                  "verify = no against an untrusted cert (%r)" % r)
        expect(up.wait_requests(1) and up.requests[0].sni == CLOUD,
               "SNI still sent with verify = no")
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        expect(not [ln for ln in gw.lines() if ln.startswith("warning: ")],
               "warning at start-up with verify = yes:\n" + gw.log_text())


def old_tls_upstream(w):
    """An upstream that speaks at most TLS 1.1, or None when the local
    OpenSSL cannot be made to (checked with a Python client)."""
    warnings.simplefilter("ignore", DeprecationWarning)   # TLSv1 on purpose
    try:
        up = w.upstream(min_version=ssl.TLSVersion.TLSv1,
                        max_version=ssl.TLSVersion.TLSv1_1,
                        ciphers="DEFAULT:@SECLEVEL=0")
    except (ssl.SSLError, ValueError) as e:
        say("  cannot configure a TLS 1.1 server here: %r" % e)
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", up.port), timeout=5) as c:
            with ctx.wrap_socket(c, server_hostname=CLOUD) as s:
                v = s.version()
                s.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
                read_response(Reader(s))
    except (ssl.SSLError, OSError, ValueError) as e:
        say("  a TLS 1.1 handshake is impossible with this OpenSSL: %r" % e)
        return None
    if v not in ("TLSv1", "TLSv1.1"):
        say("  self-test negotiated %s" % v)
        return None
    up.handshakes = 0
    up.requests = []
    return up


def test_tls_below_1_2_refused():
    with World() as w:
        up = old_tls_upstream(w)
        if up is None:
            say("  SKIP (this check only): the local OpenSSL cannot serve "
                "TLS 1.1, so the TLS 1.2 minimum cannot be exercised")
            return
        gw = w.gateway([("r", route(up, w.pki))])
        expect_failure(w, gw, "/tls11", 502, r".", "TLS 1.1-only upstream")
        expect_eq(len(up.requests), 0, "requests sent over TLS 1.1")


def test_mutual_tls_client_cert():
    with World() as w:
        up = w.upstream(client_ca=w.pki.ca_file)
        crt, key = w.pki.client
        gw = w.gateway([("r", route(up, w.pki, client_cert=crt,
                                    client_key=key))])
        r = curl(w.td, gw.url("/mtls"))
        expect_eq(r.status, 200, "with client_cert (%r)" % r)
        expect(up.wait_requests(1), "upstream saw no request")
        expect_eq(up.requests[0].peer_cn, "device-gw.test",
                  "client certificate seen upstream")
        gw.stop()
        gw2 = w.gateway([("r", route(up, w.pki))], name="gw2")
        r = curl(w.td, gw2.url("/no-mtls"), "-d", "x")
        expect_eq(r.status, 502, "upstream demanding a client cert, none "
                  "configured (%r)" % r)


def test_cut_response_reaches_slow_device():
    """When the upstream closes in the middle of a Content-Length body
    while a slow device still has relayed bytes waiting in the gateway,
    the device gets every byte the upstream sent, then the close: the
    framing tells it the body is incomplete."""
    sent = 1000000
    with World() as w:
        up = w.upstream(respond=lambda q: Response(raw=(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n" +
            b"s" * sent)))
        gw = w.gateway([("r", route(up, w.pki))])
        s = connect(gw.port, rcvbuf=4096)
        s.sendall(b"GET /slow-cut HTTP/1.1\r\nHost: d\r\n\r\n")
        data, eof = b"", False
        deadline = time.monotonic() + 20
        s.settimeout(5)
        while time.monotonic() < deadline:
            d = s.recv(4096)
            if not d:
                eof = True
                break
            data += d
            time.sleep(0.0005)      # a device slower than the uplink
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        expect(head.startswith(b"HTTP/1.1 200") and eof,
               "head %r, eof=%s" % (head[:40], eof))
        expect_eq(len(body), sent, "body bytes the slow device received "
                  "before the close")
        recs = gw.wait_access(lambda a: a.get("path") == "/slow-cut")
        expect(recs and recs[0].get("error") not in (None, "-"),
               "access line without an error: %r" % recs)
        say("  slow device got all %d relayed bytes, then EOF" % sent)


if __name__ == "__main__":
    run_tests(globals())
