#!/usr/bin/env python3
"""A strict parser of the Prometheus text exposition format 0.0.4, for tests.

parse(text) returns {family name: Family}; any departure from the format
raises PromParseError naming the line.  Stricter than Prometheus itself
(which skips unknown comments and accepts samples without HELP), because
the gateway's own output must be exact:

  - every line ends with "\\n"; no empty lines, no NUL;
  - "# HELP name text" then "# TYPE name type" open a family, each name
    once; type is counter, gauge, histogram, summary or untyped; HELP text
    escapes only \\\\ and \\n; other "#" lines are refused;
  - counter names end in _total;
  - every sample belongs to the family last opened: the family name, or
    for a histogram name_bucket (with an le label), name_sum, name_count;
  - label names match [a-zA-Z_][a-zA-Z0-9_]*, not repeated, not starting
    with "__"; values are quoted with only \\\\, \\" and \\n escapes;
  - one space, then a Go-style float, +Inf, -Inf or NaN; no timestamp;
  - no series twice;
  - histograms: per label set, buckets in increasing le with
    non-decreasing counts, a +Inf bucket equal to _count, and a _sum;
    counters are not negative.

Run as a program: `_promparse.py FILE` checks FILE (or stdin with "-") and
prints the number of families and samples.
"""

import math
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


class PromParseError(ValueError):
    pass


class Family:
    def __init__(self, name, help_text):
        self.name = name
        self.help = help_text
        self.type = None
        self.samples = []           # (sample name, {label: value}, float)

    def __repr__(self):
        return "Family(%s, %s, %d samples)" % (self.name, self.type,
                                               len(self.samples))


def _unescape_help(s, lineno):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in "\\n":
                raise PromParseError("line %d: bad escape in HELP" % lineno)
            out.append("\\" if s[i + 1] == "\\" else "\n")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_labels(line, pos, lineno):
    """Parses {a="b",...} at line[pos] == "{"; returns (dict, next pos)."""
    labels = {}
    pos += 1
    while True:
        if pos >= len(line):
            raise PromParseError("line %d: no closing }" % lineno)
        if line[pos] == "}":
            return labels, pos + 1
        m = LABEL_NAME.match(line, pos)
        if not m:
            raise PromParseError("line %d: bad label name" % lineno)
        name = m.group(0)
        if name.startswith("__"):
            raise PromParseError("line %d: reserved label %s" % (lineno, name))
        if name in labels:
            raise PromParseError("line %d: label %s twice" % (lineno, name))
        pos = m.end()
        if line[pos:pos + 2] != '="':
            raise PromParseError("line %d: label %s not =\"...\"" %
                                 (lineno, name))
        pos += 2
        val = []
        while True:
            if pos >= len(line):
                raise PromParseError("line %d: unterminated label value" %
                                     lineno)
            c = line[pos]
            if c == '"':
                pos += 1
                break
            if c == "\\":
                nxt = line[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise PromParseError("line %d: bad escape in label" %
                                         lineno)
                val.append("\n" if nxt == "n" else nxt)
                pos += 2
                continue
            val.append(c)
            pos += 1
        labels[name] = "".join(val)
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos >= len(line) or line[pos] != "}":
            raise PromParseError("line %d: bad label list" % lineno)


def _parse_value(s, lineno):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not FLOAT.fullmatch(s):
        raise PromParseError("line %d: bad value %r (or a timestamp)" %
                             (lineno, s))
    return float(s)


def _in_family(name, fam):
    if fam.type == "histogram":
        return any(name == fam.name + s for s in HIST_SUFFIXES)
    return name == fam.name


def _check_histogram(fam):
    groups = {}
    for name, labels, value in fam.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "sum": None,
                                    "count": None})
        if name.endswith("_bucket"):
            g["buckets"].append((_parse_value(labels["le"], 0)
                                 if labels["le"] != "+Inf" else math.inf,
                                 value))
        elif name.endswith("_sum"):
            g["sum"] = value
        else:
            g["count"] = value
    for key, g in groups.items():
        where = "%s%s" % (fam.name, dict(key))
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise PromParseError("%s: no +Inf bucket last" % where)
        for (le1, c1), (le2, c2) in zip(b, b[1:]):
            if not le2 > le1:
                raise PromParseError("%s: le not increasing" % where)
            if c2 < c1:
                raise PromParseError("%s: buckets not cumulative" % where)
        if g["count"] is None or g["count"] != b[-1][1]:
            raise PromParseError("%s: _count differs from +Inf bucket" %
                                 where)
        if g["sum"] is None:
            raise PromParseError("%s: no _sum" % where)


def parse(text):
    """Parses a whole exposition; returns {family name: Family}."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PromParseError("not UTF-8: %s" % e)
    if text and not text.endswith("\n"):
        raise PromParseError("no final newline")
    families = {}
    fam = None
    seen = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if "\0" in line or "\r" in line:
            raise PromParseError("line %d: NUL or CR" % lineno)
        if line.startswith("# HELP "):
            rest = line[7:]
            m = METRIC_NAME.match(rest)
            if not m or rest[m.end():m.end() + 1] != " ":
                raise PromParseError("line %d: bad HELP" % lineno)
            name = m.group(0)
            if name in families:
                raise PromParseError("line %d: family %s twice" %
                                     (lineno, name))
            fam = Family(name, _unescape_help(rest[m.end() + 1:], lineno))
            families[name] = fam
        elif line.startswith("# TYPE "):
            parts = line[7:].split(" ")
            if (fam is None or fam.type is not None or len(parts) != 2 or
                    parts[0] != fam.name):
                raise PromParseError("line %d: TYPE not right after its "
                                     "HELP" % lineno)
            if parts[1] not in TYPES:
                raise PromParseError("line %d: unknown type %s" %
                                     (lineno, parts[1]))
            if parts[1] == "counter" and not fam.name.endswith("_total"):
                raise PromParseError("line %d: counter %s without _total" %
                                     (lineno, fam.name))
            fam.type = parts[1]
        elif line.startswith("#") or line == "":
            raise PromParseError("line %d: unexpected %r" % (lineno, line))
        else:
            m = METRIC_NAME.match(line)
            if not m:
                raise PromParseError("line %d: no metric name" % lineno)
            name = m.group(0)
            if fam is None or fam.type is None or not _in_family(name, fam):
                raise PromParseError("line %d: %s outside its family" %
                                     (lineno, name))
            pos = m.end()
            labels = {}
            if line[pos:pos + 1] == "{":
                labels, pos = _parse_labels(line, pos, lineno)
            if line[pos:pos + 1] != " ":
                raise PromParseError("line %d: no space before the value" %
                                     lineno)
            value = _parse_value(line[pos + 1:], lineno)
            if fam.type == "histogram" and \
                    name.endswith("_bucket") != ("le" in labels):
                raise PromParseError("line %d: le goes with _bucket only" %
                                     lineno)
            if fam.type == "counter" and value < 0:
                raise PromParseError("line %d: negative counter" % lineno)
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise PromParseError("line %d: series repeated" % lineno)
            seen.add(key)
            fam.samples.append((name, labels, value))
    for f in families.values():
        if f.type is None:
            raise PromParseError("family %s without TYPE" % f.name)
        if f.type == "histogram":
            _check_histogram(f)
    return families


def value(families, name, **labels):
    """The value of sample `name` whose labels are exactly `labels`;
    KeyError when there is none."""
    for fam in families.values():
        for n, lab, v in fam.samples:
            if n == name and lab == labels:
                return v
    raise KeyError("%s%s" % (name, labels))


def samples(families, name, **labels):
    """Every (labels, value) of sample `name` whose labels include
    `labels`."""
    out = []
    for fam in families.values():
        for n, lab, v in fam.samples:
            if n == name and all(lab.get(k) == w for k, w in labels.items()):
                out.append((lab, v))
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: %s FILE|-" % argv[0], file=sys.stderr)
        return 2
    data = (sys.stdin.buffer.read() if argv[1] == "-"
            else open(argv[1], "rb").read())
    try:
        fams = parse(data)
    except PromParseError as e:
        print("invalid: %s" % e, file=sys.stderr)
        return 1
    print("%d families, %d samples" %
          (len(fams), sum(len(f.samples) for f in fams.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
