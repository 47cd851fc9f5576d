"""Prometheus series selectors, and summing the counters they select.

The spec names its request and error counters as PromQL-style instant selectors:
``http_requests_total`` or ``http_requests_total{code=~"5..", method!="HEAD"}`` with
the four matchers ``=``, ``!=``, ``=~`` and ``!~`` (regexes fully anchored, as in
PromQL). The exposition text is parsed by prometheus_client's parser, never by hand;
we only drop lines of unrelated metrics before parsing (:func:`line_filter`), because
a service's latency histograms are most of its output and parsing them for 1,000 hosts
every few seconds would cost a good share of a core for nothing.

A selector that matches no sample gives ``None`` rather than 0, so the caller can tell
"no such metric" (a misconfigured spec: warn) from "zero" (a healthy counter).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from console.core.errors import InputError

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_SELECTOR_RE = re.compile(rf"\s*({_NAME})?\s*(?:\{{(.*)\}})?\s*", re.DOTALL)
_MATCHER_RE = re.compile(rf"\s*({_LABEL})\s*(=~|!~|!=|=)\s*({_VALUE})\s*(,|$)", re.DOTALL)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"', "'": "'", "t": "\t"}

# Sample-name suffixes of one family, stripped to find the family a line belongs to.
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum", "_gsum", "_gcount", "_info")


class MetricsParseError(ValueError):
    """The metrics command's output is not valid Prometheus text exposition."""


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str  # '=', '!=', '=~', '!~'
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")  # PromQL: a missing label is the empty string
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True, slots=True)
class Selector:
    """One parsed series selector; ``text`` is what the spec wrote."""

    text: str
    name: str | None
    matchers: tuple[Matcher, ...] = ()

    def matches(self, sample_name: str, labels: dict[str, str], family_type: str = "") -> bool:
        # ``http_requests`` (the family name) also selects a counter's ``_total``.
        if (
            self.name is not None
            and sample_name != self.name
            and not (family_type == "counter" and sample_name == self.name + "_total")
        ):
            return False
        for m in self.matchers:
            if m.label == "__name__":
                if not m.matches({"__name__": sample_name}):
                    return False
            elif not m.matches(labels):
                return False
        return True

    @property
    def family_prefix(self) -> str | None:
        """The prefix every line of this selector's family starts with (None: any)."""
        if self.name is None:
            return None
        return _family_base(self.name)


def _family_base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _unquote(quoted: str) -> str:
    body = quoted[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def parse_selector(text: str, *, field: str | None = None) -> Selector:
    """Parse ``name{label op "value", ...}``; bad syntax is an :class:`InputError`."""

    def bad(why: str) -> InputError:
        return InputError(f"bad series selector {text!r}: {why}", field=field)

    m = _SELECTOR_RE.fullmatch(text)
    if m is None or not text.strip():
        raise bad('expected a metric name with optional {label="value", ...} matchers')
    name, body = m.group(1), m.group(2)
    matchers: list[Matcher] = []
    pos = 0
    body = body or ""
    while body[pos:].strip():
        mm = _MATCHER_RE.match(body, pos)
        if mm is None:
            raise bad(f"cannot read a label matcher at {body[pos:].strip()!r}")
        label, op, quoted = mm.group(1), mm.group(2), mm.group(3)
        value = _unquote(quoted)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as e:
                raise bad(f"bad regex {value!r} for label {label!r}: {e}") from None
        matchers.append(Matcher(label, op, value, regex))
        pos = mm.end()
        if mm.group(4) == "" and body[pos:].strip():
            raise bad("matchers must be separated by commas")
    if name is None and not any(x.label == "__name__" for x in matchers):
        raise bad("no metric name")
    return Selector(text=text, name=name, matchers=tuple(matchers))


def line_filter(selectors: Iterable[Selector]) -> Callable[[str], bool]:
    """A cheap predicate keeping only the exposition lines the selectors can match
    (their families' samples and ``# TYPE``/``# HELP`` lines). Any selector without a
    name keeps everything."""
    prefixes: list[str] = []
    for sel in selectors:
        prefix = sel.family_prefix
        if prefix is None:
            return lambda line: True
        prefixes.append(prefix)
    keep = tuple(prefixes)

    def wanted(line: str) -> bool:
        if line.startswith("#"):
            parts = line.split(None, 3)
            return len(parts) >= 3 and parts[1] in ("TYPE", "HELP") and parts[2].startswith(keep)
        return line.lstrip().startswith(keep)

    return wanted


@dataclass(frozen=True, slots=True)
class CounterReading:
    """Sums of the selected series; ``None`` where a selector matched nothing."""

    requests: float | None
    errors: float | None


def _scan(text: str, selectors: list[Selector]) -> tuple[list[float | None], set[str]]:
    # Imported here: prometheus_client brings http.server and wsgiref along, 17 ms of
    # every start, and most rollouts read no metrics page.
    from prometheus_client.parser import text_string_to_metric_families

    sums: list[float | None] = [None] * len(selectors)
    families: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            for sample in family.samples:
                value = float(sample.value)
                if math.isnan(value):
                    continue
                for i, sel in enumerate(selectors):
                    if sel.matches(sample.name, sample.labels, family.type):
                        sums[i] = (sums[i] or 0.0) + value
    except (ValueError, TypeError, IndexError, KeyError) as e:
        # The parser reports malformed text with several exception types.
        raise MetricsParseError(f"unparseable metrics text: {e}") from None
    return sums, families


def select_sums(text: str, selectors: Iterable[Selector]) -> list[float | None]:
    """Parse ``text`` once and sum the samples each selector matches (NaN ignored);
    ``None`` for a selector that matched no sample."""
    return _scan(text, list(selectors))[0]


def read_counters(text: str, requests: Selector, errors: Selector) -> CounterReading:
    """The summed request and error counters. A selector matching no sample while its
    metric family is present reads 0: client libraries expose a labelled series only
    once it was first incremented (no ``code="500"`` line before the first 500). A
    family absent altogether stays ``None``: the spec names a metric that is not there.
    """
    (req, err), families = _scan(text, [requests, errors])

    def present(sel: Selector) -> bool:
        return sel.name is not None and (sel.name in families or _family_base(sel.name) in families)

    if req is None and present(requests):
        req = 0.0
    if err is None and present(errors):
        err = 0.0
    return CounterReading(requests=req, errors=err)
