#!/usr/bin/env python3
"""The sd_notify protocol as systemd would see it (fake NOTIFY_SOCKET).

start      READY=1 only once every listener is bound; STATUS= with counts
watchdog   WATCHDOG=1 at half of WATCHDOG_USEC when WATCHDOG_PID is the
           daemon; none when the watchdog belongs to another process
reload     SIGHUP: RELOADING=1, then READY=1; a new listener works, a
           removed one is closed, a kept one is the same socket
bad reload an invalid file: a FILE:LINE: line, READY=1 again, still serving
           on the old configuration
in flight  a request running across a reload that removes its route still
           gets its whole response
stop       SIGTERM: STOPPING=1, exit status 0
journal    with JOURNAL_STREAM naming stderr, lines carry <N> priorities
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import _sdlib  # noqa: E402
from lib import expect, expect_eq, say  # noqa: E402


def listen(port):
    return "127.0.0.1:%d" % port


def sigterm(g, timeout=10):
    """SIGTERM, then the exit status (the daemon must exit 0 by itself)."""
    return _sdlib.reap(g, timeout, signal.SIGTERM)


def reload(g, n, text, what):
    """Writes text as the config, SIGHUP, waits for RELOADING=1 then
    READY=1; returns the index of the READY=1 message."""
    with open(g.conf, "w") as f:
        f.write(text)
    since = n.count()
    g.proc.send_signal(signal.SIGHUP)
    i = n.expect("RELOADING=1", since, what=what)
    return n.expect("READY=1", i + 1, what=what)


def gw_text(routes, gateway=""):
    return "[gateway]\nlog_level = info\n" + gateway + "".join(
        "\n" + lib.route_conf(name, **keys) for name, keys in routes)


def test_ready_after_listening_and_status():
    with lib.World() as w:
        up = w.upstream()
        p1, p2 = lib.free_port(), lib.free_port()
        g = None
        probe = {}

        def on_message(text):
            # READY=1 must mean every listener is bound, right now.
            if "READY=1" in text.split("\n") and "ports" not in probe:
                probe["ports"] = lib.listening_ports(g.proc.pid)
        n = _sdlib.Notifier(w.td, on_message)
        w.add_cleanup(n.close)
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki, listen=listen(p1))),
                               ("b", lib.route(up, w.pki, listen=listen(p2)))],
                        env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        expect({p1, p2} <= probe["ports"], lambda: "READY=1 sent before "
               "listening: ports %r at that moment" % probe["ports"])
        r = lib.curl(w.td, g.url("/x"))
        expect_eq(r.status, 200, "request")
        # STATUS= with live counts, sent when they change.
        i = n.wait_for(lambda t: t.startswith("STATUS=") and
                       "request" in t, timeout=5)
        expect(i is not None, lambda: "no STATUS= with counts: %r"
               % n.assignments())
        say("  status: %s" % [a for a in n.assignments()
                              if a.startswith("STATUS=")][-1])
        expect(not any("#check-error" in a for a in n.assignments()),
               "probe failed")


def test_watchdog_pings():
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki))], start=False)
        w.add_cleanup(g.stop)
        # WATCHDOG_PID must be the daemon's own pid: exec keeps the pid
        # of the shell, which sets it to $$.
        conf = g.conf
        args = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" -c "$1"',
                lib.TLSGATE, conf]
        log = open(g.logpath, "wb")
        env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="400000")
        proc = subprocess.Popen(args, stdout=log, stderr=log, env=env,
                                stdin=subprocess.DEVNULL)
        try:
            n.expect("READY=1", what="watchdog start")
            t0 = time.monotonic()
            time.sleep(2.2)
            pings = [t for t, m in n.messages if m == "WATCHDOG=1"
                     and t >= t0]
            # every 200 ms: about 11 in 2.2 s
            expect(8 <= len(pings) <= 14, lambda: "%d WATCHDOG=1 in 2.2 s, "
                   "want about 11" % len(pings))
            proc.send_signal(signal.SIGTERM)
            expect_eq(_sdlib.wait_exit(proc, 10), 0, "exit status")
            log.close()
            with open(g.logpath, errors="replace") as f:
                text = f.read()
            expect(not _sdlib.sanitizer_marks(text), lambda: text[-3000:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def test_watchdog_of_another_process_ignored():
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        env = n.env(WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid()))
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki))], env=env,
                        start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        time.sleep(0.8)
        expect("WATCHDOG=1" not in n.assignments(),
               "pinged a watchdog meant for another pid")


def test_reload_adds_removes_keeps():
    with lib.World() as w:
        up = w.upstream(respond=lambda req: lib.Response(
            body=req.header("host", "").encode()))
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa, pb, pc = lib.free_port(), lib.free_port(), lib.free_port()
        ra = ("a", lib.route(up, w.pki, listen=listen(pa)))
        rb = ("b", lib.route(up, w.pki, listen=listen(pb)))
        g = lib.Gateway(w.td, [ra, rb], env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        before = _sdlib.listen_inodes(g.pid())
        # b kept (host changed), a removed, c added.
        rb2 = ("b", lib.route(up, w.pki, listen=listen(pb),
                              host="b2." + lib.CLOUD))
        rc = ("c", lib.route(up, w.pki, listen=listen(pc)))
        reload(g, n, gw_text([rb2, rc]), "reload 1")
        after = _sdlib.listen_inodes(g.pid())
        expect(pa not in after, lambda: "removed listener %d still open"
               % pa)
        expect(_sdlib.tcp_refused(pa), "removed listener still accepts")
        expect(pc in after, lambda: "new listener %d not open" % pc)
        expect_eq(after.get(pb), before.get(pb),
                  "socket of the kept listener (same inode)")
        r = lib.curl(w.td, "http://%s/c" % listen(pc))
        expect_eq((r.status, r.body), (200, lib.CLOUD.encode()),
                  "request on the new listener")
        r = lib.curl(w.td, "http://%s/b" % listen(pb))
        expect_eq((r.status, r.body), (200, ("b2." + lib.CLOUD).encode()),
                  "kept listener uses the new route settings")
        expect(any("reload" in ln.lower() for ln in g.lines()),
               "no log line about the reload")


def test_bad_reload_keeps_old_config():
    with lib.World() as w:
        up = w.upstream(respond=lambda req: lib.Response(
            body=req.header("host", "").encode()))
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa = lib.free_port()
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki, listen=listen(pa)))],
                        env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        before = _sdlib.listen_inodes(g.pid())
        good = g.text
        # Line 6: an unknown key.
        bad = ("[gateway]\nlog_level = info\n\n[route a]\nlisten = %s\n"
               "upstrem = %s\n" % (listen(pa), up.addr))
        reload(g, n, bad, "bad reload")
        lines = g.lines()
        want = "%s:6:" % g.conf
        expect(any(want in ln for ln in lines), lambda: "no %r line in "
               "log:\n%s" % (want, "\n".join(lines[-10:])))
        expect(g.alive(), "daemon exited on a bad reload")
        expect_eq(_sdlib.listen_inodes(g.pid()), before, "listeners")
        r = lib.curl(w.td, g.url("/still"))
        expect_eq((r.status, r.body), (200, lib.CLOUD.encode()),
                  "still serving on the old configuration")
        # And a good file after the bad one is taken.
        reload(g, n, good.replace("host = " + lib.CLOUD,
                                  "host = new." + lib.CLOUD), "fixed reload")
        r = lib.curl(w.td, g.url("/new"))
        expect_eq((r.status, r.body), (200, ("new." + lib.CLOUD).encode()),
                  "after the fixed reload")


def test_reload_that_cannot_bind_changes_nothing():
    """A valid file whose new address is taken: logged, READY=1, and the
    daemon goes on exactly as before (old routes, old sockets)."""
    import socket
    with lib.World() as w:
        up = w.upstream(respond=lambda req: lib.Response(
            body=req.header("host", "").encode()))
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa = lib.free_port()
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        w.add_cleanup(taken.close)
        pt = taken.getsockname()[1]
        ra = ("a", lib.route(up, w.pki, listen=listen(pa)))
        g = lib.Gateway(w.td, [ra], env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        before = _sdlib.listen_inodes(g.pid())
        ra2 = ("a", lib.route(up, w.pki, listen=listen(pa),
                              host="new." + lib.CLOUD))
        rt = ("t", lib.route(up, w.pki, listen=listen(pt)))
        reload(g, n, gw_text([ra2, rt]), "reload onto a taken port")
        expect(any("reload failed" in ln for ln in g.lines()),
               lambda: "no reload failure logged:\n" + g.log_text()[-800:])
        expect_eq(_sdlib.listen_inodes(g.pid()), before, "listeners")
        r = lib.curl(w.td, g.url("/x"))
        expect_eq((r.status, r.body), (200, lib.CLOUD.encode()),
                  "old configuration still in force")
        # A ca_file that is no certificate: the file is valid, the
        # uplinks cannot be built; likewise nothing changes.
        junk = w.td.write("junk-ca.pem", "not a certificate\n")
        bad = ("a", lib.route(up, w.pki, listen=listen(pa),
                              host="new." + lib.CLOUD, ca_file=junk))
        nfail = sum("reload failed" in ln for ln in g.lines())
        reload(g, n, gw_text([bad]), "reload with a junk ca_file")
        expect(sum("reload failed" in ln for ln in g.lines()) > nfail,
               lambda: "junk ca_file not refused:\n" + g.log_text()[-800:])
        r = lib.curl(w.td, g.url("/y"))
        expect_eq((r.status, r.body), (200, lib.CLOUD.encode()),
                  "old configuration still in force")


def test_kept_connection_switches_between_requests():
    """The next request on a kept device connection uses the reloaded
    route; on a connection whose listen address went away it keeps the
    old one."""
    with lib.World() as w:
        up = w.upstream(respond=lambda req: lib.Response(
            body=req.header("host", "").encode()))
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa, pb = lib.free_port(), lib.free_port()
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki, listen=listen(pa))),
                               ("b", lib.route(up, w.pki, listen=listen(pb)))],
                        env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        conns = []
        for p in (pa, pb):
            s = lib.connect(p)
            w.add_cleanup(s.close)
            conns.append((s, lib.Reader(s)))
        req = b"GET /k HTTP/1.1\r\nHost: device\r\n\r\n"
        for s, rd in conns:
            s.sendall(req)
            expect_eq(lib.read_response(rd).body, lib.CLOUD.encode(),
                      "before the reload")
        reload(g, n, gw_text([("a", lib.route(up, w.pki, listen=listen(pa),
                                              host="v2." + lib.CLOUD))]),
               "reload")
        got = []
        for s, rd in conns:
            s.sendall(req)
            got.append(lib.read_response(rd).body)
        expect_eq(got, [("v2." + lib.CLOUD).encode(), lib.CLOUD.encode()],
                  "second request: switched on a, old route kept on b")


def test_request_in_flight_survives_reload():
    with lib.World() as w:
        slow = lib.Response(body_size=200000, delay=1.5, seed=3)
        up = w.upstream(respond=lambda req: slow)
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa, pb = lib.free_port(), lib.free_port()
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki, listen=listen(pa)))],
                        env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        n.expect("READY=1", what="start")
        res = {}
        proc = subprocess.Popen(
            ["curl", "-sS", "--noproxy", "*", "--max-time", "15", "-o",
             w.td.join("body"), "-w", "%{http_code}",
             "http://%s/slow" % listen(pa)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        expect(up.wait_requests(1, 5), "request did not reach the upstream")
        # The route of the request in flight goes away.
        reload(g, n, gw_text([("b", lib.route(up, w.pki,
                                              listen=listen(pb)))]),
               "reload during a request")
        out, err = proc.communicate(timeout=20)
        res["code"] = out.decode()
        with open(w.td.join("body"), "rb") as f:
            body = f.read()
        expect_eq(res["code"], "200", "status of the request in flight")
        expect_eq(lib.sha256(body), slow.body_sha(), "body in flight")
        expect(_sdlib.tcp_refused(pa), "removed listener still accepts")


def test_sigterm_stopping_exit_0():
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki))], env=n.env(),
                        start=False)
        w.add_cleanup(g.stop)
        g.start()
        i = n.expect("READY=1", what="start")
        expect_eq(sigterm(g), 0, "exit status after SIGTERM")
        n.expect("STOPPING=1", i, timeout=2, what="stop")
        seq = [a for a in n.assignments() if not a.startswith("STATUS=")]
        expect_eq(seq, ["READY=1", "STOPPING=1"], "notification sequence")


def test_journal_priorities():
    with lib.World() as w:
        up = w.upstream()
        g = lib.Gateway(w.td, [("a", lib.route(up, w.pki))], start=False)
        w.add_cleanup(g.stop)
        open(g.logpath, "wb").close()       # Gateway reopens it: same inode
        st = os.stat(g.logpath)
        g.env = {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}
        g.start()
        r = lib.curl(w.td, g.url("/j"))
        expect_eq(r.status, 200, "request")
        time.sleep(0.3)
        lines = g.lines()
        expect(lines, "no log lines")
        bad = [ln for ln in lines if not (len(ln) > 3 and ln[0] == "<" and
                                          ln[1] in "01234567" and ln[2] == ">")]
        expect(not bad, lambda: "lines without <N>: %r" % bad[:5])
        expect(any(ln.startswith("<6>") and "access" in ln for ln in lines),
               lambda: "no <6> access line: %r" % lines[-5:])
    # And without JOURNAL_STREAM the plain prefixes stay.
    with lib.World() as w:
        up = w.upstream()
        g = w.gateway([("a", lib.route(up, w.pki))])
        lib.curl(w.td, g.url("/p"))
        expect(g.wait_access(), "no access line")
        expect(not any(ln.startswith("<") for ln in g.lines()),
               "priority prefixes outside the journal")


if __name__ == "__main__":
    lib.run_tests(globals())
