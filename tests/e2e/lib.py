"""Shared helpers for the tlsgate end-to-end tests (imported, not run).

Each test file builds its own throw-away world in a private temp dir:

  Pki       a test CA, leaf certificates made with the openssl CLI (the
            right name, a wrong name, an expired one, one from a CA the
            gateway does not trust)
  Upstream  a threaded HTTPS server on 127.0.0.1 that records every request
            it receives (SNI, request line, headers in order, body digest,
            framing, connection id, TLS session reuse) and answers with a
            behaviour the test chooses (Response)
  Gateway   the real daemon ($TLSGATE, default ./tlsgate) with a generated
            config, stderr captured to a file; stop() fails the test when the
            daemon crashed or a sanitizer wrote a report
  curl()    curl as the device; raw_* helpers for bytes curl will not send

Test files call run_tests(globals()), which runs every test_* function in
file order, prints "ok"/"FAIL" per test and exits 1 when any failed.
Standard library only.
"""

import atexit
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TOP = os.environ.get("TOP") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TLSGATE = os.environ.get("TLSGATE") or os.path.join(TOP, "tlsgate")
OPENSSL = os.environ.get("OPENSSL", "openssl")
KEEP = os.environ.get("TLSGATE_KEEP") == "1"

CLOUD = "cloud.test"          # the name the upstream's good certificate carries


class TestFailure(AssertionError):
    pass


def expect(cond, msg):
    """Fails the current test with msg (a string or a callable) when not cond."""
    if not cond:
        raise TestFailure(msg() if callable(msg) else msg)


def expect_eq(got, want, what):
    expect(got == want, lambda: "%s: expected %r, got %r" % (what, want, got))


def say(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------
# Temp dir, ports, data

class TempDir:
    def __init__(self, prefix="tlsgate-e2e."):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def join(self, *p):
        return os.path.join(self.path, *p)

    def write(self, name, data):
        p = self.join(name)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return p

    def cleanup(self):
        if KEEP:
            say("kept", self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def free_port(family=socket.AF_INET):
    """A TCP port nothing listens on right now (small race accepted)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pattern_bytes(n, seed=1):
    """n deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(b"tlsgate-%d" % seed).digest()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(block + i.to_bytes(8, "big")).digest() * 32
        i += 1
    return bytes(out[:n])


def make_file(td, name, size, seed=1):
    """Writes size pattern bytes to td/name; returns (path, sha256 hex)."""
    p = td.join(name)
    h = hashlib.sha256()
    block = pattern_bytes(1 << 20, seed)
    with open(p, "wb") as f:
        left = size
        while left > 0:
            b = block[:min(left, len(block))]
            f.write(b)
            h.update(b)
            left -= len(b)
    return p, h.hexdigest()


def sha256(b):
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------
# PKI with the openssl CLI

_CA_CONF = """\
[ca]
default_ca = CA_default
[CA_default]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
default_days = 30
[policy_any]
commonName = supplied
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _run(cmd, env=None, timeout=30):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (
            " ".join(cmd), r.returncode,
            r.stderr.decode(errors="replace")[-2000:]))
    return r


class Ca:
    """A self-signed CA that signs leaves with `openssl ca`."""

    def __init__(self, dir, name):
        self.dir = dir
        os.makedirs(os.path.join(dir, "newcerts"))
        open(os.path.join(dir, "index.txt"), "w").close()
        with open(os.path.join(dir, "serial"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=dir))
        self.key = os.path.join(dir, "ca.key")
        self.cert = os.path.join(dir, "ca.pem")
        _run([OPENSSL, "req", "-x509", "-new", "-nodes",
              "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-keyout", self.key, "-out", self.cert, "-days", "30",
              "-subj", "/CN=" + name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-addext", "subjectKeyIdentifier=hash"])

    def leaf(self, stem, dns_names, start=None, end=None):
        """Signs a new leaf; returns (cert path, key path).  start/end are
        openssl ca dates (YYMMDDHHMMSSZ) for a certificate outside its
        validity period."""
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        crt = os.path.join(self.dir, stem + ".pem")
        _run([OPENSSL, "req", "-new", "-nodes",
              "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-keyout", key, "-out", csr, "-subj", "/CN=" + dns_names[0]])
        env = dict(os.environ)
        env["SAN"] = ",".join("DNS:" + n for n in dns_names)
        cmd = [OPENSSL, "ca", "-batch", "-notext", "-config", self.conf,
               "-cert", self.cert, "-keyfile", self.key, "-extensions",
               "leaf_ext", "-in", csr, "-out", crt]
        if start:
            cmd += ["-startdate", start, "-enddate", end]
        _run(cmd, env=env)
        return crt, key


class Pki:
    """Everything the upstream tests need, made once per test file.

    ca          the CA the gateway trusts (ca_file)
    good        leaf for cloud.test (SAN), signed by ca
    wrong       leaf for wrong.test, signed by ca
    expired     leaf for cloud.test, valid 2020-2021, signed by ca
    untrusted   leaf for cloud.test, signed by a CA nobody trusts
    client      leaf for device-gw.test (for mutual TLS), signed by ca
    """

    def __init__(self, td):
        base = td.join("pki")
        self.ca = Ca(os.path.join(base, "ca"), "tlsgate e2e CA")
        self.other_ca = Ca(os.path.join(base, "other"), "untrusted e2e CA")
        self.ca_file = self.ca.cert
        self.good = self.ca.leaf("cloud", [CLOUD, "*." + CLOUD])
        self.wrong = self.ca.leaf("wrong", ["wrong.test"])
        self.expired = self.ca.leaf("expired", [CLOUD], start="200101000000Z",
                                    end="210101000000Z")
        self.untrusted = self.other_ca.leaf("untrusted", [CLOUD])
        self.client = self.ca.leaf("client", ["device-gw.test"])


# ---------------------------------------------------------------------------
# HTTP/1 reading helpers shared by the upstream and the raw device client

class Closed(Exception):
    pass


class Reader:
    """Buffered reads from a socket (plain or TLS), with an optional rate
    limit in bytes per second and a chunk size for slow readers."""

    def __init__(self, sock, rate=None, chunk=65536):
        self.sock = sock
        self.buf = bytearray()
        self.rate = rate
        self.chunk = chunk
        self.t0 = None
        self.got = 0

    def _fill(self):
        if self.rate:
            if self.t0 is None:
                self.t0 = time.monotonic()
            ahead = self.got / self.rate - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)
        d = self.sock.recv(self.chunk)
        if not d:
            raise Closed()
        self.got += len(d)
        self.buf += d

    def line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()

    def head(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                out = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return out
            if len(self.buf) > limit:
                raise ValueError("head too long")
            self._fill()

    def exact(self, n, sink):
        """Passes exactly n bytes to sink(bytes)."""
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def until_close(self, sink, deadline=None):
        if self.buf:
            sink(bytes(self.buf))
            self.buf.clear()
        while True:
            if deadline and time.monotonic() > deadline:
                raise TimeoutError("no EOF before deadline")
            try:
                self._fill()
            except Closed:
                return
            sink(bytes(self.buf))
            self.buf.clear()

    def chunked(self, sink):
        """Decodes a chunked body into sink; returns the trailer lines."""
        while True:
            ln = self.line()
            size = int(ln.split(b";")[0].strip(), 16)
            if size == 0:
                break
            self.exact(size, sink)
            if self.line() != b"\r\n":
                raise ValueError("bad chunk end")
        trailers = []
        while True:
            ln = self.line()
            if ln == b"\r\n":
                return trailers
            trailers.append(ln)


def parse_head(head):
    """(start line, [(name, value)]) of a message head."""
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0]
    hdrs = []
    for ln in lines[1:]:
        if not ln:
            continue
        name, _, value = ln.partition(":")
        hdrs.append((name, value.strip(" \t")))
    return start, hdrs


def hget(hdrs, name, default=None):
    """Value of the first header called name (case-insensitive)."""
    name = name.lower()
    for n, v in hdrs:
        if n.lower() == name:
            return v
    return default


def hall(hdrs, name):
    name = name.lower()
    return [v for n, v in hdrs if n.lower() == name]


class BodySink:
    """Digest and length of a body; keeps the bytes up to `keep`."""

    def __init__(self, keep=2 << 20):
        self.h = hashlib.sha256()
        self.n = 0
        self.keep = keep
        self.data = bytearray()

    def __call__(self, b):
        self.h.update(b)
        self.n += len(b)
        if len(self.data) < self.keep:
            self.data += b[:self.keep - len(self.data)]

    @property
    def sha(self):
        return self.h.hexdigest()

    @property
    def bytes(self):
        return bytes(self.data) if self.n <= self.keep else None


# ---------------------------------------------------------------------------
# The recording HTTPS upstream

class Response:
    """What the upstream answers.

    status, reason, headers ([(name, value)], sent in order), body (bytes)
    or body_size (pattern bytes generated on the fly, for big bodies);
    mode: "cl" (Content-Length), "chunked", "close" (close-delimited),
          "none" (no framing header and no body: 1xx/204/304 or raw tests);
    interim: [(status, [(name, value)])] 1xx responses sent first;
    delay: seconds to wait before answering; close: add Connection: close
    and close after the response; idle_close: seconds after which the
    upstream silently closes the connection once the response is sent (an
    idle timeout); write_chunk: size of each write/chunk; raw: bytes sent
    as the whole answer, then the connection is closed (broken upstreams).
    """

    def __init__(self, status=200, body=b"ok\n", headers=None, mode="cl",
                 reason=None, body_size=None, interim=None, delay=0,
                 close=False, write_chunk=16384, seed=7, idle_close=None,
                 raw=None):
        self.status = status
        self.reason = reason or {100: "Continue", 103: "Early Hints",
                                 200: "OK", 201: "Created", 202: "Accepted",
                                 204: "No Content", 304: "Not Modified",
                                 404: "Not Found"}.get(status, "Whatever")
        self.body = body
        self.body_size = body_size
        self.headers = list(headers or [])
        self.mode = mode
        self.interim = interim or []
        self.delay = delay
        self.close = close
        self.write_chunk = write_chunk
        self.seed = seed
        self.idle_close = idle_close
        self.raw = raw

    def body_len(self):
        return self.body_size if self.body_size is not None else len(self.body)

    def body_sha(self):
        if self.body_size is None:
            return sha256(self.body)
        h = hashlib.sha256()
        self._gen(h.update)
        return h.hexdigest()

    def _gen(self, sink):
        if self.body_size is None:
            for i in range(0, len(self.body), self.write_chunk):
                sink(self.body[i:i + self.write_chunk])
            return
        block = pattern_bytes(1 << 20, self.seed)   # repeated as needed
        left, off = self.body_size, 0
        while left > 0:
            b = block[off:off + min(left, self.write_chunk)]
            sink(b)
            left -= len(b)
            off = (off + len(b)) % len(block)


class Recorded:
    """One request as the upstream saw it."""

    def __init__(self):
        self.conn_id = None
        self.sni = None
        self.resumed = None
        self.tls_version = None
        self.method = None
        self.target = None
        self.version = None
        self.headers = []
        self.framing = None       # "cl", "chunked" or "none"
        self.body_len = 0
        self.body_sha = None
        self.body = None          # bytes, or None when too big to keep
        self.trailers = []
        self.time = None
        self.peer_cn = None       # client certificate CN (mutual TLS)

    def header(self, name, default=None):
        return hget(self.headers, name, default)

    def __repr__(self):
        return "<%s %s conn=%s sni=%s hdrs=%r len=%d>" % (
            self.method, self.target, self.conn_id, self.sni, self.headers,
            self.body_len)


class Upstream:
    """Threaded HTTPS (or plain, tls=False) server on 127.0.0.1.

    respond: function(Recorded) -> Response, called after the request body
    was read (default: 200 "ok").  read_rate: bytes/s at which request
    bodies are read (backpressure tests); rcvbuf: SO_RCVBUF of accepted
    sockets.  min_version/max_version: ssl.TLSVersion limits; ciphers:
    OpenSSL cipher string (for old protocol versions); client_ca: require
    a client certificate signed by this CA (mutual TLS).  port: listen on
    this port (one chosen in advance, e.g. a server that comes up after
    the gateway started) instead of a free one.
    """

    def __init__(self, pki=None, cert=None, respond=None, tls=True,
                 read_rate=None, rcvbuf=None, min_version=None,
                 max_version=None, ciphers=None, head_first=None,
                 client_ca=None, port=None):
        self.requests = []
        self.handshakes = 0
        self.failed_handshakes = 0
        self.connections = 0
        self.errors = []
        self.respond = respond or (lambda req: Response())
        self.head_first = head_first    # function(Recorded) before the body
        self.read_rate = read_rate
        self.lock = threading.Lock()
        self.ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = min_version or ssl.TLSVersion.TLSv1_2
            if max_version:
                ctx.maximum_version = max_version
            if ciphers:
                ctx.set_ciphers(ciphers)
            crt, key = cert or pki.good
            ctx.load_cert_chain(crt, key)
            ctx.sni_callback = self._sni
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.ctx = ctx
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._conns = []
        self._sni_seen = {}
        self._stop = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _sni(self, sslsock, name, ctx):
        self._sni_seen[id(sslsock)] = name
        return None

    def _accept_loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cid = self.connections
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c, cid),
                             daemon=True).start()

    def _serve(self, c, cid):
        c.settimeout(30)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = c
        sni = resumed = ver = None
        try:
            if self.ctx:
                s = self.ctx.wrap_socket(c, server_side=True,
                                         do_handshake_on_connect=False)
                try:
                    s.do_handshake()
                except (ssl.SSLError, OSError) as e:
                    with self.lock:
                        self.failed_handshakes += 1
                    return
                with self.lock:
                    self.handshakes += 1
                    self._conns.append(s)
                sni = self._sni_seen.get(id(s))
                resumed = s.session_reused
                ver = s.version()
                peer = s.getpeercert()
                peer_cn = None
                for rdn in (peer or {}).get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            peer_cn = v
            rd = Reader(s, rate=self.read_rate,
                        chunk=16384 if self.read_rate else 65536)
            while not self._stop:
                try:
                    head = rd.head()
                except Closed:
                    return
                req = Recorded()
                req.conn_id, req.sni, req.resumed = cid, sni, resumed
                req.tls_version = ver
                req.peer_cn = peer_cn if self.ctx else None
                req.time = time.monotonic()
                start, req.headers = parse_head(head)
                parts = start.split(" ")
                req.method, req.target, req.version = (parts + ["", "", ""])[:3]
                if self.head_first:
                    self.head_first(req)
                te = hget(req.headers, "transfer-encoding")
                cl = hget(req.headers, "content-length")
                expect100 = (hget(req.headers, "expect", "").lower()
                             == "100-continue")
                if expect100 and (te or (cl and int(cl) > 0)):
                    s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                sink = BodySink()
                rd.t0, rd.got = None, 0      # the rate limit is per body
                if te is not None:
                    req.framing = "chunked"
                    req.trailers = rd.chunked(sink)
                elif cl is not None:
                    req.framing = "cl"
                    rd.exact(int(cl), sink)
                else:
                    req.framing = "none"
                req.body_len, req.body_sha, req.body = sink.n, sink.sha, sink.bytes
                with self.lock:
                    self.requests.append(req)
                resp = self.respond(req)
                if resp is None:        # the test wants the connection dropped
                    return
                if not self._send(s, req, resp):
                    return
        except (Closed, OSError, ValueError, ssl.SSLError) as e:
            if not self._stop:
                with self.lock:
                    self.errors.append("conn %d: %r" % (cid, e))
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _send(self, s, req, resp):
        if resp.delay:
            end = time.monotonic() + resp.delay
            while time.monotonic() < end and not self._stop:
                time.sleep(0.05)
        if resp.raw is not None:
            s.sendall(resp.raw)
            return False
        for st, hd in resp.interim:
            s.sendall(("HTTP/1.1 %d Info\r\n" % st + "".join(
                "%s: %s\r\n" % h for h in hd) + "\r\n").encode("latin-1"))
        hdrs = list(resp.headers)
        nobody = (req.method == "HEAD" or resp.status in (204, 304)
                  or resp.status < 200)
        if resp.mode == "cl":
            hdrs.append(("Content-Length", str(resp.body_len())))
        elif resp.mode == "chunked":
            hdrs.append(("Transfer-Encoding", "chunked"))
        close = resp.close or resp.mode == "close"
        if close:
            hdrs.append(("Connection", "close"))
        head = "HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)
        head += "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
        s.sendall(head.encode("latin-1"))
        if not nobody and resp.mode != "none":
            if resp.mode == "chunked":
                resp._gen(lambda b: s.sendall(b"%x\r\n%s\r\n" % (len(b), b)))
                s.sendall(b"0\r\n\r\n")
            else:
                resp._gen(s.sendall)
        if close:
            try:
                if isinstance(s, ssl.SSLSocket):
                    s.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
            return False
        if resp.idle_close is not None:
            time.sleep(resp.idle_close)
            return False
        return True

    def wait_requests(self, n, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.requests) >= n:
                    return True
            time.sleep(0.02)
        return False

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# The daemon

ACCESS_RE = re.compile(r"^info: access (.*)$")
KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                   "SUMMARY: AddressSanitizer", "ThreadSanitizer")


def parse_access(line):
    m = ACCESS_RE.match(line)
    if not m:
        return None
    rec = {}
    for k, v in KV_RE.findall(m.group(1)):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        rec[k] = v
    return rec


def is_sanitized(binary=None):
    """True when the daemon was built with ASan (RSS figures mean little)."""
    try:
        with open(binary or TLSGATE, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return any(m in data for m in (b"__asan_init", b"libasan",
                                   b"AddressSanitizer"))


def listen_inodes(pid):
    """{port: socket inode} of the listening TCP sockets process pid holds
    (from /proc/PID/fd and /proc/net/tcp{,6})."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return {}
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for ln in f:
                    fields = ln.split()
                    if fields[3] == "0A" and fields[9] in inodes:
                        out[int(fields[1].rsplit(":", 1)[1], 16)] = fields[9]
        except (OSError, StopIteration, IndexError):
            pass
    return out


def listening_ports(pid):
    """TCP ports on which process pid holds a listening socket."""
    return set(listen_inodes(pid))


# Transport for every route that does not choose one (tls = ...).
UPLINK_TLS = os.environ.get("E2E_TLS") or None


def route_conf(name, **keys):
    """A [route NAME] section; keys with value None are left out."""
    lines = ["[route %s]" % name]
    for k, v in keys.items():
        if v is not None:
            lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


class Gateway:
    """The daemon under test.

    routes: list of (name, {key: value}); the first route's `listen` is
    filled in (127.0.0.1:free port) when missing.  gateway: keys of the
    [gateway] section.  Use as a context manager or call stop().
    """

    def __init__(self, td, routes, gateway=None, args=(), name="gw",
                 start=True, env=None):
        self.td = td
        self.conf = td.join(name + ".conf")
        self.logpath = td.join(name + ".log")
        self.routes = routes
        self.gw_keys = {"log_level": "info"}
        self.gw_keys.update(gateway or {})
        self.args = list(args)
        self.env = env
        self.proc = None
        self.stopped = False
        self._write_conf()
        if start:
            self.start()

    def _write_conf(self):
        """Writes the config with fresh ports for every listen that is
        missing (one port per route) or written "@tag" (127.0.0.1) or
        "@6tag" ([::1]): routes with the same tag share the port."""
        text = "[gateway]\n" + "".join(
            "%s = %s\n" % kv for kv in self.gw_keys.items()
            if kv[1] is not None)
        self.listen = []
        tags = {}
        for rname, keys in self.routes:
            keys = dict(keys)
            lst = keys.get("listen")
            if lst is None:
                keys["listen"] = "127.0.0.1:%d" % free_port()
            elif lst.startswith("@6"):
                if lst not in tags:
                    tags[lst] = "[::1]:%d" % free_port(socket.AF_INET6)
                keys["listen"] = tags[lst]
            elif lst.startswith("@"):
                if lst not in tags:
                    tags[lst] = "127.0.0.1:%d" % free_port()
                keys["listen"] = tags[lst]
            self.listen.append(keys["listen"])
            # E2E_TLS=builtin runs the same scenarios over the built-in
            # TLS 1.3 client (tests/run.sh does a second pass with it).
            if UPLINK_TLS and "tls" not in keys and "upstream" in keys:
                keys["tls"] = UPLINK_TLS
            text += "\n" + route_conf(rname, **keys)
        with open(self.conf, "w") as f:
            f.write(text)
        self.text = text

    @property
    def port(self):
        return int(self.listen[0].rsplit(":", 1)[1])

    def url(self, path="/", i=0):
        hp = self.listen[i]
        if hp.startswith("0.0.0.0:"):
            hp = "127.0.0.1:" + hp.split(":")[1]
        return "http://%s%s" % (hp, path)

    def start(self, timeout=None):
        """Starts the daemon and waits until it accepts on the first listen
        address.  A port taken by someone else between free_port() and the
        daemon's bind (other test runs share the machine) is retried with
        fresh ports."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except TestFailure:
                if (self.proc.poll() is None or attempt == 2 or
                        "in use" not in self.log_text().lower()):
                    raise
                say("  (port taken, retrying with fresh ports)")
                self.log_f.close()
                self._write_conf()

    def _start(self, timeout):
        if not os.path.exists(TLSGATE):
            raise TestFailure("daemon binary %s not found (make tlsgate)" % TLSGATE)
        env = dict(os.environ)
        env.update(self.env or {})
        self.log_f = open(self.logpath, "wb")
        for i in range(20):
            try:
                self.proc = subprocess.Popen(
                    [TLSGATE, "-c", self.conf] + self.args,
                    stdin=subprocess.DEVNULL, stdout=self.log_f,
                    stderr=self.log_f, env=env)
                break
            except (PermissionError, OSError) as e:
                # the binary being relinked right now (ETXTBSY, EACCES)
                if i == 19:
                    raise TestFailure("cannot run %s: %r" % (TLSGATE, e))
                time.sleep(0.1)
        timeout = timeout or (15 if is_sanitized() else 5)
        end = time.monotonic() + timeout
        want = set(int(hp.rsplit(":", 1)[1]) for hp in self.listen)
        while True:
            if self.proc.poll() is not None:
                raise TestFailure("daemon exited at start-up with %s; log:\n%s"
                                  % (self.proc.returncode, self.log_text()))
            # The daemon itself must hold the listening sockets: a port
            # taken by another process would also accept a probe.
            if want <= listening_ports(self.proc.pid):
                return
            if time.monotonic() > end:
                raise TestFailure("daemon not listening on %s after %ss; log:\n%s"
                                  % (" ".join(self.listen), timeout,
                                     self.log_text()))
            time.sleep(0.05)

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def lines(self):
        return self.log_text().splitlines()

    def access(self):
        return [r for r in map(parse_access, self.lines()) if r]

    def wait_access(self, pred=lambda r: True, n=1, timeout=5):
        """Access records matching pred once at least n exist (waits: the
        line may be written just after the response)."""
        end = time.monotonic() + timeout
        while True:
            got = [r for r in self.access() if pred(r)]
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.05)

    def pid(self):
        return self.proc.pid

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, SIGKILL after a bound; raises TestFailure when the daemon
        had crashed or a sanitizer reported something."""
        if self.stopped or self.proc is None:
            return
        self.stopped = True
        problems = []
        rc = self.proc.poll()
        if rc is not None:
            problems.append("daemon had exited by itself with status %s" % rc)
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10 if is_sanitized() else 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
                problems.append("daemon did not exit within the bound after "
                                "SIGTERM (killed)")
        if rc is not None and rc < 0 and -rc not in (signal.SIGTERM,
                                                     signal.SIGKILL):
            problems.append("daemon died of signal %d" % -rc)
        self.log_f.close()
        text = self.log_text()
        marks = [m for m in SANITIZER_MARKS if m in text]
        if marks:
            problems.append("sanitizer report (%s)" % ", ".join(marks))
        if problems:
            raise TestFailure("; ".join(problems) + "; log tail:\n" +
                              "\n".join(text.splitlines()[-40:]))

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        try:
            self.stop()
        except TestFailure:
            if et is None:
                raise
            # the test already failed: show the daemon's state too
            say("  (also) " + str(sys.exc_info()[1]).splitlines()[0])
        return False


def route(upstream, pki=None, **keys):
    """Route keys for a Python upstream: host cloud.test, CA of the pki."""
    r = {"upstream": upstream.addr if isinstance(upstream, Upstream) else upstream,
         "host": CLOUD,
         "connect_timeout": 3,
         "upstream_timeout": 10}
    if pki:
        r["ca_file"] = pki.ca_file
    r.update(keys)
    return r


# ---------------------------------------------------------------------------
# Devices: curl, raw sockets

class CurlResult:
    def __init__(self, rc, status, headers, body, stderr, responses):
        self.rc = rc
        self.status = status
        self.headers = headers      # of the last response
        self.body = body
        self.stderr = stderr
        self.responses = responses  # [(status, headers)] of every head seen

    def header(self, name, default=None):
        return hget(self.headers, name, default)

    def __repr__(self):
        return "<curl rc=%s status=%s headers=%r body=%r stderr=%r>" % (
            self.rc, self.status, self.headers, self.body[:200],
            self.stderr[-300:])


_curl_n = [0]


def curl(td, url, *args, max_time=15, body_file=True):
    """Runs curl (always bounded by --max-time) as a device.  Returns a
    CurlResult; body is bytes (read from a file, so binary-safe)."""
    _curl_n[0] += 1
    hfile = td.join("curl%d.h" % _curl_n[0])
    bfile = td.join("curl%d.b" % _curl_n[0])
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", str(max_time),
           "-D", hfile, "-o", bfile] + list(args) + [url]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=max_time + 10)
    responses = []
    try:
        with open(hfile, "rb") as f:
            htext = f.read()
        for block in re.split(rb"\r\n\r\n", htext):
            if not block.strip():
                continue
            st, hd = parse_head(block + b"\r\n\r\n")
            try:
                code = int(st.split(" ")[1])
            except (IndexError, ValueError):
                continue
            responses.append((code, hd))
    except OSError:
        pass
    try:
        with open(bfile, "rb") as f:
            body = f.read()
        os.unlink(bfile)
    except OSError:
        body = b""
    status, headers = responses[-1] if responses else (None, [])
    return CurlResult(r.returncode, status, headers, body,
                      r.stderr.decode(errors="replace"), responses)


def connect(port, host="127.0.0.1", timeout=10, rcvbuf=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


class RawResponse:
    def __init__(self, version, status, reason, headers, body, framing):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.framing = framing   # "cl", "chunked", "close", "none"

    def header(self, name, default=None):
        return hget(self.headers, name, default)

    def __repr__(self):
        return "<%s %s %r framing=%s body=%r>" % (
            self.version, self.status, self.headers, self.framing,
            self.body[:200])


def read_response(rd, method="GET", sink=None, deadline=None,
                  skip_interim=True):
    """Reads one response from Reader rd.  The body goes to sink (default:
    kept in .body).  1xx responses are skipped unless skip_interim=False."""
    while True:
        head = rd.head()
        start, hdrs = parse_head(head)
        parts = start.split(" ", 2)
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        if 100 <= status < 200 and skip_interim and status != 101:
            continue
        break
    keep = BodySink(keep=1 << 30) if sink is None else sink
    te = hget(hdrs, "transfer-encoding")
    cl = hget(hdrs, "content-length")
    if method == "HEAD" or status in (204, 304) or status < 200:
        framing = "none"
    elif te is not None:
        framing = "chunked"
        rd.chunked(keep)
    elif cl is not None:
        framing = "cl"
        rd.exact(int(cl), keep)
    else:
        framing = "close"
        rd.until_close(keep, deadline)
    body = bytes(keep.data) if sink is None else b""
    return RawResponse(version, status, reason, hdrs, body, framing)


def raw_request(port, data, method="GET", timeout=10, host="127.0.0.1",
                close_wait=0):
    """Sends data on a new connection, reads one response.  Returns
    (RawResponse or None, closed_after, raw bytes received); closed_after
    says whether the peer closed within close_wait seconds after the
    response (None when close_wait is 0)."""
    s = connect(port, host, timeout)
    try:
        s.sendall(data)
        rd = Reader(s)
        try:
            resp = read_response(rd, method,
                                 deadline=time.monotonic() + timeout)
        except (Closed, socket.timeout, ValueError):
            return None, True, bytes(rd.buf)
        closed = peer_closed(s, rd, close_wait) if close_wait else None
        return resp, closed, None
    finally:
        s.close()


def peer_closed(s, rd, wait):
    """True when the peer closes the connection within wait seconds with no
    further data (extra bytes count as not closed)."""
    if rd.buf:
        return False
    s.settimeout(wait)
    try:
        d = s.recv(1)
        return d == b""
    except socket.timeout:
        return False
    except OSError:
        return True


# ---------------------------------------------------------------------------
# Runner

def run_tests(ns):
    """Runs every test_* function of module namespace ns in file order."""
    # `timeout` (tests/run.sh) sends SIGTERM: unwind so that every with-block
    # stops its daemon and servers and removes its temp dir.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    tests = [(n, f) for n, f in ns.items()
             if n.startswith("test_") and callable(f)]
    name = os.path.basename(sys.argv[0])
    only = os.environ.get("TEST")
    failed = []
    t0 = time.monotonic()
    if only:
        tests = [(n, f) for n, f in tests if only in n]
    for n, f in tests:
        t = time.monotonic()
        try:
            f()
            say("ok   - %s (%.1fs)" % (n, time.monotonic() - t))
        except TestFailure as e:
            failed.append(n)
            say("FAIL - %s: %s" % (n, e))
        except Exception:
            failed.append(n)
            say("FAIL - %s: exception:\n%s" % (n, traceback.format_exc()))
    dt = time.monotonic() - t0
    if failed:
        say("%s: %d of %d tests failed (%s) in %.1fs" % (
            name, len(failed), len(tests), " ".join(failed), dt))
        sys.exit(1)
    say("%s: all %d tests passed in %.1fs" % (name, len(tests), dt))
    sys.exit(0)


_pki = []


def shared_pki():
    """The Pki of this test file, made on first use, removed at exit."""
    if not _pki:
        td = TempDir(prefix="tlsgate-e2e-pki.")
        atexit.register(td.cleanup)
        _pki.append(Pki(td))
    return _pki[0]


class World:
    """A temp dir with the PKI, and cleanup of whatever the test started
    (upstreams, gateways, processes) in reverse order."""

    def __init__(self, pki=True):
        self.td = TempDir()
        self._cleanup = []
        self.pki = shared_pki() if pki else None

    def upstream(self, **kw):
        u = Upstream(self.pki, **kw)
        self._cleanup.append(u.close)
        return u

    def gateway(self, routes, **kw):
        g = Gateway(self.td, routes, start=False, **kw)
        self._cleanup.append(g.stop)
        g.start()
        return g

    def add_cleanup(self, fn):
        self._cleanup.append(fn)

    def close(self):
        err = None
        for fn in reversed(self._cleanup):
            try:
                fn()
            except TestFailure as e:
                err = err or e
            except Exception as e:
                say("cleanup error: %r" % e)
        self._cleanup = []
        self.td.cleanup()
        if err:
            raise err

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        try:
            self.close()
        except TestFailure as e:
            if et is None:
                raise
            say("  (also) " + str(e).splitlines()[0])
        return False
