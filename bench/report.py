#!/usr/bin/env python3
"""Turns bench/run.py's results.json into the tables of docs/performance.md
and the plot docs/bench.png.

    python3 bench/report.py [results.json] [--doc docs/performance.md]
                            [--png docs/bench.png]

Only the text between the "bench:begin NAME" and "bench:end NAME" comment
markers of docs/performance.md is replaced (NAME is "results" or
"profile"); the rest of the file, hand-written analysis included, is kept.
When a marker pair is missing, its section is appended.  The report is
also written next to results.json as report.md.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("TOP") or os.path.dirname(HERE)

SECTION = "## Gateway benchmark: tlsgate vs HAProxy, nginx, stunnel"
PROFILE_SECTION = "## Where the time goes"
SHORT = {"tlsgate": "tlsgate", "tlsgate-builtin": "tlsgate builtin",
         "haproxy": "HAProxy always", "haproxy-safe": "HAProxy safe",
         "nginx": "nginx", "stunnel": "stunnel"}
PEERS = ("haproxy", "haproxy-safe", "nginx", "stunnel")
TLSGATES = ("tlsgate", "tlsgate-builtin")


def spread(values):
    """(median, min, max) of the values that exist, or None."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return statistics.median(v), min(v), max(v)


def fmt(x, digits):
    if x is None:
        return "–"
    if digits == 0:
        return "{:,.0f}".format(x).replace(",", " ")
    return "%.*f" % (digits, x)


def cell(s, digits, show_spread=True):
    if s is None:
        return "–"
    med, lo, hi = s
    if not show_spread or lo == hi:
        return fmt(med, digits)
    return "%s (%s–%s)" % (fmt(med, digits), fmt(lo, digits), fmt(hi, digits))


class Results:
    def __init__(self, doc):
        self.doc = doc
        self.meta = doc["meta"]
        self.g = doc["gateways"]
        self.order = doc.get("order") or list(self.g)

    def ok(self, gid):
        return gid in self.g and not self.g[gid].get("reason") and self.g[gid]["runs"]

    def phase(self, gid, ph, key):
        if not self.ok(gid):
            return None
        return spread([r[ph].get(key) for r in self.g[gid]["runs"]])

    def fixed(self, gid, part, key, sub=None):
        rec = self.g.get(gid, {}).get(part)
        if not rec:
            return None
        v = rec[sub].get(key) if sub else rec.get(key)
        return None if v is None else (v, v, v)

    def label(self, gid):
        return self.g[gid]["label"]


def table_phase(R, ph):
    out = ["| gateway | requests/s | p50 ms | p99 ms | gateway CPU s / 10k req "
           "| of which user space | gateway core busy | gateway sleeps / req "
           "| TLS handshakes / 1k req | upstream CPU s / 10k req | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for gid in R.order:
        rec = R.g[gid]
        if rec.get("reason"):
            out.append("| %s | %s |  |  |  |  |  |  |  |  |  |" % (R.label(gid), rec["reason"]))
            continue
        if not rec["runs"]:
            out.append("| %s | failed: %s |  |  |  |  |  |  |  |  |  |" % (
                R.label(gid), "; ".join(rec["failures"])[:200]))
            continue
        errs = sum(r[ph]["errors"] for r in rec["runs"])
        util = R.phase(gid, ph, "cpu_util")
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            R.label(gid), cell(R.phase(gid, ph, "rps"), 0),
            cell(R.phase(gid, ph, "p50_ms"), 2), cell(R.phase(gid, ph, "p99_ms"), 1),
            cell(R.phase(gid, ph, "cpu_s_per_10k"), 2),
            cell(R.phase(gid, ph, "user_s_per_10k"), 2),
            "%d %%" % round(100 * util[0]) if util else "–",
            cell(R.phase(gid, ph, "sleeps_per_req"), 2, False),
            cell(R.phase(gid, ph, "handshakes_per_1000"), 1),
            cell(R.phase(gid, ph, "upstream_cpu_s_per_10k"), 2), errs))
    return out


def table_fixed(R):
    n_idle = R.meta["settings"]["idle"]
    out = ["| gateway | RSS per idle device connection (KiB) | upstream "
           "connections held for %d idle devices | uplink bytes / req, "
           "keep-alive (TCP payload; IP) | uplink bytes / req, new "
           "connection (TCP payload; IP) | TCP connections to the "
           "cloud / 1k req, keep-alive; new | Host seen upstream | "
           "certificate for other.test |" % n_idle,
           "|---|---:|---:|---:|---:|---:|---|---|"]
    for gid in R.order:
        rec = R.g[gid]
        if rec.get("reason"):
            out.append("| %s | %s |  |  |  |  |  |  |" % (R.label(gid), rec["reason"]))
            continue
        idle, by = rec.get("idle"), rec.get("bytes")
        hosts = sorted(set(h for _, h, _ in rec.get("upstream_saw", [])))
        host = ("cloud.test (rewritten)" if hosts == ["cloud.test"]
                else "device's (%s)" % ", ".join(hosts[:2]) if hosts else "–")
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            R.label(gid),
            fmt(idle["kib_per_conn"], 2) if idle else "–",
            idle["upstream_conns_held"] if idle else "–",
            "%s; %s" % (fmt(by["ka"]["payload_per_req"], 0),
                        fmt(by["ka"]["ip_per_req"], 0)) if by else "–",
            "%s; %s" % (fmt(by["new"]["payload_per_req"], 0),
                        fmt(by["new"]["ip_per_req"], 0)) if by else "–",
            "%s; %s" % (fmt(by["ka"]["connections_per_1000"], 0),
                        fmt(by["new"]["connections_per_1000"], 0)) if by else "–",
            host, rec.get("verify", "–")))
    return out


def ratio(a, b):
    if a is None or b is None or not b[0]:
        return None
    return a[0] / b[0]


def rfmt(x):
    return "–" if x is None else "%.2f×" % x


def metrics(R, gid):
    """name -> (median, min, max) for the ratio table."""
    m = {}
    for ph in ("ka", "new"):
        for k in ("rps", "p99_ms", "cpu_s_per_10k"):
            m[ph + "." + k] = R.phase(gid, ph, k)
    m["idle"] = R.fixed(gid, "idle", "kib_per_conn")
    m["bytes.ka"] = R.fixed(gid, "bytes", "payload_per_req", "ka")
    m["bytes.new"] = R.fixed(gid, "bytes", "payload_per_req", "new")
    return m


def table_ratios(R):
    cols = [("ka.rps", "req/s keep-alive"), ("new.rps", "req/s new conn"),
            ("ka.p99_ms", "p99 keep-alive"), ("new.p99_ms", "p99 new conn"),
            ("ka.cpu_s_per_10k", "CPU/req keep-alive"),
            ("new.cpu_s_per_10k", "CPU/req new conn"),
            ("idle", "RSS/idle conn"), ("bytes.ka", "bytes/req keep-alive"),
            ("bytes.new", "bytes/req new conn")]
    out = ["| tlsgate ÷ peer (medians) | " + " | ".join(c for _, c in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for t in TLSGATES:
        if not R.ok(t):
            continue
        mt = metrics(R, t)
        for p in PEERS:
            if not R.ok(p):
                continue
            mp = metrics(R, p)
            out.append("| %s ÷ %s | %s |" % (
                SHORT[t], SHORT[p],
                " | ".join(rfmt(ratio(mt[k], mp[k])) for k, _ in cols)))
    return out


def paired(R, t, p, ph, key):
    """(median, min, max) of t's figure ÷ p's within each repeat: the
    gateways of one repeat ran one after the other, so slow drift of the
    shared machine cancels out."""
    if not (R.ok(t) and R.ok(p)):
        return None
    by = {r["rep"]: r for r in R.g[p]["runs"]}
    v = [r[ph][key] / by[r["rep"]][ph][key] for r in R.g[t]["runs"]
         if r["rep"] in by and r[ph].get(key) is not None
         and by[r["rep"]][ph].get(key)]
    return spread(v)


def side_ratio(R, t, ph, key="cpu_s_per_10k"):
    """(median, min, max) over the side-by-side rounds of t's figure
    ÷ HAProxy `always`'s in the same round, or None."""
    v = []
    for rnd in R.doc.get("side") or []:
        row = rnd.get(ph, {})
        a, b = row.get(t, {}), row.get("haproxy", {})
        if a.get(key) and b.get(key):
            v.append(a[key] / b[key])
    return spread(v)


def table_side(R):
    rounds = R.doc.get("side") or []
    if not rounds:
        return ["Not run (BENCH_SIDE=0, or tlsgate or HAProxy missing)."]
    ids = [g for g in ("tlsgate", "tlsgate-builtin", "haproxy")
           if any(g in r.get("ka", {}) for r in rounds)]
    out = ["| round | load | " + " | ".join(
        "%s: CPU s / 10k req (requests, p99)" % R.label(g) for g in ids) + " | " +
        " | ".join("%s ÷ HAProxy" % SHORT[g] for g in ids if g != "haproxy")
        + " |", "|---|---|" + "---:|" * (2 * len(ids) - 1)]
    for r in rounds:
        for ph, name in (("ka", "keep-alive"), ("new", "new connection")):
            row = r.get(ph, {})
            cells = []
            for g in ids:
                x = row.get(g)
                cells.append("–" if not x else "%s (%s, p99 %s ms)" % (
                    fmt(x["cpu_s_per_10k"], 2), fmt(x["requests"], 0),
                    fmt(x.get("p99_ms"), 1)))
            for g in ids:
                if g == "haproxy":
                    continue
                a, b = row.get(g), row.get("haproxy")
                cells.append("–" if not (a and b and b["cpu_s_per_10k"])
                             else rfmt(a["cpu_s_per_10k"] / b["cpu_s_per_10k"]))
            out.append("| %d | %s | %s |" % (r["round"] + 1, name,
                                              " | ".join(cells)))
    return out


def goals(R):
    """The issue's goals as a table: one row per goal, one column per pair
    of tlsgate route and HAProxy configuration."""
    pairs = [(t, p) for t in TLSGATES if R.ok(t)
             for p in ("haproxy", "haproxy-safe") if R.ok(p)]
    if not pairs:
        return []
    rows = []
    for ph, name in (("ka", "keep-alive"), ("new", "new connection")):
        rows.append(("CPU per request ≤ 0.8×, %s" % name,
                     ph + ".cpu_s_per_10k", lambda x: x <= 0.8))
        rows.append(("same, ratio within each repeat: median (min–max)",
                     ("paired", ph, "cpu_s_per_10k"), lambda x: x <= 0.8))
        rows.append(("same, loaded at once on one core (side by side): "
                     "median (min–max)", ("side", ph), lambda x: x <= 0.8))
        rows.append(("requests/s ≥ 1×, %s" % name, ph + ".rps",
                     lambda x: x >= 1.0))
        rows.append(("same, side by side (requests in the same seconds)",
                     ("side", ph, "requests"), lambda x: x >= 1.0))
        rows.append(("p99 ≤ 1×, %s" % name, ph + ".p99_ms",
                     lambda x: x <= 1.0))
        rows.append(("same, side by side", ("side", ph, "p99_ms"),
                     lambda x: x <= 1.0))
    rows.append(("RSS per idle device connection ≤ 0.25×", "idle",
                 lambda x: x <= 0.25))
    m = {g: metrics(R, g) for pair in pairs for g in pair}
    out = ["| goal (tlsgate ÷ HAProxy, medians) | " + " | ".join(
        "%s ÷ %s" % (SHORT[t], SHORT[p]) for t, p in pairs) + " |",
        "|---|" + "---|" * len(pairs)]
    for name, key, good in rows:
        cells = []
        for t, p in pairs:
            if isinstance(key, tuple):
                if key[0] == "side":
                    sp = side_ratio(R, t, key[1], *key[2:]) \
                        if p == "haproxy" else None
                else:
                    sp = paired(R, t, p, key[1], key[2])
                cells.append("–" if sp is None else "%s (%.2f–%.2f) %s" % (
                    rfmt(sp[0]), sp[1], sp[2],
                    "met" if good(sp[0]) else "**not met**"))
                continue
            r = ratio(m[t][key], m[p][key])
            cells.append("–" if r is None else "%s %s" % (
                rfmt(r), "met" if good(r) else "**not met**"))
        out.append("| %s | %s |" % (name, " | ".join(cells)))
    return out


def results_block(R, png_rel):
    m, s, v = R.meta, R.meta["settings"], R.meta["versions"]
    lines = [
        "Run of %s, %d s in all: %d repeats × %d s per phase, %d device "
        "connections (wrk, one thread), gateway pinned to CPU %s, wrk and "
        "the upstream nginx to CPU %s.  Load average %s at the start, %s at "
        "the end%s.  Each cell: median (min–max) over the repeats." % (
            m["date"], m["elapsed_s"], s["repeats"], s["seconds"], s["conns"],
            s["gateway_cpus"], s["load_cpus"], " ".join(m["loadavg_start"]),
            " ".join(m["loadavg_end"]),
            " (other work was running on this 2-core machine: read "
            "small differences as noise)"
            if float(m["loadavg_start"][0]) > 1.0 or float(m["loadavg_end"][0]) > 1.0
            else ""),
        "",
        "![requests/s, p99, CPU per request, RSS per idle connection](%s)" % png_rel,
        "",
        "### Keep-alive device connections",
        "",
    ] + table_phase(R, "ka") + [
        "",
        "### A new device connection per request",
        "",
    ] + table_phase(R, "new") + [
        "",
        "### Idle connections and bytes on the uplink",
        "",
        "RSS: VmRSS of all the gateway's processes after %d device "
        "connections each sent one request and stayed open, then 4 s of "
        "quiet, minus before, ÷ %d (kernel socket buffers are not in RSS).  Bytes: tcpdump on lo "
        "filtered to the upstream port while %d requests go one after the "
        "other on one device connection, then %d on a new device connection "
        "each; both directions counted." % (
            s["idle"], s["idle"], s["bytes_n"], s["bytes_n"]),
        "",
    ] + table_fixed(R) + [
        "",
        "### Ratios",
        "",
    ] + table_ratios(R) + [
        "",
        "### Side by side on one core",
        "",
        "tlsgate's two routes and HAProxy (http-reuse always) loaded at "
        "once, each by a wrk of its own with a third of the connections, "
        "all three pinned to the gateway CPU, %d s per load; each round "
        "starts them afresh.  They share the core and whatever the host "
        "does to it at the same moments." % s["seconds"],
        "",
    ] + table_side(R) + [
        "",
        "### Goals (issue: CPU per request ≤ 0.8× HAProxy's, requests/s ≥, "
        "p99 ≤, RSS per idle connection ≤ 0.25×)",
        "",
    ] + (goals(R) or ["No tlsgate or HAProxy result in this run."]) + [
        "",
        "### Versions and commands",
        "",
    ] + ["* %s: %s" % (k, v[k]) for k in ("tlsgate", "haproxy", "nginx",
                                           "stunnel", "wrk", "openssl",
                                           "kernel", "cpu", "cores")] + [
        "",
        "```",
    ] + ["%s: %s" % (k, c) for k, c in sorted(m.get("commands", {}).items())] + [
        "%s: %s" % (g, a) for g, a in m.get("gateway_argv", {}).items() if a
    ] + ["```"]
    fails = ["* %s: %s" % (R.label(g), f) for g in R.order
             for f in R.g[g].get("failures", [])]
    if fails:
        lines += ["", "Failures during the run:", ""] + fails
    return lines


def syscall_table(R):
    rows = []
    for gid in R.order:
        sc = R.g[gid].get("syscalls")
        if not sc:
            continue
        cells = []
        for ph in ("ka", "new"):
            q = sc[ph]
            cells += [fmt(q["syscalls_per_req"], 1), ", ".join(
                "%s %.1f" % (name, c) for c, name in q["top"][:5] if c >= 0.05)]
        rows.append("| %s | %s |" % (R.label(gid), " | ".join(cells)))
    if not rows:
        return []
    n = next(R.g[g]["syscalls"]["ka"]["requests"] for g in R.order
             if R.g[g].get("syscalls"))
    return ["System calls per request, counted with `strace -c -f` on every "
            "gateway process while %d requests go one after the other on one "
            "device connection, then %d on a new connection each:" % (n, n), "",
            "| gateway | keep-alive | most frequent | new connection | most frequent |",
            "|---|---:|---|---:|---|"] + rows + [""]


def profile_block(R):
    prof = R.doc.get("profile")
    out = syscall_table(R)
    if not prof:
        return out + ["No CPU profile in this run (BENCH_PROFILE=0, or tlsgate "
                      "did not run)."]
    for key, p in prof.items():
        gid = key.split(" (")[0]
        if "error" in p:
            out += ["The profile of %s failed: %s" % (gid, p["error"]), ""]
            continue
        out.append("Profile of %s with %s, run of %s." % (
            R.label(gid) if gid in R.g else gid, p["tool"], R.meta["date"]))
        for ph, name in (("ka", "keep-alive device connections"),
                         ("new", "a new device connection per request")):
            if ph not in p:
                continue
            q = p[ph]
            hs = q.get("handshakes_per_1000")
            out += ["", "**%s, %s** (%s requests profiled%s)" % (
                gid, name, fmt(q["requests"], 0),
                "" if hs is None else ", %.0f upstream TLS handshakes per "
                "1,000 requests" % hs), ""]
            if q.get("by_dso"):
                out.append("Self time by library: " + ", ".join(
                    "%s %.1f %%" % (d, pct) for pct, d in q["by_dso"]))
                out.append("")
            unit = p.get("unit", "samples")
            if q.get("inclusive"):
                out += ["| %% of %s in the function and its callees%s | function |"
                        % (unit, " (system calls: `__x64_sys_*`)"
                           if unit == "samples" else ""),
                        "|---:|---|"]
                out += ["| %.1f | `%s` |" % (pct, sym.replace("|", "\\|"))
                        for pct, sym in q["inclusive"][:18]]
                out.append("")
            out += ["| %% of %s in the function itself | function |" % unit,
                    "|---:|---|"]
            out += ["| %.1f | `%s` |" % (pct, sym.replace("|", "\\|"))
                    for pct, sym in q["by_symbol"][:12]]
        out.append("")
    return out


def plot(R, png):
    """A 2×2 panel PNG with gnuplot: bars are medians, whiskers min–max."""
    if shutil.which("gnuplot") is None:
        print("report: gnuplot not installed, no plot", file=sys.stderr)
        return False
    d = os.path.dirname(os.path.abspath(png))
    dat = png + ".dat"
    ids = [g for g in R.order if R.ok(g)]
    with open(dat, "w") as f:
        f.write("# gateway ka_rps lo hi new_rps lo hi ka_p99 lo hi new_p99 lo hi "
                "ka_cpu lo hi new_cpu lo hi rss\n")
        for g in ids:
            row = ['"%s"' % SHORT[g]]
            for k in ("rps", "p99_ms", "cpu_s_per_10k"):
                for ph in ("ka", "new"):
                    s = R.phase(g, ph, k) or (0, 0, 0)
                    row += ["%.4f" % x for x in s]
            idle = R.fixed(g, "idle", "kib_per_conn")
            row.append("%.4f" % (idle[0] if idle else 0))
            f.write(" ".join(row) + "\n")
    # Columns: 2-4 ka rps, 5-7 new rps, 8-10 ka p99, 11-13 new p99,
    # 14-16 ka cpu, 17-19 new cpu, 20 rss.
    gp = """
set terminal pngcairo size 1400,900 font ",10"
set output '{png}'
set multiplot layout 2,2 title "tlsgate vs peers, {date}: median, whiskers min-max over {rep} repeats"
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set boxwidth 0.9
set grid ytics
set key inside top left horizontal
set offsets 0, 0, graph 0.12, 0
set xtics rotate by -25 scale 0
set yrange [0:*]
set title "requests/s (higher is better)"
plot '{dat}' using 2:3:4:xtic(1) title "keep-alive", '' using 5:6:7 title "new connection"
set title "p99 latency, ms (lower is better)"
plot '{dat}' using 8:9:10:xtic(1) title "keep-alive", '' using 11:12:13 title "new connection"
set title "gateway CPU seconds per 10,000 requests (lower is better)"
set logscale y
set yrange [*:*]
plot '{dat}' using 14:15:16:xtic(1) title "keep-alive", '' using 17:18:19 title "new connection"
unset logscale y
set yrange [0:*]
set style histogram clustered gap 1
set title "RSS per idle device connection, KiB ({idle} connections; lower is better)"
plot '{dat}' using 20:xtic(1) notitle lc rgb "#4a7", \\
     '' using 0:20:(sprintf("%.2f", $20)) with labels offset 0,0.8 notitle
unset multiplot
""".format(png=png, dat=dat, date=R.meta["date"], rep=R.meta["settings"]["repeats"],
           idle=R.meta["settings"]["idle"])
    gpf = png + ".gp"
    with open(gpf, "w") as f:
        f.write(gp)
    r = subprocess.run(["gnuplot", gpf], cwd=d, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    os.unlink(gpf)
    os.unlink(dat)
    if r.returncode != 0:
        print("report: gnuplot failed: %s" % r.stdout.decode(errors="replace"),
              file=sys.stderr)
        return False
    return True


def replace_block(text, name, heading, block):
    begin = "<!-- bench:begin %s: written by bench/report.py (make bench) -->" % name
    end = "<!-- bench:end %s -->" % name
    body = "\n".join([begin] + block + [end])
    i = text.find("<!-- bench:begin %s" % name)
    j = text.find(end)
    if i >= 0 and j > i:
        return text[:i] + body + text[j + len(end):]
    if heading not in text:
        text = text.rstrip("\n") + "\n\n" + heading + "\n\n"
    k = text.index(heading) + len(heading)
    # After the heading's intro paragraph(s), before the next section.
    nxt = text.find("\n## ", k)
    if nxt < 0:
        return text.rstrip("\n") + "\n\n" + body + "\n"
    return text[:nxt].rstrip("\n") + "\n\n" + body + "\n" + text[nxt:]


def main(argv):
    res = os.path.join(TOP, "build", "bench", "results.json")
    doc = os.path.join(TOP, "docs", "performance.md")
    png = os.path.join(TOP, "docs", "bench.png")
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--doc":
            doc = args.pop(0)
        elif a == "--png":
            png = args.pop(0)
        else:
            res = a
    with open(res) as f:
        R = Results(json.load(f))
    png_rel = os.path.relpath(png, os.path.dirname(os.path.abspath(doc)))
    block = results_block(R, png_rel)
    pblock = profile_block(R)
    with open(os.path.join(os.path.dirname(res), "report.md"), "w") as f:
        f.write("\n".join([SECTION, ""] + block + ["", PROFILE_SECTION, ""] +
                          pblock) + "\n")
    plot(R, png)
    text = ""
    if os.path.exists(doc):
        with open(doc) as f:
            text = f.read()
    else:
        text = "# Performance\n"
    text = replace_block(text, "results", SECTION, block)
    text = replace_block(text, "profile", PROFILE_SECTION, pblock)
    with open(doc, "w") as f:
        f.write(text)
    print("report: wrote %s and %s" % (doc, png))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
