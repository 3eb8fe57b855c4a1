#!/usr/bin/env python3
"""SIGTERM while a request is in flight (a slow upstream, like a Drogue
long-poll with ?ct=N): the device still gets its whole response, new
connections are refused at once, and the daemon exits 0 as soon as the
last request ends; a request still running after shutdown_timeout is cut
and the daemon exits 0 anyway.
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import _sdlib  # noqa: E402
from lib import expect, expect_eq  # noqa: E402


def start_curl(w, url, name):
    out = w.td.join(name)
    p = subprocess.Popen(["curl", "-sS", "--noproxy", "*", "--max-time",
                          "30", "-o", out, "-w", "%{http_code}", url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p, out


def finish_curl(p, out):
    so, se = p.communicate(timeout=40)
    try:
        with open(out, "rb") as f:
            body = f.read()
    except OSError:
        body = b""
    return p.returncode, so.decode(), body, se.decode(errors="replace")


def test_slow_response_completes_after_sigterm():
    with lib.World() as w:
        # Headers after 1.5 s, then 300 KB trickling for about 1 s more.
        slow = lib.Response(body_size=300000, delay=1.5, write_chunk=16384,
                            seed=5)
        up = w.upstream(respond=lambda req: slow)
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki))],
                        gateway={"shutdown_timeout": "20"}, env=n.env(),
                        start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        p, out = start_curl(w, g.url("/v1/poll?ct=2"), "body")
        expect(up.wait_requests(1, 5), "request did not reach the upstream")
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        n.expect("STOPPING=1", timeout=3, what="stop")
        time.sleep(0.2)
        expect(_sdlib.tcp_refused(g.port), "new connection accepted after "
               "SIGTERM")
        expect(g.alive(), "daemon exited before the request finished")
        rc, code, body, err = finish_curl(p, out)
        expect_eq((rc, code), (0, "200"), "device's result (%s)" % err)
        expect_eq(lib.sha256(body), slow.body_sha(), "whole body")
        status = _sdlib.reap(g, 5)
        expect_eq(status, 0, "exit status")
        # well within shutdown_timeout: it left when the request ended
        expect(time.monotonic() - t0 < 10, "daemon waited for the timeout")


def test_shutdown_timeout_cuts_long_request():
    with lib.World() as w:
        long = lib.Response(body=b"late\n", delay=8)
        up = w.upstream(respond=lambda req: long)
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki,
                                               upstream_timeout=30))],
                        gateway={"shutdown_timeout": "1"}, start=False)
        w.add_cleanup(g.stop)
        g.start()
        p, out = start_curl(w, g.url("/v1/poll?ct=30"), "body")
        expect(up.wait_requests(1, 5), "request did not reach the upstream")
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        status = _sdlib.reap(g, 6)
        took = time.monotonic() - t0
        expect_eq(status, 0, "exit status after shutdown_timeout")
        expect(0.8 <= took <= 3.5, lambda: "exited after %.1f s with "
               "shutdown_timeout = 1" % took)
        rc, code, body, err = finish_curl(p, out)
        expect(rc != 0 or code != "200", "request past the timeout was "
               "not cut")
        expect(any("shutdown_timeout" in ln or "still open" in ln
                   for ln in g.lines()), lambda: "no log line about the "
               "cut requests:\n" + g.log_text()[-800:])


def test_idle_keepalive_closed_at_once():
    """An idle device connection does not hold the stop up."""
    with lib.World() as w:
        up = w.upstream()
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki))],
                        gateway={"shutdown_timeout": "20"}, start=False)
        w.add_cleanup(g.stop)
        g.start()
        s = lib.connect(g.port)
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = lib.read_response(lib.Reader(s))
        expect_eq(resp.status, 200, "first response")
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        status = _sdlib.reap(g, 5)
        s.close()
        expect_eq(status, 0, "exit status")
        expect(time.monotonic() - t0 < 2, "idle connection delayed the stop")


if __name__ == "__main__":
    lib.run_tests(globals())
