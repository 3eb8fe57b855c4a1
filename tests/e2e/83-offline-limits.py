#!/usr/bin/env python3
"""Store-and-forward at its limits and what it never does (docs/spool.md).

full        spool_max_bytes reached: 503 with Retry-After: 30 and a
            log line; the device connection stays usable
corrupt     an entry truncated while the daemon was stopped is moved to
            corrupt/ with a log line at the next start and never
            forwarded; the others are delivered in order
dead        an entry the upstream refuses with 400 goes to dead/ with the
            response beside it (logged), the next ones are still delivered
retry       a live POST answered 503 by the upstream is queued (202); its
            replay, refused once more with Retry-After: 1, is retried and
            delivered with its id
never       with the upstream down: a POST with ?ct= or &ct= (Drogue's
            command long-poll), a GET, and a POST on a route without
            offline_queue all get 502 and nothing is queued
reload      SIGHUP keeps the open spool (no second recovery scan); the
            queued entries are still delivered
rate        spool_rate paces the replays; a 2xx with a 3 MiB body (over
            OFFLINE_MAX_RESPONSE_BODY) or a chunked one is delivered, and
            the connection of the unread body is not reused
checks      with health_check set, the route's servers are checked once
            per health_interval: the store-and-forward sender does not
            run checks of its own next to the proxy's
device id   a device's own X-Tlsgate-Queue-Id is removed from live
            requests on a store-and-forward route (only the gateway's ids
            reach the cloud), and kept on a route without offline_queue
framings    chunked (with extensions and trailers), empty, Expect:
            100-continue and HTTP/1.0 keep-alive bodies are queued whole
            and replayed with Content-Length; a chunked body over
            max_body_size gets 413 and is not queued"""

import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403
import _promparse  # noqa: E402

HDR = "X-Tlsgate-Queue-Id"


def upstream_on(w, port, **kw):
    """A recording Upstream on a port chosen in advance."""
    return w.upstream(port=port, **kw)


def offline_route(w, up_port, spool, **keys):
    r = route("127.0.0.1:%d" % up_port, w.pki, offline_queue="yes",
              spool_dir=spool, connect_timeout=2, spool_rate=200,
              health_interval=1,
              listen="127.0.0.1:%d" % free_port())
    r.update(keys)
    return r


class Device:
    """One keep-alive device connection."""

    def __init__(self, port):
        self.s = connect(port)
        self.rd = Reader(self.s)

    def send(self, method, path, body=b""):
        head = "%s %s HTTP/1.1\r\nHost: dev\r\n" % (method, path)
        if method == "POST":
            head += "Content-Length: %d\r\n" % len(body)
        self.s.sendall(head.encode() + b"\r\n" + body)
        return read_response(self.rd, method)

    def close(self):
        self.s.close()


def scrape(port):
    s = connect(port)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        r = read_response(Reader(s))
    finally:
        s.close()
    return _promparse.parse(r.body.decode())


def entries(spool):
    return sorted(f for f in os.listdir(spool) if f.endswith(".req"))


def wait_for(pred, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def posts(up):
    with up.lock:
        return [q for q in up.requests if q.method == "POST"]


def test_full_then_corrupt():
    with World() as w:
        up_port = free_port()
        spool = w.td.join("spool")
        routes = [("r", offline_route(w, up_port, spool,
                                      spool_max_bytes=65536))]
        gw = w.gateway(routes, name="gw1")
        dev = Device(gw.port)
        body = b"x" * 2000
        ids, full = [], None
        for i in range(60):
            r = dev.send("POST", "/v1/t", b"%04d" % i + body)
            if r.status != 202:
                full = (i, r)
                break
            ids.append(r.header(HDR))
        expect(full is not None, "no refusal after 60 POSTs of 2 kB into "
               "a 64 KiB spool")
        i, r = full
        expect_eq(r.status, 503, "status once the spool is full")
        expect_eq(r.header("retry-after"), "30", "Retry-After")
        expect(20 <= i <= 32, "refused after %d entries" % i)
        r = dev.send("POST", "/v1/t", b"more" + body)
        expect_eq(r.status, 503, "next POST on the same connection")
        expect(wait_for(lambda: "offline queue full" in gw.log_text()),
               "no 'queue full' log line")
        acc = gw.wait_access(lambda a: a.get("status") == "503", n=2)
        expect(len(acc) >= 2 and "offline queue full" in acc[0]["error"],
               "access lines of the refusals: %r" % acc[:1])
        dev.close()
        gw.stop()
        say("  %d entries fit in spool_max_bytes 65536, then 503" % i)

        # Damage the third entry while the daemon is down.
        names = entries(spool)
        expect_eq(len(names), i, "entries on disk")
        victim = names[2]
        size = os.path.getsize(os.path.join(spool, victim))
        os.truncate(os.path.join(spool, victim), size // 2)
        up = upstream_on(w, up_port)
        mport = free_port()
        gw2 = w.gateway(routes, name="gw2", gateway={
            "metrics_listen": "127.0.0.1:%d" % mport})
        expect(wait_for(lambda: len(posts(up)) >= i - 1 and
                        not entries(spool)),
               "delivered %d of %d" % (len(posts(up)), i - 1))
        got = posts(up)
        want = [x for x in ids if not victim.startswith(x)]
        expect_eq([q.header(HDR) for q in got], want, "ids delivered")
        expect_eq(sorted(os.listdir(os.path.join(spool, "corrupt"))),
                  [victim], "corrupt/")
        m = scrape(mport)
        expect_eq(_promparse.value(m, "tlsgate_spool_events_total",
                                   route="r", event="corrupt"), 1.0,
                  "corrupt event counted")
        expect_eq(_promparse.value(m, "tlsgate_spool_events_total",
                                   route="r", event="replayed"),
                  float(len(got)), "replayed events counted")
        text = gw2.log_text()
        expect(re.search(r"warning: .*%s.*truncated" % re.escape(victim),
                         text), "no log line for the truncated file")
        say("  truncated %s set aside, %d others delivered"
            % (victim[:20], len(got)))


def test_dead_letter_retry_never_queued():
    with World() as w:
        up_port = free_port()
        spool = w.td.join("spool")
        routes = [("r", offline_route(w, up_port, spool)),
                  ("plain", route("127.0.0.1:%d" % up_port, w.pki,
                                  connect_timeout=2))]
        gw = w.gateway(routes)
        dev = Device(gw.port)
        ids = []
        for i in range(5):
            r = dev.send("POST", "/v1/t", b"bad" if i == 1 else b"ok %d" % i)
            expect_eq(r.status, 202, "POST %d with the upstream down" % i)
            ids.append(r.header(HDR))

        # Never queued: these need a live answer, or have no queue.
        # 502, or 503 once the failures marked the server down.
        for path in ("/v1/t?ct=30", "/v1/t?a=1&ct=5"):
            r = dev.send("POST", path, b"cmd")
            expect(r.status in (502, 503), "POST %s with the upstream down: "
                   "%d" % (path, r.status))
            dev.close()
            dev = Device(gw.port)       # the unread body closed it
        r = dev.send("GET", "/v1/t")
        expect(r.status in (502, 503), "GET with the upstream down: %d"
               % r.status)
        dev.close()
        r = curl(w.td, gw.url("/v1/t", 1), "--data-binary", "p")
        expect(r.status in (502, 503), "POST on a route without "
               "offline_queue: %d" % r.status)
        expect_eq(len(entries(spool)), 5, "entries queued")

        # SIGHUP: the spool stays open, no second recovery.
        opens = lambda: len(re.findall(r"info: spool %s: \d+ entries"
                                       % re.escape(spool), gw.log_text()))
        expect_eq(opens(), 1, "spool opened at start-up")
        gw.proc.send_signal(signal.SIGHUP)
        expect(wait_for(lambda: "reloaded" in gw.log_text(), 5),
               "no reload line")
        expect_eq(opens(), 1, "spool opened again by a reload")

        busy = {"n": 0}

        def respond(q):
            if q.body == b"bad":
                return Response(400, b"reading rejected\n")
            if q.body == b"busy":
                busy["n"] += 1
                if busy["n"] <= 2:
                    return Response(503, b"later\n",
                                    headers=[("Retry-After", "1")])
            return Response(202, b"")
        up = upstream_on(w, up_port, respond=respond)
        # The passive health check lets a trial through health_interval
        # after the last failure.
        st = []
        expect(wait_for(lambda: st.append(curl(w.td, gw.url("/live"),
                                               max_time=5).status) or
                        st[-1] == 202, 6), "live GET once the upstream "
               "is back: %r" % st)
        expect(wait_for(lambda: not entries(spool)), "spool not drained")
        got = [q.header(HDR) for q in posts(up)]
        expect_eq(got, ids, "replayed ids, the refused one included")
        dead = sorted(os.listdir(os.path.join(spool, "dead")))
        expect_eq(dead, [ids[1] + ".req", ids[1] + ".resp"], "dead/")
        with open(os.path.join(spool, "dead", ids[1] + ".resp"), "rb") as f:
            resp = f.read()
        expect(resp.startswith(b"status: 400\n") and
               b"reading rejected" in resp, "dead letter response %r"
               % resp[:200])
        expect(re.search(r"warning: route r: %s refused by the upstream "
                         r"with status 400" % ids[1], gw.log_text()),
               "no dead-letter log line")

        # A live POST the upstream answers 503: queued, then retried.
        dev = Device(gw.port)
        r = dev.send("POST", "/v1/t", b"busy")
        expect_eq(r.status, 202, "live POST answered 503 upstream")
        qid = r.header(HDR)
        t0 = time.monotonic()
        expect(wait_for(lambda: [q for q in posts(up)
                                 if q.header(HDR) == qid and
                                 busy["n"] >= 3], 10),
               "busy request not delivered (%d attempts)" % busy["n"])
        dt = time.monotonic() - t0
        r = dev.send("POST", "/v1/t", b"ok live")
        expect_eq(r.status, 202, "next live POST")
        expect_eq(r.header(HDR), None, "live POST was forwarded, not queued")
        dev.close()
        expect(dt >= 0.9, "Retry-After: 1 not waited (%.2fs)" % dt)
        expect(re.search(r"replay of %s failed \(status 503\)" % qid,
                         gw.log_text()), "no line for the failed replay")
        say("  dead letter kept with its response; 503 replay retried "
            "after %.1fs" % dt)


def test_framings():
    """Chunked, empty, Expect: 100-continue and HTTP/1.0 bodies are queued
    whole and replayed with a Content-Length; an oversized chunked body
    gets 413 and is not queued."""
    with World() as w:
        up_port = free_port()
        spool = w.td.join("spool")
        routes = [("r", offline_route(w, up_port, spool))]
        gw = w.gateway(routes, gateway={"max_body_size": "4k"})
        s = connect(gw.port)
        rd = Reader(s)
        s.sendall(b"POST /c HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: "
                  b"chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n"
                  b"0\r\nX-T: 1\r\n\r\n")
        r1 = read_response(rd, "POST")
        s.sendall(b"POST /e HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n"
                  b"\r\n")
        r2 = read_response(rd, "POST")
        s.sendall(b"POST /x HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        r3 = read_response(rd, "POST", skip_interim=False)
        expect_eq(r3.status, 100, "interim answer to Expect")
        s.sendall(b"body")
        r3 = read_response(rd, "POST")
        s.close()
        r4, _, _ = raw_request(gw.port, b"POST /h HTTP/1.0\r\nHost: d\r\n"
                               b"Connection: keep-alive\r\nContent-Length:"
                               b" 3\r\n\r\nold", "POST")
        for r in (r1, r2, r3, r4):
            expect(r is not None and r.status == 202 and r.header(HDR),
                   "queued: %r" % r)
        expect_eq(r4.header("connection"), "keep-alive", "1.0 keep-alive")
        big = b"".join(b"400\r\n" + b"z" * 1024 + b"\r\n" for _ in range(5))
        r5, _, _ = raw_request(gw.port, b"POST /big HTTP/1.1\r\nHost: d\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + big +
                               b"0\r\n\r\n", "POST")
        expect(r5 is not None and r5.status == 413, "oversized chunked: %r"
               % r5)
        expect_eq(len(entries(spool)), 4, "entries queued")

        up = upstream_on(w, up_port)
        expect(wait_for(lambda: len(posts(up)) >= 4 and not entries(spool)),
               "replayed %d" % len(posts(up)))
        got = [(q.target, q.body, q.framing, q.header("content-length"),
                q.header("transfer-encoding"), q.header("expect"))
               for q in posts(up)]
        expect_eq(got, [("/c", b"hello world", "cl", "11", None, None),
                        ("/e", b"", "cl", "0", None, None),
                        ("/x", b"body", "cl", "4", None, None),
                        ("/h", b"old", "cl", "3", None, None)],
                  "replayed requests")


def test_health_checks_once():
    """One health check per interval on an offline route, not one from
    the proxy and another from the store-and-forward sender."""
    with World() as w:
        up = w.upstream()
        spool = w.td.join("spool")
        r = offline_route(w, up.port, spool, health_check="GET /healthz",
                          health_interval=1, health_timeout=1)
        gw = w.gateway([("off", r)])
        time.sleep(0.5)
        with up.lock:
            n0 = sum(1 for q in up.requests if q.target == "/healthz")
        time.sleep(4)
        with up.lock:
            n1 = sum(1 for q in up.requests if q.target == "/healthz")
        say("  health checks in 4 s at health_interval 1: %d" % (n1 - n0))
        # 4 expected; two sets of checks would make 8.
        expect(3 <= n1 - n0 <= 5, "health checks in 4 s: %d" % (n1 - n0))
        expect(gw.alive(), "daemon died")


def test_device_queue_id_removed():
    """A live POST carrying a device's own queue id: the cloud does not see
    it on a store-and-forward route, and does on a plain one."""
    with World() as w:
        up = w.upstream()
        spool = w.td.join("spool")
        off = offline_route(w, up.port, spool)
        plain = route(up, w.pki, listen="127.0.0.1:%d" % free_port())
        gw = w.gateway([("off", off), ("plain", plain)])
        for name, port in (("off", int(off["listen"].rsplit(":", 1)[1])),
                           ("plain", int(plain["listen"].rsplit(":", 1)[1]))):
            d = Device(port)
            s = "POST /%s HTTP/1.1\r\nHost: dev\r\nContent-Length: 2\r\n" \
                "x-tlsgate-queue-id: 00000000000000000001-spoofed\r\n\r\nhi" \
                % name
            d.s.sendall(s.encode())
            r = read_response(d.rd, "POST")
            d.close()
            expect_eq(r.status, 200, "%s: live answer" % name)
            expect(r.header(HDR) is None, "%s: no queue id on a live "
                   "answer" % name)
        got = dict((q.target, q.header(HDR)) for q in posts(up))
        expect_eq(got, {"/off": None,
                        "/plain": "00000000000000000001-spoofed"},
                  "queue id the cloud saw")
        expect_eq(entries(spool), [], "nothing queued")
        expect(gw.alive(), "daemon died")


def test_rate_and_responses():
    """spool_rate paces the replays; a replay answered with a body over
    OFFLINE_MAX_RESPONSE_BODY (1 MiB) or a chunked one is delivered (the
    status decides), and the big one's connection is not reused."""
    with World() as w:
        up_port = free_port()
        spool = w.td.join("spool")
        routes = [("r", offline_route(w, up_port, spool, spool_rate=5))]
        gw = w.gateway(routes)
        dev = Device(gw.port)
        for i in range(8):
            r = dev.send("POST", "/v1/t", b"n%d" % i)
            expect_eq(r.status, 202, "POST %d" % i)
        dev.close()

        def respond(q):
            if q.body == b"n1":
                return Response(200, body_size=3 << 20)
            if q.body == b"n2":
                return Response(201, b"chunked answer\n" * 100,
                                mode="chunked", write_chunk=100)
            return Response(200, b"ok\n")
        up = upstream_on(w, up_port, respond=respond)
        st = []
        expect(wait_for(lambda: st.append(curl(w.td, gw.url("/live"),
                                               max_time=5).status) or
                        st[-1] == 200, 6), "live GET: %r" % st)
        expect(wait_for(lambda: len(posts(up)) >= 8 and not entries(spool),
                        20), "replayed %d" % len(posts(up)))
        got = posts(up)
        expect_eq([q.body for q in got], [b"n%d" % i for i in range(8)],
                  "bodies replayed once each, in order")
        # The sender paces the starts of its attempts (7 gaps of 0.2 s);
        # the upstream sees arrivals, later by a handshake for some.
        # Unpaced, the 8 would take well under 0.5 s.
        gaps = ["%.2f" % (b.time - a.time) for a, b in zip(got, got[1:])]
        span = got[-1].time - got[0].time
        expect(1.1 <= span <= 6, "8 replays at 5/s took %.2fs (gaps %s)"
               % (span, gaps))
        expect(got[2].conn_id != got[1].conn_id,
               "connection reused after an unread 3 MiB body")
        expect_eq(got[3].conn_id, got[2].conn_id,
                  "connection reused after a complete chunked response")
        say("  8 replays at spool_rate 5 took %.2fs (gaps %s)"
            % (span, " ".join(gaps)))


if __name__ == "__main__":
    run_tests(globals())
