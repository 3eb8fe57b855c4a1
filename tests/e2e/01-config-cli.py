#!/usr/bin/env python3
"""Command line and configuration checking: `-t` accepts a good file and
prints "configuration OK"; every kind of bad file is refused with exit 2
and "FILE:LINE: message"; -V, -h, -d."""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403


def run_gw(*args, timeout=10):
    r = subprocess.run([TLSGATE] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), \
        r.stderr.decode(errors="replace")


def good_conf(pki, port):
    return ("[gateway]\n"                                   # 1
            "log_level = info\n"                            # 2
            "max_clients = 4096\n"                          # 3
            "header_timeout = 10\n"                         # 4
            "idle_timeout = 60\n"                           # 5
            "max_header_size = 16384\n"                     # 6
            "max_body_size = 65536\n"                       # 7
            "\n"                                            # 8
            "[route drogue]\n"                              # 9
            "listen = 127.0.0.1:%d\n"                       # 10
            "upstream = 127.0.0.1:9\n"                      # 11
            "host = cloud.test\n"                           # 12
            "sni = cloud.test\n"                            # 13
            "verify = yes\n"                                # 14
            "ca_file = %s\n"                                # 15
            "connect_timeout = 10\n"                        # 16
            "upstream_timeout = 90\n"                       # 17
            % (port, pki.ca_file))


def config_max_line():
    """CONFIG_MAX_LINE from src/config.h when present (the limit the
    daemon documents), else inih's default of 200."""
    try:
        with open(os.path.join(TOP, "src", "config.h")) as f:
            m = re.search(r"#define\s+CONFIG_MAX_LINE\s+(\d+)", f.read())
            if m:
                return int(m.group(1))
    except OSError:
        pass
    return 200


def test_t_good_config():
    with World() as w:
        conf = w.td.write("good.conf", good_conf(w.pki, free_port()))
        rc, out, err = run_gw("-t", "-c", conf)
        expect_eq(rc, 0, "exit status of -t on a good file (stderr %r)" % err)
        expect("configuration OK" in out + err,
               "-t did not print 'configuration OK': out=%r err=%r" % (out, err))


def test_t_good_config_several_routes_ipv6():
    with World() as w:
        p = free_port()
        text = good_conf(w.pki, p) + (
            "\n[route api]\n"
            "listen = 127.0.0.1:%d\n"
            "upstream = 127.0.0.1:9\n"
            "host = cloud.test\n"
            "match_host = *.example.test\n"
            "match_path = /v1/\n"
            "ca_file = %s\n"
            "\n[route six]\n"
            "listen = [::1]:%d\n"
            "upstream = 127.0.0.1:9\n"
            "host = cloud.test\n"
            "verify = no\n" % (p, w.pki.ca_file, free_port()))
        conf = w.td.write("multi.conf", text)
        rc, out, err = run_gw("-t", "-c", conf)
        expect_eq(rc, 0, "exit status of -t (stderr %r)" % err)
        expect("configuration OK" in out + err, "no 'configuration OK'")


# (name, text to substitute for one line of good_conf, line number)
BAD = [
    ("unknown key in [gateway]", 3, "max_klients = 10"),
    ("unknown key in a route", 13, "snii = cloud.test"),
    ("bad log_level", 2, "log_level = loud"),
    ("bad verify", 14, "verify = maybe"),
    ("negative max_clients", 3, "max_clients = -1"),
    ("non-numeric timeout", 4, "header_timeout = ten"),
    ("bad listen", 10, "listen = 127.0.0.1:notaport"),
    ("listen port out of range", 10, "listen = 127.0.0.1:70000"),
    ("trailing garbage in a number", 7, "max_body_size = 12x"),
    ("unknown section", 8, "[gatewy]"),
]


def test_t_bad_values():
    with World() as w:
        port = free_port()
        base = good_conf(w.pki, port).split("\n")
        problems = []
        for i, (what, line, repl) in enumerate(BAD):
            lines = list(base)
            lines[line - 1] = repl
            conf = w.td.write("bad%d.conf" % i, "\n".join(lines))
            rc, out, err = run_gw("-t", "-c", conf)
            want = "%s:%d:" % (conf, line)
            if rc != 2 or want not in err:
                problems.append("%s: want exit 2 and %r on stderr, got exit %d "
                                "stderr=%r" % (what, want, rc, err.strip()))
            else:
                say("  %s -> %s" % (what, err.strip().splitlines()[0]))
        expect(not problems, "\n  " + "\n  ".join(problems))


def test_t_duplicate_key():
    with World() as w:
        text = good_conf(w.pki, free_port()) + "host = other.test\n"  # line 18
        conf = w.td.write("dup.conf", text)
        rc, out, err = run_gw("-t", "-c", conf)
        expect(rc == 2 and ("%s:18:" % conf) in err,
               "duplicate key: want exit 2 and '%s:18:', got %d %r"
               % (conf, rc, err))
        # the same key in [gateway]
        lines = good_conf(w.pki, free_port()).split("\n")
        lines.insert(2, "log_level = debug")                  # line 3
        conf = w.td.write("dup2.conf", "\n".join(lines))
        rc, out, err = run_gw("-t", "-c", conf)
        expect(rc == 2 and ("%s:3:" % conf) in err,
               "duplicate [gateway] key: want exit 2 and '%s:3:', got %d %r"
               % (conf, rc, err))


def test_t_over_long_line():
    limit = config_max_line()
    with World() as w:
        # A comment line longer than the line limit must be refused, with
        # its line number (inih would otherwise split it and parse the tail
        # as a line of its own).
        n = max(300, limit + 100)
        tail = "bogus_key = 1"
        long_line = "; " + "x" * (n - 2 - len(tail)) + tail
        lines = good_conf(w.pki, free_port()).split("\n")
        lines.insert(7, long_line)                            # line 8
        conf = w.td.write("long.conf", "\n".join(lines))
        rc, out, err = run_gw("-t", "-c", conf)
        expect(rc == 2 and ("%s:8:" % conf) in err,
               "%d-byte line: want exit 2 and '%s:8:', got %d %r"
               % (len(long_line), conf, rc, err))
        # A long value line too (its tail would look like a key).
        lines = good_conf(w.pki, free_port()).split("\n")
        lines[11] = "host = " + "a" * (n - 7 - len(tail)) + tail
        conf = w.td.write("long2.conf", "\n".join(lines))
        rc, out, err = run_gw("-t", "-c", conf)
        expect(rc == 2 and ("%s:12:" % conf) in err,
               "long value line: want exit 2 and '%s:12:', got %d %r"
               % (conf, rc, err))
        # A 300-byte line is never split: either the file is accepted whole
        # (limit above 300) or refused with the line number, never with an
        # error about the tail.
        long_line = "; " + "y" * (300 - 2 - len(tail)) + tail
        lines = good_conf(w.pki, free_port()).split("\n")
        lines.insert(7, long_line)
        conf = w.td.write("long3.conf", "\n".join(lines))
        rc, out, err = run_gw("-t", "-c", conf)
        if limit >= 300:
            expect(rc == 0 and "bogus" not in err,
                   "300-byte comment line with a %d-byte limit: want exit 0, "
                   "got %d %r" % (limit, rc, err))
        else:
            expect(rc == 2 and ("%s:8:" % conf) in err and "bogus" not in err,
                   "300-byte line: want exit 2 and '%s:8:' (not about the "
                   "tail), got %d %r" % (conf, rc, err))
        say("  line limit %d (src/config.h); %d-byte line refused" % (limit, n))


def test_t_missing_file_and_ca():
    with World() as w:
        missing = w.td.join("nope.conf")
        rc, out, err = run_gw("-t", "-c", missing)
        expect(rc == 2 and missing in err,
               "missing file: want exit 2 naming it, got %d %r" % (rc, err))
        # A route without upstream is incomplete.
        text = ("[gateway]\nlog_level = info\n\n[route r]\n"
                "listen = 127.0.0.1:%d\n" % free_port())
        conf = w.td.write("noup.conf", text)
        rc, out, err = run_gw("-t", "-c", conf)
        expect(rc == 2 and conf + ":" in err,
               "route without upstream: want exit 2 and '%s:', got %d %r"
               % (conf, rc, err))


def test_version_and_help():
    rc, out, err = run_gw("-V")
    expect(rc == 0 and re.search(r"\d+\.\d+", out + err),
           "-V: want exit 0 and a version number, got %d out=%r err=%r"
           % (rc, out, err))
    say("  -V: " + (out + err).strip().splitlines()[0])
    rc, out, err = run_gw("-h")
    expect(rc == 0 and "-c" in out + err and "-t" in out + err,
           "-h: want exit 0 and a usage naming -c and -t, got %d out=%r err=%r"
           % (rc, out, err))
    rc, out, err = run_gw("-Z")
    expect(rc != 0 and err.strip(),
           "unknown option: want non-zero exit and a message, got %d %r"
           % (rc, err))


def test_debug_flag_and_log_prefixes():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))], args=["-d"])
        r = curl(w.td, gw.url("/dbg"))
        expect_eq(r.status, 200, "status through the gateway")
        recs = gw.wait_access(lambda a: a.get("path") == "/dbg")
        expect(recs, "no access line for /dbg")
        lines = gw.lines()
        expect(any(ln.startswith("debug: ") for ln in lines),
               "-d: no 'debug: ' line in the log:\n" + "\n".join(lines[-20:]))
        bad = [ln for ln in lines
               if not re.match(r"^(error|warning|info|debug): ", ln)]
        expect(not bad, "log lines without a level prefix: %r" % bad[:5])
    # Without -d, at log_level = info: no debug lines.
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        r = curl(w.td, gw.url("/nodbg"))
        expect_eq(r.status, 200, "status through the gateway")
        gw.wait_access(lambda a: a.get("path") == "/nodbg")
        expect(not any(ln.startswith("debug: ") for ln in gw.lines()),
               "debug lines at log_level = info")


if __name__ == "__main__":
    run_tests(globals())
