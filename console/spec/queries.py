"""PromQL query templates of an ``analysis:`` metric: their placeholders, checked when
the spec loads and rendered per cohort when it is judged.

PromQL has braces of its own (``rate(x{code=~"5.."}[1m])``), so a query is not a
command template: only ``{NAME}`` with a known name is a placeholder (a label
matcher always holds ``=``, never a bare name). ``{instances}`` is the cohort's
instance labels as one anchored regex and must sit inside a quoted matcher
(``instance=~"{instances}"``); ``{window}`` is a PromQL duration (``[{window}]``);
``{service}``, ``{version}``, ``{new_version}``, ``{environment}`` and ``{vars.NAME}``
are the rollout's. A value is escaped for where it lands: inside ``"..."`` or
``'...'`` backslashes and the quote are escaped, so a regex's ``\\.`` reaches
Prometheus as written and a value can never end the string early.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from console.core.errors import did_you_mean

QUERY_NAMES = ("instances", "window", "service", "version", "new_version", "environment")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
_VAR = re.compile(r"vars\.([A-Za-z_][A-Za-z0-9_]*)")
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")


@dataclass(frozen=True, slots=True)
class QueryPlaceholder:
    name: str  # "instances", ..., or "vars.NAME"
    start: int
    end: int
    quote: str  # the string it sits in: '"', "'", "`", or "" (outside any string)


class QueryError(ValueError):
    """A bad query template; ``offset`` points at the placeholder."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def _quotes(query: str) -> list[str]:
    """For each character of ``query``, the PromQL string it is inside ('' if none)."""
    out: list[str] = []
    quote = ""
    escaped = False
    for ch in query:
        if quote:
            out.append(quote)
            if escaped:
                escaped = False
            elif ch == "\\" and quote != "`":
                escaped = True
            elif ch == quote:
                quote = ""
                out[-1] = ""  # the closing quote itself is outside
        else:
            out.append("")
            if ch in "\"'`":
                quote = ch
    return out


def query_placeholders(query: str) -> tuple[QueryPlaceholder, ...]:
    """Every ``{NAME}`` in ``query`` with the string it sits in (unchecked names too)."""
    inside = _quotes(query)
    return tuple(
        QueryPlaceholder(m.group(1), m.start(), m.end(), inside[m.start()] if query else "")
        for m in _PLACEHOLDER.finditer(query)
    )


def check_query(query: str) -> tuple[QueryPlaceholder, ...]:
    """The query's placeholders, or :class:`QueryError` naming the first problem."""
    found = query_placeholders(query)
    if _quotes(query)[-1:] not in ([], [""]):
        raise QueryError("a quoted string is never closed", len(query) - 1)
    for p in found:
        if p.name.startswith("vars."):
            continue
        if "." in p.name or p.name not in QUERY_NAMES:
            names = (*QUERY_NAMES, "vars.NAME")
            hint = did_you_mean(p.name, QUERY_NAMES)
            raise QueryError(
                f"unknown placeholder {{{p.name}}} (a query may use "
                + ", ".join(f"{{{n}}}" for n in names)
                + f"){hint}",
                p.start,
            )
        if p.name == "instances" and not p.quote:
            raise QueryError(
                '{instances} is a regex: put it in a quoted matcher, instance=~"{instances}"',
                p.start,
            )
        if p.name == "window" and p.quote:
            raise QueryError("{window} is a duration: write it as a range, [{window}]", p.start)
    if not any(p.name == "instances" for p in found):
        raise QueryError(
            'the query must select a cohort: add instance=~"{instances}" to its selectors', 0
        )
    return found


def _escape(value: str, quote: str) -> str:
    if quote in ('"', "'"):
        return value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return value


def render_query(query: str, values: Mapping[str, str]) -> str:
    """``query`` with each placeholder replaced by ``values[name]`` (``vars.NAME``
    looked up as written), escaped for the string it sits in; KeyError names a
    placeholder without a value."""
    out: list[str] = []
    pos = 0
    for p in query_placeholders(query):
        if p.name not in values:
            raise KeyError(p.name)
        out.append(query[pos : p.start])
        out.append(_escape(values[p.name], p.quote))
        pos = p.end
    out.append(query[pos:])
    return "".join(out)


def var_names(query: str) -> list[str]:
    """The var names a query's ``{vars.NAME}`` placeholders use."""
    return [m.group(1) for p in query_placeholders(query) if (m := _VAR.fullmatch(p.name))]


def promql_duration(seconds: float) -> str:
    """A PromQL duration: whole seconds as ``90s``, else milliseconds (``1500ms``)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def regex_escape(text: str) -> str:
    """``text`` as a literal in an RE2 regex (Prometheus's): only RE2's special
    characters get a backslash (RE2 refuses some escapes Python's re.escape writes)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def instances_regex(labels: Iterable[str]) -> str:
    """One anchored regex matching exactly these instance labels (sorted, deduped);
    no labels match nothing (``^$`` never equals a scraped instance)."""
    unique = sorted(set(labels))
    if not unique:
        return "^$"
    return "^(?:" + "|".join(regex_escape(label) for label in unique) + ")$"
