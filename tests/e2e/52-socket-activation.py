#!/usr/bin/env python3
"""Socket activation through systemd-socket-activate (the socket unit's
stand-in): the daemon uses the passed socket for the route whose `listen`
matches it and binds the others itself; with every socket passed it needs
no privilege at all, even for a port below 1024.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import _sdlib  # noqa: E402
from lib import expect, expect_eq  # noqa: E402

SSA = shutil.which("systemd-socket-activate")


def activate(w, n, conf, ports, prefix=()):
    """Starts systemd-socket-activate on 127.0.0.1:port for each port; it
    execs the daemon (same pid) on the first connection."""
    cmd = [SSA]
    for p in ports:
        cmd += ["-l", "127.0.0.1:%d" % p]
    cmd += ["-E", "NOTIFY_SOCKET=" + n.path]
    cmd += list(prefix) + [lib.TLSGATE, "-c", conf]
    log = open(w.td.join("ssa.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)

    def stop():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if _sdlib.wait_exit(proc, 10) is None:
                proc.kill()
                proc.wait()
        log.close()
        marks = _sdlib.sanitizer_marks(log_text(w))
        expect(not marks, lambda: "sanitizer report:\n" + log_text(w))
    w.add_cleanup(stop)
    # Wait until it listens (the socket exists) without connecting.
    end = time.monotonic() + 5
    while set(ports) - set(_sdlib.listen_inodes(proc.pid)):
        expect(proc.poll() is None and time.monotonic() < end, lambda:
               "systemd-socket-activate did not start: %s" % open(
                   w.td.join("ssa.log"), errors="replace").read())
        time.sleep(0.05)
    return proc


def log_text(w):
    with open(w.td.join("ssa.log"), errors="replace") as f:
        return f.read()


def test_passed_socket_used_other_bound():
    expect(SSA is not None, "systemd-socket-activate not installed")
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa, pb = lib.free_port(), lib.free_port()
        conf = w.td.write("gw.conf", "[gateway]\nlog_level = info\n\n" +
                          lib.route_conf("a", **lib.route(
                              up, w.pki, listen="127.0.0.1:%d" % pa)) +
                          "\n" + lib.route_conf("b", **lib.route(
                              up, w.pki, listen="127.0.0.1:%d" % pb)))
        proc = activate(w, n, conf, [pa])
        inherited = _sdlib.listen_inodes(proc.pid)[pa]
        # This first connection is what makes it exec the daemon.
        r = lib.curl(w.td, "http://127.0.0.1:%d/first" % pa)
        expect_eq(r.status, 200, "first request (activation)")
        n.expect("READY=1", what="activation")
        socks = _sdlib.listen_inodes(proc.pid)
        expect_eq(socks.get(pa), inherited, "route a on the passed socket")
        expect(os.readlink("/proc/%d/fd/3" % proc.pid) ==
               "socket:[%s]" % inherited, "passed socket not at fd 3")
        expect(pb in socks, "route b not bound by the daemon")
        r = lib.curl(w.td, "http://127.0.0.1:%d/b" % pb)
        expect_eq(r.status, 200, "request on the self-bound listener")
        expect_eq(len(up.requests), 2, "requests upstream")
        proc.send_signal(signal.SIGTERM)
        expect_eq(_sdlib.wait_exit(proc, 10), 0, "exit status")
        expect(any("STOPPING=1" in a for a in n.assignments()),
               "no STOPPING=1")


def test_unused_passed_socket_logged():
    expect(SSA is not None, "systemd-socket-activate not installed")
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        pa, px = lib.free_port(), lib.free_port()
        conf = w.td.write("gw.conf", "[gateway]\nlog_level = info\n\n" +
                          lib.route_conf("a", **lib.route(
                              up, w.pki, listen="127.0.0.1:%d" % pa)))
        proc = activate(w, n, conf, [pa, px])
        r = lib.curl(w.td, "http://127.0.0.1:%d/" % pa)
        expect_eq(r.status, 200, "request")
        n.expect("READY=1", what="activation")
        text = log_text(w)
        expect("127.0.0.1:%d" % px in text and "no route" in text,
               lambda: "unused passed socket not logged:\n" + text)


def _low_port():
    for p in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    return None


def test_no_privilege_needed_for_port_below_1024():
    """The unit gives the daemon no capability at all: here it runs as
    nobody with an empty bounding set, and serves port < 1024 anyway."""
    expect(SSA is not None, "systemd-socket-activate not installed")
    setpriv = shutil.which("setpriv")
    expect(setpriv is not None, "setpriv (util-linux) not installed")
    if os.geteuid() != 0:
        lib.say("  (not root: cannot bind a low port to pass; skipped)")
        return
    port = _low_port()
    expect(port is not None, "no free port below 1024")
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        conf = w.td.write("gw.conf", "[gateway]\nlog_level = info\n\n" +
                          lib.route_conf("a", **lib.route(
                              up, w.pki, listen="127.0.0.1:%d" % port)))
        # nobody must read the config, the CA and the notify socket.
        for d in (w.td.path, os.path.dirname(os.path.dirname(w.pki.ca_file)),
                  os.path.dirname(w.pki.ca_file),
                  os.path.dirname(os.path.dirname(os.path.dirname(
                      w.pki.ca_file)))):
            os.chmod(d, 0o755)
        os.chmod(conf, 0o644)
        os.chmod(n.path, 0o777)
        proc = activate(w, n, conf, [port], prefix=[
            setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"])
        r = lib.curl(w.td, "http://127.0.0.1:%d/low" % port)
        expect_eq(r.status, 200, "request on port %d as nobody" % port)
        n.expect("READY=1", what="activation")
        with open("/proc/%d/status" % proc.pid) as f:
            st = f.read()
        expect("CapEff:\t0000000000000000" in st, "daemon has capabilities")
        expect("\nUid:\t65534" in st, "daemon not running as nobody")


if __name__ == "__main__":
    lib.run_tests(globals())
