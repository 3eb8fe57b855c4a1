#!/usr/bin/python3
"""The image test's HTTPS upstream, run inside the guest on 127.0.0.1.

    upstream.py PORT CERT KEY LOG

Answers every request with 200 and a short body, and appends one JSON line
per request to LOG: the TLS server name the client sent (SNI), the Host
header, method, path and body.  Touches LOG.ready once it is listening.
"""

import http.server
import json
import socketserver
import ssl
import sys

port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


def remember_sni(sock, name, ctx):
    # Runs during the handshake: keep the name on the socket for the handler.
    sock.tlsgate_sni = name


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {
            "sni": getattr(self.connection, "tlsgate_sni", None),
            "host": self.headers.get("Host"),
            "method": self.command,
            "path": self.path,
            "body": body.decode("utf-8", "replace"),
        }
        with open(log, "a") as f:
            f.write(json.dumps(rec) + "\n")
        out = b"hello from cloud.test\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = handle_any

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream: " + (fmt % args) + "\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.sni_callback = remember_sni
srv = Server(("127.0.0.1", port), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(log + ".ready", "w").close()
srv.serve_forever()
