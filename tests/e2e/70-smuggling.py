#!/usr/bin/env python3
"""Hostile requests from a device, sent over raw sockets: every framing
ambiguity that request smuggling plays on (RFC 9112 §11.2), and every
malformed head the issue lists, gets 400 (505 for a version that is not
HTTP/1, 501 for a coding we do not implement) with Connection: close, the
connection is closed, and the recording upstream sees no request at all
(faults in the head: not even a connection).  Then pipelined smuggling
attempts: a second request hidden in a body is never forwarded."""

import os
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

H = b"POST /x HTTP/1.1\r\nHost: d\r\n"
BODY = b"3\r\nabc\r\n0\r\n\r\n"
TE = H + b"Transfer-Encoding: chunked\r\n\r\n"

# (what, bytes, status).  All of these are refused from the head alone.
HEAD_CASES = [
    # RFC 9112 §6.1, §6.3 item 3: both framings -> refuse
    ("CL with TE", H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n" + BODY, 400),
    ("TE with CL", H + b"Transfer-Encoding: chunked\r\nContent-Length: 14\r\n"
     b"\r\n" + BODY, 400),
    ("CL with TE: identity", H + b"Content-Length: 3\r\n"
     b"Transfer-Encoding: identity\r\n\r\nabc", 400),
    # RFC 9110 §8.6, RFC 9112 §6.3 item 5
    ("duplicate CL, same value", H + b"Content-Length: 3\r\n"
     b"Content-Length: 3\r\n\r\nabc", 400),
    ("duplicate CL, different values", H + b"Content-Length: 3\r\n"
     b"Content-Length: 4\r\n\r\nabcd", 400),
    ("CL as a list", H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
] + [
    ("CL %r" % v, H + b"Content-Length: " + v + b"\r\n\r\nabc", 400)
    for v in (b"abc", b"3abc", b"+3", b"-3", b"0x3", b"3 3", b"", b"3.0",
              b"1e3", b"99999999999999999999999")
] + [
    # RFC 9112 §6.3 item 4: chunked must be the final coding; odd spellings
    ("TE %r" % v, H + b"Transfer-Encoding: " + v + b"\r\n\r\n" + BODY, 400)
    for v in (b"gzip", b"identity", b"chunked, identity", b"chunked, gzip",
              b"xchunked", b"chunk", b"chunked;q=1", b"chunked x",
              b"chunked,", b", chunked", b"chunked, chunked", b"chunked\x0b",
              b"\"chunked\"", b"")
] + [
    ("TE in two fields, last not chunked", H + b"Transfer-Encoding: chunked"
     b"\r\nTransfer-Encoding: gzip\r\n\r\n" + BODY, 400),
    ("TE in HTTP/1.0", b"POST /x HTTP/1.0\r\nHost: d\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + BODY, 400),
    ("space before the colon of TE", H + b"Transfer-Encoding : chunked\r\n"
     b"\r\n" + BODY, 400),
    ("tab before the colon of CL", H + b"Content-Length\t: 3\r\n\r\nabc", 400),
    ("space before the colon of Host", b"GET / HTTP/1.1\r\nHost : d\r\n\r\n",
     400),
    # RFC 9112 §5.2: obs-fold is refused, here hiding a coding
    ("obs-fold in TE", H + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + BODY,
     400),
    ("obs-fold in a field", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: 1\r\n"
     b"\tfolded\r\n\r\n", 400),
    ("whitespace line before the first field", b"GET / HTTP/1.1\r\n"
     b" X: y\r\nHost: d\r\n\r\n", 400),
    # RFC 9110 §5.5: no NUL, CR or other controls in values
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: a\x00b\r\n\r\n",
     400),
    ("CR in a value", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: a\rb\r\n\r\n", 400),
    ("CR in CL", H + b"Content-Length: 3\r0\r\n\r\nabc", 400),
    ("DEL in a value", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: a\x7fb\r\n\r\n",
     400),
    ("NUL in a name", b"GET / HTTP/1.1\r\nHost: d\r\nX\x00A: b\r\n\r\n", 400),
    ("empty field name", b"GET / HTTP/1.1\r\nHost: d\r\n: b\r\n\r\n", 400),
    ("bad name character", b"GET / HTTP/1.1\r\nHost: d\r\nX(A): b\r\n\r\n",
     400),
    ("field without colon", b"GET / HTTP/1.1\r\nHost: d\r\nNoColon\r\n\r\n",
     400),
    # RFC 9112 §2.2: bare LF in the head
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: d\n\n", 400),
    ("bare LF inside a value", b"GET / HTTP/1.1\r\nHost: d\r\nX-A: a\nb: c"
     b"\r\n\r\n", 400),
    ("bare LF before CL", b"POST /x HTTP/1.1\r\nHost: d\r\nX: y\n"
     b"Content-Length: 3\r\n\r\nabc", 400),
    # RFC 9112 §3, §3.1: methods and request-lines
    ("method with '@'", b"G@T / HTTP/1.1\r\nHost: d\r\n\r\n", 400),
    ("method with NUL", b"GE\x00T / HTTP/1.1\r\nHost: d\r\n\r\n", 400),
    ("method with a byte >= 0x80", b"G\xc9T / HTTP/1.1\r\nHost: d\r\n\r\n",
     400),
    ("empty method", b" / HTTP/1.1\r\nHost: d\r\n\r\n", 400),
    ("two spaces after the method", b"GET  / HTTP/1.1\r\nHost: d\r\n\r\n",
     400),
    ("tab as separator", b"GET\t/ HTTP/1.1\r\nHost: d\r\n\r\n", 400),
    ("trailing space after the version", b"GET / HTTP/1.1 \r\nHost: d\r\n\r\n",
     400),
    ("HTTP/0.9 request-line", b"GET /\r\n\r\n", 400),
    ("space in the target", b"GET /a b HTTP/1.1\r\nHost: d\r\n\r\n", 400),
    ("garbage line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
     400),
    # RFC 9112 §2.3: versions
] + [
    ("version %r" % v, b"GET / " + v + b"\r\nHost: d\r\n\r\n", 400)
    for v in (b"http/1.1", b"HTTP/1.10", b"HTTP/1", b"HTTP/1.1.1",
              b"HTTPS/1.1", b"HTTP/1.x", b"HTTP /1.1", b"HTTP/11")
] + [
    ("version HTTP/2.0", b"GET / HTTP/2.0\r\nHost: d\r\n\r\n", 505),
    ("version HTTP/0.9", b"GET / HTTP/0.9\r\nHost: d\r\n\r\n", 505),
    # RFC 9112 §3.2: Host
    ("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
     400),
    ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("duplicate Host in HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\n"
     b"Host: b\r\n\r\n", 400),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@d\r\n\r\n", 400),
    ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: d:8x\r\n\r\n", 400),
    # RFC 9110 §7.6.1: a Connection option may not remove framing fields
    ("Connection naming Content-Length", H + b"Content-Length: 3\r\n"
     b"Connection: Content-Length\r\n\r\nabc", 400),
    # RFC 9112 §6.1: a coding before chunked that we do not implement
    ("TE gzip, chunked", H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
     + BODY, 501),
]

# A valid head with a bad chunked body: the head may go upstream (bodies
# stream), but the upstream never receives a complete request.
BODY_CASES = [
    ("chunk size %r" % v, TE + v + b"\r\nabc\r\n0\r\n\r\n", 400)
    for v in (b"0x3", b"+3", b"-3", b" 3", b"3 ", b"", b"3g",
              b"8000000000000000", b"ffffffffffffffffffff",
              b"10000000000000000000000000000003")
] + [
    ("bare LF after the chunk size", TE + b"3\nabc\r\n0\r\n\r\n", 400),
    ("bare LF after the chunk data", TE + b"3\r\nabc\n0\r\n\r\n", 400),
    ("bare LF after the last chunk", TE + b"3\r\nabc\r\n0\n\r\n", 400),
    ("bare LF ending the body", TE + b"3\r\nabc\r\n0\r\n\n", 400),
    ("bare LF in a chunk extension", TE + b"3;a\nabc\r\n0\r\n\r\n", 400),
    ("bare LF in a trailer", TE + b"3\r\nabc\r\n0\r\nX: y\n\r\n", 400),
    ("CR alone after the size", TE + b"3\rabc\r\n0\r\n\r\n", 400),
    ("chunk data longer than its size", TE + b"3\r\nabcd\r\n0\r\n\r\n", 400),
    ("space before a trailer colon", TE + b"3\r\nabc\r\n0\r\nX : y\r\n\r\n",
     400),
    ("obs-fold in a trailer", TE + b"3\r\nabc\r\n0\r\nX: y\r\n z\r\n\r\n",
     400),
    ("NUL in a trailer", TE + b"3\r\nabc\r\n0\r\nX: a\x00b\r\n\r\n", 400),
]


def check_refused(gw, up, what, data, status, head_level):
    """data -> status, Connection: close, closed, nothing forwarded."""
    nreq, nconn = len(up.requests), up.connections
    resp, closed, raw = raw_request(gw.port, data, timeout=6, close_wait=2)
    expect(resp is not None, "%s: no response (got %r)" % (what, raw))
    expect_eq(resp.status, status, "%s: status (%r)" % (what, resp))
    expect(any("close" in v.lower() for v in hall(resp.headers, "connection")),
           "%s: no Connection: close in %r" % (what, resp.headers))
    expect(closed, "%s: connection left open after %d" % (what, status))
    time.sleep(0.02)        # anything forwarded would be recorded by now
    expect_eq(len(up.requests), nreq, "%s: requests seen upstream" % what)
    if head_level:
        expect_eq(up.connections, nconn, "%s: uplink connections opened"
                  % what)


def run_cases(cases, head_level):
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        problems = []
        for what, data, status in cases:
            try:
                check_refused(gw, up, what, data, status, head_level)
            except TestFailure as e:
                problems.append(str(e))
        expect(not problems, "%d of %d cases:\n  %s" % (
            len(problems), len(cases), "\n  ".join(problems)))
        # the gateway still serves a good request afterwards
        r = curl(w.td, gw.url("/after"))
        expect_eq(r.status, 200, "good request after the hostile ones (%r)"
                  % r)
        expect_eq([q.target for q in up.requests], ["/after"],
                  "requests the upstream saw")
        n = len(gw.wait_access(lambda a: a.get("status") in ("400", "501",
                                                             "505"),
                               n=len(cases)))
        expect_eq(n, len(cases), "access lines of refused requests")
        say("  %d cases refused, none forwarded" % len(cases))


def test_hostile_heads():
    run_cases(HEAD_CASES, True)


def test_hostile_chunked_bodies():
    run_cases(BODY_CASES, False)


def smuggle(gw, data, what, want):
    """Sends data in one write and reads every response until the
    gateway closes; returns the list of statuses (want: expected list)."""
    s = connect(gw.port, timeout=6)
    statuses = []
    try:
        s.sendall(data)
        rd = Reader(s)
        while True:
            try:
                resp = read_response(rd, deadline=time.monotonic() + 6)
            except Closed:
                break
            statuses.append(resp.status)
            if len(statuses) > len(want):
                break
    finally:
        s.close()
    expect_eq(statuses, want, "%s: responses" % what)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: d\r\n\r\n"


def test_pipelined_smuggling():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))])
        cases = [
            # CL.TE: a front end using CL would forward the smuggled GET
            ("CL.TE", b"POST /a HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
             % (5 + len(SMUGGLED)) + SMUGGLED, [400]),
            # TE.TE with an obfuscated second coding
            ("TE.TE", b"POST /a HTTP/1.1\r\nHost: d\r\n"
             b"Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n"
             b"0\r\n\r\n" + SMUGGLED, [400]),
            # CL.CL: which length wins decides where the next request starts
            ("CL.CL", b"POST /a HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n"
             b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, [400]),
            # a chunk that undercounts its data: the rest is not a request
            ("short chunk", b"POST /a HTTP/1.1\r\nHost: d\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n1\r\nA" + SMUGGLED +
             b"0\r\n\r\n", [400]),
            # chunk extension ended by a bare LF (the TERM.EXT variant)
            ("bare-LF extension", b"POST /a HTTP/1.1\r\nHost: d\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n2;\nxx\r\n47\r\n0\r\n\r\n"
             + SMUGGLED + b"\r\n0\r\n\r\n", [400]),
            # a good request, then a smuggling attempt in the same segment
            ("good then CL.TE", b"GET /first HTTP/1.1\r\nHost: d\r\n\r\n"
             b"POST /b HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
             % (5 + len(SMUGGLED)) + SMUGGLED, [200, 400]),
            # obs-fold hiding Transfer-Encoding from a lenient parser
            ("folded TE", b"POST /a HTTP/1.1\r\nHost: d\r\n"
             b"Content-Length: 5\r\nX: y\r\n Transfer-Encoding: chunked\r\n"
             b"\r\n0\r\n\r\n" + SMUGGLED, [400]),
        ]
        problems = []
        for what, data, want in cases:
            try:
                smuggle(gw, data, what, want)
            except TestFailure as e:
                problems.append(str(e))
        expect(not problems, "\n  " + "\n  ".join(problems))
        # A body that looks like a request is only a body.
        s = connect(gw.port)
        try:
            s.sendall(b"POST /c HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n"
                      b"\r\n" % len(SMUGGLED) + SMUGGLED +
                      b"GET /second HTTP/1.1\r\nHost: d\r\n\r\n")
            rd = Reader(s)
            got = [read_response(rd, deadline=time.monotonic() + 6).status
                   for _ in range(2)]
        finally:
            s.close()
        expect_eq(got, [200, 200], "CL body holding a request, then a GET")
        time.sleep(0.1)
        targets = [q.target for q in up.requests]
        expect_eq(targets, ["/first", "/c", "/second"], "requests upstream")
        c = [q for q in up.requests if q.target == "/c"][0]
        expect_eq(c.body, SMUGGLED, "body of /c")
        say("  %d smuggling attempts refused; upstream saw only %s"
            % (len(cases), " ".join(targets)))


if __name__ == "__main__":
    run_tests(globals())
