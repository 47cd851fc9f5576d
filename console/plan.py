"""Batch planner: which hosts go in which batch, and the failure budget in words.

Rules (what ``rolldeck check`` shows is exactly what runs):

1. Order first. ``inventory`` keeps the targets in inventory order; ``sorted`` and
   ``reverse_sorted`` use a natural sort (``web-2`` before ``web-10``); ``shuffle``
   uses ``random.Random(seed)`` (seed 0 when none is given), so the same spec and
   inventory always give the same plan, and a resumed rollout finds the batches it
   journaled.
2. Sizes. ``batches`` is a ramp of sizes, each a host count or a percentage. A
   percentage is of the *targeted* hosts (all of them, not those left), rounded up,
   and at least 1: 10% of 40 is 4, 10% of 41 is 5, 1% of 40 is 1.
3. The last size repeats until every host is planned: ``[1, 25%]`` on 40 hosts is
   1, 10, 10, 10, 9. A size larger than the hosts left takes the rest; sizes after
   the last host are unused. Hence 40 hosts with ``[1, 10%, 25%, 100%]`` gives
   1, 4, 10, 25.
4. Every host is planned exactly once, and batches are contiguous in the order of
   rule 1.
5. Re-planning in flight (``set_batch_size``): batches already started stay as they
   are; the hosts not yet started are re-cut with the new fixed size, in the order
   they were planned. A percentage again means a percentage of all targeted hosts
   (skipped ones included). The engine's ``set_batch_size`` uses :func:`recut`, the
   same cut as :func:`replan`: one rule, not two.

The failure budget (``max_failures``) is one number for the whole rollout: failed
hosts are counted across all batches, unreachable hosts included, and *more* than
``max_failures`` fires ``on_failure``. A batch in which every host fails stops the
rollout too, whatever the budget says.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from console.spec.model import ORDERS, percent_of

if TYPE_CHECKING:
    from console.spec.model import RolloutSpec

_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered batches of one run; batch indices are 0-based, as in events."""

    batches: tuple[tuple[str, ...], ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batches", tuple(tuple(b) for b in self.batches))
        index: dict[str, int] = {}
        for i, batch in enumerate(self.batches):
            if not batch:
                raise ValueError(f"batch {i} is empty")
            for host in batch:
                if host in index:
                    raise ValueError(f"host {host!r} planned twice")
                index[host] = i
        object.__setattr__(self, "_index", index)

    @property
    def total_hosts(self) -> int:
        return len(self._index)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every planned host, in running order."""
        return tuple(h for batch in self.batches for h in batch)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def batch_of(self, host: str) -> int:
        """0-based index of the host's batch; KeyError if it is not planned."""
        return self._index[host]

    def hosts_through(self, index: int) -> int:
        """How many hosts have run once batch ``index`` (0-based) is done."""
        return sum(len(b) for b in self.batches[: index + 1])


def batch_size(size: int | str, total: int) -> int:
    """One ramp entry as a host count: a count, or a percentage of ``total``."""
    if isinstance(size, bool):
        raise ValueError(f"bad batch size {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"a batch size is at least 1, got {size}")
        return size
    return percent_of(size, total)


def parse_size(value: object) -> int | str:
    """An operator's batch size (``set_batch_size``) in the spec's terms: a count of
    at least 1 (an int or digits) or a percentage above 0% and at most 100%.
    ValueError otherwise."""
    if isinstance(value, int):  # bool included: batch_size refuses it
        batch_size(value, 1)  # the planner's rule for a count, or ValueError
        return value
    if not isinstance(value, str):
        raise ValueError(f"bad batch size {value!r}")
    if value.strip().isdigit():
        return parse_size(int(value))
    percent_of(value, 1)  # the spec's syntax, or ValueError
    if not 0 < Fraction(value.strip().removesuffix("%")) <= 100:
        raise ValueError(f"a batch percentage is above 0% and at most 100%, got {value!r}")
    return value.strip()


def order_hosts(
    host_names: Sequence[str], order: str = "inventory", seed: int | None = None
) -> list[str]:
    """Rule 1: the running order of the targeted hosts."""
    names = list(host_names)
    if order == "inventory":
        return names
    if order == "sorted":
        return sorted(names, key=natural_key)
    if order == "reverse_sorted":
        return sorted(names, key=natural_key, reverse=True)
    if order == "shuffle":
        random.Random(0 if seed is None else seed).shuffle(names)
        return names
    raise ValueError(f"unknown order {order!r} (one of {', '.join(ORDERS)})")


def natural_key(name: str) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """``web-2`` < ``web-10``; digit runs compare as numbers, text as text; the name
    itself breaks ties (``web-01`` and ``web-1``), so the order is total."""
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in _DIGITS.split(name) if p)
    return parts, name


def _cut(hosts: Sequence[str], sizes: Sequence[int]) -> tuple[tuple[str, ...], ...]:
    """Rule 3: cut ``hosts`` by ``sizes``, the last size repeating."""
    batches: list[tuple[str, ...]] = []
    pos, i = 0, 0
    while pos < len(hosts):
        size = sizes[min(i, len(sizes) - 1)]
        batches.append(tuple(hosts[pos : pos + size]))
        pos += size
        i += 1
    return tuple(batches)


def make_plan(
    host_names: Sequence[str],
    batches: Sequence[int | str],
    *,
    order: str = "inventory",
    seed: int | None = None,
) -> Plan:
    """Plan the targeted hosts by the module's rules; an empty target list is no batch."""
    if not batches:
        raise ValueError("batches must list at least one size")
    if len(set(host_names)) != len(host_names):
        raise ValueError("a host is targeted twice")
    hosts = order_hosts(host_names, order, seed)
    sizes = [batch_size(s, len(hosts)) for s in batches]
    return Plan(_cut(hosts, sizes))


def recut(hosts: Sequence[str], size: int | str, targeted: int) -> tuple[tuple[str, ...], ...]:
    """Rule 5's cut: ``hosts`` (not started, in running order) in batches of ``size``,
    a percentage being of the ``targeted`` hosts (rounded up, at least 1)."""
    return _cut(list(hosts), [batch_size(size, targeted)])


def replan(
    plan: Plan, done_batches: int, remaining_hosts: Sequence[str], new_size: int | str
) -> Plan:
    """Rule 5: keep the first ``done_batches`` batches, re-cut ``remaining_hosts``.

    ``remaining_hosts`` are the hosts still to run, in the order they should run (the
    engine passes the not-started hosts of the later batches, minus skipped ones).
    """
    if not 0 <= done_batches <= len(plan.batches):
        raise ValueError(f"done_batches {done_batches} outside 0..{len(plan.batches)}")
    kept = plan.batches[:done_batches]
    started = {h for batch in kept for h in batch}
    overlap = started.intersection(remaining_hosts)
    if overlap:
        raise ValueError(f"hosts already started cannot be re-planned: {sorted(overlap)}")
    return Plan(kept + recut(remaining_hosts, new_size, plan.total_hosts))


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_VERBS = {"pause": "pauses", "rollback": "stops and rolls back", "abort": "aborts"}


def ordinal(n: int) -> str:
    if 1 <= n <= len(_ORDINALS):
        return _ORDINALS[n - 1]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _hosts(n: int) -> str:
    return f"{n} host" if n == 1 else f"{n} hosts"


def describe_budget(spec: RolloutSpec, plan: Plan) -> str:
    """The failure budget in plain words, as ``rolldeck check`` prints it.

    The (allowed+1)-th failure cannot come before that many hosts have run, so the
    earliest batch it can fire in is the first whose running total reaches it; when
    failures come late it fires later, up to the last batch.
    """
    total = plan.total_hosts
    budget = spec.max_failures
    allowed = budget.allowed(total)
    written = f"max_failures {allowed}"
    if budget.percent is not None:
        written = f"max_failures {budget.percent:g}% of {_hosts(total)} = {allowed}"
    head = f"{_hosts(total)}; {written}"
    if total == 0:
        return f"{head}: nothing to deploy"
    trip = allowed + 1
    if trip > total:
        clauses = [
            f"{head}: the budget cannot be exceeded, since at most {total} can fail",
            "only a batch in which every host fails stops the rollout",
        ]
    else:
        earliest = next(i for i in range(len(plan)) if plan.hosts_through(i) >= trip)
        ran = plan.hosts_through(earliest)
        when = f"at the earliest in batch {earliest + 1} ({_hosts(ran)} will have run by then)"
        if earliest + 1 < len(plan):
            when += f", at the latest in batch {len(plan)}, the last"
        verb = _VERBS.get(spec.on_failure, spec.on_failure)
        noun = "host" if allowed == 1 else "hosts"
        fires = f"more than {allowed} failed {noun}" if allowed else "any failed host"
        clauses = [
            f"{head}: {fires} fires on_failure ({spec.on_failure}), "
            f"so the rollout {verb} at the {ordinal(trip)} failed host, {when}",
            "a batch in which every host fails stops the rollout too",
        ]
    clauses += [
        "unreachable hosts count as failed",
        "the budget is counted across all batches, not per batch",
    ]
    return "; ".join(clauses)
