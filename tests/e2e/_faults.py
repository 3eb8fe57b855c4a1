"""Fault-injecting peers for the tlsgate end-to-end tests (imported, not
run; tests/run.sh skips files starting with "_").

  FaultServer   a TCP server on 127.0.0.1 whose connections are handled by
                a function of the test's choosing; the behaviours below
                cover what lib.Upstream cannot do (a reset, a stall inside
                the TLS handshake, a head that never ends, garbage before
                or after the handshake)
  DnsServer     a tiny authoritative DNS server on 127.0.0.1 (UDP) that
                answers A queries from a table the test can change, and
                counts the queries per name
  Device        small raw-socket helpers for device-side clients

Standard library only, like lib.py.
"""

import os
import socket
import ssl
import struct
import threading
import time

from lib import Closed, Reader, hget, parse_head


# ---------------------------------------------------------------------------
# A TCP server with pluggable per-connection behaviour

class FaultServer:
    """Accepts on 127.0.0.1:<port>; each connection runs handler(conn, srv)
    in its own thread.  srv.tls_ctx is a server SSLContext with the good
    certificate of pki (or None).  srv.accepted counts connections,
    srv.events collects what handlers report (srv.note)."""

    def __init__(self, handler, pki=None):
        self.handler = handler
        self.accepted = 0
        self.events = []
        self.lock = threading.Lock()
        self.tls_ctx = None
        if pki is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(*pki.good)
            self.tls_ctx = ctx
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._conns = []
        self._stop = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def note(self, what):
        with self.lock:
            self.events.append(what)

    def stopped(self):
        return self._stop

    def _accept_loop(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self._conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(c, self)
        except (OSError, ssl.SSLError, Closed, ValueError) as e:
            self.note("error: %r" % e)
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def hold(c, srv, first=b""):
    """Sends `first`, then reads and drops everything until the peer
    closes or the server stops (a peer that never answers)."""
    if first:
        c.sendall(first)
    c.settimeout(0.2)
    while not srv.stopped():
        try:
            d = c.recv(65536)
        except socket.timeout:
            continue
        if not d:
            srv.note("peer closed")
            return


def reset(c, srv):
    """Accepts, then resets the connection (SO_LINGER 0: RST, no FIN)."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def reset_after_hello(c, srv):
    """Reads the ClientHello, then resets."""
    c.settimeout(5)
    c.recv(65536)
    reset(c, srv)


def stall_handshake(c, srv):
    """Never says a word: the TLS handshake stalls before ServerHello."""
    hold(c, srv)


def stall_mid_handshake(c, srv):
    """Reads the ClientHello and sends the first bytes of a handshake record
    (a ServerHello that never ends): the handshake stalls half-way."""
    c.settimeout(5)
    c.recv(65536)
    hold(c, srv, first=b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03")


def garbage_instead_of_tls(c, srv):
    """Answers the ClientHello with bytes that are not TLS."""
    c.settimeout(5)
    c.recv(65536)
    c.sendall(b"\x00\xffgarbage, not a TLS record\r\n" * 20)
    hold(c, srv)


def tls_wrap(c, srv):
    """TLS handshake as a server; returns the TLS socket or None."""
    try:
        s = srv.tls_ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError) as e:
        srv.note("handshake failed: %r" % e)
        return None
    s.settimeout(10)
    return s


def read_request(s):
    """Reads one request (head and Content-Length body) from TLS socket s;
    returns (start line, headers) or None when the peer closed."""
    rd = Reader(s)
    try:
        head = rd.head()
    except Closed:
        return None
    start, hdrs = parse_head(head)
    n = int(hget(hdrs, "content-length", "0"))
    if n:
        rd.exact(n, lambda b: None)
    return start, hdrs


def tls_answer(answer, then_hold=True):
    """Handler: TLS, read one request, send `answer` (bytes, or a function
    of the request line returning bytes), then hold the connection open
    (then_hold) or close it without close_notify."""
    def handler(c, srv):
        s = tls_wrap(c, srv)
        if s is None:
            return
        req = read_request(s)
        if req is None:
            return
        srv.note("request: " + req[0])
        data = answer(req[0]) if callable(answer) else answer
        s.sendall(data)
        if then_hold:
            hold(s, srv)
    return handler


def tls_stall_after_request(c, srv):
    """TLS completes, the request is read, no answer ever comes."""
    tls_answer(b"")(c, srv)


# ---------------------------------------------------------------------------
# A DNS server for the re-resolution test

class DnsServer:
    """UDP DNS on 127.0.0.1:<port>.  answers: {name: "a.b.c.d"} for A
    queries; a name not in the table gets NXDOMAIN; AAAA for a known name
    gets an empty answer (NOERROR).  queries: {name: count of A queries}."""

    def __init__(self, answers=None):
        self.answers = dict(answers or {})
        self.queries = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._loop, daemon=True).start()

    def count(self, name):
        with self.lock:
            return self.queries.get(name.lower(), 0)

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                q, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                r = self._answer(q)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            if r:
                try:
                    self.sock.sendto(r, peer)
                except OSError:
                    pass

    def _answer(self, q):
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            return None
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii"))
            i += 1 + q[i]
        qtype, qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        with self.lock:
            if qtype == 1:
                self.queries[name] = self.queries.get(name, 0) + 1
            addr = self.answers.get(name)
        rd = flags & 0x0100
        if addr is None:
            rflags, answers = 0x8400 | rd | 3, b""      # NXDOMAIN
        elif qtype == 1:
            rflags = 0x8400 | rd
            answers = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) +
                       socket.inet_aton(addr))
        else:
            rflags, answers = 0x8400 | rd, b""         # NOERROR, no data
        return (struct.pack("!HHHHHH", qid, rflags, 1,
                            1 if answers else 0, 0, 0) + question + answers)

    def close(self):
        self._stop = True
        self.sock.close()


# ---------------------------------------------------------------------------
# Device-side helpers

def recv_all(s, timeout=5, limit=1 << 22):
    """Reads until EOF or timeout; returns (bytes, eof)."""
    s.settimeout(timeout)
    out = bytearray()
    end = time.monotonic() + timeout
    while len(out) < limit:
        left = end - time.monotonic()
        if left <= 0:
            return bytes(out), False
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return bytes(out), False
        except ConnectionResetError:
            return bytes(out), True
        if not d:
            return bytes(out), True
        out += d
    return bytes(out), False


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_kinds(pid, listen_port, up_port):
    """The daemon's descriptors by kind: {"device": TCP connections
    accepted on listen_port, "uplink": TCP connections to up_port, "other":
    everything else (listening sockets, epoll, pipes, DNS, stdio)}."""
    inodes = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        inodes[fd] = link[8:-1] if link.startswith("socket:[") else None
    conns = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for ln in f:
                    x = ln.split()
                    if x[3] == "0A":        # LISTEN
                        continue
                    conns[x[9]] = (int(x[1].rsplit(":", 1)[1], 16),
                                   int(x[2].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    out = {"device": 0, "uplink": 0, "other": 0}
    for fd, ino in inodes.items():
        lp, rp = conns.get(ino, (None, None))
        if lp == listen_port:
            out["device"] += 1
        elif rp == up_port:
            out["uplink"] += 1
        else:
            out["other"] += 1
    return out


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


__all__ = ["FaultServer", "DnsServer", "hold", "reset", "reset_after_hello",
           "stall_handshake", "stall_mid_handshake", "garbage_instead_of_tls",
           "tls_wrap", "read_request", "tls_answer", "tls_stall_after_request",
           "recv_all", "fd_count", "fd_kinds", "rss_kb"]
