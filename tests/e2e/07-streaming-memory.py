#!/usr/bin/env python3
"""Bounded memory with backpressure: a 50 MB upload to an upstream that
reads at 8 MB/s, and a 50 MB download to a device that reads at 8 MB/s,
must not grow the gateway's RSS (VmRSS, sampled every 20 ms during the
transfer) by more than RSS_LIMIT_KB; bodies arrive intact.  Without
backpressure the gateway would hold most of the 50 MB within a second
(loopback peers send at GB/s)."""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

SIZE = 50 << 20            # bytes each way
RATE = 8 << 20             # bytes/s of the slow side: ~6 s per transfer
RSS_LIMIT_KB = 1024        # the goal is a few hundred KB
SOCKBUF = 65536            # SO_RCVBUF of the slow reader, so the kernel
                           # does not absorb the difference either


class RssSampler:
    def __init__(self, gw):
        self.gw = gw
        self.samples = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                self.samples.append(self.gw.rss_kb())
            except (OSError, TypeError):
                return
            time.sleep(0.02)

    def finish(self):
        self.stop = True
        self.t.join(2)
        return max(self.samples) if self.samples else None


def gateway_env():
    """Under ASan, freed memory sits in a 256 MB quarantine and RSS grows
    with churn alone; a 1 MB quarantine keeps the figure meaningful."""
    if not is_sanitized():
        return None
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") +
            "quarantine_size_mb=1"}


def check_rss(what, base, peak, secs):
    growth = peak - base
    # ASan's allocator metadata and its 1 MB quarantine come on top
    limit = RSS_LIMIT_KB * (2 if is_sanitized() else 1)
    say("  %s: RSS baseline %d KB, peak %d KB, growth %d KB over %.1fs "
        "(limit %d KB%s)" % (what, base, peak, growth, secs, limit,
                             ", sanitizer build" if is_sanitized() else ""))
    expect(growth <= limit, "%s: RSS grew by %d KB (limit %d KB)"
           % (what, growth, limit))


def test_upload_50MB_to_slow_upstream():
    with World() as w:
        up = w.upstream(read_rate=RATE, rcvbuf=SOCKBUF,
                        respond=lambda q: Response(body=(
                            "%s %d" % (q.body_sha, q.body_len)).encode()))
        gw = w.gateway([("r", route(up, w.pki, upstream_timeout=60))],
                       gateway={"max_body_size": 0}, env=gateway_env())
        path, digest = make_file(w.td, "up.bin", SIZE, seed=11)
        # warm-up: TLS context, pool, first buffers
        warm, wd = make_file(w.td, "warm.bin", 1 << 20, seed=12)
        r = curl(w.td, gw.url("/warm"), "-T", warm, "-X", "POST",
                 "-H", "Expect:")
        expect_eq(r.status, 200, "warm-up upload (%r)" % r)
        time.sleep(0.3)
        base = gw.rss_kb()
        sampler = RssSampler(gw)
        t = time.monotonic()
        r = curl(w.td, gw.url("/upload50"), "-T", path, "-X", "POST",
                 "-H", "Expect:", max_time=60)
        secs = time.monotonic() - t
        peak = sampler.finish()
        expect_eq(r.status, 200, "50 MB upload status (%r)" % r)
        expect_eq(r.body.decode(errors="replace"), "%s %d" % (digest, SIZE),
                  "digest and length the upstream received")
        expect(secs > SIZE / RATE * 0.7,
               "upload took %.1fs: the upstream did not read slowly" % secs)
        check_rss("50 MB upload", base, peak, secs)
        recs = gw.wait_access(lambda a: a.get("path") == "/upload50")
        expect(recs and int(recs[0].get("bytes_in", 0)) >= SIZE,
               "access bytes_in for the upload: %r" % recs)


def test_download_50MB_to_slow_device():
    with World() as w:
        up = w.upstream(respond=lambda q: Response(
            body_size=SIZE if q.target == "/download50" else 1 << 20,
            seed=13, write_chunk=65536))
        gw = w.gateway([("r", route(up, w.pki, upstream_timeout=60))],
                       env=gateway_env())
        want = Response(body_size=SIZE, seed=13).body_sha()
        r = curl(w.td, gw.url("/warm"))
        expect_eq((r.status, len(r.body)), (200, 1 << 20), "warm-up download")
        time.sleep(0.3)
        base = gw.rss_kb()
        sampler = RssSampler(gw)
        t = time.monotonic()
        s = connect(gw.port, rcvbuf=SOCKBUF, timeout=30)
        try:
            s.sendall(b"GET /download50 HTTP/1.1\r\nHost: d\r\n\r\n")
            rd = Reader(s, rate=RATE, chunk=16384)
            sink = BodySink(keep=0)
            resp = read_response(rd, sink=sink,
                                 deadline=time.monotonic() + 60)
        finally:
            s.close()
        secs = time.monotonic() - t
        peak = sampler.finish()
        expect_eq(resp.status, 200, "download status")
        expect(sink.n == SIZE and sink.sha == want,
               "download body: %d bytes, sha %s; want %d, %s"
               % (sink.n, sink.sha, SIZE, want))
        check_rss("50 MB download", base, peak, secs)
        recs = gw.wait_access(lambda a: a.get("path") == "/download50")
        expect(recs and int(recs[0].get("bytes_out", 0)) >= SIZE,
               "access bytes_out for the download: %r" % recs)


if __name__ == "__main__":
    run_tests(globals())
