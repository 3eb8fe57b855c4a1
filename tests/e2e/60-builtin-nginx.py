#!/usr/bin/env python3
"""Routes with `tls = builtin` (the built-in TLS 1.3 client) against nginx,
which uses OpenSSL: forwarding with Host/SNI over one pooled connection;
PSK resumption once nginx closes after every request (keepalive_requests
1), seen in nginx's $ssl_session_reused, the access log's tls= field, and
the uplink byte counters (a resumed handshake carries no certificate);
max_fragment 512 negotiated with a 64 KB body intact both ways; `groups`
and `ciphers` deciding what is negotiated ($ssl_curve, $ssl_cipher), and a
suite the server refuses failing with 502 and the reason."""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

NGINX = os.environ.get("NGINX", "nginx")

# Four servers: keep-alive (a), one request per connection (b), P-256
# only (c), ChaCha20 only (d).
CONF = """\
worker_processes 1;
user root;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format tl '$ssl_session_reused|$ssl_server_name|$connection|'
                  '$request_method|$request_uri|$status|$http_host|'
                  '$ssl_protocol|$ssl_cipher|$ssl_curve';
    access_log {d}/access.log tl;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_session_tickets on;
    ssl_session_cache shared:TL:1m;
    keepalive_timeout 60s;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{pa} ssl;
        server_name cloud.test;
        keepalive_requests 1000;
        location /dav/ {{
            root {d}/www;
            dav_methods PUT;
            create_full_put_path on;
        }}
        location / {{ return 200 "hello from nginx\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{pb} ssl;
        server_name cloud.test;
        keepalive_requests 1;
        location / {{ return 200 "one per connection\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{pc} ssl;
        server_name cloud.test;
        ssl_ecdh_curve prime256v1;
        location / {{ return 200 "p-256\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{pd} ssl;
        server_name cloud.test;
        ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;
        location / {{ return 200 "chacha\\n"; }}
    }}
}}
"""

SUMMARY_RE = re.compile(r"route (\S+): (\d+) full handshakes, (\d+) resumed, "
                        r"(\d+) reused connections; uplink bytes rx=(\d+) "
                        r"tx=(\d+) \(tls=(\w+)\)")


class Nginx:
    def __init__(self, w):
        self.d = w.td.join("nginx")
        for sub in ("tmp", "www/dav"):
            os.makedirs(os.path.join(self.d, sub), exist_ok=True)
        self.pa, self.pb, self.pc, self.pd = (free_port() for _ in range(4))
        self.crt, key = w.pki.good
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(d=self.d, crt=self.crt, key=key, pa=self.pa,
                                pb=self.pb, pc=self.pc, pd=self.pd))
        self.log = open(os.path.join(self.d, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-c", conf, "-p", self.d, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        w.add_cleanup(self.stop)
        end = time.monotonic() + 5
        for p in (self.pa, self.pb, self.pc, self.pd):
            while True:
                if self.proc.poll() is not None:
                    raise TestFailure("nginx exited: %s" % self.errors())
                try:
                    connect(p, timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise TestFailure("nginx not listening: %s"
                                          % self.errors())
                    time.sleep(0.05)

    def errors(self):
        out = ""
        for n in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.d, n)) as f:
                    out += f.read()[-2000:]
            except OSError:
                pass
        return out

    def wait_access(self, prefix, n, timeout=5):
        keys = ("reused", "sni", "conn", "method", "uri", "status", "host",
                "proto", "cipher", "curve")
        end = time.monotonic() + timeout
        while True:
            out = []
            try:
                with open(os.path.join(self.d, "access.log")) as f:
                    for ln in f:
                        rec = dict(zip(keys, ln.rstrip("\n").split("|")))
                        if rec.get("uri", "").startswith(prefix):
                            out.append(rec)
            except OSError:
                pass
            if len(out) >= n or time.monotonic() > end:
                return out
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def need_nginx():
    if shutil.which(NGINX) is None:
        raise TestFailure("nginx not found (nginx-light is a test dependency)")


def builtin(port, pki, **keys):
    keys.setdefault("tls", "builtin")
    return route("127.0.0.1:%d" % port, pki, **keys)


def summary(gw, name):
    """The per-route line the daemon logs at exit, as a dict."""
    for ln in gw.lines():
        m = SUMMARY_RE.search(ln)
        if m and m.group(1) == name:
            keys = ("full", "resumed", "reused", "rx", "tx")
            rec = dict(zip(keys, map(int, m.groups()[1:6])))
            rec["tls"] = m.group(7)
            return rec
    raise TestFailure("no summary line for route %s in:\n%s"
                      % (name, gw.log_text()[-2000:]))


def der_len(pem_path):
    r = subprocess.run([OPENSSL, "x509", "-in", pem_path, "-outform", "DER"],
                       stdout=subprocess.PIPE, check=True)
    return len(r.stdout)


def test_forwarding_and_pool():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        gw = w.gateway([("b", builtin(ng.pa, w.pki))])
        for i in range(20):
            r = curl(w.td, gw.url("/hello/%d" % i), "-H", "Host: device.local")
            expect_eq((r.status, r.body), (200, b"hello from nginx\n"),
                      "request %d" % i)
        recs = ng.wait_access("/hello/", 20)
        expect_eq(len(recs), 20, "requests in nginx's log")
        expect_eq(len(set(a["conn"] for a in recs)), 1,
                  "nginx connections for 20 device connections")
        expect(all(a["sni"] == CLOUD and a["host"] == CLOUD and
                   a["proto"] == "TLSv1.3" for a in recs),
               "SNI/Host/protocol at nginx: %r" % sorted(set(
                   (a["sni"], a["host"], a["proto"]) for a in recs)))
        acc = gw.wait_access(lambda a: a.get("path", "").startswith("/hello/"),
                             n=20)
        expect_eq([a.get("tls") for a in acc], ["new"] + ["reused"] * 19,
                  "gateway access tls")
        # The access log bills each exchange: the first carries the
        # handshake (and the certificate), the pooled ones only records.
        up = [int(a["uplink_rx"]) + int(a["uplink_tx"]) for a in acc]
        cert = der_len(ng.crt)
        expect(all(0 < b < 1000 for b in up[1:]) and
               up[0] > max(up[1:]) + cert,
               "uplink bytes per exchange: %r (certificate %d)" % (up, cert))
        gw.stop()
        s = summary(gw, "b")
        expect_eq((s["full"], s["resumed"], s["reused"], s["tls"]),
                  (1, 0, 19, "builtin"), "route summary")
        say("  20 requests over 1 pooled builtin connection: uplink rx=%d "
            "tx=%d bytes" % (s["rx"], s["tx"]))


def test_resumption_when_nginx_closes():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        # One request: one full handshake.
        gw1 = w.gateway([("one", builtin(ng.pb, w.pki))], name="gw1")
        r = curl(w.td, gw1.url("/first"))
        expect_eq(r.status, 200, "first request")
        gw1.stop()
        full = summary(gw1, "one")
        # Five requests: nginx closes after each, the next resumes.
        gw = w.gateway([("five", builtin(ng.pb, w.pki))], name="gw5")
        for i in range(5):
            r = curl(w.td, gw.url("/one/%d" % i))
            expect_eq((r.status, r.body), (200, b"one per connection\n"),
                      "request %d" % i)
        recs = ng.wait_access("/one/", 5)
        expect_eq(len(set(a["conn"] for a in recs)), 5,
                  "nginx connections (keepalive_requests 1)")
        expect_eq([a["reused"] for a in recs], [".", "r", "r", "r", "r"],
                  "nginx $ssl_session_reused")
        acc = gw.wait_access(lambda a: a.get("path", "").startswith("/one/"),
                             n=5)
        expect_eq([a.get("tls") for a in acc],
                  ["new", "resumed", "resumed", "resumed", "resumed"],
                  "gateway access tls")
        rx = [int(a["uplink_rx"]) for a in acc]
        expect(all(rx[0] >= r + der_len(ng.crt) for r in rx[1:]),
               "uplink bytes received per exchange, new then resumed: %r"
               % rx)
        gw.stop()
        five = summary(gw, "five")
        expect_eq((five["full"], five["resumed"]), (1, 4), "handshakes")
        # Each resumed connection received less than the full one by at
        # least the certificate the server no longer sends.
        per_resumed = (five["rx"] - full["rx"]) / 4.0
        cert = der_len(ng.crt)
        expect(per_resumed + cert <= full["rx"],
               "bytes received per resumed connection %.0f, full %d, "
               "certificate %d" % (per_resumed, full["rx"], cert))
        say("  received per connection: full %d, resumed %.0f bytes "
            "(certificate %d); sent: full %d, resumed %.0f" % (
                full["rx"], per_resumed, cert, full["tx"],
                (five["tx"] - full["tx"]) / 4.0))


def test_max_fragment_512_64k_both_ways():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        gw = w.gateway([("mf", builtin(ng.pa, w.pki, max_fragment=512))],
                       gateway={"max_body_size": 0, "log_level": "debug"})
        size = 64 << 10
        path, digest = make_file(w.td, "up.bin", size, seed=7)
        r = curl(w.td, gw.url("/dav/up.bin"), "-T", path, "-H", "Expect:",
                 max_time=30)
        expect(r.status in (201, 204), "PUT 64 KB: %r" % r)
        with open(os.path.join(ng.d, "www", "dav", "up.bin"), "rb") as f:
            expect_eq(hashlib.sha256(f.read()).hexdigest(), digest,
                      "64 KB stored by nginx")
        r = curl(w.td, gw.url("/dav/up.bin"), max_time=30)
        expect(r.status == 200 and sha256(r.body) == digest,
               "GET 64 KB back: status %s, %d bytes" % (r.status,
                                                         len(r.body)))
        expect(re.search(r"record limit 512\b", gw.log_text()) is not None,
               "record limit 512 negotiated (log: %s)" % [
                   ln for ln in gw.lines() if "record limit" in ln])
        gw.stop()
        s = summary(gw, "mf")
        # 64 KB in records of at most 512 bytes: 128 records or more, each
        # with a 5-byte header, a content type byte and a 16-byte tag.
        overhead = s["rx"] - size
        expect(overhead >= 128 * 22,
               "received %d bytes for a 64 KB body: records larger than "
               "512 bytes?" % s["rx"])
        say("  64 KB down in 512-byte records: %d bytes received, %d sent"
            % (s["rx"], s["tx"]))


def test_groups_and_ciphers():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        gw = w.gateway([
            ("p256", builtin(ng.pc, w.pki, groups="secp256r1")),
            ("hrr", builtin(ng.pc, w.pki, groups="x25519 secp256r1")),
            ("x", builtin(ng.pa, w.pki, groups="x25519",
                          ciphers="TLS_AES_128_GCM_SHA256")),
            ("chacha", builtin(ng.pd, w.pki,
                               ciphers="TLS_CHACHA20_POLY1305_SHA256")),
            ("refused", builtin(ng.pd, w.pki,
                                ciphers="TLS_AES_256_GCM_SHA384")),
        ])
        for i, path in enumerate(("/p256", "/hrr", "/x", "/chacha")):
            r = curl(w.td, gw.url(path, i))
            expect_eq(r.status, 200, "%s: %r" % (path, r))
        r = curl(w.td, gw.url("/refused", 4))
        expect_eq(r.status, 502, "suite the server refuses: %r" % r)
        acc = gw.wait_access(lambda a: a.get("path") == "/refused")
        expect("TLS: " in acc[0].get("error", ""),
               "reason in the access log: %r" % acc[0])
        got = {}
        for path in ("/p256", "/hrr", "/x", "/chacha"):
            recs = ng.wait_access(path, 1)
            expect(len(recs) == 1, "%s in nginx's log" % path)
            got[path] = (recs[0]["curve"], recs[0]["cipher"])
        expect_eq(got["/p256"][0], "prime256v1", "curve with groups=secp256r1")
        expect_eq(got["/hrr"][0], "prime256v1",
                  "curve after HelloRetryRequest")
        expect_eq(got["/x"], ("X25519", "TLS_AES_128_GCM_SHA256"),
                  "curve and suite with groups=x25519")
        expect_eq(got["/chacha"][1], "TLS_CHACHA20_POLY1305_SHA256",
                  "suite with ciphers=TLS_CHACHA20_POLY1305_SHA256")
        say("  negotiated: %r; refused suite -> 502 %s" % (
            got, acc[0].get("error")))


if __name__ == "__main__":
    run_tests(globals())
