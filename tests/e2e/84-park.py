#!/usr/bin/env python3
"""Parked idle device connections (PROXY_PARK_AFTER_MS, src/park.c): a
keep-alive connection idle for more than a second gives up its session and
keeps only its socket; the next request on it is served as before, on the
configuration current at that moment; the rest of idle_timeout still
closes it; a device that goes away while parked (close, reset or
half-close) releases the descriptor;
SIGTERM closes parked connections at once."""

import os
import signal
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403
from _faults import fd_count  # noqa: E402

PARK_S = 1.0        # PROXY_PARK_AFTER_MS


def get(s, path, host="d"):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(),
                                                       host.encode()))
    rd = Reader(s)
    return read_response(rd)


def wait_log(gw, text, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in gw.log_text():
            return True
        time.sleep(0.05)
    return False


def test_parked_connection_serves_next_request():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body=b"ok\n"))
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"log_level": "debug", "idle_timeout": 30})
        s = connect(gw.port)
        r = get(s, "/one")
        expect_eq(r.status, 200, "first request")
        expect(wait_log(gw, ": parked"), "no 'parked' line after %.1f s idle"
               % PARK_S)
        for i in range(3):
            r = get(s, "/again%d" % i)
            expect_eq(r.status, 200, "request %d after parking" % i)
            expect_eq(r.body, b"ok\n", "body after parking")
        expect("unparked" in gw.log_text(), "no 'unparked' line")
        recs = gw.wait_access(lambda a: a.get("path", "").startswith(
            "/again"), n=3)
        expect_eq(len(recs), 3, "access lines after unparking")
        expect(recs[0].get("client", "").startswith("127.0.0.1:"),
               "client of an unparked session: %r" % recs[0].get("client"))
        s.close()


def test_idle_timeout_still_closes_a_parked_connection():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"log_level": "debug", "idle_timeout": 3})
        s = connect(gw.port)
        expect_eq(get(s, "/x").status, 200, "request")
        t0 = time.monotonic()
        expect(wait_log(gw, ": parked"), "not parked")
        s.settimeout(10)
        d = s.recv(10)
        dt = time.monotonic() - t0
        expect_eq(d, b"", "bytes from a timed-out parked connection")
        expect(2.5 <= dt <= 5.0, "closed %.2f s after the response; "
               "idle_timeout is 3 s" % dt)
        expect(wait_log(gw, "parked connection closed: idle timeout"),
               "no log line for the idle timeout")


def test_device_gone_while_parked_releases_descriptor():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"log_level": "debug", "idle_timeout": 60})
        pid = gw.pid()
        fd0 = fd_count(pid)
        socks = [connect(gw.port) for _ in range(20)]
        for i, s in enumerate(socks):
            expect_eq(get(s, "/g%d" % i).status, 200, "request %d" % i)
        time.sleep(PARK_S + 0.8)
        expect_eq(gw.log_text().count(": parked"), 20, "parked sessions")
        # A third close, a third reset (RST: the parked socket reports an
        # error, not an EOF), a third half-close their connections.
        for i, s in enumerate(socks):
            if i % 3 == 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
            elif i % 3 == 2:
                s.shutdown(socket.SHUT_WR)
                continue
            s.close()
        end = time.monotonic() + 5
        while fd_count(pid) > fd0 + 1 and time.monotonic() < end:
            time.sleep(0.05)
        expect(fd_count(pid) <= fd0 + 1, "daemon holds %d fds after the "
               "devices left (%d before)" % (fd_count(pid), fd0))
        for s in socks:
            s.close()
        expect(gw.alive(), "daemon died")


def test_reload_while_parked_uses_new_config():
    with World() as w:
        a = w.upstream(respond=lambda q: Response(body=b"a\n"))
        b = w.upstream(respond=lambda q: Response(body=b"b\n"))
        gw = w.gateway([("r", route(a, w.pki, listen="@x"))],
                       gateway={"log_level": "debug", "idle_timeout": 60})
        s = connect(gw.port)
        expect_eq(get(s, "/1").body, b"a\n", "before the reload")
        expect(wait_log(gw, ": parked"), "not parked")
        gw.routes = [("r", route(b, w.pki, listen="127.0.0.1:%d" % gw.port))]
        gw._write_conf()
        gw.proc.send_signal(signal.SIGHUP)
        expect(wait_log(gw, "reload"), "no reload line")
        time.sleep(0.3)
        expect_eq(get(s, "/2").body, b"b\n", "after the reload, same "
                  "device connection")
        s.close()


def test_sigterm_closes_parked_connections_at_once():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"log_level": "debug", "idle_timeout": 60,
                                "shutdown_timeout": 30})
        socks = [connect(gw.port) for _ in range(5)]
        for s in socks:
            expect_eq(get(s, "/t").status, 200, "request")
        time.sleep(PARK_S + 0.8)
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        rc = gw.proc.wait(timeout=10)
        dt = time.monotonic() - t0
        expect_eq(rc, 0, "exit status")
        expect(dt < 2.0, "exit took %.2f s with only parked connections"
               % dt)
        for s in socks:
            s.settimeout(2)
            expect_eq(s.recv(10), b"", "parked connection closed")
            s.close()
        gw.stopped = True
        gw.log_f.close()
        marks = [m for m in SANITIZER_MARKS if m in gw.log_text()]
        expect(not marks, "sanitizer report: %s" % marks)


if __name__ == "__main__":
    run_tests(globals())
