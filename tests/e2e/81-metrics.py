#!/usr/bin/env python3
"""The Prometheus endpoint of the running daemon (metrics_listen;
docs/operations.md lists every metric).

traffic      a known mix (7 x 200, one upload, 3 x 404 without a route,
             2 x 502 from a route whose server refuses connections) is
             scraped and parsed strictly (_promparse); requests by route
             and class, histogram counts, handshakes, uplink bytes (equal
             to the sums of the access lines), upstream errors by kind and
             connection gauges match what was sent
reload       SIGHUP: reloads{result="ok"} and the success gauge; a broken
             file: reloads{result="failed"} and success 0; a new
             metrics_listen moves the endpoint; one that cannot be bound
             is logged and the old endpoint keeps serving
bind         metrics_listen on a port in use at start-up: exit status 1
             and a message naming the address
down         a route whose servers are all down answers 503 with
             Retry-After = health_interval and "all servers down" in the
             access line, without trying to connect (no new error)"""

import os
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403
import _promparse  # noqa: E402


def scrape(port, timeout=5):
    """Families of one strict parse of GET /metrics on port."""
    end = time.monotonic() + timeout
    while True:
        try:
            resp, _, raw = raw_request(
                port, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    expect(resp is not None, "no response from the endpoint (%r)" % raw)
    expect_eq(resp.status, 200, "scrape status")
    expect(resp.header("content-type", "").startswith("text/plain; "
                                                       "version=0.0.4"),
           "content type %r" % resp.header("content-type"))
    try:
        return _promparse.parse(resp.body)
    except _promparse.PromParseError as e:
        raise TestFailure("exposition refused: %s" % e)


def val(fams, name, **labels):
    try:
        return _promparse.value(fams, name, **labels)
    except KeyError:
        raise TestFailure("no sample %s%r" % (name, labels))


def wait_value(port, name, want, timeout=5, **labels):
    end = time.monotonic() + timeout
    while True:
        got = val(scrape(port), name, **labels)
        if got == want or time.monotonic() > end:
            return got
        time.sleep(0.1)


def wait_log(gw, text, n=1, timeout=5):
    end = time.monotonic() + timeout
    while True:
        got = [ln for ln in gw.lines() if text in ln]
        if len(got) >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


def test_counters_match_traffic():
    with World() as w:
        up = w.upstream()
        dead = free_port()
        mport = free_port()
        gw = w.gateway([
            ("cloud", route(up, w.pki, match_path="/v1/")),
            ("dead", route("127.0.0.1:%d" % dead, w.pki, connect_timeout=2)),
        ], gateway={"metrics_listen": "127.0.0.1:%d" % mport})
        dead_url = "http://%s/v1/x" % gw.listen[1]
        for i in range(7):
            r = curl(w.td, gw.url("/v1/ok%d" % i))
            expect_eq(r.status, 200, "request %d (%r)" % (i, r))
        body, _ = make_file(w.td, "upload.bin", 20000)
        r = curl(w.td, gw.url("/v1/upload"), "--data-binary", "@" + body)
        expect_eq(r.status, 200, "upload (%r)" % r)
        for i in range(3):
            r = curl(w.td, gw.url("/elsewhere/%d" % i))
            expect_eq(r.status, 404, "unrouted %d (%r)" % (i, r))
        for i in range(2):
            r = curl(w.td, dead_url)
            expect_eq(r.status, 502, "dead route %d (%r)" % (i, r))
        recs = gw.wait_access(n=13)
        expect_eq(len(recs), 13, "access lines")

        # Every device connection was closed by curl.
        expect_eq(wait_value(mport, "tlsgate_device_connections_open", 0),
                  0, "device connections open at the end")
        m = scrape(mport)
        expect_eq(val(m, "tlsgate_device_connections_total"), 13,
                  "device connections accepted")
        expect_eq(val(m, "tlsgate_route_configured", route="cloud"), 1,
                  "cloud configured")

        want = {("cloud", "2xx"): 8, ("dead", "5xx"): 2}
        for rname in ("cloud", "dead"):
            for cls in ("none", "1xx", "2xx", "3xx", "4xx", "5xx"):
                expect_eq(val(m, "tlsgate_requests_total", route=rname,
                              **{"class": cls}),
                          want.get((rname, cls), 0),
                          "requests_total route=%s class=%s" % (rname, cls))
        for cls in ("none", "1xx", "2xx", "3xx", "4xx", "5xx"):
            expect_eq(val(m, "tlsgate_unrouted_requests_total",
                          **{"class": cls}), 3 if cls == "4xx" else 0,
                      "unrouted class=%s" % cls)
        expect_eq(val(m, "tlsgate_request_duration_seconds_count",
                      route="cloud"), 8, "histogram count of cloud")
        expect_eq(val(m, "tlsgate_request_duration_seconds_count",
                      route="dead"), 2, "histogram count of dead")
        expect(val(m, "tlsgate_request_duration_seconds_sum",
                   route="cloud") > 0, "duration sum of cloud")

        # Handshakes and bytes, against the access lines.
        cloud = [a for a in recs if a["route"] == "cloud"]
        full = sum(1 for a in cloud if a["tls"] == "new")
        resumed = sum(1 for a in cloud if a["tls"] == "resumed")
        expect(full >= 1, "no full handshake in %r" % cloud)
        expect_eq(val(m, "tlsgate_uplink_handshakes_total", route="cloud",
                      kind="full"), full, "full handshakes")
        expect_eq(val(m, "tlsgate_uplink_handshakes_total", route="cloud",
                      kind="resumed"), resumed, "resumed handshakes")
        expect_eq(up.handshakes, full + resumed,
                  "handshakes the upstream saw")
        rx = sum(int(a["uplink_rx"]) for a in cloud)
        tx = sum(int(a["uplink_tx"]) for a in cloud)
        expect(rx > 0 and tx > 20000, "access byte sums rx=%d tx=%d"
               % (rx, tx))
        expect_eq(val(m, "tlsgate_uplink_bytes_total", route="cloud",
                      direction="in"), rx, "uplink bytes in")
        expect_eq(val(m, "tlsgate_uplink_bytes_total", route="cloud",
                      direction="out"), tx, "uplink bytes out")

        kinds = ("dns", "connect", "tls", "verify", "timeout", "protocol",
                 "reset")
        for rname in ("cloud", "dead"):
            for k in kinds:
                expect_eq(val(m, "tlsgate_upstream_errors_total",
                              route=rname, kind=k),
                          2 if (rname, k) == ("dead", "connect") else 0,
                          "upstream errors route=%s kind=%s" % (rname, k))

        # The pooled connections are open and idle; none to the dead one.
        opened = val(m, "tlsgate_upstream_connections_open", route="cloud")
        idle = val(m, "tlsgate_upstream_connections_idle", route="cloud")
        expect(opened >= 1 and opened == idle,
               "cloud connections open=%s idle=%s" % (opened, idle))
        expect_eq(val(m, "tlsgate_upstream_connections_open", route="dead"),
                  0, "dead connections open")
        # A lone server without health_check is never marked down.
        expect_eq(val(m, "tlsgate_upstream_server_up", route="cloud",
                      server=up.addr), 1, "cloud server up")
        expect_eq(val(m, "tlsgate_upstream_server_up", route="dead",
                      server="127.0.0.1:%d" % dead), 1, "dead server up")

        # One request held open: one device connection, one busy uplink.
        s = connect(gw.port)
        try:
            s.sendall(b"POST /v1/slow HTTP/1.1\r\nHost: d\r\n"
                      b"Content-Length: 10\r\n\r\n12345")
            expect(up.wait_requests(8), "upload not seen upstream")
            time.sleep(0.3)
            m = scrape(mport)
            expect_eq(val(m, "tlsgate_device_connections_open"), 1,
                      "device connections open during a request")
            expect_eq(val(m, "tlsgate_upstream_connections_open",
                          route="cloud") - val(
                          m, "tlsgate_upstream_connections_idle",
                          route="cloud"), 1, "busy uplink connections")
        finally:
            s.close()
        expect_eq(wait_value(mport, "tlsgate_device_connections_open", 0),
                  0, "device connections open after the close")


def test_reload():
    with World() as w:
        up = w.upstream()
        mport, mport2 = free_port(), free_port()
        gw = w.gateway([("cloud", route(up, w.pki))],
                       gateway={"metrics_listen": "127.0.0.1:%d" % mport})
        m = scrape(mport)
        expect_eq(val(m, "tlsgate_config_reloads_total", result="ok"), 0,
                  "reloads before any")
        expect_eq(val(m, "tlsgate_config_last_reload_success"), 1,
                  "success before any reload")
        good = gw.text

        gw.proc.send_signal(signal.SIGHUP)
        expect(wait_log(gw, "reloaded "), "no reload line")
        m = scrape(mport)
        expect_eq(val(m, "tlsgate_config_reloads_total", result="ok"), 1,
                  "reloads ok")
        expect_eq(val(m, "tlsgate_config_last_reload_success"), 1,
                  "success after a good reload")

        with open(gw.conf, "w") as f:
            f.write(good + "\n[route broken\n")
        gw.proc.send_signal(signal.SIGHUP)
        expect(wait_log(gw, "reload failed"), "no failed reload line")
        m = scrape(mport)
        expect_eq(val(m, "tlsgate_config_reloads_total", result="failed"),
                  1, "reloads failed")
        expect_eq(val(m, "tlsgate_config_reloads_total", result="ok"), 1,
                  "reloads ok after a failed one")
        expect_eq(val(m, "tlsgate_config_last_reload_success"), 0,
                  "success after a failed reload")

        # A new address: the endpoint moves.
        with open(gw.conf, "w") as f:
            f.write(good.replace(":%d\n" % mport, ":%d\n" % mport2))
        gw.proc.send_signal(signal.SIGHUP)
        expect(wait_log(gw, "reloaded ", n=2), "no second reload line")
        m = scrape(mport2)
        expect_eq(val(m, "tlsgate_config_reloads_total", result="ok"), 2,
                  "reloads ok on the new port")
        expect_eq(val(m, "tlsgate_config_last_reload_success"), 1,
                  "success after the move")
        try:
            connect(mport, timeout=2).close()
            raise TestFailure("the old metrics port still accepts")
        except ConnectionRefusedError:
            pass

        # An address in use: logged, the endpoint stays where it was.
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        w.add_cleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with open(gw.conf, "w") as f:
            f.write(good.replace(":%d\n" % mport,
                                 ":%d\n" % busy.getsockname()[1]))
        gw.proc.send_signal(signal.SIGHUP)
        expect(wait_log(gw, "reloaded ", n=3), "no third reload line")
        lines = [ln for ln in gw.lines() if "metrics endpoint stays" in ln]
        expect_eq(len(lines), 1, "warning about the metrics address")
        expect("127.0.0.1:%d" % busy.getsockname()[1] in lines[0],
               "address in %r" % lines[0])
        m = scrape(mport2)
        expect_eq(val(m, "tlsgate_config_reloads_total", result="ok"), 3,
                  "reloads ok, served on the old port")
        r = curl(w.td, gw.url("/v1/after"))
        expect_eq(r.status, 200, "traffic after the reloads (%r)" % r)


def test_bind_failure_at_start():
    with World() as w:
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        w.add_cleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        addr = "127.0.0.1:%d" % busy.getsockname()[1]
        gw = Gateway(w.td, [("cloud", route("127.0.0.1:1", w.pki))],
                     gateway={"metrics_listen": addr}, start=False)
        p = subprocess.run([TLSGATE, "-c", gw.conf], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=20)
        err = p.stderr.decode(errors="replace")
        expect_eq(p.returncode, 1, "exit status (stderr %r)" % err)
        expect("cannot start the metrics endpoint: metrics_listen %s: "
               "Address already in use" % addr in err,
               "message in %r" % err)


def test_all_servers_down():
    with World() as w:
        # Two servers: a lone server without health_check is never
        # marked down (upstream.h).
        servers = ["127.0.0.1:%d" % free_port() for _ in range(2)]
        dead = " ".join(servers)
        mport = free_port()
        gw = w.gateway([("dead", route(dead, w.pki, health_fall=1,
                                       health_interval=30))],
                       gateway={"metrics_listen": "127.0.0.1:%d" % mport})
        r = curl(w.td, gw.url("/v1/a"))
        expect_eq(r.status, 502, "first request (%r)" % r)
        r = curl(w.td, gw.url("/v1/b"))
        expect_eq(r.status, 503, "second request (%r)" % r)
        expect_eq(r.header("retry-after"), "30", "Retry-After")
        recs = gw.wait_access(lambda a: a.get("status") == "503")
        expect_eq(len(recs), 1, "access lines with 503")
        expect_eq(recs[0]["error"], "all servers down", "error logged")
        expect_eq(recs[0]["tls"], "-", "no uplink connection")
        m = scrape(mport)
        expect_eq(val(m, "tlsgate_upstream_errors_total", route="dead",
                      kind="connect"), 1, "connect errors (no new attempt)")
        expect_eq(val(m, "tlsgate_requests_total", route="dead",
                      **{"class": "5xx"}), 2, "5xx requests")
        for srv in servers:
            expect_eq(val(m, "tlsgate_upstream_server_up", route="dead",
                          server=srv), 0, "server %s up" % srv)


def test_docs_name_every_family():
    """docs/operations.md lists what the endpoint serves, and its queries
    and alert rules use no name the endpoint does not serve."""
    import re
    with World() as w:
        up = w.upstream()
        mport = free_port()
        w.gateway([("cloud", route(up, w.pki))],
                  gateway={"metrics_listen": "127.0.0.1:%d" % mport})
        served = set(scrape(mport))
        with open(os.path.join(TOP, "docs", "operations.md")) as f:
            doc = f.read()
        named = set(re.sub(r"_(bucket|sum|count)$", "", n)
                    for n in re.findall(r"tlsgate_[a-z_]+", doc))
        for fam in sorted(served):
            expect("| `%s` |" % fam in doc,
                   "family %s not in the table of docs/operations.md" % fam)
        expect_eq(sorted(named - served), [],
                  "names in docs/operations.md the endpoint does not serve")


run_tests(globals())
