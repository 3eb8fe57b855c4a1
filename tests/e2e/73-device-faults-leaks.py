#!/usr/bin/env python3
"""Devices that go away mid-exchange, and leaks.

A device that disconnects mid-upload or mid-response: the uplink
connection of that exchange is closed (the upstream sees it go), never
pooled, and the next request uses a fresh one.  Then 10,000 requests from
several raw-socket client threads, most on keep-alive connections, with
faults mixed in (heads cut short, malformed requests, uploads and
downloads abandoned, resets, upstream drops): the daemon's descriptors
come back to the baseline (plus at most the idle pool) and its RSS does
not keep growing.  When valgrind is installed and the daemon is not a
sanitizer build, a shorter faulty run under valgrind must report no
definite leak and no memory error (the ASan build gets LeakSanitizer
through `make asan` instead)."""

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import *  # noqa: E402,F403
from _faults import fd_kinds, rss_kb  # noqa: E402

POOL_MAX = 128          # UPSTREAM_POOL_MAX in src/upstream.h
TOTAL = 10000
THREADS = 8
BIG = 256 * 1024


def respond(q):
    if q.target.startswith("/big"):
        return Response(body_size=BIG)
    if q.target.startswith("/drop"):
        return None
    return Response(body=b"ok\n")


def conn_closed_upstream(up, cid, timeout=3):
    """True when the upstream's handler for connection cid ended with an
    error (the gateway closed it mid-exchange)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with up.lock:
            if any(e.startswith("conn %d:" % cid) for e in up.errors):
                return True
        time.sleep(0.05)
    return False


def test_disconnect_mid_upload():
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"max_body_size": 1 << 20})
        r = curl(w.td, gw.url("/warm"))
        expect_eq(r.status, 200, "warm-up request")
        cid = up.requests[-1].conn_id       # now idle in the pool
        s = connect(gw.port)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: d\r\n"
                  b"Content-Length: 1000000\r\n\r\n" + b"u" * 100000)
        time.sleep(0.3)
        s.close()
        expect(conn_closed_upstream(up, cid),
               "the uplink of an abandoned upload was not closed; upstream "
               "errors: %r" % up.errors)
        r = curl(w.td, gw.url("/after-upload"))
        expect_eq(r.status, 200, "request after the abandoned upload")
        q = up.requests[-1]
        expect(q.target == "/after-upload" and q.conn_id != cid,
               "the dirty uplink was reused: %r" % q)
        expect(not [q for q in up.requests if q.target == "/upload"],
               "the abandoned upload reached the upstream as complete")
        recs = gw.wait_access(lambda a: a.get("path") == "/upload")
        expect(recs and recs[0].get("error") not in (None, "-"),
               "access line of the abandoned upload: %r" % recs)
        say('  abandoned upload: uplink %d closed, next request on %d, '
            'error="%s"' % (cid, q.conn_id, recs[0].get("error")))


def test_disconnect_mid_response():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(body_size=50 << 20)
                        if q.target == "/huge" else Response(body=b"ok\n"))
        gw = w.gateway([("r", route(up, w.pki))])
        r = curl(w.td, gw.url("/warm"))
        expect_eq(r.status, 200, "warm-up request")
        cid = up.requests[-1].conn_id
        for how in ("close", "reset"):
            s = connect(gw.port, rcvbuf=16384)
            s.sendall(b"GET /huge HTTP/1.1\r\nHost: d\r\n\r\n")
            got = s.recv(4096)
            expect(got.startswith(b"HTTP/1.1 200"), "head of /huge: %r"
                   % got[:40])
            time.sleep(0.2)
            if how == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
            s.close()
            expect(conn_closed_upstream(up, cid),
                   "device %s mid-response: uplink %d not closed; upstream "
                   "errors: %r" % (how, cid, up.errors))
            r = curl(w.td, gw.url("/after-" + how))
            expect_eq(r.status, 200, "request after the abandoned download")
            q = up.requests[-1]
            expect(q.conn_id != cid, "the dirty uplink was reused: %r" % q)
            say("  device %s mid-response: uplink %d closed, next request "
                "on %d" % (how, cid, q.conn_id))
            cid = q.conn_id


# ---------------------------------------------------------------------------
# The fd test

class Client:
    """A minimal keep-alive HTTP/1.1 client on a raw socket."""

    def __init__(self, port):
        self.port = port
        self.s = None
        self.buf = b""

    def open(self):
        self.close()
        self.s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self, rst=False):
        if self.s is not None:
            if rst:
                self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            self.s.close()
            self.s = None

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise Closed()
        self.buf += d

    def response(self, body=True):
        """(status, keep-alive) of one response; reads its body."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        m = re.search(rb"\r\ncontent-length: *(\d+)", low)
        if not body:
            return status, False
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            self.buf = self.buf[n:]
        elif b"transfer-encoding: chunked" in low:
            while not self.buf.endswith(b"\r\n0\r\n\r\n") and \
                    self.buf != b"0\r\n\r\n":
                self._fill()
            self.buf = b""
        return status, b"connection: close" not in low


def worker(port, ids, stats, errors):
    c = Client(port)
    for i in ids:
        kind = i % 50
        try:
            if kind == 1:       # head cut short, then gone
                c.open()
                c.s.sendall(b"GET /cut HTTP/1.1\r\nHost: d\r\nX-A: b")
                c.close()
            elif kind == 2:     # malformed: 400 and close
                c.open()
                c.s.sendall(b"GET /bad HTTP/1.1\r\nHost: d\r\n"
                            b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n")
                st, _ = c.response()
                if st != 400:
                    raise ValueError("malformed request got %d" % st)
                c.close()
            elif kind == 3:     # upload abandoned
                c.open()
                c.s.sendall(b"POST /up HTTP/1.1\r\nHost: d\r\n"
                            b"Content-Length: 100000\r\n\r\n" + b"u" * 20000)
                c.close()
            elif kind == 4:     # download abandoned after the head
                c.open()
                c.s.sendall(b"GET /big HTTP/1.1\r\nHost: d\r\n\r\n")
                st, _ = c.response(body=False)
                c.close()
            elif kind == 5:     # upstream drops the request: 502, kept
                if c.s is None:
                    c.open()
                c.s.sendall(b"GET /drop HTTP/1.1\r\nHost: d\r\n\r\n")
                st, keep = c.response()
                if st != 502:
                    raise ValueError("dropped request got %d" % st)
                if not keep:
                    c.close()
            elif kind == 6:     # connect and go
                c.open()
                c.close()
            elif kind == 7:     # request, then a reset before the answer
                c.open()
                c.s.sendall(b"GET /rst HTTP/1.1\r\nHost: d\r\n\r\n")
                c.close(rst=True)
            else:               # the ordinary keep-alive request
                if c.s is None or i % 100 == 0:
                    c.open()
                c.s.sendall(b"GET /n%d HTTP/1.1\r\nHost: d\r\n\r\n" % i)
                st, keep = c.response()
                if st != 200:
                    raise ValueError("request %d got %d" % (i, st))
                if not keep:
                    c.close()
            stats[kind] = stats.get(kind, 0) + 1
        except (OSError, Closed, ValueError) as e:
            errors.append("request %d (kind %d): %r" % (i, kind, e))
            c.close()
    c.close()


def run_load(port, ids):
    """Runs the requests `ids` over THREADS workers; returns (counts by
    kind, errors)."""
    stats = [dict() for _ in range(THREADS)]
    errors = []
    ths = [threading.Thread(target=worker, args=(port, ids[k::THREADS],
                                                 stats[k], errors))
           for k in range(THREADS)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    total = {}
    for st in stats:
        for k, v in st.items():
            total[k] = total.get(k, 0) + v
    return total, errors


def settle_fds(gw, up, timeout, other):
    """Waits until the daemon holds no device connection (sessions end
    after PROXY_LINGER or idle_timeout) and at most `other` other fds (a
    socket being torn down may be missing from /proc/net/tcp for a
    moment); returns fd_kinds()."""
    end = time.monotonic() + timeout
    k = fd_kinds(gw.pid(), gw.port, up.port)
    while (k["device"] or k["other"] > other) and time.monotonic() < end:
        time.sleep(0.2)
        k = fd_kinds(gw.pid(), gw.port, up.port)
    return k


def test_fds_and_rss_after_10000_faulty_requests():
    with World() as w:
        up = w.upstream(respond=respond)
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"header_timeout": 2, "idle_timeout": 2,
                                "max_body_size": 1 << 20})
        pid = gw.pid()
        base = fd_kinds(pid, gw.port, up.port)  # no session, empty pool
        # warm-up: fill the pool, let OpenSSL and libevent allocate
        run_load(gw.port, list(range(100000, 100200)))
        warm = settle_fds(gw, up, 6, base["other"])
        base_rss = rss_kb(pid)
        t0 = time.monotonic()
        half = TOTAL // 2
        st1, err1 = run_load(gw.port, list(range(half)))
        mid_rss = rss_kb(pid)
        mid = fd_kinds(pid, gw.port, up.port)
        st2, err2 = run_load(gw.port, list(range(half, TOTAL)))
        dt = time.monotonic() - t0
        errors = err1 + err2
        # lingering closes (PROXY_LINGER 2 s) and idle_timeout 2 s
        end = settle_fds(gw, up, 8, base["other"])
        end_rss = rss_kb(pid)
        kinds = {k: st1.get(k, 0) + st2.get(k, 0) for k in set(st1) | set(st2)}
        done = sum(kinds.values())
        faults = sum(v for k, v in kinds.items() if 1 <= k <= 7)
        say("  %d requests (%d with faults) in %.1fs (%.0f/s), %d client "
            "errors" % (done, faults, dt, done / dt, len(errors)))
        for name, k in (("at start", base), ("after warm-up", warm),
                        ("mid-run", mid), ("at the end", end)):
            say("  fds %-13s: %3d (%d device, %d uplink, %d other)" % (
                name, sum(k.values()), k["device"], k["uplink"],
                k["other"]))
        say("  RSS: %d KB at baseline, %d KB after %d, %d KB after %d "
            "requests" % (base_rss, mid_rss, half, end_rss, TOTAL))
        expect(gw.alive(), "daemon died under load")
        expect(len(errors) <= TOTAL // 1000,
               "%d client errors, e.g. %s" % (len(errors), errors[:5]))
        expect(done >= TOTAL - TOTAL // 1000, "only %d of %d requests done"
               % (done, TOTAL))
        expect(end["device"] == 0 and end["uplink"] <= POOL_MAX and
               end["other"] == base["other"],
               "fd leak: %r at the end, %r at start (idle pool max %d)"
               % (end, base, POOL_MAX))
        # ASan's quarantine holds freed memory (up to 256 MB): RSS says
        # nothing there, and LeakSanitizer checks at exit instead.
        growth2 = end_rss - mid_rss
        expect(is_sanitized() or growth2 <= 2048,
               "RSS keeps growing: +%d KB over the second %d requests "
               "(bound 2048 KB)" % (growth2, TOTAL - half))
        r = curl(w.td, gw.url("/final"))
        expect_eq(r.status, 200, "request after the run")


# ---------------------------------------------------------------------------
# valgrind

def test_valgrind_faulty_run():
    vg = shutil.which("valgrind")
    if vg is None or is_sanitized():
        say("  SKIP (this check only): %s" % (
            "valgrind is not installed" if vg is None else
            "sanitizer build: LeakSanitizer checks leaks instead"))
        return
    with World() as w:
        up = w.upstream(respond=respond)
        vlog = w.td.join("valgrind.log")
        wrapper = w.td.write("tlsgate-vg.sh", (
            "#!/bin/sh\nexec %s --quiet --leak-check=full "
            "--errors-for-leak-kinds=definite --error-exitcode=99 "
            "--log-file=%s %s \"$@\"\n" % (vg, vlog, lib.TLSGATE)))
        os.chmod(wrapper, 0o755)
        real = lib.TLSGATE
        lib.TLSGATE = wrapper
        try:
            gw = Gateway(w.td, [("r", route(up, w.pki, connect_timeout=10,
                                            upstream_timeout=20))],
                         gateway={"header_timeout": 5, "idle_timeout": 5,
                                  "max_body_size": 1 << 20},
                         start=False, name="vg")
            w.add_cleanup(gw.stop)
            gw.start(timeout=60)
        finally:
            lib.TLSGATE = real
        st, errors = run_load(gw.port, list(range(400)))
        expect(len(errors) <= 4, "client errors under valgrind: %s"
               % errors[:5])
        time.sleep(3)
        gw.proc.send_signal(15)
        try:
            rc = gw.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            rc = gw.proc.wait()
        gw.stopped = True
        gw.log_f.close()
        with open(vlog, errors="replace") as f:
            report = f.read()
        expect(rc == 0, "daemon under valgrind exited with %s; valgrind:\n%s"
               % (rc, report[-3000:]))
        expect(not re.search(r"definitely lost: [1-9]", report) and
               "Invalid read" not in report and "Invalid write" not in report
               and "uninitialised" not in report,
               "valgrind report:\n" + report[-4000:])
        say("  valgrind: %d requests with faults, exit %d, no definite leak "
            "and no memory error" % (sum(st.values()), rc))


if __name__ == "__main__":
    run_tests(globals())
