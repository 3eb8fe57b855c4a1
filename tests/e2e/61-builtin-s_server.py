#!/usr/bin/env python3
"""Routes with `tls = builtin` against `openssl s_server -WWW` (HTTP/1.0,
one request per connection, close-delimited bodies): a 64 KB file arrives
intact through max_fragment 512 (the extension seen by the server, the
limit negotiated), the server's close makes the next connection a PSK
resumption, and certificate verification failures (untrusted CA, wrong
name, expired) end in 502 with the X.509 reason in the access log, while
verify = no lets the same server through."""

import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


class SServer:
    """openssl s_server -WWW serving files of `root` on 127.0.0.1."""

    def __init__(self, w, cert, root, extra=()):
        self.port = free_port()
        self.logpath = w.td.join("s_server.%d.log" % self.port)
        self.log = open(self.logpath, "wb")
        crt, key = cert
        self.proc = subprocess.Popen(
            [OPENSSL, "s_server", "-WWW", "-accept",
             "127.0.0.1:%d" % self.port, "-cert", crt, "-key", key,
             "-tls1_3", "-tlsextdebug"] + list(extra),
            cwd=root, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT)
        w.add_cleanup(self.stop)
        end = time.monotonic() + 5
        while True:
            if self.proc.poll() is not None:
                raise TestFailure("s_server exited: %s" % self.text())
            try:
                connect(self.port, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise TestFailure("s_server not listening")
                time.sleep(0.05)

    def text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def builtin(port, pki, **keys):
    keys.setdefault("tls", "builtin")
    return route("127.0.0.1:%d" % port, pki, **keys)


def test_max_fragment_512_and_resumption():
    with World() as w:
        root = w.td.join("www")
        os.makedirs(root)
        path, digest = make_file(w.td, "www/data.bin", 64 << 10, seed=11)
        ss = SServer(w, w.pki.good, root)
        gw = w.gateway([("s", builtin(ss.port, w.pki, max_fragment=512))],
                       gateway={"log_level": "debug"})
        for i in range(3):
            r = curl(w.td, gw.url("/data.bin"), max_time=20)
            expect(r.status == 200 and sha256(r.body) == digest,
                   "request %d: 64 KB intact (status %s, %d bytes)"
                   % (i, r.status, len(r.body)))
        acc = gw.wait_access(lambda a: a.get("path") == "/data.bin", n=3)
        expect_eq([a.get("tls") for a in acc], ["new", "resumed", "resumed"],
                  "access tls: the server closes, the next one resumes")
        text = ss.text()
        expect('extension "max fragment length"' in text,
               "s_server saw no max_fragment_length extension")
        expect(re.search(r'"psk"|pre_shared_key|id=41\)', text) is not None,
               "s_server saw no pre_shared_key extension")
        limits = re.findall(r"record limit (\d+)", gw.log_text())
        expect_eq(sorted(set(limits)), ["512"], "negotiated record limits")
        gw.stop()
        say("  64 KB x3 through max_fragment 512, tls=%s"
            % ",".join(a.get("tls") for a in acc))


def test_verification_failures():
    cases = (("untrusted", "certificate verify failed: unable to get local "
              "issuer certificate"),
             ("wrong", "certificate verify failed: hostname mismatch"),
             ("expired", "certificate verify failed: certificate has "
              "expired"))
    with World() as w:
        root = w.td.join("www")
        os.makedirs(root)
        with open(os.path.join(root, "x"), "w") as f:
            f.write("x\n")
        routes = []
        for name, _ in cases:
            ss = SServer(w, getattr(w.pki, name), root)
            routes.append((name, builtin(ss.port, w.pki)))
        routes.append(("noverify", builtin(ss.port, w.pki, verify="no")))
        gw = w.gateway(routes)
        for i, (name, why) in enumerate(cases):
            t0 = time.monotonic()
            r = curl(w.td, gw.url("/x", i))
            expect_eq(r.status, 502, "%s: status (%r)" % (name, r))
            acc = gw.wait_access(lambda a, n=name: a.get("route") == n)
            err = acc[0].get("error", "") if acc else ""
            expect_eq(err, "TLS: " + why, "%s: access log reason" % name)
            say("  %s -> 502 in %.1fs, error=%r" % (
                name, time.monotonic() - t0, err))
        r = curl(w.td, gw.url("/x", len(cases)))
        expect_eq((r.status, r.body), (200, b"x\n"),
                  "verify = no with the expired certificate")


if __name__ == "__main__":
    run_tests(globals())
