#!/usr/bin/env python3
"""Store-and-forward (offline_queue, docs/spool.md): the whole life of a
queue across an outage and a crash.

outage     the upstream is down (nothing listens on its port); 1,000 POSTs
           from 8 keep-alive devices, each body carrying its sequence
           number, all get 202 with an X-Tlsgate-Queue-Id; the daemon is
           killed with SIGKILL after the first 500 and started again on
           the same spool, and the other 500 are queued behind them
replay     a recording upstream comes up on that port; a live GET is
           served at once (and wakes the sender), and another while the
           queue replays; the daemon is killed again in the middle of the
           replay and restarted; all 1,000 arrive, in the order of their
           ids (so each device's in its sending order), each carrying the
           id the device was given, none lost; a repeat must carry the
           same id; the spool holds only its subdirectories afterwards;
           the log has one "replayed" line per entry (one may be missing:
           see below) and a "drained" summary; the metrics count the
           replays"""

import os
import re
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403
import _promparse  # noqa: E402

DEVICES = 8
TOTAL = 1000
ID_RE = re.compile(r"^(\d{20})-([0-9a-f]{16})$")


def upstream_on(w, port, **kw):
    """A recording Upstream on a port chosen in advance."""
    return w.upstream(port=port, **kw)


def offline_route(w, up_port, spool, **keys):
    r = route("127.0.0.1:%d" % up_port, w.pki, offline_queue="yes",
              spool_dir=spool, connect_timeout=2)
    r.update(keys)
    return r


def post(sock, rd, path, body, extra=""):
    sock.sendall(("POST %s HTTP/1.1\r\nHost: dev\r\nContent-Length: %d\r\n"
                  "%s\r\n" % (path, len(body), extra)).encode() + body)
    return read_response(rd, "POST")


def devices_send(port, seqs, results, errors):
    """DEVICES threads, each on one keep-alive connection, send the bodies
    of their share of seqs in order; results[seq] = (status, id)."""
    def run(dev, mine):
        try:
            s = connect(port, timeout=20)
            rd = Reader(s)
            for n in mine:
                body = b"seq=%06d dev=%d" % (n, dev)
                r = post(s, rd, "/v1/telemetry?src=%d" % dev, body)
                results[n] = (r.status, r.header(OFFLINE_HDR), dev)
            s.close()
        except Exception as e:     # reported by the caller
            errors.append("device %d: %r" % (dev, e))
    threads = []
    for d in range(DEVICES):
        t = threading.Thread(target=run, args=(d, seqs[d::DEVICES]))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(120)


OFFLINE_HDR = "X-Tlsgate-Queue-Id"


def spool_files(spool):
    """{subdir or "": [names]} of the spool directory."""
    out = {}
    for d in ("", "tmp", "dead", "corrupt"):
        p = os.path.join(spool, d)
        out[d] = sorted(os.listdir(p)) if os.path.isdir(p) else None
    return out


def scrape(port):
    s = connect(port)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        r = read_response(Reader(s))
    finally:
        s.close()
    return _promparse.parse(r.body.decode())


def test_outage_kill_replay():
    with World() as w:
        up_port = free_port()
        spool = w.td.join("spool", "r")    # parents created by the daemon
        mport = free_port()
        routes = [("r", offline_route(w, up_port, spool, spool_rate=1000,
                                      listen="127.0.0.1:%d" % free_port()))]
        gw_keys = {"metrics_listen": "127.0.0.1:%d" % mport}
        gw = w.gateway(routes, gateway=gw_keys, name="gw1")
        results, errors = {}, []
        t0 = time.monotonic()
        devices_send(gw.port, list(range(TOTAL // 2)), results, errors)
        expect(not errors, "devices: %s" % errors[:3])
        t_first = time.monotonic() - t0

        # kill -9: nothing is flushed, nothing is said.
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        gw.stopped = True
        gw.log_f.close()
        queued = [f for f in spool_files(spool)[""] if f.endswith(".req")]
        expect_eq(len(queued), TOTAL // 2, "entries on disk after SIGKILL")

        gw2 = w.gateway(routes, gateway=gw_keys, name="gw2")
        devices_send(gw2.port, list(range(TOTAL // 2, TOTAL)), results,
                     errors)
        expect(not errors, "devices: %s" % errors[:3])
        t_all = time.monotonic() - t0
        bad = [(n, r) for n, r in sorted(results.items())
               if r[0] != 202 or not ID_RE.match(r[1] or "")]
        expect(len(results) == TOTAL and not bad,
               "%d answers, not 202 with an id: %r" % (len(results), bad[:5]))
        ids = [results[n][1] for n in range(TOTAL)]
        expect_eq(len(set(ids)), TOTAL, "distinct ids given to devices")
        say("  %d POSTs queued in %.1fs (first half %.1fs), SIGKILL between"
            % (TOTAL, t_all, t_first))
        acc = gw2.wait_access(lambda a: a.get("status") == "202", n=1)
        expect(acc and acc[0].get("error", "").startswith("queued "),
               "access line of a queued request: %r" % acc[:1])

        # The cloud comes back.
        up = upstream_on(w, up_port)
        r = curl(w.td, gw2.url("/live/get"), max_time=10)
        expect_eq(r.status, 200, "live GET while the queue replays")
        t1 = time.monotonic()
        expect(up.wait_requests(TOTAL // 4, timeout=20),
               "replay did not start: %d requests" % len(up.requests))
        # Live traffic is served while the queue replays.
        r = curl(w.td, gw2.url("/live/during"), max_time=10)
        left = len([f for f in os.listdir(spool) if f.endswith(".req")])
        expect_eq(r.status, 200, "live GET during the replay")
        expect(left > 0, "replay already over: not a test of live traffic "
               "during it")
        expect(up.wait_requests(TOTAL // 3, timeout=20),
               "replay stalled: %d requests" % len(up.requests))
        gw2.proc.send_signal(signal.SIGKILL)
        gw2.proc.wait()
        gw2.stopped = True
        gw2.log_f.close()
        with up.lock:
            before = len(up.requests) - 1
        gw3 = w.gateway(routes, gateway=gw_keys, name="gw3")
        end = t1 + 40
        while time.monotonic() < end:
            with up.lock:
                n = len([q for q in up.requests if q.method == "POST"])
            if n >= TOTAL and not [f for f in os.listdir(spool)
                                   if f.endswith(".req")]:
                break
            time.sleep(0.1)
        dt = time.monotonic() - t1
        with up.lock:
            got = [q for q in up.requests if q.method == "POST"]
        say("  replayed %d requests in %.1fs, SIGKILL after %d"
            % (len(got), dt, before))

        # Order, completeness, duplicates.
        seen, order = {}, []
        for q in got:
            qid = q.header(OFFLINE_HDR)
            m = re.match(rb"seq=(\d+) dev=(\d+)$", q.body or b"")
            expect(m is not None and qid is not None,
                   "replayed request without body or id: %r" % q)
            n = int(m.group(1))
            expect_eq(qid, results[n][1], "id of seq %d upstream" % n)
            if n in seen:
                continue          # a repeat, with the same id (checked)
            seen[n] = qid
            order.append(n)
        missing = sorted(set(range(TOTAL)) - set(seen))
        expect(not missing, "%d never arrived, e.g. %r" % (len(missing),
                                                           missing[:5]))
        want = sorted(range(TOTAL), key=lambda k: int(results[k][1][:20]))
        expect(order == want, "delivery not in queue order; first "
               "difference at %r" % next((i for i, (a, b) in
                                          enumerate(zip(order, want))
                                          if a != b), None))
        for d in range(DEVICES):
            mine = [n for n in order if n % DEVICES == d]
            expect_eq(mine, sorted(mine), "device %d's order" % d)
        q0 = got[0]
        expect_eq(q0.target, "/v1/telemetry?src=%d" % (order[0] % DEVICES),
                  "replayed target (query kept)")
        expect_eq(q0.header("host"), CLOUD, "replayed Host")
        expect_eq(q0.header("content-length"), str(len(q0.body)),
                  "replayed Content-Length")
        expect("1.1 tlsgate" in (q0.header("via") or ""),
               "replayed Via: %r" % q0.header("via"))
        expect_eq(q0.sni, CLOUD, "replay SNI")
        say("  %d delivered once each, %d repeats, in queue order"
            % (len(seen), len(got) - len(seen)))

        files = spool_files(spool)
        expect_eq(files, {"": ["corrupt", "dead", "tmp"], "tmp": [],
                          "dead": [], "corrupt": []}, "spool at the end")
        pat = r"route r: replayed (\S+) status 200, (\d+) left"
        early = re.findall(pat, gw2.log_text())
        text = gw3.log_text()
        replayed = re.findall(pat, text)
        # One entry may miss its line: removed from the spool (the ack's
        # directory sync under way) when SIGKILL came, before the log.
        nlines = len(set(i for i, _ in early + replayed))
        expect(TOTAL - 1 <= nlines == len(early) + len(replayed) <= TOTAL,
               "'replayed' log lines: %d distinct ids in %d lines"
               % (nlines, len(early) + len(replayed)))
        expect_eq(replayed[-1][1], "0", "entries left after the last")
        expect("offline queue drained" in text, "no 'drained' line")
        m = scrape(mport)
        ev = dict((lab["event"], v) for lab, v in _promparse.samples(
            m, "tlsgate_spool_events_total", route="r"))
        expect_eq(ev.get("replayed"), float(len(replayed)),
                  "tlsgate_spool_events_total{event=replayed}")
        expect_eq(ev.get("queued"), 0.0,
                  "tlsgate_spool_events_total{event=queued} since restart")
        expect_eq(_promparse.value(m, "tlsgate_spool_entries", route="r"),
                  0.0, "tlsgate_spool_entries")


if __name__ == "__main__":
    run_tests(globals())
