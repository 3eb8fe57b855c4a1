#!/usr/bin/env python3
"""Several servers per route: round-robin, health checks, failover
(docs/design.md, "Several servers and health checks").

The upstreams answer every request with Connection: close, so that each
request needs a new uplink connection and the order in which servers are
picked shows in which upstream saw which request (pooled connections are
reused whatever their server: load spreads by connection).

active     health_check = GET /health every second, rise 2, fall 2:
           round-robin A B C; B killed -> "down" line, traffic goes to A
           and C only, also once B listens again but answers its checks
           with 503; B's checks good again -> "up (2 good checks)" line,
           round-robin over the three again; every server killed ->
           "all servers down" once, 503 with Retry-After: health_interval
           and the reason in the access line
stop       SIGHUP, then SIGTERM, each while a check waits on a server that
           does not answer: the checks are cancelled (no leak under ASan,
           no late callback), the new configuration checks too, and the
           daemon stops at once
pooling    keep-alive answers: a burst of 6 concurrent requests opens 6
           connections, 2 per server; 30 more requests reuse them (the
           pool is per route: balancing is by connection)
passive    no health_check, health_fall 2: a refused connection moves the
           request to the next server (the device sees 200), the second
           one takes B down; B is left alone until health_interval has
           passed, then one trial request brings it back; every server
           killed -> 502 while failures are counted, then 503
"""

import os
import re
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

CHECK_PATH = "/health"


class Server(Upstream):
    """A recording upstream whose data responses close the connection and
    whose /health answer is self.health (a status code).  port: listen on
    this port (a server revived where it was) instead of a new one."""

    def __init__(self, pki, port=None):
        self.health = 200
        self.health_delay = 0
        self.keep = False       # data responses keep the connection
        self.barrier = None     # data responses wait for each other
        self._want = port
        self._bound = threading.Event()
        self._bind_err = None
        super().__init__(pki, respond=self._respond)
        if not self._bound.wait(10) or self._bind_err:
            self.close()
            raise TestFailure("cannot listen on port %s again: %r"
                              % (port, self._bind_err))

    def _respond(self, q):
        if q.target == CHECK_PATH:
            return Response(status=self.health, delay=self.health_delay)
        if self.barrier is not None:
            self.barrier.wait()
        return Response(close=not self.keep)

    def _accept_loop(self):
        # Runs before the accept loop proper, so that swapping the
        # listening socket races with nothing.
        if self._want is not None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self._want))
                s.listen(64)
            except OSError as e:
                self._bind_err = e
                s.close()
                self._bound.set()
                return
            self.sock.close()
            self.sock = s
            self.port = self._want
            self.addr = "127.0.0.1:%d" % self._want
        self._bound.set()
        super()._accept_loop()

    def data_targets(self):
        with self.lock:
            return [q.target for q in self.requests
                    if q.target != CHECK_PATH]

    def checks(self):
        with self.lock:
            return sum(1 for q in self.requests if q.target == CHECK_PATH)


def serve(w, port=None):
    s = Server(w.pki, port)
    w.add_cleanup(s.close)
    return s


def balanced_route(servers, **keys):
    return route(" ".join(s.addr for s in servers), shared_pki(), **keys)


def wait_line(gw, regex, timeout, what):
    """The first log line matching regex, waiting up to timeout s."""
    end = time.monotonic() + timeout
    rx = re.compile(regex)
    while True:
        got = [ln for ln in gw.lines() if rx.search(ln)]
        if got:
            return got[0]
        expect(time.monotonic() < end, lambda: "no %s line after %ss; "
               "log:\n%s" % (what, timeout, gw.log_text()))
        time.sleep(0.05)


def wait_checks(servers, n, timeout=10, base=None):
    """Waits until each server got n more health checks than base (a
    list of counts; default: now)."""
    base = base or [s.checks() for s in servers]
    end = time.monotonic() + timeout
    while any(s.checks() < b + n for s, b in zip(servers, base)):
        expect(time.monotonic() < end, "health checks stopped: %r"
               % [s.checks() for s in servers])
        time.sleep(0.05)


def get_all(w, gw, paths):
    for p in paths:
        r = curl(w.td, gw.url(p))
        expect_eq(r.status, 200, "GET %s (%r)" % (p, r))


def owner(servers, path):
    got = [i for i, s in enumerate(servers) if path in s.data_targets()]
    expect(len(got) == 1, "%s reached servers %r" % (path, got))
    return got[0]


def expect_round_robin(servers, paths, among):
    """paths went, in order, to the servers `among` in turn."""
    seq = [owner(servers, p) for p in paths]
    first = among.index(seq[0])
    want = [among[(first + k) % len(among)] for k in range(len(paths))]
    expect_eq(seq, want, "servers that got %s..%s" % (paths[0], paths[-1]))


def down_re(server, reason):
    return (r"^warning: route r: server %s down \(%s, \d+ failures\)$"
            % (re.escape(server.addr), reason))


def expect_503(w, gw, path, retry_after):
    r = curl(w.td, gw.url(path))
    expect_eq(r.status, 503, "GET %s with every server down (%r)"
              % (path, r))
    expect_eq(r.header("retry-after"), str(retry_after), "Retry-After")
    recs = gw.wait_access(lambda a: a.get("path") == path)
    expect(len(recs) == 1 and recs[0].get("status") == "503" and
           recs[0].get("error") == "all servers down",
           "access line of %s: %r" % (path, recs))


def test_active_checks():
    with World() as w:
        a, b, c = serve(w), serve(w), serve(w)
        servers = [a, b, c]
        gw = w.gateway([("r", balanced_route(
            servers, health_check="GET " + CHECK_PATH, health_interval=1,
            health_timeout=1, health_rise=2, health_fall=2))])
        # Checks run from start-up, with the route's Host and SNI.
        wait_checks(servers, 1, base=[0, 0, 0])
        q = [x for x in a.requests if x.target == CHECK_PATH][0]
        expect_eq((q.method, q.header("host"), q.header("connection"),
                   q.sni), ("GET", CLOUD, "close", CLOUD), "health check")

        paths = ["/rr/%d" % i for i in range(6)]
        get_all(w, gw, paths)
        expect_round_robin(servers, paths, [0, 1, 2])

        b.close()
        t = time.monotonic()
        line = wait_line(gw, down_re(b, "health check: connect: "
                                     "Connection refused"), 10, "down")
        say("  %s (%.1fs after the kill)" % (line, time.monotonic() - t))
        # Listening again but failing its checks: still skipped.
        b2 = serve(w, b.port)
        b2.health = 503
        servers[1] = b2
        paths = ["/ac/%d" % i for i in range(6)]
        get_all(w, gw, paths)
        expect_round_robin(servers, paths, [0, 2])
        wait_checks([b2], 2)
        expect_eq(b2.data_targets(), [], "requests sent to a down server")

        b2.health = 404
        t = time.monotonic()
        line = wait_line(gw, r"^info: route r: server %s up \(2 good "
                         r"checks\)$" % re.escape(b2.addr), 10, "up")
        say("  %s (%.1fs after its checks turned good)"
            % (line, time.monotonic() - t))
        paths = ["/back/%d" % i for i in range(6)]
        get_all(w, gw, paths)
        expect_round_robin(servers, paths, [0, 1, 2])

        for s in servers:
            s.close()
        wait_line(gw, r"^warning: route r: all servers down$", 10,
                  "all servers down")
        expect_503(w, gw, "/none", 1)
        expect_eq(len([ln for ln in gw.lines()
                       if "all servers down" in ln and "access" not in ln]),
                  1, "'all servers down' lines")
        expect_eq(len([ln for ln in gw.lines() if " down (" in ln]), 4,
                  "'down' lines (B, then A, B, C)")


def test_reload_and_stop_with_checks_in_flight():
    with World() as w:
        a, b = serve(w), serve(w)
        a.health_delay = 60
        gw = w.gateway([("r", balanced_route(
            [a, b], health_check="HEAD " + CHECK_PATH, health_interval=2,
            health_timeout=2))])
        wait_checks([a, b], 1, base=[0, 0])
        before = [a.checks(), b.checks()]
        gw.proc.send_signal(signal.SIGHUP)
        wait_line(gw, r"reloaded", 5, "reload")
        # The new configuration checks at once; A leaves it unanswered.
        wait_checks([a, b], 1, base=before)
        r = curl(w.td, gw.url("/after-reload"))
        expect_eq(r.status, 200, "request after the reload (%r)" % r)
        t = time.monotonic()
        gw.stop()
        dt = time.monotonic() - t
        expect(dt < 3, "stop took %.1fs with a check in flight" % dt)


def test_keepalive_spreads_by_connection():
    with World() as w:
        servers = [serve(w) for _ in range(3)]
        burst = threading.Barrier(6, timeout=10)
        for s in servers:
            s.keep = True
            s.barrier = burst
        gw = w.gateway([("r", balanced_route(servers))])
        # Six requests held until all six reached a server: six uplink
        # connections at once, so six picks.
        out = []
        ths = [threading.Thread(target=lambda p=p: out.append(
            curl(w.td, gw.url(p)).status)) for p in
            ["/burst/%d" % i for i in range(6)]]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        expect_eq(out, [200] * 6, "statuses of the burst")
        expect_eq([s.connections for s in servers], [2, 2, 2],
                  "uplink connections per server after the burst")
        for s in servers:
            s.barrier = None
        get_all(w, gw, ["/seq/%d" % i for i in range(30)])
        expect_eq([s.connections for s in servers], [2, 2, 2],
                  "uplink connections per server after 30 more requests")
        per = [len(s.data_targets()) for s in servers]
        expect_eq(sum(per), 36, "requests upstream")
        say("  requests per server: %r over 2 connections each" % per)
        # The access line names the one server each request went to.
        recs = gw.wait_access(lambda x: x.get("path", "").startswith(
            "/burst/"), n=6)
        names = {"127.0.0.1:%d" % s.port for s in servers}
        expect(len(recs) == 6 and all(r.get("upstream") in names
                                      for r in recs),
               "upstream= of the burst: %r, want one of %r"
               % ([r.get("upstream") for r in recs], sorted(names)))


def test_passive():
    interval = 3
    with World() as w:
        a, b, c = serve(w), serve(w), serve(w)
        servers = [a, b, c]
        gw = w.gateway([("r", balanced_route(
            servers, health_interval=interval, health_fall=2))])
        paths = ["/p/%d" % i for i in range(3)]
        get_all(w, gw, paths)
        expect_round_robin(servers, paths, [0, 1, 2])

        # B refuses: its turns go to C, the device sees nothing of it.
        b.close()
        paths = ["/f/%d" % i for i in range(6)]
        get_all(w, gw, paths)
        t_down = time.monotonic()
        expect_eq([owner(servers, p) for p in paths], [0, 2, 0, 2, 0, 2],
                  "servers that got /f/0../f/5")
        line = wait_line(gw, down_re(b, "connect: Connection refused"), 1,
                         "down")
        say("  " + line)

        # Back, but not tried before health_interval has passed.
        b2 = serve(w, b.port)
        servers[1] = b2
        paths = ["/early/%d" % i for i in range(4)]
        get_all(w, gw, paths)
        if time.monotonic() - t_down < interval - 0.5:
            expect_eq(b2.data_targets(), [], "requests to B before "
                      "health_interval")
        # Then the trial request brings it back.
        end = t_down + interval + 10
        i = 0
        while not b2.data_targets():
            expect(time.monotonic() < end, "B not tried again")
            get_all(w, gw, ["/late/%d" % i])
            i += 1
            time.sleep(0.1)
        line = wait_line(gw, r"^info: route r: server %s up \(trial "
                         r"connection succeeded\)$" % re.escape(b2.addr), 1,
                         "up")
        say("  " + line)
        paths = ["/again/%d" % i for i in range(6)]
        get_all(w, gw, paths)
        expect_round_robin(servers, paths, [0, 1, 2])

        # All gone: each request tries every server (502 with the last
        # reason) until health_fall failures each, then 503 at once.
        for s in servers:
            s.close()
        for i in range(2):
            r = curl(w.td, gw.url("/dead/%d" % i))
            expect_eq(r.status, 502, "request %d to dead servers (%r)"
                      % (i, r))
        wait_line(gw, r"^warning: route r: all servers down$", 1,
                  "all servers down")
        expect_503(w, gw, "/none", interval)
        recs = gw.wait_access(lambda x: x.get("path") == "/dead/1")
        expect(recs and re.search(r"^127\.0\.0\.1:\d+: connect: Connection "
                                  r"refused$", recs[0].get("error", "")),
               "access line of /dead/1: %r" % recs)


if __name__ == "__main__":
    run_tests(globals())
