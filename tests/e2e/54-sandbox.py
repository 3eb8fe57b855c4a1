#!/usr/bin/env python3
"""The daemon under the unit's memory rule, without systemd.

MemoryDenyWriteExecute=yes forbids memory that is (or becomes) both
writable and executable.  Linux >= 6.3 offers the same rule per process
(prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, kept across execve), so the
daemon is started under it, with no_new_privs as systemd sets too, and
must still do verified TLS (OpenSSL, both transports' set-up) and a
reload.  The seccomp filter of the unit is checked on a real systemd by
the image test of the packaging (tests/e2e/90-package.sh).
"""

import ctypes
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import _sdlib  # noqa: E402
from lib import expect, expect_eq  # noqa: E402

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _mdwe_supported():
    return _libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0


def _sandbox():
    """Runs in the child between fork and exec."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        os._exit(120)
    if _libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(121)


class SandboxedGateway(lib.Gateway):
    def _start(self, timeout):
        import subprocess
        real = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = _sandbox
            return real(*a, **kw)
        subprocess.Popen = popen
        try:
            return super()._start(timeout)
        finally:
            subprocess.Popen = real


def test_rule_bites():
    """The rule as applied here does refuse W+X memory (else the next
    test would prove nothing)."""
    import subprocess
    if not _mdwe_supported():
        lib.say("  (kernel without PR_SET_MDWE: skipped)")
        return
    code = ("import mmap,sys\n"
            "try:\n"
            " mmap.mmap(-1, 4096, prot=mmap.PROT_READ|mmap.PROT_WRITE|"
            "mmap.PROT_EXEC)\n"
            "except OSError:\n"
            " sys.exit(3)\n"
            "sys.exit(0)\n")
    r = subprocess.run([sys.executable, "-c", code], preexec_fn=_sandbox)
    expect_eq(r.returncode, 3, "W+X mapping under the sandbox")


def test_tls_and_reload_under_mdwe():
    if not _mdwe_supported():
        lib.say("  (kernel without PR_SET_MDWE: skipped)")
        return
    with lib.World() as w:
        up = w.upstream()
        n = _sdlib.Notifier(w.td)
        w.add_cleanup(n.close)
        g = SandboxedGateway(w.td, [("a", lib.route(up, w.pki))],
                             env=n.env(), start=False)
        w.add_cleanup(g.stop)
        g.start()
        i = n.expect("READY=1", what="start")
        with open("/proc/%d/status" % g.pid()) as f:
            st = f.read()
        expect("NoNewPrivs:\t1" in st, "sandbox not applied to the daemon")
        r = lib.curl(w.td, g.url("/mdwe"))
        expect_eq(r.status, 200, "verified TLS under MDWE")
        expect_eq(up.requests[-1].sni, lib.CLOUD, "SNI")
        # A reload builds new TLS contexts under the same rule.
        g.proc.send_signal(signal.SIGHUP)
        n.expect("READY=1", i + 1, what="reload")
        r = lib.curl(w.td, g.url("/after-reload"))
        expect_eq(r.status, 200, "after reload")
        expect_eq(_sdlib.reap(g, 10, signal.SIGTERM), 0, "exit status")


if __name__ == "__main__":
    lib.run_tests(globals())
