#!/usr/bin/env python3
"""A real TLS server from Debian as the upstream: nginx (nginx-light) on
127.0.0.1 with the test CA's certificate, session tickets on.  Bodies
(Content-Length and chunked PUT stored by the DAV module, a static file
download), keep-alive reuse (keepalive_requests 1000: one TLS connection
for many requests), and resumed sessions when nginx closes after every
request (keepalive_requests 1).  nginx's access log records the SNI, the
Host, the connection serial and whether the session was reused."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

NGINX = os.environ.get("NGINX", "nginx")

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
                  '$connection_requests|$request_method|$request_uri|'
                  '$status|$http_host|$ssl_protocol|$http_transfer_encoding|'
                  '$content_length';
    access_log {d}/access.log tl;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    ssl_session_cache shared:TL:1m;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name cloud.test;
        keepalive_requests 1000;
        client_max_body_size 0;
        location /dav/ {{
            root {d}/www;
            dav_methods PUT;
            create_full_put_path on;
        }}
        location /static/ {{ root {d}/www; }}
        location / {{ return 200 "hello from nginx\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port1} ssl;
        server_name cloud.test;
        keepalive_requests 1;
        location / {{ return 200 "one per connection\\n"; }}
    }}
}}
"""


class Nginx:
    def __init__(self, w):
        self.d = w.td.join("nginx")
        for sub in ("tmp", "www/static", "www/dav"):
            os.makedirs(os.path.join(self.d, sub), exist_ok=True)
        self.port, self.port1 = free_port(), free_port()
        crt, key = w.pki.good
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(d=self.d, crt=crt, key=key, port=self.port,
                                port1=self.port1))
        self.log = open(os.path.join(self.d, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-c", conf, "-p", self.d, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        w.add_cleanup(self.stop)
        end = time.monotonic() + 5
        while True:
            if self.proc.poll() is not None:
                raise TestFailure("nginx exited: %s" % self.errors())
            try:
                connect(self.port, timeout=1).close()
                connect(self.port1, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise TestFailure("nginx not listening: %s" % self.errors())
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

    def access(self, path_prefix=""):
        """nginx's access records (dicts) for URIs starting with the prefix;
        nginx writes the line when the request ends, so wait a little."""
        keys = ("reused", "sni", "conn", "conn_req", "method", "uri", "status",
                "host", "proto", "te", "cl")
        out = []
        try:
            with open(os.path.join(self.d, "access.log")) as f:
                for ln in f:
                    rec = dict(zip(keys, ln.rstrip("\n").split("|")))
                    if rec.get("uri", "").startswith(path_prefix):
                        out.append(rec)
        except OSError:
            pass
        return out

    def wait_access(self, prefix, n, timeout=5):
        end = time.monotonic() + timeout
        while True:
            got = self.access(prefix)
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)     # graceful shutdown
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def need_nginx():
    if shutil.which(NGINX) is None:
        raise TestFailure("nginx not found (nginx-light is a test dependency)")


def test_keepalive_and_rewrite_through_nginx():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        gw = w.gateway([("ng", route("127.0.0.1:%d" % ng.port, w.pki))])
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        urls = [gw.url("/hello/%d" % i) for i in range(50)]
        r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time",
                            "30", "-H", "Host: device.local"] + urls,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=40)
        expect_eq(r.stdout, b"hello from nginx\n" * 50,
                  "50 responses through nginx (stderr %r)" % r.stderr)
        for i in range(10):      # separate device connections, same pool
            c = curl(w.td, gw.url("/sep/%d" % i))
            expect_eq(c.status, 200, "separate request %d" % i)
        recs = ng.wait_access("/hello/", 50) + ng.wait_access("/sep/", 10)
        expect_eq(len(recs), 60, "requests in nginx's log")
        conns = sorted(set(a["conn"] for a in recs))
        expect_eq(len(conns), 1, "nginx connections for 60 requests (%r)"
                  % conns)
        expect(all(a["sni"] == CLOUD and a["host"] == CLOUD for a in recs),
               "SNI/Host seen by nginx: %r" % sorted(set(
                   (a["sni"], a["host"]) for a in recs)))
        say("  nginx: 60 requests on %d connection, %s" % (len(conns),
                                                           recs[0]["proto"]))
        expect_eq(recs[0]["proto"], "TLSv1.3", "protocol with nginx")


def test_bodies_through_nginx():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        gw = w.gateway([("ng", route("127.0.0.1:%d" % ng.port, w.pki))],
                       gateway={"max_body_size": 0})
        for name, size, chunked in (("small.bin", 100, False),
                                    ("big.bin", 5 << 20, False),
                                    ("chunked.bin", 3 << 20, True)):
            path, digest = make_file(w.td, name, size, seed=size % 97)
            args = ["-T", path, "-H", "Expect:"]
            if chunked:
                args += ["-H", "Transfer-Encoding: chunked"]
            r = curl(w.td, gw.url("/dav/" + name), *args, max_time=30)
            expect(r.status in (201, 204), "PUT %s: status %s (%r)"
                   % (name, r.status, r))
            stored = os.path.join(ng.d, "www", "dav", name)
            with open(stored, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            expect_eq(got, digest, "%s stored by nginx" % name)
        # a static download
        path, digest = make_file(w.td, "dl.bin", 7 << 20, seed=5)
        shutil.copy(path, os.path.join(ng.d, "www", "static", "dl.bin"))
        r = curl(w.td, gw.url("/static/dl.bin"), max_time=30)
        expect(r.status == 200 and sha256(r.body) == digest,
               "static 7 MB download: status %s, %d bytes" % (r.status,
                                                              len(r.body)))
        r = curl(w.td, gw.url("/static/dl.bin"), "-I")
        expect(r.rc == 0 and r.status == 200 and
               r.header("content-length") == str(7 << 20),
               "HEAD of the static file: %r" % r)
        r = curl(w.td, gw.url("/static/missing"))
        expect_eq(r.status, 404, "nginx's 404 passed through")
        recs = ng.wait_access("/dav/chunked.bin", 1)
        say("  chunked PUT reached nginx with Transfer-Encoding %r"
            % (recs[0]["te"] if recs else None))


def test_resumed_when_nginx_closes():
    need_nginx()
    with World() as w:
        ng = Nginx(w)
        gw = w.gateway([("ng", route("127.0.0.1:%d" % ng.port1, w.pki))])
        for i in range(5):
            r = curl(w.td, gw.url("/one/%d" % i))
            expect_eq((r.status, r.body), (200, b"one per connection\n"),
                      "request %d" % i)
        recs = ng.wait_access("/one/", 5)
        expect_eq(len(recs), 5, "requests in nginx's log")
        expect_eq(len(set(a["conn"] for a in recs)), 5,
                  "nginx connections (keepalive_requests 1)")
        expect_eq([a["reused"] for a in recs], [".", "r", "r", "r", "r"],
                  "nginx $ssl_session_reused")
        acc = gw.wait_access(lambda a: a.get("path", "").startswith("/one/"),
                             n=5)
        expect_eq([a.get("tls") for a in acc],
                  ["new", "resumed", "resumed", "resumed", "resumed"],
                  "gateway access tls")


if __name__ == "__main__":
    run_tests(globals())
