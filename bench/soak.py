#!/usr/bin/env python3
"""Soak benchmark: the real daemon under sustained load with faults.

    make soak SOAK_SECONDS=600           # or: TLSGATE=./tlsgate bench/soak.py

Loopback only.  A recording HTTPS upstream (lib.Upstream, in a child
process so that it does not share the clients' interpreter lock) and a
fault server (_faults.FaultServer, resets every uplink) sit behind three
routes of one daemon:

  main    the ordinary route (upstream_timeout 10 s)
  reset   to the fault server: the uplink is reset after the request
          (or right after the TCP accept) -> 502
  slow    the same upstream with upstream_timeout 1 s; /slow answers
          after 3 s -> 504

SOAK_THREADS client threads (default 8) then run for SOAK_WARMUP seconds
(default 10, not measured) and SOAK_SECONDS seconds (default 120) a mix
of keep-alive GETs and POSTs with bodies (every body checked byte for
byte, every upload echoed back by the upstream as length + SHA-256) and
a steady share of faults: device disconnects mid-upload and mid-response,
device resets, heads cut short, malformed requests (400 and close), the
upstream closing mid-response (the device must see the body cut short),
the upstream closing without answering (502), the upstream resetting
(502), a slow upstream (504 at upstream_timeout), a new connection per
request (Connection: close honoured).  Every outcome is classified as
expected (the right status or end of connection for the injected fault)
or unexpected.  The daemon's RSS and descriptor count are sampled every
second.

The summary: requests and requests/s, expected outcomes by kind,
unexpected errors, RSS median of the first and of the last minute of the
measured run (halves when shorter than two minutes) and the least-squares
slope, descriptors at the start and at the end (after sessions ended).
Exit status 1 when there was any unexpected error, when RSS grew by
SOAK_RSS_BOUND_KB (default 1024) or more between those two medians (not
checked for a sanitizer build, whose quarantine holds freed memory), when
descriptors leaked (a device connection left, more idle uplinks than the
pools hold, or any other descriptor more than at the start), or when the
daemon crashed or a sanitizer reported something.

Standard library only; lib.py and _faults.py come from tests/e2e.
"""

import hashlib
import multiprocessing
import os
import random
import signal
import socket
import statistics
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
TOP = os.environ.get("TOP") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import lib  # noqa: E402
from lib import (Closed, Gateway, Response, TempDir, TestFailure,  # noqa: E402
                 is_sanitized, route, say)
from _faults import (FaultServer, fd_count, read_request, rss_kb,  # noqa: E402
                     tls_wrap)

SECONDS = int(os.environ.get("SOAK_SECONDS", "120"))
WARMUP = int(os.environ.get("SOAK_WARMUP", "10"))
THREADS = int(os.environ.get("SOAK_THREADS", "8"))
RSS_BOUND_KB = int(os.environ.get("SOAK_RSS_BOUND_KB", "1024"))
SEED = int(os.environ.get("SOAK_SEED", "1"))

POOL_MAX = 16           # UPSTREAM_POOL_MAX in src/upstream.h (per route)
POOLED_ROUTES = 2       # main and slow keep idle uplinks; reset never can
PROXY_LINGER = 2        # PROXY_LINGER in src/proxy.h (seconds)
IDLE_TIMEOUT = 10       # the daemon's idle_timeout here (seconds)
UPSTREAM_TIMEOUT = 1    # upstream_timeout of the slow route (seconds)
SLOW_DELAY = 3          # how long /slow makes the daemon wait (seconds)
CLIENT_TIMEOUT = 15     # a device gives up on any read after this long
MAX_BODY = 1 << 20      # the daemon's max_body_size here
BIG = 256 * 1024        # /big: a response the device abandons
TRUNC_CL = 100000       # /trunc announces this many bytes ...
TRUNC_SENT = 5000       # ... and sends only these before closing
SAMPLE_EVERY = 1.0      # seconds between RSS / descriptor samples
EXAMPLES = 20           # unexpected outcomes kept for the report

BLOCK = lib.pattern_bytes(BIG, seed=3)
GET_SIZES = (0, 1, 100, 1000, 4096, 16384, 65536)
POST_SIZES = (1, 200, 1500, 8192, 32768, 65536)

# Operation kinds and their weights (per 1000 operations).  The first
# four are ordinary traffic; the rest inject one fault each.
MIX = (
    ("get", 390),               # keep-alive GET, body checked
    ("get-chunked", 60),        # same, the upstream answers chunked
    ("post", 260),              # keep-alive POST, upload echoed back
    ("post-chunked", 50),       # chunked upload
    ("new-conn", 50),           # Connection: close, one request
    ("dev-abort-upload", 30),   # device goes away mid-upload
    ("dev-abort-response", 30),  # device goes away mid-response
    ("dev-reset", 15),          # request, then RST before the answer
    ("head-cut", 15),           # head cut short, then gone
    ("malformed", 30),          # 400 and close
    ("up-truncate", 20),        # upstream closes mid-response
    ("up-drop", 20),            # upstream closes without answering: 502
    ("up-reset", 20),           # upstream resets: 502
    ("up-slow", 10),            # slow upstream: 504
)

# Requests the daemon must refuse with 400 and close (RFC 9112 §6.3: two
# different Content-Length values, Transfer-Encoding with Content-Length;
# §5.1: whitespace before the colon; §3: a malformed request line;
# RFC 9110 §8.6: a Content-Length that is not a number).
MALFORMED = (
    b"GET /m HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\n"
    b"Content-Length: 2\r\n\r\n",
    b"POST /m HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /m HTTP/1.1\r\nHost : d\r\n\r\n",
    b"GET /m HTTP/1.1 junk\r\nHost: d\r\n\r\n",
    b"POST /m HTTP/1.1\r\nHost: d\r\nContent-Length: 12a\r\n\r\n",
)


# ---------------------------------------------------------------------------
# The upstream side (child process)

def respond(q):
    """What the recording upstream answers, by path."""
    parts = q.target.split("/")
    if q.target.startswith("/g/"):
        return Response(body=BLOCK[:int(parts[2])])
    if q.target.startswith("/c/"):
        return Response(body=BLOCK[:int(parts[2])], mode="chunked",
                        write_chunk=5000)
    if q.target.startswith("/p"):
        return Response(status=202, body=b"%d %s" % (q.body_len,
                                                     q.body_sha.encode()))
    if q.target == "/big":
        return Response(body=BLOCK)
    if q.target in ("/trunc", "/trunc-late"):
        r = Response(raw=b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                     % TRUNC_CL + BLOCK[:TRUNC_SENT])
        r.close_after = 0.2 if q.target == "/trunc-late" else 0
        return r
    if q.target == "/drop":
        return None
    if q.target == "/slow":
        return Response(delay=SLOW_DELAY)
    return Response(status=404, body=b"no such path\n")


class SoakUpstream(lib.Upstream):
    """lib.Upstream whose raw answers may wait before the close."""

    def _send(self, s, req, resp):
        if resp.raw is not None and getattr(resp, "close_after", 0):
            s.sendall(resp.raw)
            time.sleep(resp.close_after)
            return False
        return lib.Upstream._send(self, s, req, resp)


def resetting(c, srv):
    """Fault server handler: every other connection is reset right after
    the accept, the others after the TLS handshake and the request."""
    with srv.lock:
        n = srv.accepted
    if n % 2:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        return
    s = tls_wrap(c, srv)
    if s is None:
        return
    if read_request(s) is not None:
        srv.note("request")
    # the TLS socket owns the descriptor now: linger 0 on it sends a RST
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def upstream_main(pki, pipe):
    """Runs the upstream and the fault server until the parent says stop;
    keeps their bookkeeping bounded and sends back what they saw."""
    counts = {"requests": 0, "errors": 0, "fault_requests": 0}
    lock = threading.Lock()

    def recording(q):
        with lock:
            counts["requests"] += 1
        with up.lock:           # counted: drop the record and its body
            del up.requests[:]
        return respond(q)

    up = SoakUpstream(pki, respond=recording)
    fs = FaultServer(resetting, pki)
    pipe.send((up.addr, fs.addr))
    while not pipe.poll(SAMPLE_EVERY):
        with up.lock:
            counts["errors"] += len(up.errors)
            del up.errors[:]
            up._conns = [c for c in up._conns if c.fileno() >= 0]
        with fs.lock:
            counts["fault_requests"] += fs.events.count("request")
            del fs.events[:]
            fs._conns = [c for c in fs._conns if c.fileno() >= 0]
    pipe.recv()
    with up.lock:
        counts.update(connections=up.connections, handshakes=up.handshakes,
                      failed_handshakes=up.failed_handshakes,
                      errors=counts["errors"] + len(up.errors))
    counts["fault_connections"] = fs.accepted
    up.close()
    fs.close()
    pipe.send(counts)


# ---------------------------------------------------------------------------
# Devices

class Unexpected(Exception):
    pass


class Device:
    """One raw keep-alive connection to one route of the daemon."""

    def __init__(self, port):
        self.port = port
        self.s = None
        self.buf = b""
        self.used = 0.0

    def ensure(self):
        # A connection idle for nearly idle_timeout may be closing on the
        # daemon's side: a real device would retry, this one reconnects.
        if self.s is None or time.monotonic() - self.used > IDLE_TIMEOUT - 2:
            self.open()

    def open(self):
        self.close()
        self.s = socket.create_connection(("127.0.0.1", self.port),
                                          timeout=CLIENT_TIMEOUT)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.used = time.monotonic()

    def close(self, rst=False):
        if self.s is not None:
            if rst:
                self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            self.s.close()
            self.s = None

    def send(self, data):
        self.s.sendall(data)
        self.used = time.monotonic()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise Closed()
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 4096:
                raise Unexpected("chunk-size line too long")
            self._fill()
        ln, _, self.buf = self.buf.partition(b"\r\n")
        return ln

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        """(status, {lower-case name: value}) of the next final response."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                if len(self.buf) > 65536:
                    raise Unexpected("response head too long")
                self._fill()
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ")[1])
            hdrs = {}
            for ln in lines[1:]:
                n, _, v = ln.partition(b":")
                hdrs[n.strip().lower()] = v.strip()
            if not 100 <= status < 200:
                return status, hdrs

    def body(self, status, hdrs):
        """The body; keep is False when it was close-delimited."""
        if status in (204, 304):
            return b"", True
        if b"chunked" in hdrs.get(b"transfer-encoding", b"").lower():
            out = []
            while True:
                n = int(self._line().split(b";")[0], 16)
                if n == 0:
                    break
                out.append(self._exact(n))
                if self._exact(2) != b"\r\n":
                    raise Unexpected("bad chunk end")
            while self._line():
                pass
            return b"".join(out), True
        if b"content-length" in hdrs:
            return self._exact(int(hdrs[b"content-length"])), True
        while True:
            try:
                self._fill()
            except Closed:
                out, self.buf = self.buf, b""
                return out, False

    def response(self):
        """(status, body) of one response; closes when it was the last."""
        status, hdrs = self.head()
        body, framed = self.body(status, hdrs)
        self.used = time.monotonic()
        if not framed or hdrs.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    def eof_within(self, seconds):
        """True when the daemon closes with nothing more sent."""
        if self.buf:
            return False
        self.s.settimeout(seconds)
        try:
            return self.s.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            if self.s is not None:
                self.s.settimeout(CLIENT_TIMEOUT)


def want(cond, what):
    if not cond:
        raise Unexpected(what)


def upload(n, rng):
    off = rng.randrange(0, BIG - n + 1)
    body = BLOCK[off:off + n]
    echo = b"%d %s" % (n, hashlib.sha256(body).hexdigest().encode())
    return body, echo


def op_get(d, rng, chunked):
    n = rng.choice(GET_SIZES)
    d.ensure()
    d.send(b"GET /%s/%d HTTP/1.1\r\nHost: d\r\n\r\n"
           % (b"c" if chunked else b"g", n))
    st, body = d.response()
    want(st == 200 and body == BLOCK[:n],
         "GET %d bytes: status %d, %d body bytes%s" % (
             n, st, len(body), "" if len(body) != n else " (content differs)"))


def op_post(d, rng, chunked):
    n = rng.choice(POST_SIZES)
    body, echo = upload(n, rng)
    d.ensure()
    if chunked:
        cut = n // 2
        data = b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                        for p in (body[:cut], body[cut:]) if p)
        d.send(b"POST /p HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n" + data + b"0\r\n\r\n")
    else:
        d.send(b"POST /p HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n"
               % n + body)
    st, got = d.response()
    want(st == 202 and got == echo, "POST %d bytes: status %d, upstream "
         "saw %r" % (n, st, got[:80]))


def op_new_conn(d, rng):
    n = rng.choice(GET_SIZES)
    d.open()
    d.send(b"GET /g/%d HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n" % n)
    st, hdrs = d.head()
    body, _ = d.body(st, hdrs)
    want(st == 200 and body == BLOCK[:n], "Connection: close GET: status "
         "%d, %d body bytes" % (st, len(body)))
    # RFC 9112 §9.6: the server closes after the response.
    want(hdrs.get(b"connection", b"").lower() == b"close" and
         d.eof_within(PROXY_LINGER + 3),
         "Connection: close not honoured (connection: %r)"
         % hdrs.get(b"connection"))
    d.close()


def op_dev_abort_upload(d, rng):
    d.open()
    d.send(b"POST /p HTTP/1.1\r\nHost: d\r\nContent-Length: 200000\r\n\r\n"
           + BLOCK[:rng.choice((1, 20000, 100000))])
    d.close(rst=rng.random() < 0.5)


def op_dev_abort_response(d, rng):
    d.open()
    d.send(b"GET /big HTTP/1.1\r\nHost: d\r\n\r\n")
    st, _ = d.head()
    want(st == 200, "GET /big: status %d" % st)
    d.close(rst=rng.random() < 0.5)


def op_dev_reset(d, rng):
    d.open()
    d.send(b"GET /g/100 HTTP/1.1\r\nHost: d\r\n\r\n")
    d.close(rst=True)


def op_head_cut(d, rng):
    d.open()
    d.send(b"GET /g/1 HTTP/1.1\r\nHost: d\r\nX-A: b")
    d.close()


def op_malformed(d, rng):
    req = rng.choice(MALFORMED)
    d.open()
    d.send(req)
    st, hdrs = d.head()
    d.body(st, hdrs)
    want(st == 400, "malformed %r: status %d" % (req[:40], st))
    want(d.eof_within(PROXY_LINGER + 3),
         "malformed %r: connection not closed after the 400" % req[:40])
    d.close()


def op_up_truncate(d, rng, late):
    """The upstream sends the head and TRUNC_SENT of TRUNC_CL body bytes,
    then closes at once or (late) 0.2 s later.  RFC 9112 §8: the device
    must be able to tell the message is incomplete, so the daemon closes
    before the announced length.  Returns the outcome's name."""
    d.ensure()
    d.send(b"GET /trunc%s HTTP/1.1\r\nHost: d\r\n\r\n"
           % (b"-late" if late else b""))
    try:
        st, hdrs = d.head()
    except (Closed, ConnectionResetError):
        # Head and partial body were still queued for the device when
        # the upstream's close arrived: nothing reached the device.
        d.close()
        want(not late, "/trunc-late: closed before the response head")
        return "up-truncate (closed before the head)"
    want(st == 200 and hdrs.get(b"content-length") == b"%d" % TRUNC_CL,
         "/trunc: status %d, %r" % (st, hdrs))
    got = len(d.buf)
    try:
        while True:
            d._fill()
            got = len(d.buf)
    except (Closed, ConnectionResetError):
        pass
    d.close()
    want(got <= TRUNC_SENT and (got == TRUNC_SENT or not late),
         "/trunc%s: %d of %d body bytes before the close (upstream sent %d)"
         % ("-late" if late else "", got, TRUNC_CL, TRUNC_SENT))
    return "up-truncate-late" if late else "up-truncate"


def op_status(d, rng, path, status, method=b"GET"):
    d.ensure()
    t = time.monotonic()
    if method == b"POST":
        d.send(b"POST %s HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n\r\nhello"
               % path)
    else:
        d.send(b"GET %s HTTP/1.1\r\nHost: d\r\n\r\n" % path)
    st, _ = d.response()
    want(st == status, "%s %s: status %d, want %d" % (
        method.decode(), path.decode(), st, status))
    return time.monotonic() - t


def op_up_slow(d, rng):
    dt = op_status(d, rng, b"/slow", 504)
    want(dt >= UPSTREAM_TIMEOUT * 0.8, "504 after %.2fs, before "
         "upstream_timeout %ds" % (dt, UPSTREAM_TIMEOUT))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {}
        self.bad = {}
        self.examples = []

    def add(self, kind, err=None):
        with self.lock:
            if err is None:
                self.ok[kind] = self.ok.get(kind, 0) + 1
                return
            self.bad[kind] = self.bad.get(kind, 0) + 1
            if len(self.examples) < EXAMPLES:
                self.examples.append("%.1fs %s: %s" % (
                    time.monotonic() - T0[0], kind, err))

    def total(self):
        with self.lock:
            return sum(self.ok.values()) + sum(self.bad.values())

    def unexpected(self):
        with self.lock:
            return sum(self.bad.values())


T0 = [time.monotonic()]


def client(k, ports, stop, stats):
    rng = random.Random(SEED * 1000 + k)
    main, rst, slow = (Device(p) for p in ports)
    kinds = [m[0] for m in MIX]
    weights = [m[1] for m in MIX]
    ops = {
        "get": lambda: op_get(main, rng, False),
        "get-chunked": lambda: op_get(main, rng, True),
        "post": lambda: op_post(main, rng, False),
        "post-chunked": lambda: op_post(main, rng, True),
        "new-conn": lambda: op_new_conn(Device(ports[0]), rng),
        "dev-abort-upload": lambda: op_dev_abort_upload(Device(ports[0]), rng),
        "dev-abort-response": lambda: op_dev_abort_response(Device(ports[0]),
                                                            rng),
        "dev-reset": lambda: op_dev_reset(Device(ports[0]), rng),
        "head-cut": lambda: op_head_cut(Device(ports[0]), rng),
        "malformed": lambda: op_malformed(Device(ports[0]), rng),
        "up-truncate": lambda: op_up_truncate(main, rng, rng.random() < 0.5),
        "up-drop": lambda: op_status(main, rng, b"/drop", 502,
                                     rng.choice((b"GET", b"POST"))),
        "up-reset": lambda: op_status(rst, rng, b"/r", 502,
                                      rng.choice((b"GET", b"POST"))),
        "up-slow": lambda: op_up_slow(slow, rng),
    }
    while not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        try:
            got = ops[kind]()
            stats.add(got if isinstance(got, str) else kind)
        except Unexpected as e:
            stats.add(kind, str(e))
            main.close()
        except (OSError, Closed, ValueError, IndexError) as e:
            stats.add(kind, repr(e))
            main.close()
            rst.close()
            slow.close()
    for d in (main, rst, slow):
        d.close()


def run_clients(ports, seconds, stats, on_tick=None):
    stop = threading.Event()
    ths = [threading.Thread(target=client, args=(k, ports, stop, stats),
                            daemon=True) for k in range(THREADS)]
    for t in ths:
        t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(SAMPLE_EVERY, max(0, end - time.monotonic())))
        if on_tick:
            on_tick()
    stop.set()
    for t in ths:
        t.join(CLIENT_TIMEOUT + SLOW_DELAY + 5)
    return not any(t.is_alive() for t in ths)


# ---------------------------------------------------------------------------
# The daemon's descriptors

def fd_kinds(pid, listen_ports, up_ports):
    """{"device": connections accepted on listen_ports, "uplink":
    connections to up_ports, "other": everything else}."""
    inodes = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        inodes.append(link[8:-1] if link.startswith("socket:[") else None)
    conns = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for ln in f:
                x = ln.split()
                if x[3] != "0A":        # not LISTEN
                    conns[x[9]] = (int(x[1].rsplit(":", 1)[1], 16),
                                   int(x[2].rsplit(":", 1)[1], 16))
    out = {"device": 0, "uplink": 0, "other": 0}
    for ino in inodes:
        lp, rp = conns.get(ino, (None, None))
        if lp in listen_ports:
            out["device"] += 1
        elif rp in up_ports:
            out["uplink"] += 1
        else:
            out["other"] += 1
    return out


def settle(pid, lports, uports, other, timeout):
    """Waits until no device connection is left and at most `other` other
    descriptors (a socket being torn down may be missing from
    /proc/net/tcp for a moment)."""
    end = time.monotonic() + timeout
    k = fd_kinds(pid, lports, uports)
    while (k["device"] or k["other"] > other) and time.monotonic() < end:
        time.sleep(0.2)
        k = fd_kinds(pid, lports, uports)
    return k


def fmt_kinds(k):
    return "%d (%d device, %d uplink, %d other)" % (
        sum(k.values()), k["device"], k["uplink"], k["other"])


def slope_kb_per_min(samples):
    """Least-squares slope of RSS over time, KB per minute."""
    if len(samples) < 2:
        return 0.0
    ts = [s[0] for s in samples]
    rs = [s[1] for s in samples]
    mt, mr = statistics.fmean(ts), statistics.fmean(rs)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return 60 * sum((t - mt) * (r - mr) for t, r in zip(ts, rs)) / var


# ---------------------------------------------------------------------------

def main():
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    if SECONDS < 2 or THREADS < 1:
        say("SOAK_SECONDS must be at least 2 and SOAK_THREADS at least 1")
        return 2
    td = TempDir(prefix="tlsgate-soak.")
    child = gw = None
    failures = []
    try:
        pki = lib.Pki(td)
        mp = multiprocessing.get_context("fork")
        pipe, child_end = mp.Pipe()
        child = mp.Process(target=upstream_main, args=(pki, child_end),
                           daemon=True)
        child.start()
        if not pipe.poll(30):
            raise TestFailure("upstream process did not start")
        up_addr, fs_addr = pipe.recv()
        uports = {int(up_addr.rsplit(":", 1)[1]), int(fs_addr.rsplit(":", 1)[1])}
        gw = Gateway(td, [
            ("main", route(up_addr, pki, upstream_timeout=10)),
            ("reset", route(fs_addr, pki, upstream_timeout=10)),
            ("slow", route(up_addr, pki, upstream_timeout=UPSTREAM_TIMEOUT)),
        ], gateway={"log_level": "warning", "header_timeout": 5,
                    "idle_timeout": IDLE_TIMEOUT, "max_body_size": MAX_BODY},
            start=False, name="soak")
        gw.start()
        pid = gw.pid()
        ports = [int(hp.rsplit(":", 1)[1]) for hp in gw.listen]
        lports = set(ports)
        base = fd_kinds(pid, lports, uports)
        sanitized = is_sanitized()
        say("soak: %s, %d client threads, %ds warm-up + %ds measured, "
            "loopback" % (lib.TLSGATE, THREADS, WARMUP, SECONDS))

        warm = Stats()
        T0[0] = time.monotonic()
        if WARMUP > 0:
            run_clients(ports, WARMUP, warm)
        linger = IDLE_TIMEOUT + PROXY_LINGER + 5
        start = settle(pid, lports, uports, base["other"], linger)

        stats = Stats()
        samples = []            # (seconds since start, RSS KB, fds)
        T0[0] = t0 = time.monotonic()
        last_print = [t0]

        def tick():
            now = time.monotonic()
            try:
                samples.append((now - t0, rss_kb(pid), fd_count(pid)))
            except OSError:
                return          # the daemon is gone: reported below
            if now - last_print[0] >= 10:
                last_print[0] = now
                say("  %4.0fs  %7d requests  RSS %6d KB  fds %4d  "
                    "unexpected %d" % (now - t0, stats.total(),
                                       samples[-1][1], samples[-1][2],
                                       stats.unexpected()))

        tick()
        joined = run_clients(ports, SECONDS, stats, tick)
        dt = time.monotonic() - t0
        if not joined:
            failures.append("client threads still blocked after the run")
        alive = gw.alive()
        end = settle(pid, lports, uports, start["other"], linger) \
            if alive else None
        if alive:
            final = Device(ports[0])
            try:
                op_get(final, random.Random(0), False)
            except (Unexpected, OSError, Closed, ValueError) as e:
                failures.append("request after the run failed: %r" % e)
            final.close()
        pipe.send("stop")
        upc = pipe.recv() if pipe.poll(20) else {}
        try:
            gw.stop()
        except TestFailure as e:
            failures.append(str(e))

        # ---- summary ----
        n = stats.total()
        unexpected = stats.unexpected() + warm.unexpected()
        say("")
        say("Soak summary")
        say("  requests       %d in %.0fs: %.0f/s (warm-up %d more, not "
            "counted)" % (n, dt, n / dt, warm.total()))
        ordinary = {"get", "get-chunked", "post", "post-chunked"}
        order = [k for k, _ in MIX]

        def base(name):
            return name.split(" ")[0].replace("-late", "")
        names = sorted(set(stats.ok) | set(order),
                       key=lambda x: (order.index(base(x)), x))
        say("  ordinary ok    " + ", ".join(
            "%s %d" % (k, stats.ok.get(k, 0)) for k in names
            if base(k) in ordinary))
        say("  faults ok      " + ", ".join(
            "%s %d" % (k, stats.ok.get(k, 0)) for k in names
            if base(k) not in ordinary))
        say("  unexpected     %d (warm-up %d)" % (unexpected,
                                                  warm.unexpected()))
        for e in warm.examples + stats.examples:
            say("    " + e)
        if upc:
            say("  upstream       %d requests recorded on %d connections "
                "(%d handshakes); fault server %d connections, %d requests"
                % (upc["requests"], upc["connections"], upc["handshakes"],
                   upc["fault_connections"], upc["fault_requests"]))
        if unexpected:
            failures.append("%d unexpected outcomes" % unexpected)

        w = min(60.0, dt / 2)
        first = [s[1] for s in samples if s[0] < w]
        last = [s[1] for s in samples if s[0] >= dt - w]
        if first and last:
            m1, m2 = statistics.median(first), statistics.median(last)
            slope = slope_kb_per_min([(s[0], s[1]) for s in samples])
            slope2 = slope_kb_per_min([(s[0], s[1]) for s in samples
                                       if s[0] >= dt - w])
            say("  RSS            first %.0fs median %.0f KB, last %.0fs "
                "median %.0f KB: %+.0f KB; min %d, max %d KB" % (
                    w, m1, w, m2, m2 - m1, min(s[1] for s in samples),
                    max(s[1] for s in samples)))
            say("  RSS slope      %+.1f KB/min over the run, %+.1f KB/min "
                "over the last %.0fs" % (slope, slope2, w))
            if sanitized:
                say("  RSS            not judged: sanitizer build")
            elif m2 - m1 >= RSS_BOUND_KB:
                failures.append("RSS grew by %.0f KB (bound %d KB)"
                                % (m2 - m1, RSS_BOUND_KB))
        else:
            failures.append("no RSS samples")
        if samples:
            say("  fds sampled    min %d, max %d during the run" % (
                min(s[2] for s in samples), max(s[2] for s in samples)))
        say("  fds            start %s" % fmt_kinds(start))
        if end is None:
            failures.append("daemon died during the run")
        else:
            say("  fds            end   %s" % fmt_kinds(end))
            if (end["device"] or end["other"] > start["other"] or
                    end["uplink"] > POOL_MAX * POOLED_ROUTES):
                failures.append("descriptor leak: %s at the end, %s at the "
                                "start (idle pools hold at most %d)" % (
                                    fmt_kinds(end), fmt_kinds(start),
                                    POOL_MAX * POOLED_ROUTES))
    except TestFailure as e:
        failures.append(str(e))
    finally:
        if gw is not None:
            try:
                gw.stop()
            except TestFailure as e:
                failures.append(str(e))
        if child is not None and child.is_alive():
            child.terminate()
            child.join(5)
        td.cleanup()
    if failures:
        say("FAIL: " + "; ".join(failures))
        return 1
    say("PASS: no unexpected outcome, RSS flat, no descriptor leak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
