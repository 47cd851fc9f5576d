"""What an inventory's vars come to once every host inherits its groups' vars.

Group vars are shared, not copied: a 90,000-value structure set on a group of 3,000
hosts is ONE object that each host's ``vars`` points at, so loading, ``check`` and
``run`` cost what was written. Anything that writes every host's vars out in full
(``rolldeck inventory``, as a table or as JSON) would walk and print it 3,000 times:
270 million values, an 800 MB answer a minute later. So the builder measures each
host's expanded vars once (:class:`Sizer`: every distinct value sized once, shared
values reused), and :func:`check_expansion` refuses, before anything is written, an
output whose hosts' vars come to more than :func:`max_var_values` values, naming the
file and line of the var that weighs most and how many hosts inherit it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from console.core.errors import InputError
from inventory.model import Host, Inventory, VarLoad

# Values (every mapping, key, list and single value counted once per host that has
# it) that ``rolldeck inventory`` writes out at most: 100,000 hosts with 100 values
# each, about a second of output, far above any hand-written fleet.
MAX_VAR_VALUES = 10_000_000
MAX_VAR_VALUES_ENV = "ROLLDECK_MAX_VAR_VALUES"

# (value, line, file), as the builder keeps each var (inventory.builder.Sourced).
_Sourced = tuple[Any, int | None, str]

EMPTY = VarLoad(0, None, 0, None, None)


def max_var_values() -> int:
    """The limit: ``$ROLLDECK_MAX_VAR_VALUES`` when set, else MAX_VAR_VALUES."""
    text = os.environ.get(MAX_VAR_VALUES_ENV, "").strip()
    if not text:
        return MAX_VAR_VALUES
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"expected a positive integer, found {text!r}", field=MAX_VAR_VALUES_ENV)
    return int(text)


class Sizer:
    """Expanded sizes of var values, each distinct mapping or list measured once.

    A value reached twice (a YAML alias, a group var inherited by every host) is one
    object: its size is remembered by identity, so measuring an inventory costs its
    distinct values, not their expansion. Iterative (no recursion limit to meet); a
    value that contains itself (no loader builds one) counts its cycle once.
    """

    def __init__(self) -> None:
        self._sizes: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps measured objects alive, so ids stay theirs

    def size(self, value: Any) -> int:
        if not isinstance(value, dict | list):
            return 1
        sizes = self._sizes
        known = sizes.get(id(value))
        if known is not None:
            return known
        pending: set[int] = set()
        stack: list[tuple[Any, bool]] = [(value, False)]
        while stack:
            item, children_done = stack.pop()
            key = id(item)
            if key in sizes:
                continue
            children = list(item.values()) if isinstance(item, dict) else item
            if not children_done:
                pending.add(key)
                stack.append((item, True))
                stack.extend(
                    (child, False)
                    for child in children
                    if isinstance(child, dict | list)
                    and id(child) not in sizes
                    and id(child) not in pending
                )
                continue
            total = 1 + (len(item) if isinstance(item, dict) else 0)  # itself and its keys
            for child in children:
                total += sizes.get(id(child), 1) if isinstance(child, dict | list) else 1
            sizes[key] = total
            pending.discard(key)
            self._keep.append(item)
        return sizes[id(value)]

    def load(self, merged: Mapping[str, _Sourced]) -> VarLoad:
        """One host's vars (each with its line and file): their size and the heaviest."""
        total, heaviest, where = 0, 0, EMPTY
        for var, (value, line, file) in merged.items():
            size = 1 + self.size(value)  # the key, then the value
            total += size
            if size > heaviest:
                heaviest, where = size, VarLoad(0, var, size, file, line)
        if where.var is None:
            return EMPTY
        return VarLoad(total, where.var, where.var_nodes, where.file, where.line)


def check_expansion(
    inv: Inventory, hosts: Iterable[Host], *, what: str = "the output", hint: str = ""
) -> None:
    """Refuse (InputError: the heaviest var's file, line and name; exit 2) when the
    vars of ``hosts``, each written out in full, come to more than the limit.
    ``hint``: what the command offers to write fewer (its own flags)."""
    limit = max_var_values()
    total, count = 0, 0
    # (file, line, var) -> [values it brings in all, hosts it is the heaviest of, its size]
    blame: dict[tuple[str | None, int | None, str | None], list[int]] = {}
    loads = inv.var_loads
    for host in hosts:
        load = loads.get(host.name, EMPTY)
        count += 1
        total += load.nodes
        if load.var is not None:
            entry = blame.setdefault((load.file, load.line, load.var), [0, 0, load.var_nodes])
            entry[0] += load.var_nodes
            entry[1] += 1
    if total <= limit:
        return
    (file, line, var), (_weight, inherited, size) = max(blame.items(), key=lambda kv: kv[1][0])
    raise InputError(
        f"{what} would write {total:,} var values for {count:,} hosts (more than "
        f"{limit:,}): this var is {size:,} values and {inherited:,} of the hosts inherit "
        f"it; {hint + ', or ' if hint else ''}set {MAX_VAR_VALUES_ENV} to raise the limit",
        file=file,
        line=line,
        field=var,
    )
