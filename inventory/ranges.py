"""Ansible host ranges: ``web[01:20:2].example.com``, ``api[a:c]``, and ``host:port``.

Ranges follow Ansible's rules: ``[begin:end]`` or ``[begin:end:step]``, both ends
inclusive; a begin written with a leading zero pads every number to its width (and
then begin and end must have the same width); single letters make an alphabetic
range; several ranges in one name multiply out, leftmost varying slowest.
"""

from __future__ import annotations

import re
import string

# One expansion may not produce more names than this: a typo like [0:99999999] should
# be an error, not an out-of-memory. Callers pass a lower limit (the room left in the
# inventory); the size is computed from the bounds before any name is built.
MAX_RANGE_HOSTS = 1_000_000

_RANGE = re.compile(r"\[([^\[\]]*)\]")
# host:port, where the host part may hold complete [..] range expressions.
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")


class RangeError(ValueError):
    """A malformed range; the caller adds file, line and field."""


def split_port(pattern: str) -> tuple[str, int | None]:
    """``"web[1:3]:2222"`` -> ``("web[1:3]", 2222)``; ``"[::1]:22"`` -> ``("::1", 22)``.

    A port outside 1-65535 raises :class:`RangeError`.
    """
    for regex in (_BRACKETED_HOSTPORT, _HOSTPORT):
        m = regex.match(pattern)
        if m:
            host, port_text = m.groups()
            port = int(port_text) if len(port_text) <= 5 else 0
            if not 1 <= port <= 65535:
                raise RangeError(f"port {port_text} in {pattern!r} is not in 1-65535")
            if not host:
                raise RangeError(f"{pattern!r} has a port but no host name")
            return host, port
    if pattern.endswith(":"):
        raise RangeError(f"host {pattern!r} ends in ':' (a ':' must be followed by a port)")
    return pattern, None


def has_range(name: str) -> bool:
    return "[" in name


def expand(pattern: str, limit: int = MAX_RANGE_HOSTS) -> list[str]:
    """All names a host pattern stands for, in order (just ``[pattern]`` without ranges).

    A pattern standing for more than ``limit`` names raises :class:`TooManyHosts`
    before any name is built.
    """
    size = range_size(pattern)
    if size > limit:
        raise TooManyHosts(
            f"range {pattern!r} expands to {size:,} hosts, over the inventory's limit "
            f"({limit:,} more allowed; set ROLLDECK_MAX_HOSTS to raise it)",
            size,
        )
    return _expand(pattern)


def range_size(pattern: str) -> int:
    """How many names ``pattern`` stands for, from the bounds alone (validated)."""
    size = 1
    for m in _RANGE.finditer(pattern):
        size *= _range_count(m.group(1), pattern)
    return size


class TooManyHosts(RangeError):
    """A range larger than the caller's limit; ``size`` is what it would expand to."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def _expand(pattern: str) -> list[str]:
    m = _RANGE.search(pattern)
    if m is None:
        if "[" in pattern or "]" in pattern:
            raise RangeError(f"unbalanced bracket in host name {pattern!r}")
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    if "]" in head:
        raise RangeError(f"unbalanced bracket in host name {pattern!r}")
    items = _range_items(m.group(1), pattern)
    tails = _expand(tail) if has_range(tail) or "]" in tail else [tail]
    if len(items) * len(tails) > MAX_RANGE_HOSTS:
        raise RangeError(f"range {pattern!r} expands to more than {MAX_RANGE_HOSTS} hosts")
    return [f"{head}{item}{rest}" for item in items for rest in tails]


def _range_count(spec: str, pattern: str) -> int:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise RangeError(f"range [{spec}] in {pattern!r} must be [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise RangeError(f"range [{spec}] in {pattern!r} has no end")
    if not step_text.isdigit() or int(step_text) == 0 or len(step_text) > 9:
        raise RangeError(f"range [{spec}] in {pattern!r}: step must be a positive integer")
    step = int(step_text)
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
    elif begin.isdigit() and end.isdigit() and begin.isascii() and end.isascii():
        if len(begin) > 9 or len(end) > 9:
            raise RangeError(f"range [{spec}] in {pattern!r} is too large")
        first, last = int(begin), int(end)
    else:
        raise RangeError(
            f"range [{spec}] in {pattern!r}: bounds must be two numbers or two letters"
        )
    if first > last:
        raise RangeError(f"range [{spec}] in {pattern!r}: begin is after end")
    return (last - first) // step + 1


def _range_items(spec: str, pattern: str) -> list[str]:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise RangeError(f"range [{spec}] in {pattern!r} must be [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise RangeError(f"range [{spec}] in {pattern!r} has no end")
    if not step_text.isdigit() or int(step_text) == 0:
        raise RangeError(f"range [{spec}] in {pattern!r}: step must be a positive integer")
    step = int(step_text)
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise RangeError(f"range [{spec}] in {pattern!r}: begin is after end")
        return list(letters[first : last + 1 : step])
    if not (begin.isdigit() and end.isdigit() and begin.isascii() and end.isascii()):
        raise RangeError(
            f"range [{spec}] in {pattern!r}: bounds must be two numbers or two letters"
        )
    if len(begin) > 9 or len(end) > 9:
        raise RangeError(f"range [{spec}] in {pattern!r} is too large")
    first, last = int(begin), int(end)
    if first > last:
        raise RangeError(f"range [{spec}] in {pattern!r}: begin is after end")
    count = (last - first) // step + 1
    if count > MAX_RANGE_HOSTS:
        raise RangeError(
            f"range [{spec}] in {pattern!r} expands to more than {MAX_RANGE_HOSTS} hosts"
        )
    if begin.startswith("0") and len(begin) > 1:
        if len(begin) != len(end):
            raise RangeError(
                f"range [{spec}] in {pattern!r}: a zero-padded begin and its end "
                "must have the same width"
            )
        width = len(begin)
        return [str(n).zfill(width) for n in range(first, last + 1, step)]
    return [str(n) for n in range(first, last + 1, step)]
