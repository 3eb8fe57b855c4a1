#!/usr/bin/env python3
"""Header rules and gateway credentials (tlsgate.conf(5): set_header,
remove_header, credentials_file, device_credentials_dir).

rules        set_header replaces the device's field of any case,
             remove_header drops the device's field and the gateway's own
             X-Forwarded-For; other fields pass
file         credentials_file replaces the device's Authorization (and is
             added when the device sends none)
passthrough  a route without credentials forwards the device's own
devices      device_credentials_dir: by the user name the device sends,
             else by its source address (127.0.0.2, ::1), else the
             route's credentials_file; a user name with '/' or ".." is not
             a file name; a broken file or a symbolic link answers 500
             with an access line, and nothing goes upstream
secrets      with log_level = debug, no password, credentials line or
             base64 of one appears anywhere in the daemon's output
The whole 127.0.0.0/8 is loopback on Linux, so 127.0.0.2 is a second
source address on the same machine."""

import base64
import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import *  # noqa: E402,F403

FILE_CREDS = "cloud-gw@greenhouse:File-Pw-4417"
SENSOR_CREDS = "sensor-1@greenhouse:Sensor-Pw-8130"
IP4_CREDS = "by-ip4@greenhouse:Ip4-Pw-2291"
IP6_CREDS = "by-ip6@greenhouse:Ip6-Pw-6650"
BROKEN_PW = "Broken-Pw-0772"
DEVICE_PW = "Device-Sent-Pw-5523"


def basic(creds):
    return "Basic " + base64.b64encode(creds.encode()).decode()


def secrets():
    out = []
    for c in (FILE_CREDS, SENSOR_CREDS, IP4_CREDS, IP6_CREDS):
        out += [c, c.split(":", 1)[1], base64.b64encode(c.encode()).decode()]
    out += [BROKEN_PW, DEVICE_PW]
    for user in ("sensor-1", "dev", "nobody", "broken", "linked",
                 "../127.0.0.2"):
        out.append(base64.b64encode(
            ("%s:%s" % (user, DEVICE_PW)).encode()).decode())
    return out


def expect_no_secret(gw):
    text = gw.log_text()
    expect("debug:" in text, "no debug lines: the check would mean little")
    for sec in secrets():
        expect(sec not in text,
               lambda: "secret %r in the daemon's output:\n%s" % (sec, text))


def auth_of(up, i):
    """The Authorization fields of the i-th request the upstream saw."""
    return hall(up.requests[i].headers, "authorization")


def test_rules_and_file_credentials():
    with World() as w:
        up = w.upstream()
        cred = w.td.write("cloud.cred", FILE_CREDS + "\n")
        gw = w.gateway([("r", route(
            up, w.pki, credentials_file=cred,
            set_header="X-Site: greenhouse 1\nset_header = user-agent: "
                       "tlsgate-test",
            remove_header="X-Debug\nremove_header = x-forwarded-for"))],
            gateway={"log_level": "debug"})
        r = curl(w.td, gw.url("/v1/a"), "-u", "dev:" + DEVICE_PW,
                 "-A", "esp8266", "-H", "X-Debug: 1", "-H", "X-Keep: yes",
                 "-H", "X-Site: fake")
        expect_eq(r.status, 200, "first request (%r)" % r)
        r = curl(w.td, gw.url("/v1/b"))
        expect_eq(r.status, 200, "request without Authorization (%r)" % r)
        expect(up.wait_requests(2), "upstream saw %d requests"
               % len(up.requests))
        q = up.requests[0]
        expect_eq(auth_of(up, 0), [basic(FILE_CREDS)], "Authorization")
        expect_eq(auth_of(up, 1), [basic(FILE_CREDS)],
                  "Authorization added to a request without one")
        expect_eq(hall(q.headers, "x-site"), ["greenhouse 1"], "X-Site")
        expect_eq(hall(q.headers, "user-agent"), ["tlsgate-test"],
                  "User-Agent")
        expect_eq(hall(q.headers, "x-debug"), [], "X-Debug")
        expect_eq(hall(q.headers, "x-forwarded-for"), [], "X-Forwarded-For")
        expect_eq(hall(q.headers, "x-keep"), ["yes"], "X-Keep")
        expect_eq(len(hall(q.headers, "via")), 1, "Via fields")
        gw.wait_access(n=2)
        gw.stop()
        expect_no_secret(gw)


def test_passthrough():
    with World() as w:
        up = w.upstream()
        gw = w.gateway([("r", route(up, w.pki))],
                       gateway={"log_level": "debug"})
        r = curl(w.td, gw.url("/v1/a"), "-u", "dev:" + DEVICE_PW)
        expect_eq(r.status, 200, "request (%r)" % r)
        expect(up.wait_requests(1), "no request upstream")
        expect_eq(auth_of(up, 0), [basic("dev:" + DEVICE_PW)],
                  "the device's own Authorization")
        gw.stop()
        expect_no_secret(gw)


def test_device_credentials_dir():
    with World() as w:
        up = w.upstream()
        d = w.td.join("devices")
        os.mkdir(d)
        w.td.write("devices/sensor-1", SENSOR_CREDS + "\n")
        w.td.write("devices/127.0.0.2", IP4_CREDS)
        w.td.write("devices/::1", IP6_CREDS + "\r\n")
        w.td.write("devices/broken", "broken@greenhouse " + BROKEN_PW + "\n")
        os.symlink("sensor-1", w.td.join("devices", "linked"))
        cred = w.td.write("fallback.cred", FILE_CREDS)
        keys = dict(device_credentials_dir=d, credentials_file=cred)
        gw = w.gateway([("v4", route(up, w.pki, **keys)),
                        ("v6", route(up, w.pki, listen="@6a", **keys))],
                       gateway={"log_level": "debug"})
        url6 = "http://%s/v1/six" % gw.listen[1]
        cases = [
            # (what, url, curl args, Authorization upstream)
            ("user sensor-1 from 127.0.0.1", gw.url("/v1/1"),
             ["-u", "sensor-1:" + DEVICE_PW], basic(SENSOR_CREDS)),
            ("user sensor-1 from 127.0.0.2", gw.url("/v1/2"),
             ["-u", "sensor-1:" + DEVICE_PW, "--interface", "127.0.0.2"],
             basic(SENSOR_CREDS)),
            ("no Authorization from 127.0.0.2", gw.url("/v1/3"),
             ["--interface", "127.0.0.2"], basic(IP4_CREDS)),
            ("unknown user from 127.0.0.2", gw.url("/v1/4"),
             ["-u", "nobody:" + DEVICE_PW, "--interface", "127.0.0.2"],
             basic(IP4_CREDS)),
            ("unknown user from 127.0.0.1", gw.url("/v1/5"),
             ["-u", "nobody:" + DEVICE_PW], basic(FILE_CREDS)),
            # Not a file name: the source address decides (127.0.0.1 has
            # no file), never ../127.0.0.2.
            ("user ../127.0.0.2", gw.url("/v1/6"),
             ["-u", "../127.0.0.2:" + DEVICE_PW], basic(FILE_CREDS)),
            ("no Authorization from ::1", url6, [], basic(IP6_CREDS)),
        ]
        for i, (what, url, args, want) in enumerate(cases):
            r = curl(w.td, url, *args)
            expect_eq(r.status, 200, "%s (%r)" % (what, r))
            expect(up.wait_requests(i + 1), "%s: nothing upstream" % what)
            expect_eq(auth_of(up, i), [want], what)
        # Files that exist but cannot be used: 500, nothing upstream.
        for user, why in (("broken", "not \"user:password\""),
                          ("linked", "symbolic link")):
            r = curl(w.td, gw.url("/v1/" + user), "-u",
                     "%s:%s" % (user, DEVICE_PW), "-d", "body")
            expect_eq(r.status, 500, "user %s (%r)" % (user, r))
            recs = gw.wait_access(lambda a, u=user: a.get("path") ==
                                  "/v1/" + u)
            expect_eq(len(recs), 1, "access line of user %s" % user)
            expect_eq(recs[0]["status"], "500", "status logged")
            expect_eq(recs[0]["error"], "device credentials unusable",
                      "error logged")
            lines = [ln for ln in gw.lines()
                     if "devices/%s" % user in ln and why in ln]
            expect_eq(len(lines), 1, "warning naming devices/%s" % user)
        expect_eq(len(up.requests), len(cases), "requests upstream")
        gw.wait_access(n=len(cases) + 2)
        gw.stop()
        expect_no_secret(gw)


run_tests(globals())
