#!/usr/bin/env python3
"""The exposition-format validator (_promparse.py) against real output.

The metrics endpoint is not wired into the daemon yet, so the text comes
from the endpoint itself running inside the unit test program: its
test_endpoint_get scrapes it over a socket and, with METRICS_DUMP set,
saves the body it received.  That text must parse strictly and carry the
values that test put in (including an escaped route name).  Then the
validator must refuse texts that each break one rule, and read a
hand-written valid text exactly, so that a validator accepting anything
fails here."""

import math
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _promparse as pp  # noqa: E402

TOP = os.environ.get("TOP") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
O = os.environ.get("O", "build")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def real_output():
    prog = os.path.join(TOP, O, "tests", "unit", "test_metrics")
    if not os.access(prog, os.X_OK):
        fail("%s not built (make unit)" % prog)
    with tempfile.TemporaryDirectory() as d:
        dump = os.path.join(d, "metrics.txt")
        env = dict(os.environ, METRICS_DUMP=dump,
                   METRICS_TEST_FILTER="test_endpoint_get")
        r = subprocess.run([prog], env=env, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            fail("test_metrics failed:\n" + r.stdout + r.stderr)
        if "test_endpoint_get" not in r.stdout:
            fail("the filter ran no endpoint test:\n" + r.stdout)
        with open(dump, "rb") as f:
            return f.read()


def check_real():
    text = real_output()
    fams = pp.parse(text)
    for name, typ in (("tlsgate_requests_total", "counter"),
                      ("tlsgate_request_duration_seconds", "histogram"),
                      ("tlsgate_device_connections_open", "gauge"),
                      ("tlsgate_build_info", "gauge")):
        if name not in fams or fams[name].type != typ:
            fail("family %s (%s) missing" % (name, typ))
    # test_endpoint_get counted 202 in 42 ms and 502 in 1 ms on "drogue",
    # one resumed handshake and one device connection.
    want = [
        ("tlsgate_requests_total", dict(route="drogue", **{"class": "2xx"}),
         1),
        ("tlsgate_requests_total", dict(route="drogue", **{"class": "5xx"}),
         1),
        ("tlsgate_requests_total", dict(route="drogue", **{"class": "4xx"}),
         0),
        ("tlsgate_request_duration_seconds_count", dict(route="drogue"), 2),
        ("tlsgate_request_duration_seconds_bucket",
         dict(route="drogue", le="0.005"), 1),
        ("tlsgate_request_duration_seconds_bucket",
         dict(route="drogue", le="0.05"), 2),
        ("tlsgate_uplink_handshakes_total",
         dict(route="drogue", kind="resumed"), 1),
        ("tlsgate_device_connections_open", {}, 1),
        # The route named w"eird, escaped on the wire.
        ("tlsgate_route_configured", dict(route='w"eird'), 1),
    ]
    for name, labels, v in want:
        try:
            got = pp.value(fams, name, **labels)
        except KeyError:
            fail("no sample %s%s" % (name, labels))
        if got != v:
            fail("%s%s = %r, want %r" % (name, labels, got, v))
    s = pp.value(fams, "tlsgate_request_duration_seconds_sum",
                 route="drogue")
    if abs(s - 0.043) > 1e-9:
        fail("duration sum %r, want 0.043" % s)
    print("real endpoint output: %d families, %d samples, valid" %
          (len(fams), sum(len(f.samples) for f in fams.values())))


FAM = "# HELP x_total X.\n# TYPE x_total counter\n"
HIST = "# HELP h H.\n# TYPE h histogram\n"
HIST_OK = ('h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
           'h_sum 3.5\nh_count 2\n')
BAD = {
    "no final newline": FAM + "x_total 1",
    "timestamp": FAM + "x_total 1 1700000000\n",
    "bad value": FAM + "x_total abc\n",
    "two spaces": FAM + "x_total  1\n",
    "duplicate series": FAM + 'x_total{a="1"} 1\nx_total{a="1"} 2\n',
    "label twice": FAM + 'x_total{a="1",a="2"} 1\n',
    "bad label escape": FAM + 'x_total{a="\\x"} 1\n',
    "unterminated value": FAM + 'x_total{a="1} 1\n',
    "bad label name": FAM + 'x_total{1a="1"} 1\n',
    "reserved label": FAM + 'x_total{__a="1"} 1\n',
    "unquoted": FAM + "x_total{a=1} 1\n",
    "other family": FAM + "y_total 1\n",
    "family twice": FAM + FAM,
    "no HELP/TYPE": "x_total 1\n",
    "TYPE without HELP": "# TYPE x_total counter\nx_total 1\n",
    "counter without _total": "# HELP x X.\n# TYPE x counter\nx 1\n",
    "unknown type": "# HELP x X.\n# TYPE x meter\nx 1\n",
    "HELP escape": "# HELP x X \\q.\n# TYPE x gauge\nx 1\n",
    "unknown comment": "# comment\n",
    "empty line": FAM + "\nx_total 1\n",
    "negative counter": FAM + "x_total -1\n",
    "hex value": FAM + "x_total 0x10\n",
    "bucket without le": HIST + "h_bucket 1\n",
    "le on _sum": HIST + 'h_sum{le="1"} 1\n',
    "no +Inf": HIST + 'h_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "not cumulative": HIST + 'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
                             'h_sum 1\nh_count 1\n',
    "le decreasing": HIST + 'h_bucket{le="2"} 1\nh_bucket{le="1"} 1\n'
                            'h_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    "count differs": HIST + 'h_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',
    "no sum": HIST + 'h_bucket{le="+Inf"} 1\nh_count 1\n',
    "CR": FAM + "x_total 1\r\n",
    "not UTF-8": (FAM + 'x_total{a="\xff"} 1\n').encode("latin-1"),
}


def check_validator():
    for why, text in BAD.items():
        try:
            pp.parse(text)
        except pp.PromParseError:
            continue
        fail("validator accepted a text with: " + why)
    good = (FAM + 'x_total{a="q\\"b\\\\s\\nn"} 1\nx_total 2.5e3\n' +
            HIST + HIST_OK +
            "# HELP g G \\\\ \\n.\n# TYPE g gauge\ng -Inf\n"
            'g{a=""} NaN\ng{a="é"} -0.5\n')
    fams = pp.parse(good)
    if pp.value(fams, "x_total", a='q"b\\s\nn') != 1:
        fail("label unescaping")
    if pp.value(fams, "x_total") != 2500:
        fail("float value")
    if pp.value(fams, "g") != -math.inf or \
            not math.isnan(pp.value(fams, "g", a="")) or \
            pp.value(fams, "g", a="é") != -0.5:
        fail("special values")
    if fams["g"].help != "G \\ \n.":
        fail("HELP unescaping: %r" % fams["g"].help)
    if [f.type for f in fams.values()] != ["counter", "histogram", "gauge"]:
        fail("types")
    if len(pp.samples(fams, "h_bucket")) != 2:
        fail("samples()")
    print("validator: %d faulty texts refused, valid text read exactly" %
          len(BAD))


def main():
    check_validator()
    check_real()
    print("ok")


if __name__ == "__main__":
    main()
