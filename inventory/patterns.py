"""Ansible host patterns: ``web``, ``web:api``, ``web:&eu``, ``web:!web-07``, globs, ``~regex``.

Terms are separated by ``,`` when the pattern has one, else by ``:`` (outside
``[...]``). As in Ansible, terms are applied in a fixed order whatever their position:
plain terms first (union), then ``&`` terms (intersection), then ``!`` terms
(exclusion); with only ``&``/``!`` terms the base is ``all``. A term is a group or host
name, a glob (``*``, ``?``, ``[...]``) matched against group and host names, or
``~regex`` (matched from the start of the name). A plain name that is a group means
the group; it is matched against host names only when no group has that name. A
subscript picks hosts of a term by position: ``web[0]``, ``web[-1]``, ``web[0:2]``
(inclusive, as Ansible).

Unlike Ansible, which warns and carries on, a term that matches no host or group is an
error, and so is a pattern whose result is empty: ``web:!web-7`` with a typo must not
quietly deploy to web-07.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable

from console.core.errors import InputError, did_you_mean
from inventory.model import Host, Inventory
from inventory.varsdirs import read_text

_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]{1,9})|([0-9]{1,9}):([0-9]{0,9}))\]$")
_GLOB_CHARS = frozenset("*?[")

Fail = Callable[[str], InputError]


def split_pattern(pattern: str) -> list[str]:
    """The terms of ``pattern``, with their ``&``/``!`` prefixes, in written order.

    Raises ValueError for a ``[`` or ``]`` that does not pair up (which a split on
    ``:`` would otherwise drop silently).
    """
    if "," in pattern:
        terms = pattern.split(",")
    else:
        terms = _TERMS.findall(pattern)
        if _TERMS.sub("", pattern).strip(": \t\r\n"):
            raise ValueError("unbalanced '[' or ']' (separate terms with ',' instead)")
    return [t.strip() for t in terms if t.strip()]


def select(
    inv: Inventory,
    pattern: str,
    *,
    file: str | None = None,
    line: int | None = None,
    field: str | None = "targets",
) -> list[Host]:
    """Hosts matching ``pattern``, in inventory order; see the module docstring."""

    def fail(message: str) -> InputError:
        return InputError(f"host pattern {pattern!r}: {message}", file=file, line=line, field=field)

    try:
        terms = split_pattern(pattern)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not terms:
        raise fail("is empty")
    regular = [t for t in terms if t[0] not in "&!"]
    intersect = [t[1:].strip() for t in terms if t[0] == "&"]
    exclude = [t[1:].strip() for t in terms if t[0] == "!"]
    chosen: set[str] = set()
    for term in regular or ["all"]:
        chosen |= _match_term(inv, term, fail)
    for term in intersect:
        chosen &= _match_term(inv, term, fail)
    for term in exclude:
        chosen -= _match_term(inv, term, fail)
    if not chosen:
        raise fail("matches no hosts")
    return [host for name, host in inv.hosts.items() if name in chosen]


def _match_term(inv: Inventory, term: str, fail: Fail) -> set[str]:
    if not term:
        raise fail("has an empty term")
    base, subscript = _split_subscript(term)
    names = _names(inv, base, fail)
    if subscript is None:
        return set(names)
    ordered = [name for name in inv.hosts if name in names]
    start, end = subscript
    try:
        if end is None:
            return {ordered[start]}
    except IndexError:
        raise fail(f"{term!r}: index {start} is out of range ({len(ordered)} hosts)") from None
    stop = len(ordered) if end == -1 else end + 1
    picked = ordered[start:stop]
    if not picked:
        raise fail(f"{term!r}: range is out of range ({len(ordered)} hosts)")
    return set(picked)


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    if term.startswith("~"):
        return term, None
    m = _SUBSCRIPT.match(term)
    if not m:
        return term, None
    base, index, start, end = m.groups()
    if index is not None:
        return base, (int(index), None)
    return base, (int(start), int(end) if end else -1)


def _names(inv: Inventory, term: str, fail: Fail) -> set[str]:
    """Host names a term (without subscript) stands for; no match is an error."""
    if not term.startswith("~") and not _GLOB_CHARS.intersection(term):
        if term in inv.groups:
            return set(inv.groups[term])
        if term in inv.hosts:
            return {term}
        hint = did_you_mean(term, [*inv.groups, *inv.hosts])
        raise fail(f"{term!r} matches no host or group{hint}")
    source = term[1:] if term.startswith("~") else fnmatch.translate(term)
    try:
        regex = re.compile(source)
    except (re.error, OverflowError, RecursionError) as exc:
        raise fail(
            f"invalid {'regular expression' if term[0] == '~' else 'glob'} {term!r}: {exc}"
        ) from None
    groups = [g for g in inv.groups if regex.match(g)]
    found = _members(inv, groups) | {h for h in inv.hosts if regex.match(h)}
    if not groups and not found:
        raise fail(f"{term!r} matches no host or group")
    return found


def _members(inv: Inventory, groups: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for group in groups:
        found.update(inv.groups[group])
    return found


# A limit file is a list of hosts written by people or tools; this is plenty.
MAX_LIMIT_FILE_BYTES = 4 * 1024 * 1024


def read_limit_file(path: str) -> str:
    """An Ansible limit file (``--targets @FILE``) as one pattern: a term per line
    (blank lines and ``#`` comments skipped), joined as a union with ``,``."""
    text = read_text(path, MAX_LIMIT_FILE_BYTES, "a targets file")
    terms = []
    for number, raw in enumerate(text.split("\n"), start=1):
        term = raw.split("#", 1)[0].strip()
        if not term:
            continue
        if any(c.isspace() for c in term) or not term.isprintable():
            raise InputError(
                f"one host pattern per line, found {term!r}", file=path, line=number, field="@"
            )
        terms.append(term)
    if not terms:
        raise InputError("the targets file names no host or pattern", file=path)
    return ",".join(terms)
