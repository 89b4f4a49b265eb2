# SPDX-License-Identifier: MIT
"""A strict parser of the Prometheus text exposition format, version 0.0.4, written from the format's
rules, for checking what zerohopd serves on /metrics. It raises PromParseError (with the line number)
on any violation instead of guessing:

- lines end with '\\n' (the last one too); blank lines are ignored; '#' lines other than HELP and TYPE
  are comments;
- `# HELP name text` (text escapes: \\\\ and \\n) and `# TYPE name counter|gauge|histogram|summary|untyped`,
  each at most once per name and before that family's first sample;
- metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and do not start
  with "__"; a label appears once per sample; label values are quoted, with the escapes \\\\ \\" \\n only;
- values are floats (NaN, +Inf and -Inf included), timestamps optional int64 milliseconds;
- every sample belongs to a family declared by TYPE before it, and a family's lines are contiguous;
- counters, gauges and untyped families have samples of their own name only; a histogram `x` has
  x_bucket (with `le`), x_sum and x_count, and per label set its buckets have increasing `le`, are
  cumulative, end with le="+Inf" and that bucket equals x_count; a summary `x` has x (with `quantile`
  in [0, 1]), x_sum and x_count;
- no two samples are the same series (name and label set).
"""
import math
import re

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
SPECIAL = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
TIMESTAMP = re.compile(r"-?[0-9]+")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANKS = " \t"


class PromParseError(ValueError):
    pass


class Sample:
    __slots__ = ("name", "labels", "value", "timestamp")

    def __init__(self, name, labels, value, timestamp):
        self.name, self.labels, self.value, self.timestamp = name, labels, value, timestamp

    def __repr__(self):
        return f"Sample({self.name}{self.labels} {self.value})"


class Family:
    __slots__ = ("name", "type", "help", "samples")

    def __init__(self, name):
        self.name, self.type, self.help, self.samples = name, None, None, []

    def __repr__(self):
        return f"Family({self.name}, {self.type}, {len(self.samples)} samples)"


def parse_float(text):
    """A sample value as the format spells it: a decimal float, NaN, +Inf or -Inf."""
    special = SPECIAL.get(text.lower())
    if special is not None:
        return special
    if not FLOAT.fullmatch(text):
        raise ValueError(f"not a float: {text!r}")
    return float(text)


class _Line:
    """A cursor over one sample line."""

    def __init__(self, text, number):
        self.text, self.pos, self.number = text, 0, number

    def fail(self, why):
        raise PromParseError(f"line {self.number}: {why}: {self.text!r}")

    def blanks(self):
        while self.pos < len(self.text) and self.text[self.pos] in BLANKS:
            self.pos += 1

    def match(self, pattern, what):
        m = pattern.match(self.text, self.pos)
        if not m:
            self.fail(f"expected {what} at column {self.pos + 1}")
        self.pos = m.end()
        return m.group(0)

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch):
        if self.peek() != ch:
            self.fail(f"expected {ch!r} at column {self.pos + 1}")
        self.pos += 1

    def label_value(self):
        self.expect('"')
        out = []
        while True:
            ch = self.peek()
            if ch == "":
                self.fail("unterminated label value")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                esc = self.peek()
                if esc not in ('\\', '"', 'n'):
                    self.fail(f"bad escape \\{esc} in a label value")
                out.append("\n" if esc == "n" else esc)
                self.pos += 1
            else:
                out.append(ch)

    def labels(self):
        labels = {}
        self.expect("{")
        self.blanks()
        while self.peek() != "}":
            name = self.match(LABEL_NAME, "a label name")
            if name.startswith("__"):
                self.fail(f"label name {name} is reserved")
            if name in labels:
                self.fail(f"label {name} given twice")
            self.blanks()
            self.expect("=")
            self.blanks()
            labels[name] = self.label_value()
            self.blanks()
            if self.peek() == ",":
                self.pos += 1
                self.blanks()
            elif self.peek() != "}":
                self.fail(f"expected ',' or '}}' at column {self.pos + 1}")
        self.pos += 1
        return labels

    def token(self):
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in BLANKS:
            self.pos += 1
        return self.text[start:self.pos]


def _unescape_help(text, number):
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in ("\\", "n"):
            out.append("\n" if text[i + 1] == "n" else "\\")
            i += 2
            continue
        if ch == "\\":
            raise PromParseError(f"line {number}: bad escape in HELP text")
        out.append(ch)
        i += 1
    return "".join(out)


def _family_of(name, families):
    """The declared family a sample name belongs to, or None."""
    if name in families and families[name].type in ("counter", "gauge", "untyped", "summary"):
        return families[name]
    for suffix, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                          ("_count", ("histogram", "summary"))):
        if name.endswith(suffix):
            base = families.get(name[:-len(suffix)])
            if base is not None and base.type in kinds:
                return base
    if name in families and families[name].type is not None:
        return families[name]
    return None


def _check_sample_shape(fam, s, number):
    def fail(why):
        raise PromParseError(f"line {number}: {s.name}: {why}")

    if fam.type in ("counter", "gauge", "untyped"):
        if s.name != fam.name:
            fail(f"not a sample name of {fam.type} {fam.name}")
        if fam.type == "counter" and not math.isnan(s.value) and s.value < 0:
            fail("a counter is negative")
    elif fam.type == "histogram":
        if s.name == fam.name + "_bucket":
            if "le" not in s.labels:
                fail("a bucket without `le`")
            try:
                parse_float(s.labels["le"])
            except ValueError:
                fail(f"le={s.labels['le']!r} is not a float")
        elif s.name in (fam.name + "_sum", fam.name + "_count"):
            if "le" in s.labels:
                fail("`le` on a histogram's _sum or _count")
        else:
            fail(f"not a sample name of histogram {fam.name}")
        if s.name != fam.name + "_sum" and (math.isnan(s.value) or s.value < 0):
            fail("a histogram count is negative or NaN")
    elif fam.type == "summary":
        if s.name == fam.name:
            if "quantile" not in s.labels:
                fail("a summary quantile sample without `quantile`")
            try:
                q = parse_float(s.labels["quantile"])
            except ValueError:
                fail("`quantile` is not a float")
            if not 0.0 <= q <= 1.0:
                fail("`quantile` is outside [0, 1]")
        elif s.name not in (fam.name + "_sum", fam.name + "_count"):
            fail(f"not a sample name of summary {fam.name}")
        elif "quantile" in s.labels:
            fail("`quantile` on a summary's _sum or _count")


def _check_histogram(fam):
    """Per label set (without `le`): increasing le, cumulative counts, +Inf last and equal to _count."""
    series = {}
    for s in fam.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if s.name.endswith("_bucket"):
            entry["buckets"].append((parse_float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
        else:
            entry["count"] = s.value
    for key, entry in series.items():
        where = f"histogram {fam.name}{dict(key)}"
        buckets = entry["buckets"]
        if not buckets:
            raise PromParseError(f"{where}: no buckets")
        if entry["count"] is None or entry["sum"] is None:
            raise PromParseError(f"{where}: _sum or _count missing")
        les = [le for le, _ in buckets]
        if any(math.isnan(le) for le in les) or les != sorted(les) or len(set(les)) != len(les):
            raise PromParseError(f"{where}: `le` values are not strictly increasing: {les}")
        if les[-1] != math.inf:
            raise PromParseError(f"{where}: the last bucket is not le=\"+Inf\"")
        counts = [c for _, c in buckets]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise PromParseError(f"{where}: buckets are not cumulative: {counts}")
        if counts[-1] != entry["count"]:
            raise PromParseError(f"{where}: the +Inf bucket {counts[-1]} is not _count {entry['count']}")


def parse(text):
    """Parse an exposition; returns {family name: Family} in the order the families appeared."""
    if text and not text.endswith("\n"):
        raise PromParseError("the last line does not end with a newline")
    families = {}
    seen_series = set()
    current = None  # the family whose lines are being read
    closed = set()  # families whose group ended: they may not appear again
    lines = text.split("\n")[:-1] if text else []

    def switch_to(fam, number):
        nonlocal current
        if current is fam:
            return
        if fam.name in closed:
            raise PromParseError(f"line {number}: the lines of {fam.name} are not contiguous")
        if current is not None:
            closed.add(current.name)
        current = fam

    for number, line in enumerate(lines, 1):
        if line.strip(BLANKS) == "":
            continue
        if line.lstrip(BLANKS).startswith("#"):
            parts = line.lstrip(BLANKS)[1:].lstrip(BLANKS).split(None, 2) if line.lstrip(BLANKS)[1:2] in (" ", "\t") \
                else []
            if len(parts) < 1 or parts[0] not in ("HELP", "TYPE"):
                continue  # a comment
            if len(parts) < 2 or not METRIC_NAME.fullmatch(parts[1]):
                raise PromParseError(f"line {number}: {parts[0]} without a valid metric name: {line!r}")
            name = parts[1]
            fam = families.get(name)
            if fam is None:
                fam = families[name] = Family(name)
            switch_to(fam, number)
            if fam.samples:
                raise PromParseError(f"line {number}: {parts[0]} for {name} after its samples")
            if parts[0] == "HELP":
                if fam.help is not None:
                    raise PromParseError(f"line {number}: a second HELP for {name}")
                fam.help = _unescape_help(parts[2] if len(parts) > 2 else "", number)
            else:
                kind = parts[2].strip(BLANKS) if len(parts) > 2 else ""
                if kind not in TYPES:
                    raise PromParseError(f"line {number}: unknown type {kind!r} for {name}")
                if fam.type is not None:
                    raise PromParseError(f"line {number}: a second TYPE for {name}")
                fam.type = kind
            continue

        cur = _Line(line, number)
        cur.blanks()
        name = cur.match(METRIC_NAME, "a metric name")
        labels = {}
        after_name = cur.pos
        cur.blanks()
        if cur.peek() == "{":
            labels = cur.labels()
            after_name = cur.pos
            cur.blanks()
        if cur.pos == after_name or cur.peek() == "":
            cur.fail("expected a blank, then the value")
        value_text = cur.token()
        try:
            value = parse_float(value_text)
        except ValueError:
            cur.fail(f"bad value {value_text!r}")
        cur.blanks()
        timestamp = None
        if cur.peek():
            ts_text = cur.token()
            if not TIMESTAMP.fullmatch(ts_text) or not -(1 << 63) <= int(ts_text) < (1 << 63):
                cur.fail(f"bad timestamp {ts_text!r}")
            timestamp = int(ts_text)
            cur.blanks()
            if cur.peek():
                cur.fail("text after the timestamp")

        fam = _family_of(name, families)
        if fam is None:
            raise PromParseError(f"line {number}: sample {name} of no family declared by TYPE before it")
        switch_to(fam, number)
        sample = Sample(name, labels, value, timestamp)
        _check_sample_shape(fam, sample, number)
        series = (name, tuple(sorted(labels.items())))
        if series in seen_series:
            raise PromParseError(f"line {number}: duplicate series {name}{labels}")
        seen_series.add(series)
        fam.samples.append(sample)

    for fam in families.values():
        if fam.type is None:
            raise PromParseError(f"{fam.name}: HELP without TYPE")
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def value(families, name, **labels):
    """The value of the one sample `name` whose labels include `labels`; raises if not exactly one."""
    found = [s for fam in families.values() for s in fam.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} samples {name}{labels}")
    return found[0].value


def total(families, name, **labels):
    """The sum of every sample `name` whose labels include `labels` (0 if there are none)."""
    return sum(s.value for fam in families.values() for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
