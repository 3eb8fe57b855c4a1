#!/bin/sh
# Constrained uplink: an OpenSSL route vs a builtin route (tls = builtin)
# vs builtin + max_fragment 512, against the same nginx on 127.0.0.1 with
# an RSA-2048 chain (leaf + intermediate), TLS 1.3, tickets on.  Prints a
# Markdown table (also written to $BENCH_OUT/uplink.md) with:
#
#   mem/conn     heap bytes in use (glibc malloc_stats(), read through gdb,
#                which needs ptrace permission: root, or ptrace_scope 0)
#                per idle pooled uplink connection: 16 (the pool's limit)
#                on each of BENCH_N/16 routes, opened at once by uploads held
#                open, then completed; measured after the device
#                connections closed and the idle-key timer ran, minus the
#                heap of the freshly started daemon.  That daemon runs with
#                glibc's per-thread cache off (GLIBC_TUNABLES), which
#                malloc_stats() would otherwise count as in use although
#                it holds freed blocks: the figure is then every live byte
#                (chunk headers included) and nothing else.  The figure
#                with the cache on, as the daemon normally runs, is printed
#                too (mem_tcache)
#   full, resumed  bytes of the handshake alone (both directions, until
#                the connection is up: the daemon logs them at debug level)
#                on a server that closes after each request
#                (keepalive_requests 1): the first, then resumed ones
#   POST         bytes (both directions) per 200-byte telemetry POST on a
#                pooled connection, and what nginx logged for it (request
#                and response sizes) plus one record's overhead each way
#   req/s, CPU   wrk -c BENCH_CONNS keep-alive POSTs for BENCH_SECONDS; CPU
#                is the daemon's user+system time per request
#
# Loopback only, bounded (three to four minutes).  Settings: BENCH_OUT
# (build/bench), BENCH_N (208), BENCH_SECONDS (5), BENCH_CONNS (10),
# BENCH_ROUNDS (3: throughput rounds, median), TLSGATE (./tlsgate).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export TOP="$top"
export TLSGATE="${TLSGATE:-$top/tlsgate}"
export BENCH_OUT="${BENCH_OUT:-$top/build/bench}"
export BENCH_N="${BENCH_N:-208}"
export BENCH_SECONDS="${BENCH_SECONDS:-5}"
export BENCH_CONNS="${BENCH_CONNS:-10}"
export BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
mkdir -p "$BENCH_OUT"
for p in nginx wrk gdb openssl python3; do
	command -v "$p" >/dev/null || { echo "bench-uplink: $p is missing" >&2; exit 1; }
done
exec timeout 600 python3 - <<'EOF'
import os, re, signal, socket, subprocess, sys, time
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["TOP"], "tests", "e2e"))
from lib import (Gateway, TempDir, free_port, connect, CLOUD, OPENSSL)

N = int(os.environ["BENCH_N"])
SECS = int(os.environ["BENCH_SECONDS"])
CONNS = int(os.environ["BENCH_CONNS"])
ROUNDS = int(os.environ["BENCH_ROUNDS"])
OUT = os.environ["BENCH_OUT"]
SUMMARY = re.compile(r"route (\S+): (\d+) full handshakes, (\d+) resumed, "
                     r"(\d+) reused connections; uplink bytes rx=(\d+) "
                     r"tx=(\d+)")

NGINX_CONF = """\
worker_processes 1;
user root;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format sz '$request_uri|$request_length|$bytes_sent';
    access_log {d}/access.log sz;
    ssl_certificate {chain};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_session_tickets on;
    ssl_session_cache shared:B:1m;
    client_body_timeout 120s;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{pa} ssl;
        server_name cloud.test;
        keepalive_requests 1000000;
        client_max_body_size 1m;
        location /dav/ {{
            root {d}/www;
            dav_methods PUT;
            create_full_put_path on;
        }}
        location / {{ return 202; }}
    }}
    server {{
        listen 127.0.0.1:{pb} ssl;
        server_name cloud.test;
        keepalive_requests 1;
        location / {{ return 202; }}
    }}
}}
"""


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, **kw)


def rsa_chain(d):
    """RSA-2048 root, intermediate and leaf for cloud.test."""
    def req(stem, subj, ca=None, ext=""):
        key, crt = os.path.join(d, stem + ".key"), os.path.join(d, stem + ".pem")
        if ca is None:
            run(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", key, "-out", crt, "-days", "2", "-subj", subj,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign")
            return key, crt
        csr = os.path.join(d, stem + ".csr")
        run(OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
            "-out", csr, "-subj", subj)
        extf = os.path.join(d, stem + ".ext")
        with open(extf, "w") as f:
            f.write(ext)
        run(OPENSSL, "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey",
            ca[0], "-CAcreateserial", "-out", crt, "-days", "2",
            "-extfile", extf)
        return key, crt
    root = req("root", "/CN=bench root")
    inter = req("inter", "/CN=bench intermediate", root,
                "basicConstraints=critical,CA:TRUE\n"
                "keyUsage=critical,keyCertSign\n")
    leaf = req("leaf", "/CN=cloud.test", inter,
               "subjectAltName=DNS:cloud.test\n"
               "extendedKeyUsage=serverAuth\n")
    chain = os.path.join(d, "chain.pem")
    with open(chain, "w") as f:
        f.write(open(leaf[1]).read() + open(inter[1]).read())
    return root[1], chain, leaf[0]


class Nginx:
    def __init__(self, td, chain, key):
        self.d = td.join("nginx")
        for sub in ("tmp", "www/dav"):
            os.makedirs(os.path.join(self.d, sub), exist_ok=True)
        self.pa, self.pb = free_port(), free_port()
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.d, chain=chain, key=key,
                                      pa=self.pa, pb=self.pb))
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.d,
                                      "-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL)
        for p in (self.pa, self.pb):
            for _ in range(100):
                try:
                    connect(p, timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)

    def last_sizes(self, uri):
        with open(os.path.join(self.d, "access.log")) as f:
            for ln in reversed(f.read().splitlines()):
                u, rl, bs = ln.split("|")
                if u == uri:
                    return int(rl), int(bs)
        raise RuntimeError("nginx logged no %s" % uri)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


VARIANTS = [("openssl", {}),
            ("builtin", {"tls": "builtin"}),
            ("builtin+mfl512", {"tls": "builtin", "max_fragment": 512})]


def gateway(td, name, port, ca, keys, gw_keys=None):
    r = {"upstream": "127.0.0.1:%d" % port, "host": CLOUD, "ca_file": ca,
         "connect_timeout": 10, "upstream_timeout": 120}
    r.update(keys)
    g = Gateway(td, [("u", r)], name=name,
                gateway=dict({"max_clients": 4 * N + 100,
                              "header_timeout": 120,
                              "log_level": "info"}, **(gw_keys or {})))
    return g


def summary(g):
    for ln in g.lines():
        m = SUMMARY.search(ln)
        if m:
            return [int(x) for x in m.groups()[1:]]
    raise RuntimeError("no summary:\n" + g.log_text()[-1500:])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


POST = (b"POST /v1/telemetry HTTP/1.1\r\nHost: device\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        + b"x" * 200)
# The same 200-byte upload as a PUT that nginx stores (DAV), so that its
# $request_length counts the body it read.
PUT = POST.replace(b"POST /v1/telemetry", b"PUT /dav/t%d")


def hold(port, data, n):
    # One at a time, so that handshakes do not overlap: the figure is the
    # memory a connection keeps, not the peak of N concurrent handshakes.
    socks = []
    for _ in range(n):
        s = connect(port)
        s.sendall(data)
        socks.append(s)
        time.sleep(0.02)
    return socks


def settle(pid):
    last, stable = -1, 0
    for _ in range(100):
        time.sleep(0.1)
        v = rss_kb(pid)
        stable = stable + 1 if v == last else 0
        last = v
        if stable >= 5:
            break
    return last


def heap_in_use(g):
    """Bytes malloc has handed out and not got back (glibc malloc_stats(),
    called in the daemon through gdb; it prints to the daemon's log)."""
    n0 = len(g.lines())
    subprocess.run(["gdb", "-q", "-batch", "-p", str(g.pid()), "-ex",
                    "call (void)malloc_stats()"], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=60, check=True)
    for _ in range(50):
        lines = g.lines()[n0:]
        for i, ln in enumerate(lines):
            if ln.startswith("Total (incl. mmap)"):
                return int(lines[i + 2].split("=")[1])
        time.sleep(0.1)
    raise RuntimeError("no malloc_stats output")


# glibc keeps up to 7 freed blocks per size class in a per-thread cache
# (tcache) that malloc_stats() counts as in use: tens of KB of noise in a
# difference of two heaps, i.e. up to a few hundred bytes per connection.
NO_TCACHE = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}


def mem_per_conn(td, ng, ca, tag, keys, env=None):
    """Heap per idle pooled connection: POOL connections on each of R
    routes (POOL = UPSTREAM_POOL_MAX, so all stay pooled), opened at once by
    POOL uploads held open, then completed; device connections closed."""
    pool, nroutes = 16, max(1, N // 16)
    routes = []
    for i in range(nroutes):
        r = {"upstream": "127.0.0.1:%d" % ng.pa, "host": CLOUD,
             "ca_file": ca, "connect_timeout": 10, "upstream_timeout": 120}
        r.update(keys)
        routes.append(("u%d" % i, r))
    g = Gateway(td, routes, name=tag + "-mem",
                gateway={"max_clients": 4 * N + 100, "log_level": "info"},
                env=env)
    time.sleep(0.5)
    base = heap_in_use(g)
    socks = []
    for i in range(nroutes):
        port = int(g.listen[i].rsplit(":", 1)[1])
        for j in range(pool):
            s = connect(port)
            s.sendall(b"PUT /dav/m%d-%d HTTP/1.1\r\nHost: d\r\n"
                      b"Content-Length: 10\r\n\r\nx" % (i, j))
            socks.append(s)
            time.sleep(0.01)
    time.sleep(0.5)
    for s in socks:
        s.sendall(b"123456789")
    for s in socks:
        s.recv(4096)
        s.close()
    # past TT_IDLE_KEYS_MS: idle connections are in their parked state
    time.sleep(1.5)
    used = heap_in_use(g)
    g.stop()
    opened = sum(summary_all(g, "u%d" % i)[0] + summary_all(g, "u%d" % i)[1]
                 for i in range(nroutes))
    if opened != nroutes * pool:
        raise RuntimeError("%s: %d uplink connections, %d expected"
                           % (tag, opened, nroutes * pool))
    return (used - base) / float(nroutes * pool)


def summary_all(g, name):
    for ln in g.lines():
        m = SUMMARY.search(ln)
        if m and m.group(1) == name:
            return [int(x) for x in m.groups()[1:]]
    raise RuntimeError("no summary for " + name)


HS = re.compile(r"connected \((full handshake|resumed), handshake bytes "
                r"sent=(\d+) received=(\d+)\)")


def handshake_bytes(td, ng, ca, tag, keys):
    """Bytes of the handshake alone (until BEV_EVENT_CONNECTED; the
    daemon logs them at debug level): the first connection to a server
    that closes after every request, then K resumed ones."""
    k = 10
    g = gateway(td, tag + "-hk", ng.pb, ca, keys, {"log_level": "debug"})
    for _ in range(k + 1):
        s = connect(g.port)
        s.sendall(POST)
        s.recv(4096)
        s.close()
        time.sleep(0.05)
    time.sleep(0.3)
    g.stop()
    got = [m.groups() for m in map(HS.search, g.lines()) if m]
    full = [(int(t), int(r)) for kind, t, r in got if kind != "resumed"]
    res = [(int(t), int(r)) for kind, t, r in got if kind == "resumed"]
    if len(full) != 1 or len(res) != k:
        raise RuntimeError("%s: %d full and %d resumed handshakes"
                           % (tag, len(full), len(res)))
    return full[0], (sum(t for t, _ in res) / float(k),
                     sum(r for _, r in res) / float(k))


def post_bytes(td, ng, ca, tag, keys):
    k = 50
    g = gateway(td, tag + "-p", ng.pa, ca, keys)
    s = connect(g.port)
    s.sendall(POST)
    s.recv(4096)
    time.sleep(0.2)
    for i in range(k):
        s.sendall(PUT.replace(b"%d", b"%d" % i))
        s.recv(4096)
    s.close()
    time.sleep(0.3)
    g.stop()
    one_conn = summary(g)
    return g, one_conn, k


def throughput(td, ng, ca, tag, keys):
    g = gateway(td, tag + "-t", ng.pa, ca, keys, {"log_level": "warning"})
    lua = td.join("post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = string.rep("x", 200)\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    subprocess.run(["wrk", "-t1", "-c%d" % CONNS, "-d1s", "-s", lua,
                    g.url("/v1/warm")], stdout=subprocess.PIPE, check=True)
    c0 = cpu_s(g.pid())
    r = subprocess.run(["wrk", "-t2", "-c%d" % CONNS, "-d%ds" % SECS, "-s",
                        lua, g.url("/v1/telemetry")],
                       stdout=subprocess.PIPE, check=True).stdout.decode()
    c1 = cpu_s(g.pid())
    g.stop()
    m = re.search(r"(\d+) requests in ([\d.]+)s", r)
    reqs, secs = int(m.group(1)), float(m.group(2))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", r)
    if bad:
        raise RuntimeError("%s: %s non-2xx responses" % (tag, bad.group(1)))
    return reqs / secs, (c1 - c0) / reqs * 1e6


td = TempDir(prefix="tlsgate-bench-uplink.")
ng = None
try:
    root, chain, key = rsa_chain(td.join("."))
    ng = Nginx(td, chain, key)
    res = {}
    for tag, keys in VARIANTS:
        g, one_conn, k = post_bytes(td, ng, ca=root, tag=tag, keys=keys)
        # summary of a gateway that made 1 + k POSTs on one connection,
        # against one that made 1: the k pooled POSTs alone
        g1 = gateway(td, tag + "-p1", ng.pa, root, keys)
        s = connect(g1.port)
        s.sendall(POST)
        s.recv(4096)
        s.close()
        time.sleep(0.3)
        g1.stop()
        only = summary(g1)
        per_post = (one_conn[3] + one_conn[4] - only[3] - only[4]) / float(k)
        rl, bs = ng.last_sizes("/dav/t%d" % (k - 1))
        full, resumed = handshake_bytes(td, ng, root, tag, keys)
        mem = mem_per_conn(td, ng, root, tag, keys, NO_TCACHE)
        mem_tcache = mem_per_conn(td, ng, root, tag + "-tc", keys)
        res[tag] = dict(mem=mem, mem_tcache=mem_tcache, full=full,
                        resumed=resumed, post=per_post,
                        http=rl + bs, rps=[], cpu=[])
    # Throughput and CPU in interleaved rounds (the host is shared and
    # noisy); the median of each.
    for _ in range(ROUNDS):
        for tag, keys in VARIANTS:
            rps, cpu = throughput(td, ng, root, tag, keys)
            res[tag]["rps"].append(rps)
            res[tag]["cpu"].append(cpu)
    for tag, _ in VARIANTS:
        r = res[tag]
        r["rps"] = sorted(r["rps"])[len(r["rps"]) // 2]
        r["cpu"] = sorted(r["cpu"])[len(r["cpu"]) // 2]
        print("%s: %r" % (tag, r), file=sys.stderr)
    o = res["openssl"]
    lines = ["| route | memory per pooled uplink connection (with glibc's "
             "tcache) | handshake "
             "bytes sent + received, full | resumed (resumed / full) | bytes "
             "per 200-byte POST, both ways (HTTP bytes + 44) | requests/s | "
             "CPU µs per request |",
             "|---|---|---|---|---|---|---|"]
    for tag, _ in VARIANTS:
        r = res[tag]
        ft, fr = r["full"]
        rt, rr = r["resumed"]
        lines.append("| %s | %.0f B (%.2f×) (%.0f B) | %d + %d = %d | "
                     "%.0f + %.0f = "
                     "%.0f (%.0f %%) | %.0f (%d + 44 = %d) | %.0f (%.2f×) | "
                     "%.1f (%.2f×) |" % (
                         tag, r["mem"], r["mem"] / o["mem"], r["mem_tcache"],
                         ft, fr, ft + fr,
                         rt, rr, rt + rr, 100.0 * (rt + rr) / (ft + fr),
                         r["post"], r["http"], r["http"] + 44, r["rps"],
                         r["rps"] / o["rps"], r["cpu"], r["cpu"] / o["cpu"]))
    table = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "uplink.md"), "w") as f:
        f.write(table)
    print(table)
finally:
    if ng is not None:
        ng.stop()
    td.cleanup()
EOF
