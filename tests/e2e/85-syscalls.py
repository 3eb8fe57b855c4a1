#!/usr/bin/env python3
"""System calls per keep-alive request, over both uplink transports: a
request goes into the idle pooled uplink connection at once, and a
response to the device likewise, so that the event loop never has to
watch for writability (no epoll_ctl at all once the connections exist),
and the uplink request is one write.  Each side's input is one read:
OpenSSL reads ahead (not a record header, then its body), and the device
side and the built-in transport read their sockets themselves (libevent
asks for the number of waiting bytes first, an ioctl per read).  Counted with strace on the real
daemon, after warm-up, over requests one after the other on one device
connection."""

import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

N = 40
MEMORY_CALLS = ("mmap", "munmap", "mremap", "madvise", "mprotect", "brk")
BODY = b"t=21.5&h=40"


def exchange(s, rd):
    s.sendall(b"POST /v1/telemetry HTTP/1.1\r\nHost: dev\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    return read_response(rd, "POST").status


def count(tls):
    """{syscall: calls} of the daemon over N keep-alive requests."""
    with World() as w:
        # No body: the answer is one write, so one record, as nginx
        # sends a small response (the Python server writes a body apart).
        up = w.upstream(respond=lambda q: Response(status=202, body=b""))
        keys = {"tls": tls} if tls != "openssl" else {}
        gw = w.gateway([("r", route(up, w.pki, **keys))],
                       gateway={"log_level": "warning"})
        s = connect(gw.port)
        rd = Reader(s)
        for _ in range(5):
            expect_eq(exchange(s, rd), 202, "warm-up")
        out = w.td.join("strace-%s.txt" % tls)
        st = subprocess.Popen(["strace", "-f", "-qq", "-p", str(gw.pid()),
                               "-o", out], stderr=subprocess.DEVNULL)
        try:
            # strace is attached once the daemon's next call shows up.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                expect_eq(exchange(s, rd), 202, "status while attaching")
                if os.path.exists(out) and os.path.getsize(out) > 0:
                    break
                time.sleep(0.2)
            time.sleep(0.3)
            with open(out) as f:
                skip = sum(1 for _ in f)
            for _ in range(N):
                expect_eq(exchange(s, rd), 202, "status")
            time.sleep(0.3)
        finally:
            st.terminate()
            st.wait(timeout=10)
        calls = {}
        with open(out) as f:
            for k, ln in enumerate(f):
                if k < skip:
                    continue
                f0 = ln.split(None, 1)
                if len(f0) < 2 or "(" not in f0[1]:
                    continue
                name = f0[1].split("(", 1)[0]
                calls[name] = calls.get(name, 0) + 1
        s.close()
        return calls


def check(tls):
    if shutil.which("strace") is None:
        raise TestFailure("strace is missing (mk/deps.sh installs it)")
    calls = count(tls)
    # The allocator's own calls (ASan's maps its memory in small steps)
    # are not the daemon's I/O.
    io = dict((k, v) for k, v in calls.items() if k not in MEMORY_CALLS)
    per = sum(io.values()) / float(N)
    say("  %s route: %.2f system calls per keep-alive request: %s"
        % (tls, per, ", ".join("%s %d" % kv for kv in sorted(calls.items()))))
    expect_eq(calls.get("epoll_ctl", 0), 0,
              "epoll_ctl calls over %d keep-alive requests" % N)
    # One write of the request into the uplink, one of the response to
    # the device: two per request.
    writes = sum(calls.get(k, 0) for k in ("write", "writev", "sendto",
                                           "sendmsg"))
    expect_eq(writes, 2 * N, "writes over %d requests" % N)
    # One read each way: the device's request, the uplink's response.
    reads = sum(calls.get(k, 0) for k in ("read", "readv", "recvfrom",
                                          "recvmsg"))
    expect_eq(reads, 2 * N, "reads over %d requests" % N)
    expect_eq(calls.get("ioctl", 0), 0, "ioctl calls over %d requests" % N)
    expect(per <= 6.5, "%.2f system calls per request (6 expected)" % per)


def test_openssl_route():
    check("openssl")


def test_builtin_route():
    check("builtin")


if __name__ == "__main__":
    run_tests(globals())
