#!/usr/bin/env python3
"""A lookup still pending when the daemon stops is released.

A route whose DNS server never answers: the request gets 502 at
connect_timeout (1 s), the lookup stays pending inside evdns (its own
timeout is 5 s), and the daemon is stopped at once.  The resolver must be
freed with its pending requests failed (evdns_base_free(dns, 1)) so that
the bufferevent bufferevent_socket_connect_hostname() holds is released:
under `make asan` LeakSanitizer otherwise reports about 1.2 KB.  Needs root
(a private mount namespace, as 74-dns.py)."""

import os
import socket
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lib import *  # noqa: E402,F403

dns_test = __import__("74-dns")


def test_stop_with_a_pending_lookup():
    with World() as w:
        if not dns_test.namespace_works(w.td):
            say("  SKIP: no private mount namespace here")
            return
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        w.add_cleanup(silent.close)
        gw = dns_test.gateway_in_namespace(w, [
            ("r", route("up-dns.test:443", w.pki, connect_timeout=1))],
            silent.getsockname()[1], "127.0.0.1 localhost\n")
        r = curl(w.td, gw.url("/silent-dns"), max_time=10)
        expect_eq(r.status, 502, "silent DNS server")
        gw.stop()       # fails with a LeakSanitizer report in an ASan build


if __name__ == "__main__":
    run_tests(globals())
