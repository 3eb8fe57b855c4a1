#!/usr/bin/env python3
"""tlsgate side by side with HAProxy, nginx and stunnel (`make bench`).

Everything runs on this machine over loopback:

  upstream   nginx from Debian serving HTTPS for cloud.test with a
             certificate from a throw-away CA (bench/conf/upstream-nginx.conf.in)
  gateways   one at a time, each doing the same job (Host rewritten to
             cloud.test, SNI cloud.test, certificate verified, upstream
             keep-alive, one worker or thread): tlsgate with the OpenSSL
             route, tlsgate with the builtin route (when this build has
             one), HAProxy with http-reuse always and with its default
             (safe), nginx as a gateway, stunnel (bench/conf/*.in)
  load       wrk from Debian, one thread, BENCH_CONNS device connections,
             bench/device.lua as the request

Per gateway and repeat (the gateways take turns, so drift hits all):
  ka    keep-alive device connections, BENCH_SECONDS
  new   a new device connection per request ("Connection: close")
measuring requests/s, latency p50/p99 (wrk), gateway CPU seconds from
/proc/PID/stat (utime + stime of every gateway process) and TLS handshakes
from the upstream's log of first requests per connection.

Side by side (BENCH_SIDE rounds): tlsgate's two routes and HAProxy
(http-reuse always) loaded at once, each by its own wrk, all pinned to the
gateway CPU, keep-alive then new connections: CPU per request of each,
under the same host conditions at the same moments.

Once per gateway, on a fresh instance:
  bytes   BENCH_BYTES_N sequential requests on one device connection, then
          BENCH_BYTES_N each on a new device connection, with tcpdump on lo
          filtered to the upstream port: bytes on the wire per request
  idle    BENCH_IDLE device connections that each sent one request and
          stay open: VmRSS growth per connection

Then a CPU profile of tlsgate under the keep-alive and the new-connection
load (perf record with the cpu-clock software event, or callgrind when
perf cannot sample here).

Results: $BENCH_OUT/results.json (default build/bench), read by
bench/report.py.  Nothing here invents a number: a gateway that cannot
run is reported as not available, with the reason.

Environment: TLSGATE (daemon, default ./tlsgate), BENCH_OUT, BENCH_SECONDS
(5), BENCH_REPEATS (3), BENCH_CONNS (32), BENCH_IDLE (1000), BENCH_BYTES_N
(500), BENCH_ONLY (comma-separated gateway ids: tlsgate, tlsgate-builtin,
haproxy, haproxy-safe, nginx, stunnel), BENCH_PROFILE and BENCH_FIXED (0 =
skip the profile, or the bytes, system call and idle phases), BENCH_SIDE
(3 rounds; 0 = skip the side-by-side phase), BENCH_KEEP=1
(keep the work directory with every config and log).
"""

import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("TOP") or os.path.dirname(HERE)
OUT = os.path.abspath(os.environ.get("BENCH_OUT")
                      or os.path.join(TOP, "build", "bench"))
TLSGATE = os.path.abspath(os.environ.get("TLSGATE")
                          or os.path.join(TOP, "tlsgate"))


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if not v:
        return default
    n = int(v)
    if not lo <= n <= hi:
        sys.exit("bench: %s=%d is outside %d..%d" % (name, n, lo, hi))
    return n


SECONDS = env_int("BENCH_SECONDS", 5, 1, 600)
REPEATS = env_int("BENCH_REPEATS", 3, 1, 50)
CONNS = env_int("BENCH_CONNS", 32, 1, 4096)
IDLE = env_int("BENCH_IDLE", 1000, 1, 20000)
# Seconds the idle device connections stay quiet before RSS is read.
IDLE_SETTLE = 4.0
BYTES_N = env_int("BENCH_BYTES_N", 500, 1, 100000)
PROFILE = env_int("BENCH_PROFILE", 1, 0, 1)
FIXED = env_int("BENCH_FIXED", 1, 0, 1)
# Rounds of the side-by-side phase (0: none).
SIDE = env_int("BENCH_SIDE", 3, 0, 50)
# The gateways it loads at once.
SIDE_IDS = ("tlsgate", "tlsgate-builtin", "haproxy")
WARM_SECONDS = 1
PROFILE_SECONDS = max(2, min(SECONDS, 5))
# Seconds a gateway or the upstream has to start listening.
START_TIMEOUT = 10
# Seconds one scripted request may take before the bench gives up on it.
REQ_TIMEOUT = 10
ONLY = [g for g in os.environ.get("BENCH_ONLY", "").split(",") if g]

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLOUD = "cloud.test"
REQUEST_BODY = b'{"temp":21.5,"hum":40}'


def log(*a):
    print("bench:", *a, flush=True)


# ---------------------------------------------------------------------------
# CPU placement: on two or more cores the gateway gets a core of its own and
# the load generator and the upstream share the others, so the gateway's
# numbers are not mixed with theirs.

NCPU = os.cpu_count() or 1
if NCPU >= 2:
    GW_CPUS = str(NCPU - 1)
    LOAD_CPUS = "0" if NCPU == 2 else "0-%d" % (NCPU - 2)
else:
    GW_CPUS = LOAD_CPUS = None


def pinned(cpus, argv):
    if cpus is None or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", cpus] + list(argv)


# ---------------------------------------------------------------------------
# /proc readings

def proc_children(pid):
    """pid and every descendant (nginx's workers, for instance)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_cpu(pids):
    """utime + stime in seconds, summed over pids (all their threads)."""
    return sum(proc_cpu_split(pids))


def proc_cpu_split(pids):
    """(utime, stime) in seconds, summed over pids (all their threads)."""
    user = system = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def proc_wakeups(pids):
    """Voluntary context switches (the process went to sleep waiting for
    events), summed over every thread of pids."""
    n = 0
    for p in pids:
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/status" % (p, t)) as f:
                    for ln in f:
                        if ln.startswith("voluntary_ctxt_switches:"):
                            n += int(ln.split()[1])
            except OSError:
                continue
    return n


def proc_rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        total += int(ln.split()[1])
        except OSError:
            continue
    return total


def established_to(port):
    """Established TCP connections whose local port is `port` (the
    upstream's side of each gateway connection)."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for ln in f:
                    p = ln.split()
                    if p[3] == "01" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            continue
    return n


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


# ---------------------------------------------------------------------------
# Small helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60, **kw)


def first_line(argv):
    try:
        r = run(argv)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unavailable (%s)" % e
    lines = [ln for ln in r.stdout.decode(errors="replace").splitlines()
             if ln.strip()]
    return lines[0].strip() if lines else "unknown"


def render(template, path, values):
    with open(os.path.join(HERE, "conf", template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError("%s: unfilled placeholders %s" % (template, left))
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_listening(port, proc, what, timeout=START_TIMEOUT):
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError("%s not listening on %d" % (what, port))
            time.sleep(0.05)


def stop_proc(proc, sig=signal.SIGTERM):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------
# A test CA and the cloud.test certificate, made with the openssl CLI

def make_pki(d):
    """The CA, a leaf for cloud.test and one for other.test (the name no
    gateway may accept); returns (ca, (crt, key), (bad crt, bad key))."""
    os.makedirs(d, exist_ok=True)
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [["openssl", "req", "-x509", "-new"] + ec +
             ["-keyout", ca_key, "-out", ca, "-days", "7", "-subj",
              "/CN=tlsgate bench CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]]
    leaves = []
    for name in (CLOUD, "other.test"):
        key, csr = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr")
        crt, ext = os.path.join(d, name + ".pem"), os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=DNS:%s\n" % name)
        steps += [["openssl", "req", "-new"] + ec +
                  ["-keyout", key, "-out", csr, "-subj", "/CN=" + name],
                  ["openssl", "x509", "-req", "-in", csr, "-CA", ca,
                   "-CAkey", ca_key, "-CAcreateserial", "-days", "7",
                   "-sha256", "-extfile", ext, "-out", crt]]
        leaves.append((crt, key))
    for argv in steps:
        r = run(argv)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), r.stdout[-500:]))
    return ca, leaves[0], leaves[1]


# ---------------------------------------------------------------------------
# A scripted device: one request, its response read whole

def device_request(sock, path, close=False):
    """Sends one telemetry POST on `sock` and reads the response; returns
    the status code.  Understands Content-Length and chunked framing,
    which is all the bench upstream sends."""
    head = ("POST %s HTTP/1.1\r\nHost: gateway.local\r\n"
            "Content-Type: application/json\r\n"
            "Authorization: Basic ZGV2aWNlMUBiZW5jaDpzZWNyZXQ=\r\n"
            "Content-Length: %d\r\n%s\r\n"
            % (path, len(REQUEST_BODY), "Connection: close\r\n" if close else ""))
    sock.sendall(head.encode() + REQUEST_BODY)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        fields[k.strip().lower()] = v.strip()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed inside a chunked body")
            rest += chunk
    else:
        need = int(fields.get("content-length", "0"))
        while len(rest) < need:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed inside the body")
            rest += chunk
    if close:
        # Wait for the gateway to close, so requests never overlap.
        while sock.recv(4096):
            pass
    return status


def device_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=REQ_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# ---------------------------------------------------------------------------
# The gateways

class Gateway:
    """One gateway under test: renders its config from bench/conf, starts
    it pinned to the gateway CPU, and knows its processes."""

    def __init__(self, gid, label, world):
        self.id, self.label, self.w = gid, label, world
        self.proc = None
        self.port = None
        self.stderr = None
        self.argv = None
        self.bad = False        # point at the other.test certificate

    @property
    def up_port(self):
        return self.w.bad_port if self.bad else self.w.up_port

    # subclasses: configure(path_stem) -> argv
    def start(self, tag):
        self.port = free_port()
        d = os.path.join(self.w.dir, "gw")
        os.makedirs(d, exist_ok=True)
        self.argv = self.configure(d)
        if tag.startswith("r"):         # the command of the load phases
            self.load_argv = self.argv
        self.stderr = open(os.path.join(d, "%s.%s.stderr" % (self.id, tag)), "wb")
        self.proc = subprocess.Popen(pinned(GW_CPUS, self.argv),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)
        wait_listening(self.port, self.proc, self.label, self.start_timeout)
        # nginx forks its worker after binding: wait until it exists.
        end = time.monotonic() + self.start_timeout
        while len(self.pids()) < self.min_procs and time.monotonic() < end:
            time.sleep(0.05)

    min_procs = 1
    start_timeout = START_TIMEOUT

    def pids(self):
        return proc_children(self.proc.pid) if self.proc else []

    def stop(self):
        stop_proc(self.proc, self.stop_signal)
        self.proc = None
        if self.stderr:
            self.stderr.close()
            self.stderr = None

    stop_signal = signal.SIGTERM

    def stderr_tail(self):
        if not self.stderr:
            return ""
        self.stderr.flush()
        with open(self.stderr.name, "rb") as f:
            return f.read()[-600:].decode(errors="replace")


class Tlsgate(Gateway):
    def __init__(self, gid, label, world, builtin):
        super().__init__(gid, label, world)
        self.builtin = builtin

    def configure(self, d):
        conf = render("tlsgate.conf.in", os.path.join(d, self.id + ".conf"), {
            "GW_PORT": self.port, "UP_PORT": self.up_port, "CA": self.w.ca,
            "TLS_LINE": "tls = builtin" if self.builtin else ""})
        self.conf = conf
        return [self.w.tlsgate, "-c", conf]

    def available(self):
        """None when this build runs the route, else why not."""
        self.port = free_port()
        d = os.path.join(self.w.dir, "gw")
        os.makedirs(d, exist_ok=True)
        argv = self.configure(d)
        r = run(argv[:1] + ["-t"] + argv[1:])
        if r.returncode != 0:
            msg = r.stdout.decode(errors="replace").strip().splitlines()
            why = msg[-1] if msg else "exit %d" % r.returncode
            return "not available in this build (tlsgate -t: %s)" % (
                why.replace(os.path.dirname(self.conf) + "/", ""))
        return None


class Haproxy(Gateway):
    def __init__(self, gid, label, world, reuse):
        super().__init__(gid, label, world)
        self.reuse = reuse

    def configure(self, d):
        conf = render("haproxy.cfg.in", os.path.join(d, self.id + ".cfg"), {
            "GW_PORT": self.port, "UP_PORT": self.up_port, "CA": self.w.ca,
            "REUSE": self.reuse})
        return ["haproxy", "-db", "-f", conf]

    stop_signal = signal.SIGUSR1      # soft stop: finish, then exit


class NginxGateway(Gateway):
    min_procs = 2

    def configure(self, d):
        os.makedirs(os.path.join(self.w.dir, "tmp"), exist_ok=True)
        conf = render("nginx-gateway.conf.in", os.path.join(d, "nginx-gateway.conf"), {
            "GW_PORT": self.port, "UP_PORT": self.up_port, "CA": self.w.ca,
            "DIR": self.w.dir})
        return ["nginx", "-c", conf, "-p", self.w.dir, "-g", "daemon off;"]

    stop_signal = signal.SIGQUIT


class Stunnel(Gateway):
    def configure(self, d):
        conf = render("stunnel.conf.in", os.path.join(d, "stunnel.conf"), {
            "GW_PORT": self.port, "UP_PORT": self.up_port, "CA": self.w.ca,
            "DIR": d})
        return ["stunnel", conf]


# ---------------------------------------------------------------------------
# The world: PKI, upstream, the gateways in turn

class World:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tlsgate-bench.")
        self.up = None
        self.up_port = free_port()
        # A private copy of the daemon: a rebuild during the run must not
        # change what is measured.
        self.tlsgate = os.path.join(self.dir, "tlsgate")
        shutil.copy2(TLSGATE, self.tlsgate)
        self.bad_port = free_port()
        self.ca, (self.crt, self.key), (self.bad_crt, self.bad_key) = \
            make_pki(os.path.join(self.dir, "pki"))

    def start_upstream(self):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        conf = render("upstream-nginx.conf.in",
                      os.path.join(self.dir, "upstream-nginx.conf"), {
                          "DIR": self.dir, "CERT": self.crt, "KEY": self.key,
                          "UP_PORT": self.up_port, "BAD_PORT": self.bad_port,
                          "BAD_CERT": self.bad_crt, "BAD_KEY": self.bad_key})
        self.up_log = open(os.path.join(self.dir, "upstream.stderr"), "wb")
        self.up = subprocess.Popen(
            pinned(LOAD_CPUS, ["nginx", "-c", conf, "-p", self.dir, "-g",
                               "daemon off;"]),
            stdin=subprocess.DEVNULL, stdout=self.up_log, stderr=self.up_log)
        wait_listening(self.up_port, self.up, "upstream nginx")

    def upstream_pids(self):
        return proc_children(self.up.pid)

    def stop_upstream(self):
        stop_proc(self.up, signal.SIGQUIT)   # graceful: flushes the log
        self.up_log.close()

    def upstream_log(self):
        """{tag: [records]} of first requests per upstream connection."""
        out = {}
        path = os.path.join(self.dir, "upstream-access.log")
        keys = ("tag", "conn", "reused", "proto", "sni", "host")
        try:
            with open(path) as f:
                for ln in f:
                    rec = dict(zip(keys, ln.rstrip("\n").split("|")))
                    out.setdefault(rec["tag"], []).append(rec)
        except OSError:
            pass
        return out

    def cleanup(self):
        if os.environ.get("BENCH_KEEP") == "1":
            log("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Load phases

def wrk_start(port, tag, seconds, close, conns=None):
    """Starts wrk; wrk_result() waits for it."""
    url = "http://127.0.0.1:%d/v1/telemetry?t=%s" % (port, tag)
    argv = ["wrk", "-t1", "-c%d" % (conns or CONNS), "-d%ds" % seconds,
            "--timeout", "5s", "-s", os.path.join(HERE, "device.lua"), url]
    env = dict(os.environ, BENCH_CLOSE="1" if close else "0")
    p = subprocess.Popen(pinned(LOAD_CPUS, argv), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    return p, argv, seconds


def wrk_result(started):
    p, argv, seconds = started
    try:
        out, _ = p.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    text = out.decode(errors="replace")
    for ln in text.splitlines():
        if ln.startswith("BENCH "):
            return json.loads(ln[6:]), argv
    raise RuntimeError("wrk printed no result (exit %d): %s"
                       % (p.returncode, text[-500:]))


def wrk(port, tag, seconds, close, conns=None):
    return wrk_result(wrk_start(port, tag, seconds, close, conns))


def load_phase(w, gw, tag, close):
    pids, upids = gw.pids(), w.upstream_pids()
    s0, u0, t0 = proc_cpu_split(pids), proc_cpu(upids), time.monotonic()
    w0 = proc_wakeups(pids)
    res, argv = wrk(gw.port, tag, SECONDS, close)
    s1, u1, t1 = proc_cpu_split(pids), proc_cpu(upids), time.monotonic()
    w1 = proc_wakeups(pids)
    c0, c1 = sum(s0), sum(s1)
    if gw.proc.poll() is not None:
        raise RuntimeError("%s died during %s: %s" % (gw.label, tag,
                                                      gw.stderr_tail()))
    n = res["requests"]
    errors = sum(res[k] for k in res if k.startswith("err_"))
    secs = res["duration_us"] / 1e6
    out = {
        "tag": tag,
        "requests": n,
        "errors": errors,
        "rps": n / secs if secs else 0.0,
        "p50_ms": res["p50_us"] / 1000.0,
        "p90_ms": res["p90_us"] / 1000.0,
        "p99_ms": res["p99_us"] / 1000.0,
        "max_ms": res["max_us"] / 1000.0,
        "cpu_s": c1 - c0,
        "cpu_util": (c1 - c0) / (t1 - t0),
        "cpu_s_per_10k": (c1 - c0) * 10000.0 / n if n else None,
        "user_s_per_10k": (s1[0] - s0[0]) * 10000.0 / n if n else None,
        "sleeps_per_req": (w1 - w0) / float(n) if n else None,
        "upstream_cpu_s_per_10k": (u1 - u0) * 10000.0 / n if n else None,
        "wrk": res,
    }
    return out, argv


def verify_all(w, gateways, results):
    for gw in gateways:
        rec = results[gw.id]
        if rec.get("reason"):
            continue
        try:
            rec["verify"], good = verify_check(w, gw)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            rec["verify"], good = "check failed: %s" % e, False
        log("%-16s wrong-name certificate: %s" % (gw.id, rec["verify"]))
        if not good:
            rec["failures"].append("verification: " + rec["verify"])


def run_repeats(w, gateways, results):
    for rep in range(REPEATS):
        order = gateways[rep % len(gateways):] + gateways[:rep % len(gateways)]
        for gw in order:
            rec = results[gw.id]
            if rec.get("reason"):
                continue
            try:
                gw.start("r%d" % rep)
                wrk(gw.port, "%s.%d.warm" % (gw.id, rep), WARM_SECONDS, False)
                row = {"rep": rep}
                for ph, close in (("ka", False), ("new", True)):
                    row[ph], argv = load_phase(w, gw, "%s.%d.%s" % (gw.id, rep, ph),
                                               close)
                    w.commands["wrk, " + ("new connection" if close else "keep-alive")] = (
                        ("BENCH_CLOSE=1 " if close else "") +
                        " ".join(pinned(LOAD_CPUS, argv)).replace(
                            str(gw.port), "GW_PORT").replace(gw.id + ".%d." % rep, "")
                        .replace(TOP + "/", ""))
                    log("%-16s rep %d %-3s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms"
                        "  cpu %5.2f s/10k  errors %d" % (
                            gw.id, rep, ph, row[ph]["rps"], row[ph]["p50_ms"],
                            row[ph]["p99_ms"], row[ph]["cpu_s_per_10k"] or 0,
                            row[ph]["errors"]))
                rec["runs"].append(row)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                rec["failures"].append("repeat %d: %s" % (rep, e))
                log("%s: repeat %d failed: %s" % (gw.id, rep, e))
            finally:
                gw.stop()


def side_phase(w, gateways, results):
    """tlsgate's routes and HAProxy `always` loaded at once, each by a wrk
    of its own with CONNS / 3 connections, all pinned to the gateway CPU:
    a slower host then slows them at the same moments, and the ratio of
    their CPU per request is steadier than between phases that ran one
    after the other.  Each round starts them afresh; keep-alive, then a
    new connection per request."""
    gws = [g for g in gateways if g.id in SIDE_IDS
           and not results[g.id].get("reason")]
    if len(gws) < 2 or "haproxy" not in [g.id for g in gws]:
        return []
    conns = max(1, CONNS // len(gws))
    rounds = []
    for rnd in range(SIDE):
        started = []
        try:
            for g in gws:
                g.start("side%d" % rnd)
                started.append(g)
            warm = [wrk_start(g.port, "%s.side%d.warm" % (g.id, rnd),
                              WARM_SECONDS, False, conns) for g in gws]
            for x in warm:
                wrk_result(x)
            row = {"round": rnd}
            for ph, close in (("ka", False), ("new", True)):
                c0 = [proc_cpu_split(g.pids()) for g in gws]
                runs = [wrk_start(g.port, "%s.side%d.%s" % (g.id, rnd, ph),
                                  SECONDS, close, conns) for g in gws]
                res = [wrk_result(x)[0] for x in runs]
                c1 = [proc_cpu_split(g.pids()) for g in gws]
                row[ph] = {}
                for g, a, b, r in zip(gws, c0, c1, res):
                    n = r["requests"]
                    row[ph][g.id] = {
                        "requests": n,
                        "p99_ms": r["p99_us"] / 1000.0,
                        "errors": sum(r[k] for k in r if k.startswith("err_")),
                        "cpu_s_per_10k": (sum(b) - sum(a)) * 10000.0 / n
                        if n else None,
                        "user_s_per_10k": (b[0] - a[0]) * 10000.0 / n
                        if n else None,
                    }
                log("side by side, round %d %-3s %s" % (rnd, ph, "  ".join(
                    "%s %.2f s/10k (%d req)" % (gid, v["cpu_s_per_10k"] or 0,
                                                v["requests"])
                    for gid, v in row[ph].items())))
            rounds.append(row)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            log("side by side, round %d failed: %s" % (rnd, e))
        finally:
            for g in started:
                g.stop()
    return rounds


# ---------------------------------------------------------------------------
# Bytes on the uplink: tcpdump on lo, only the upstream port

def pcap_count(path, up_port):
    """TCP payload and IP bytes each way, and connections opened (SYNs),
    from a pcap file of the upstream port."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise RuntimeError("empty capture")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise RuntimeError("not a pcap file")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
    skip = {0: 4, 1: 14, 113: 16, 276: 20}.get(linktype)
    if skip is None:
        raise RuntimeError("link type %d not understood" % linktype)
    c = {"to_cloud_payload": 0, "from_cloud_payload": 0, "to_cloud_ip": 0,
         "from_cloud_ip": 0, "packets": 0, "syn": 0}
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        ip = pkt[skip:]
        if len(ip) < 20:
            continue
        if ip[0] >> 4 == 4:
            ihl = (ip[0] & 15) * 4
            total = struct.unpack("!H", ip[2:4])[0]
        elif ip[0] >> 4 == 6 and len(ip) >= 40:
            ihl = 40
            total = 40 + struct.unpack("!H", ip[4:6])[0]
        else:
            continue
        tcp = ip[ihl:]
        if len(tcp) < 14:
            continue
        sport, dport = struct.unpack("!HH", tcp[:4])
        payload = total - ihl - (tcp[12] >> 4) * 4
        way = "to_cloud" if dport == up_port else "from_cloud"
        c[way + "_payload"] += payload
        c[way + "_ip"] += total
        c["packets"] += 1
        if dport == up_port and tcp[13] & 0x12 == 0x02:
            c["syn"] += 1
    return c


class Capture:
    def __init__(self, w, port, name):
        self.path = os.path.join(w.dir, name + ".pcap")
        self.err = open(os.path.join(w.dir, name + ".tcpdump"), "w+b")
        self.p = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "--immediate-mode", "-s", "128", "-B", "16384", "-U",
             "-w", self.path, "tcp port %d" % port],
            stdout=subprocess.DEVNULL, stderr=self.err)
        end = time.monotonic() + START_TIMEOUT
        while True:
            self.err.seek(0)
            if b"listening on" in self.err.read():
                return
            if self.p.poll() is not None or time.monotonic() > end:
                raise RuntimeError("tcpdump did not start")
            time.sleep(0.05)

    def stop(self, port):
        time.sleep(0.3)
        stop_proc(self.p, signal.SIGINT)
        self.err.seek(0)
        text = self.err.read().decode(errors="replace")
        self.err.close()
        dropped = 0
        for ln in text.splitlines():
            if "dropped by kernel" in ln:
                dropped = int(ln.split()[0])
        c = pcap_count(self.path, port)
        c["dropped"] = dropped
        return c


def bytes_phase(w, gw):
    out = {}
    s = device_connect(gw.port)
    for i in range(5):      # warm: pool and session caches filled
        device_request(s, "/v1/telemetry?t=%s.bytes.warm" % gw.id)
    s.close()
    for ph in ("ka", "new"):
        cap = Capture(w, w.up_port, "%s-%s" % (gw.id, ph))
        status = {}
        try:
            if ph == "ka":
                s = device_connect(gw.port)
                for i in range(BYTES_N):
                    st = device_request(s, "/v1/telemetry?t=%s.bytes.ka" % gw.id)
                    status[st] = status.get(st, 0) + 1
                s.close()
            else:
                for i in range(BYTES_N):
                    s = device_connect(gw.port)
                    st = device_request(s, "/v1/telemetry?t=%s.bytes.new" % gw.id,
                                        close=True)
                    status[st] = status.get(st, 0) + 1
                    s.close()
        finally:
            c = cap.stop(w.up_port)
        n = BYTES_N
        c.update({
            "requests": n,
            "status": status,
            "payload_per_req": (c["to_cloud_payload"] + c["from_cloud_payload"]) / n,
            "to_cloud_payload_per_req": c["to_cloud_payload"] / n,
            "from_cloud_payload_per_req": c["from_cloud_payload"] / n,
            "ip_per_req": (c["to_cloud_ip"] + c["from_cloud_ip"]) / n,
            "packets_per_req": c["packets"] / n,
            "connections_per_1000": c["syn"] * 1000.0 / n,
        })
        os.unlink(cap.path)
        out[ph] = c
        log("%-16s bytes %-3s %7.0f B/req payload, %7.0f B/req IP, %5.1f "
            "connections/1000, status %s" % (gw.id, ph, c["payload_per_req"],
                                             c["ip_per_req"],
                                             c["connections_per_1000"], status))
    return out


def strace_summary(path):
    """(total calls, [(calls, name)] top 6) from an `strace -c` table."""
    total, rows = 0, []
    with open(path) as f:
        for ln in f:
            p = ln.split()
            if len(p) < 5 or not p[3].isdigit():
                continue
            if p[-1] == "total":
                total = int(p[3])
            else:
                rows.append((int(p[3]), p[-1]))
    rows.sort(reverse=True)
    return total, rows[:6]


def syscall_phase(w, gw):
    """System calls the gateway makes per request, counted with strace -c
    (which slows the gateway down a lot: a separate, sequential phase)."""
    out = {}
    n = max(1, BYTES_N // 2)
    for ph in ("ka", "new"):
        path = os.path.join(w.dir, "strace-%s-%s.txt" % (gw.id, ph))
        argv = ["strace", "-c", "-f", "-o", path]
        for p in gw.pids():
            argv += ["-p", str(p)]
        tr = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(1.0)         # let strace attach to every thread
        try:
            s = None
            for i in range(n):
                if s is None:
                    s = device_connect(gw.port)
                device_request(s, "/v1/telemetry?t=%s.strace.%s" % (gw.id, ph),
                               close=(ph == "new"))
                if ph == "new":
                    s.close()
                    s = None
            if s is not None:
                s.close()
            time.sleep(0.3)
        finally:
            stop_proc(tr, signal.SIGINT)
        total, top = strace_summary(path)
        out[ph] = {"requests": n, "syscalls_per_req": total / n,
                   "top": [[c / n, name] for c, name in top]}
        log("%-16s syscalls %-3s %5.1f per request: %s" % (
            gw.id, ph, total / n, ", ".join("%s %.1f" % (name, c / n)
                                             for c, name in top[:4])))
    return out


def idle_phase(w, gw):
    pids = gw.pids()
    time.sleep(0.5)
    rss0 = proc_rss_kib(pids)
    up0 = established_to(w.up_port)
    socks, status = [], {}
    try:
        for i in range(IDLE):
            s = device_connect(gw.port)
            socks.append(s)
            st = device_request(s, "/v1/telemetry?t=%s.idle" % gw.id)
            status[st] = status.get(st, 0) + 1
        # Idle means idle: every gateway gets the same quiet time to do
        # what it does with idle connections (tlsgate parks them after
        # 1 s and trims freed memory within 1 s more).
        time.sleep(IDLE_SETTLE)
        pids = gw.pids()
        rss1 = proc_rss_kib(pids)
        up1 = established_to(w.up_port)
        alive = sum(1 for s in socks if _still_open(s))
    finally:
        for s in socks:
            s.close()
    out = {"connections": IDLE, "rss0_kib": rss0, "rss1_kib": rss1,
           "kib_per_conn": (rss1 - rss0) / IDLE, "status": status,
           "upstream_conns_before": up0, "upstream_conns_held": up1,
           "device_conns_open": alive}
    log("%-16s idle %d conns: RSS %d -> %d KiB = %.2f KiB/conn, upstream "
        "connections %d, device connections still open %d" % (
            gw.id, IDLE, rss0, rss1, out["kib_per_conn"], up1, alive))
    return out


def _still_open(s):
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def verify_check(w, gw):
    """Points the gateway at a server whose certificate (from the trusted
    CA) names other.test: a gateway that verifies must not forward."""
    gw.bad = True
    try:
        gw.start("verify")
        s = device_connect(gw.port)
        try:
            st = device_request(s, "/v1/telemetry?t=%s.verify" % gw.id)
        except (RuntimeError, OSError) as e:
            st = None
            why = "refused (device connection closed: %s)" % (
                getattr(e, "strerror", None) or e)
        finally:
            s.close()
        if st is not None:
            why = ("refused (status %d)" % st if st >= 500 else
                   "ACCEPTED a certificate for other.test (status %d)" % st)
        return why, st is None or st >= 500
    finally:
        gw.stop()
        gw.bad = False


def fixed_phases(w, gateways, results):
    """Bytes, system calls and idle memory, each on its own so that one
    tool missing (tcpdump and strace need root) leaves the others."""
    parts = [("bytes", "tcpdump", bytes_phase),
             ("syscalls", "strace", syscall_phase),
             ("idle", None, idle_phase)]
    for gw in gateways:
        rec = results[gw.id]
        if rec.get("reason"):
            continue
        try:
            gw.start("fixed")
            for name, tool, fn in parts:
                if tool and shutil.which(tool) is None:
                    rec["failures"].append("%s: %s not installed" % (name, tool))
                    continue
                try:
                    rec[name] = fn(w, gw)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    rec["failures"].append("%s: %s" % (name, e))
                    log("%s: %s failed: %s" % (gw.id, name, e))
                if gw.proc.poll() is not None:
                    raise RuntimeError("%s exited: %s" % (gw.label, gw.stderr_tail()))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            rec["failures"].append("bytes/syscalls/idle: %s" % e)
            log("%s: %s" % (gw.id, e))
        finally:
            gw.stop()


# ---------------------------------------------------------------------------
# Where the time goes: a CPU profile of tlsgate under load

def perf_works():
    if shutil.which("perf") is None:
        return False
    try:
        r = run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null",
                 "--", "true"])
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def perf_table(data, sort, limit):
    r = subprocess.run(["perf", "report", "-i", data, "--stdio",
                        "--no-children", "--sort", sort, "-g", "none",
                        "--percent-limit", "0.5"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=120)
    rows = []
    for ln in r.stdout.decode(errors="replace").splitlines():
        ln = ln.strip()
        if not ln or ln.startswith("#") or "%" not in ln.split()[0]:
            continue
        parts = ln.split(None, 1)
        if len(parts) < 2:
            continue
        what = parts[1].strip()
        for mark in ("[.]", "[k]"):
            if mark in what:
                dso, _, sym = what.partition(mark)
                what = "%s %s" % (sym.strip(), "(%s)" % dso.strip()
                                  if mark == "[.]" else "(kernel)")
        rows.append([float(parts[0].rstrip("%")), what])
        if len(rows) >= limit:
            break
    return rows


# Frames that every sample passes through, or that name no function.
_PERF_SKIP = ("main", "_start", "__libc_start_main", "__libc_start_call_main",
              "event_base_loop", "do_syscall_64", "entry_SYSCALL_64")


def perf_inclusive(data, limit):
    """Inclusive ("children") share of named functions: the user-space
    ones, and of the kernel only the system call entries, so the table
    says which calls the time goes to rather than listing the TCP stack."""
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children",
                        "--sort", "sym", "-g", "none", "--percent-limit", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       timeout=300)
    rows = []
    for ln in r.stdout.decode(errors="replace").splitlines():
        p = ln.split()
        if len(p) < 4 or not p[0].endswith("%") or ln.lstrip().startswith("#"):
            continue
        kind, sym = p[2], " ".join(p[3:]).replace(" (inlined)", "")
        if sym.startswith("0x") or sym.split("@")[0] in _PERF_SKIP or \
                sym.startswith("__libc_start"):
            continue
        if kind == "[k]" and not sym.startswith("__x64_sys_"):
            continue
        rows.append([float(p[0].rstrip("%")), sym])
        if len(rows) >= limit:
            break
    return rows


def profile(w, gw):
    """perf samples (with DWARF call chains) of the gateway's process while
    wrk loads it."""
    out = {"tool": "perf record -e cpu-clock -F 499 --call-graph dwarf "
                   "(software clock sampling: this VM has no hardware counters)"}
    gw.start("profile")
    try:
        wrk(gw.port, "%s.prof.warm" % gw.id, WARM_SECONDS, False)
        for ph, close in (("ka", False), ("new", True)):
            data = os.path.join(w.dir, "perf-%s-%s.data" % (gw.id, ph))
            rec = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "499",
                 "--call-graph", "dwarf,8192", "-p", str(gw.proc.pid),
                 "-o", data, "--", "sleep", str(PROFILE_SECONDS)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res, argv = wrk(gw.port, "%s.prof.%s" % (gw.id, ph),
                            PROFILE_SECONDS + 1, close)
            rec.wait(PROFILE_SECONDS + 30)
            out[ph] = {
                "requests": res["requests"],
                "by_dso": perf_table(data, "dso", 12),
                "by_symbol": perf_table(data, "dso,sym", 25),
                "inclusive": perf_inclusive(data, 30),
            }
            os.unlink(data)
            w.commands["perf"] = (
                "perf record -e cpu-clock -F 499 --call-graph dwarf,8192 -p PID "
                "-- sleep %d; perf report --no-children --sort dso,sym; "
                "perf report --children --sort sym -g none" % PROFILE_SECONDS)
            log("profile %s %s: %s" % (gw.id, ph, out[ph]["inclusive"][:4]))
    finally:
        gw.stop()
    return out


def callgrind_rows(cg, inclusive, limit):
    """[percent, "function (file)"] from callgrind_annotate's table."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=" +
                        ("yes" if inclusive else "no"), cg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       timeout=120)
    rows = []
    for ln in r.stdout.decode(errors="replace").splitlines():
        m = re.match(r"\s*[\d,]+ \(\s*([\d.]+)%\)\s+(\S+?):(\S+)", ln)
        if not m or "PROGRAM TOTALS" in ln:
            continue
        pct, where, fn = float(m.group(1)), m.group(2), m.group(3)
        if fn.startswith(("0x", "(")) or fn in _PERF_SKIP \
                or fn.startswith("__libc_start") or fn.startswith("event_base_"):
            continue
        name = "%s (%s)" % (fn, os.path.basename(where)) if where != "???" else fn
        if any(name == x[1] for x in rows):
            continue
        rows.append([pct, name])
        if len(rows) >= limit:
            break
    return rows


def callgrind_profile(w, gw, n=2000):
    """Instructions executed in user space, per function, over a fixed
    number of keep-alive requests under valgrind --tool=callgrind (slow,
    so few).  Complements perf: it sees no kernel time, but counts exactly
    what the code itself does."""
    out = {"tool": "valgrind --tool=callgrind --toggle-collect=event_base_loop, "
                   "%d sequential keep-alive requests (instructions in user "
                   "space after start-up; the kernel's share is not counted)" % n,
           "unit": "instructions"}
    cg = os.path.join(w.dir, "callgrind-%s.out" % gw.id)
    base = gw.configure
    # Only the event loop: start-up (configuration, contexts) is left out.
    gw.configure = lambda d: ["valgrind", "--tool=callgrind",
                              "--toggle-collect=event_base_loop",
                              "--callgrind-out-file=" + cg] + base(d)
    try:
        gw.start_timeout = 60       # valgrind starts slowly
        gw.start("callgrind")
        s = device_connect(gw.port)
        for i in range(n):
            device_request(s, "/v1/telemetry?t=%s.cg" % gw.id)
        s.close()
    finally:
        gw.start_timeout = START_TIMEOUT
        gw.stop()
        gw.configure = base
    out["ka"] = {"requests": n, "by_dso": [],
                 "inclusive": callgrind_rows(cg, True, 30),
                 "by_symbol": callgrind_rows(cg, False, 25)}
    w.commands["callgrind"] = ("valgrind --tool=callgrind tlsgate -c ...; "
                               "callgrind_annotate --inclusive=yes|no")
    log("callgrind %s: %s" % (gw.id, out["ka"]["by_symbol"][:4]))
    return out


# ---------------------------------------------------------------------------

def versions():
    v = {
        "tlsgate": first_line([TLSGATE, "-V"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "nginx": first_line(["nginx", "-v"]),
        "stunnel": next((ln for ln in run(["stunnel", "-version"]).stdout
                         .decode(errors="replace").splitlines()
                         if ln.startswith("stunnel ")), "unknown").strip(),
        "wrk": first_line(["wrk", "-v"]),
        "openssl": first_line(["openssl", "version"]),
        "kernel": platform.release(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            v["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f
                            if ln.startswith("model name"))
    except (OSError, StopIteration):
        v["cpu"] = "unknown"
    v["cores"] = NCPU
    return v


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    for tool in ("wrk", "nginx", "haproxy", "stunnel", "openssl"):
        if shutil.which(tool) is None:
            sys.exit("bench: %s not found; run `sh bench/deps.sh`" % tool)
    if not os.access(TLSGATE, os.X_OK):
        sys.exit("bench: %s not built (make all)" % TLSGATE)
    os.makedirs(OUT, exist_ok=True)
    stale = os.path.join(OUT, "results.json")
    if os.path.exists(stale):
        os.unlink(stale)
    started = time.time()
    w = World()
    w.commands = {}
    gateways = [
        Tlsgate("tlsgate", "tlsgate (OpenSSL route)", w, builtin=False),
        Tlsgate("tlsgate-builtin", "tlsgate (builtin route)", w, builtin=True),
        Haproxy("haproxy", "HAProxy (http-reuse always)", w, "always"),
        Haproxy("haproxy-safe", "HAProxy (default: http-reuse safe)", w, "safe"),
        NginxGateway("nginx", "nginx as gateway", w),
        Stunnel("stunnel", "stunnel (no Host rewrite)", w),
    ]
    if ONLY:
        gateways = [g for g in gateways if g.id in ONLY]
    results = {g.id: {"label": g.label, "runs": [], "failures": []}
               for g in gateways}
    for g in gateways:
        if isinstance(g, Tlsgate):
            why = g.available()
            if why:
                results[g.id]["reason"] = why
                log("%s: %s" % (g.id, why))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": versions(),
        "settings": {"seconds": SECONDS, "repeats": REPEATS, "conns": CONNS,
                     "idle": IDLE, "bytes_n": BYTES_N,
                     "gateway_cpus": GW_CPUS, "load_cpus": LOAD_CPUS,
                     "side_rounds": SIDE,
                     "warm_seconds": WARM_SECONDS},
        "loadavg_start": loadavg(),
    }
    log("gateway on CPU %s, wrk and upstream on CPU %s, %d s phases, %d "
        "repeats, %d connections; load average %s" % (
            GW_CPUS, LOAD_CPUS, SECONDS, REPEATS, CONNS,
            " ".join(meta["loadavg_start"])))
    prof = None
    side = []
    try:
        w.start_upstream()
        verify_all(w, gateways, results)
        run_repeats(w, gateways, results)
        side = side_phase(w, gateways, results) if SIDE else []
        if FIXED:
            fixed_phases(w, gateways, results)
        tg = next((g for g in gateways if g.id == "tlsgate"), None)
        if PROFILE and tg and not results["tlsgate"].get("reason"):
            prof = {}
            tb = next((g for g in gateways if g.id == "tlsgate-builtin"
                       and not results[g.id].get("reason")), None)
            for g in (tg, tb):
                if g is None:
                    continue
                try:
                    if perf_works():
                        prof[g.id] = profile(w, g)
                    if shutil.which("valgrind"):
                        prof[g.id + " (callgrind)"] = callgrind_profile(w, g)
                except Exception as e:   # the profile is extra: keep the rest
                    log("profile of %s failed: %r" % (g.id, e))
                    prof[g.id + " (error)"] = {"error": str(e)}
    finally:
        if w.up:
            w.stop_upstream()
    # Handshakes and what the upstream saw, from its first-request log.
    ulog = w.upstream_log()
    for gid, p in (prof or {}).items():
        if " (" in gid:         # callgrind and errors: no load phases
            continue
        for ph in ("ka", "new"):
            if isinstance(p, dict) and ph in p and p[ph].get("requests"):
                p[ph]["handshakes_per_1000"] = len(ulog.get(
                    "%s.prof.%s" % (gid, ph), [])) * 1000.0 / p[ph]["requests"]
    for gid, rec in results.items():
        seen = set()
        for row in rec["runs"]:
            for ph in ("ka", "new"):
                recs = ulog.get(row[ph]["tag"], [])
                n = row[ph]["requests"]
                row[ph]["handshakes"] = len(recs)
                row[ph]["resumed"] = sum(1 for r in recs if r["reused"] == "r")
                row[ph]["handshakes_per_1000"] = len(recs) * 1000.0 / n if n else None
                seen.update((r["sni"], r["host"], r["proto"]) for r in recs)
        for tag, recs in ulog.items():
            if tag.startswith(gid + ".bytes") or tag == gid + ".idle":
                seen.update((r["sni"], r["host"], r["proto"]) for r in recs)
        rec["upstream_saw"] = sorted([list(x) for x in seen])
    meta["loadavg_end"] = loadavg()
    meta["elapsed_s"] = round(time.time() - started)
    meta["commands"] = w.commands
    meta["gateway_argv"] = {g.id: " ".join(pinned(GW_CPUS, g.load_argv))
                            .replace(w.dir, "$W") for g in gateways
                            if getattr(g, "load_argv", None)}
    meta["commands"] = {k: v.replace(w.dir, "$W") for k, v in w.commands.items()}
    doc = {"meta": meta, "gateways": results, "profile": prof,
           "order": [g.id for g in gateways], "side": side}
    path = os.path.join(OUT, "results.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    log("results in %s (%d s)" % (path, meta["elapsed_s"]))
    w.cleanup()
    # A gateway that failed every repeat is a failed bench.
    bad = [g for g, r in results.items()
           if not r.get("reason") and not r["runs"]]
    if bad:
        log("no result for: %s" % ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
