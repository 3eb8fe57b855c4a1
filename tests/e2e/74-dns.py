#!/usr/bin/env python3
"""Upstream names and DNS (evdns, asynchronous).

A name that does not resolve -> 502 with a DNS error in the access line and
a warning line; the gateway keeps serving other routes meanwhile.

Re-resolution is observed without touching system files: when the machine
allows a private mount namespace (unshare -m, root), the daemon runs in one
where /etc/resolv.conf names a DNS server of this test (127.0.0.1:PORT,
which libevent's resolv.conf parser accepts) and /etc/hosts is the test's
own.  There: a name from /etc/hosts resolves without a query; a name from
DNS is queried once per new uplink connection (never while a pooled one is
reused); when the record disappears the next new connection fails with
502 (nothing cached), and works again when it is back; a DNS server that
never answers is bounded by connect_timeout."""

import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import *  # noqa: E402,F403
from _faults import DnsServer  # noqa: E402


def system_resolver_answers(name, within=2.0):
    """True when the system resolver says 'no such name' within `within`
    seconds (then evdns, using the same servers, will too)."""
    t = time.monotonic()
    try:
        socket.getaddrinfo(name, 443)
        return False
    except socket.gaierror as e:
        return (e.errno == socket.EAI_NONAME and
                time.monotonic() - t < within)


def test_unresolvable_name_502():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([
            ("nx", route("nonexistent.invalid:443", w.pki, listen="@a",
                         connect_timeout=8)),
            ("good", route(up, w.pki, listen="@b"))])
        t = time.monotonic()
        r = curl(w.td, gw.url("/nx", 0), max_time=15)
        dt = time.monotonic() - t
        expect_eq(r.status, 502, "unresolvable upstream (%r)" % r)
        recs = gw.wait_access(lambda a: a.get("path") == "/nx")
        err = recs[0].get("error", "") if recs else ""
        if system_resolver_answers("nonexistent.invalid"):
            expect(re.match(r"DNS: ", err), "access error %r: want a DNS "
                   "error" % err)
            warn = [ln for ln in gw.lines() if ln.startswith("warning:")
                    and "DNS" in ln and "nonexistent.invalid" in ln]
            expect(warn, "no warning line naming the DNS failure:\n"
                   + gw.log_text())
            say("  " + warn[0])
        else:
            # no working resolver here: bounded by connect_timeout instead
            expect(re.search(r"DNS|timeout", err), "access error %r" % err)
            say("  (the system resolver does not answer here: %r)" % err)
        say('  nonexistent.invalid -> 502 in %.2fs error="%s"' % (dt, err))
        r = curl(w.td, gw.url("/good", 1))
        expect_eq(r.status, 200, "the other route")


# ---------------------------------------------------------------------------
# In a private mount namespace

def namespace_works(td):
    probe = td.write("probe", "x\n")
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount --bind %s /etc/hosts && "
                            "mount --bind %s /etc/resolv.conf && "
                            "grep -q x /etc/hosts" % (probe, probe)],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def gateway_in_namespace(w, routes, dns_port, hosts, options=""):
    resolv = w.td.write("resolv.conf", "nameserver 127.0.0.1:%d\n%s"
                        % (dns_port, options))
    hostsf = w.td.write("hosts", hosts)
    wrapper = w.td.write("tlsgate-ns.sh", (
        "#!/bin/sh\n"
        "# the daemon in a private mount namespace with our resolver files\n"
        "exec unshare -m sh -c 'mount --bind %s /etc/resolv.conf && "
        "mount --bind %s /etc/hosts && exec \"$0\" \"$@\"' %s \"$@\"\n"
        % (resolv, hostsf, lib.TLSGATE)))
    os.chmod(wrapper, 0o755)
    real = lib.TLSGATE
    lib.TLSGATE = wrapper
    try:
        return w.gateway(routes)
    finally:
        lib.TLSGATE = real


def test_resolution_per_new_connection():
    with World() as w:
        if not namespace_works(w.td):
            say("  SKIP (this check only): no private mount namespace here "
                "(needs root); re-resolution is then argued from "
                "upstream_connect(), which calls "
                "bufferevent_socket_connect_hostname() for every new "
                "connection and keeps no address")
            return
        dns = DnsServer({"up-dns.test": "127.0.0.1"})
        w.add_cleanup(dns.close)
        # upstream 1 closes after each response: every request is a new
        # connection; upstream 2 keeps its connections (pooled)
        up1 = w.upstream(respond=lambda q: Response(close=True))
        up2 = w.upstream()
        gw = gateway_in_namespace(w, [
            ("fresh", route("up-dns.test:%d" % up1.port, w.pki,
                            listen="@a")),
            ("pooled", route("up-dns.test:%d" % up2.port, w.pki,
                             listen="@b")),
            ("hosts", route("up-hosts.test:%d" % up2.port, w.pki,
                            listen="@c")),
            ("nx", route("gone.test:%d" % up2.port, w.pki, listen="@d"))],
            dns.port, "127.0.0.1 localhost\n127.0.0.1 up-hosts.test\n",
            "options timeout:1 attempts:2\n")

        def get(i, path, status=200):
            r = curl(w.td, gw.url(path, i))
            expect_eq(r.status, status, "%s (%r)" % (path, r))
            return r

        # /etc/hosts: no query
        get(2, "/hosts")
        expect_eq(dns.count("up-hosts.test"), 0, "queries for a hosts name")
        # a new connection per request: one query each
        for n in range(1, 4):
            get(0, "/fresh%d" % n)
            expect_eq(dns.count("up-dns.test"), n,
                      "A queries after %d new connections" % n)
        expect_eq(up1.connections, 3, "connections to the closing upstream")
        # pooled: the first request resolves, the reuses do not
        before, conns = dns.count("up-dns.test"), up2.connections
        for n in range(3):
            get(1, "/pooled%d" % n)
        expect_eq(up2.connections - conns, 1,
                  "connections to the pooling upstream")
        expect_eq(dns.count("up-dns.test") - before, 1,
                  "queries for three requests over one pooled connection")
        # the record disappears: the next new connection fails, 502 DNS
        del dns.answers["up-dns.test"]
        get(0, "/after-removal", 502)
        recs = gw.wait_access(lambda a: a.get("path") == "/after-removal")
        expect(recs and recs[0].get("error", "").startswith("DNS: "),
               "access line for a vanished record: %r" % recs)
        # the pooled route still works on its existing connection
        get(1, "/pooled-still")
        dns.answers["up-dns.test"] = "127.0.0.1"
        get(0, "/after-restore")
        # NXDOMAIN from our server for an unknown name
        get(3, "/nx", 502)
        recs = gw.wait_access(lambda a: a.get("path") == "/nx")
        expect(recs and recs[0].get("error", "").startswith("DNS: "),
               "access line for NXDOMAIN: %r" % recs)
        say('  hosts name: 0 queries; DNS name: 1 query per new connection, '
            '0 per reuse; vanished record -> 502 error="%s"'
            % recs[0].get("error"))


def test_dns_server_silent():
    with World() as w:
        if not namespace_works(w.td):
            say("  SKIP (this check only): no private mount namespace here")
            return
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        w.add_cleanup(silent.close)
        up = w.upstream()
        gw = gateway_in_namespace(w, [
            ("r", route("up-dns.test:%d" % up.port, w.pki, listen="@a",
                        connect_timeout=2)),
            ("hosts", route("up-hosts.test:%d" % up.port, w.pki,
                            listen="@b"))],
            silent.getsockname()[1], "127.0.0.1 up-hosts.test\n",
            "options timeout:3 attempts:1\n")
        out = {}

        def slow():
            out["r"] = curl(w.td, gw.url("/silent-dns", 0), max_time=10)
            out["dt"] = time.monotonic() - t
        t = time.monotonic()
        th = threading.Thread(target=slow)
        th.start()
        # the lookup is asynchronous: another route is served meanwhile
        time.sleep(0.5)
        t1 = time.monotonic()
        r = curl(w.td, gw.url("/hosts", 1))
        dt1 = time.monotonic() - t1
        pending = "r" not in out
        th.join()
        expect(r.status == 200 and dt1 < 1 and pending,
               "the other route during a pending lookup: %s after %.2fs "
               "(lookup still pending: %s)" % (r.status, dt1, pending))
        r, dt = out["r"], out["dt"]
        expect(r.status == 502 and 1.8 < dt < 2.9,
               "silent DNS server: want 502 at connect_timeout=2 (evdns "
               "itself gives up at 3 s), got %s after %.1fs" % (r.status, dt))
        recs = gw.wait_access(lambda a: a.get("path") == "/silent-dns")
        expect(recs and "timeout" in recs[0].get("error", ""),
               "access line for a silent DNS server: %r" % recs)
        say('  silent DNS server -> 502 in %.2fs error="%s"; another route '
            'answered in %.3fs meanwhile'
            % (dt, recs[0].get("error") if recs else "?", dt1))
        # Let evdns give the abandoned lookup up before the daemon stops:
        # a lookup still pending at exit is leaked (see
        # pending/74-dns-shutdown-leak.py), which LeakSanitizer reports.
        time.sleep(max(0, t + 3.5 - time.monotonic()))


if __name__ == "__main__":
    run_tests(globals())
