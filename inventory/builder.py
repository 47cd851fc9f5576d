"""Format-independent inventory assembly: groups, children, and var precedence.

Each format's parser feeds hosts, group memberships, child edges and vars (each with
the line it came from) into an :class:`InventoryBuilder`; :meth:`InventoryBuilder.build`
then resolves groups transitively and merges vars as Ansible does:

* every group without a parent is a child of ``all``; a host in no group but ``all``
  is in ``ungrouped`` (and a host listed in ``ungrouped`` and in another group is not);
* a group's depth is its longest distance from ``all``; group vars are applied in
  order of (depth, ``ansible_group_priority``, name), so a child group beats its
  parent and every group beats ``all``; host vars are applied last.

Resolution is linear in the number of (host, group) memberships: ancestors are
computed once per group, and the merged group vars once per distinct set of direct
groups (10,000 hosts typically share a handful of such sets).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from console.core.errors import InputError
from inventory.model import Host, Inventory, VarLoad
from inventory.varload import Sizer

ALL = "all"
UNGROUPED = "ungrouped"
# Ranges make a million hosts one line away; past this it is a typo, not a fleet.
# ``ROLLDECK_MAX_HOSTS`` raises (or lowers) it; see :func:`max_hosts`.
MAX_HOSTS = 100_000
MAX_HOSTS_ENV = "ROLLDECK_MAX_HOSTS"

# A var's value, the line and the file that set it, kept so a bad connection value
# (say ``ansible_port=seventy`` in a group's vars) is reported where it was written.
Sourced = tuple[Any, int | None, str]
# One vars directory's data: entity name -> var -> sourced value.
VarsLayer = dict[str, dict[str, Sourced]]


def max_hosts() -> int:
    """The inventory size limit: ``$ROLLDECK_MAX_HOSTS`` when set, else MAX_HOSTS."""
    text = os.environ.get(MAX_HOSTS_ENV, "").strip()
    if not text:
        return MAX_HOSTS
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"expected a positive integer, found {text!r}", field=MAX_HOSTS_ENV)
    return int(text)


@dataclass(slots=True)
class _Group:
    name: str
    line: int | None
    hosts: list[str] = field(default_factory=list)
    children: dict[str, tuple[int | None, str | None, str]] = field(default_factory=dict)
    vars: dict[str, Sourced] = field(default_factory=dict)
    priority: int = 1


@dataclass(slots=True)
class _Host:
    name: str
    line: int | None
    groups: dict[str, None] = field(default_factory=dict)  # ordered set of direct groups
    vars: dict[str, Sourced] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResolvedHost:
    """A host after resolution, before its format turns vars into connection fields."""

    name: str
    line: int | None
    groups: tuple[str, ...]  # every group but ``all``, sorted by name (Ansible's group_names)
    vars: dict[str, Sourced]


# For one set of direct groups: every group (for membership), the groups shown on the
# host (all but ``all``), and the group vars merged in precedence order.
_GroupSet = tuple[tuple[str, ...], tuple[str, ...], dict[str, Sourced]]

MakeHost = Callable[[ResolvedHost], Host]


class InventoryBuilder:
    """Collects an inventory's facts in file order; see the module docstring."""

    def __init__(
        self, file: str, fmt: str, *, group_priority: bool = False, limit: int | None = None
    ) -> None:
        self.file = file  # the file being read: facts and errors name it
        self.format = fmt
        self.limit = max_hosts() if limit is None else limit
        self._group_priority = group_priority
        self._hosts: dict[str, _Host] = {}
        # group_vars/ and host_vars/ data, one layer per inventory source, in order.
        self._group_layers: list[VarsLayer] = []
        self._host_layers: list[VarsLayer] = []
        self._groups: dict[str, _Group] = {
            ALL: _Group(ALL, None),
            UNGROUPED: _Group(UNGROUPED, None),
        }

    # -- facts -------------------------------------------------------------------

    def has_group(self, name: str) -> bool:
        return name in self._groups

    def has_host(self, name: str) -> bool:
        return name in self._hosts

    @property
    def room(self) -> int:
        """How many more hosts the inventory may hold (its size limit)."""
        return max(self.limit - len(self._hosts), 0)

    def add_vars_layer(self, groups: VarsLayer, hosts: VarsLayer) -> None:
        """One inventory source's group_vars/ and host_vars/ data (Ansible's
        host_group_vars plugin): applied above the inventory files' own vars."""
        self._group_layers.append(groups)
        self._host_layers.append(hosts)

    @property
    def group_names(self) -> list[str]:
        return list(self._groups)

    @property
    def host_names(self) -> list[str]:
        return list(self._hosts)

    def add_group(self, name: str, line: int | None) -> None:
        if name not in self._groups:
            self._check_name(name, "group", line)
            self._groups[name] = _Group(name, line)

    def add_host(self, name: str, line: int | None, group: str | None = None) -> None:
        """Declare ``name`` (its first line is kept) and, optionally, put it in ``group``."""
        host = self._hosts.get(name)
        if host is None:
            self._check_name(name, "host", line)
            if len(self._hosts) >= self.limit:
                raise too_many_hosts(self.limit, self.file, line, name)
            host = self._hosts[name] = _Host(name, line)
        if group is not None:
            self.add_group(group, line)
            if group not in host.groups:
                host.groups[group] = None
                self._groups[group].hosts.append(name)

    def add_child(self, parent: str, child: str, line: int | None, field: str) -> None:
        if child == ALL:
            raise InputError(
                "'all' contains every group; it cannot be a child",
                file=self.file,
                line=line,
                field=field,
            )
        self.add_group(parent, line)
        self.add_group(child, line)
        self._groups[parent].children.setdefault(child, (line, field, self.file))

    def set_group_var(self, group: str, key: str, value: Any, line: int | None) -> None:
        self.add_group(group, line)
        if self._group_priority and key == "ansible_group_priority":
            priority = _int_or_none(value)
            if priority is None:
                raise InputError(
                    f"expected an integer, found {value!r}",
                    file=self.file,
                    line=line,
                    field=f"{group}.ansible_group_priority",
                )
            self._groups[group].priority = priority
            return
        self._groups[group].vars[key] = (value, line, self.file)

    def set_host_var(self, host: str, key: str, value: Any, line: int | None) -> None:
        self._hosts[host].vars[key] = (value, line, self.file)

    def _check_name(self, name: str, what: str, line: int | None) -> None:
        # Names reach terminals, patterns and log lines: no blanks, no control characters.
        if not is_clean_name(name):
            raise InputError(
                f"{what} name {name!r} has a blank or a control character",
                file=self.file,
                line=line,
                field=f"{what} name",
            )

    # -- resolution ---------------------------------------------------------------

    def build(self, path: str, make_host: MakeHost) -> Inventory:
        self._attach_orphans_to_all()
        order = self._topological_order()
        depth = self._depths(order)
        ancestors = self._ancestors(order)
        sort_key = {
            name: (depth[name], group.priority, name) for name, group in self._groups.items()
        }

        members: dict[str, list[str]] = {name: [] for name in self._groups}
        cache: dict[frozenset[str], _GroupSet] = {}
        # Each host's vars written out in full (inventory.varload): measured once per
        # distinct value and per set of groups, so 3,000 hosts inheriting one large
        # structure cost one measurement, not 3,000 walks of it.
        sizer = Sizer()
        group_loads: dict[frozenset[str], VarLoad] = {}
        loads: dict[str, VarLoad] = {}
        hosts: dict[str, Host] = {}
        for name, entry in self._hosts.items():
            direct = frozenset(entry.groups)
            resolved = cache.get(direct)
            if resolved is None:
                resolved = cache[direct] = self._resolve_groups(direct, ancestors, sort_key)
            every, shown, group_vars = resolved
            for group in every:
                members[group].append(name)
            merged = dict(group_vars)
            merged.update(entry.vars)
            own = bool(entry.vars)
            for layer in self._host_layers:
                layered = layer.get(name)
                if layered:
                    merged.update(layered)
                    own = True
            if own:
                loads[name] = sizer.load(merged)
            else:
                load = group_loads.get(direct)
                if load is None:
                    load = group_loads[direct] = sizer.load(merged)
                loads[name] = load
            hosts[name] = make_host(ResolvedHost(name, entry.line, shown, merged))
        return Inventory(
            path=path, hosts=hosts, groups=members, format=self.format, var_loads=loads
        )

    def _resolve_groups(
        self,
        direct: frozenset[str],
        ancestors: dict[str, frozenset[str]],
        sort_key: dict[str, tuple[int, int, str]],
    ) -> _GroupSet:
        named = direct - {ALL, UNGROUPED}
        if not named:
            named = frozenset({UNGROUPED})
        every: set[str] = set(named)
        for group in named:
            every |= ancestors[group]
        every.add(ALL)
        ordered = sorted(every, key=sort_key.__getitem__)
        # Ansible's order (VARIABLE_PRECEDENCE): the files' vars for all, then for the
        # groups; then group_vars/all, then group_vars/<group>, source by source.
        group_vars: dict[str, Sourced] = {}
        for group in ordered:
            group_vars.update(self._groups[group].vars)
        for layer in self._group_layers:
            group_vars.update(layer.get(ALL, ()))
        for layer in self._group_layers:
            for group in ordered:
                if group != ALL:
                    group_vars.update(layer.get(group, ()))
        shown = tuple(sorted(every - {ALL}))
        return tuple(ordered), shown, group_vars

    def _attach_orphans_to_all(self) -> None:
        has_parent = {child for g in self._groups.values() for child in g.children}
        everything = self._groups[ALL].children
        for name in self._groups:
            if name != ALL and name not in has_parent:
                everything.setdefault(name, (None, None, self.file))

    def _topological_order(self) -> list[str]:
        """Groups, parents before children; a cycle is an error naming its closing edge."""
        state: dict[str, int] = {}  # 1 = on the DFS path, 2 = done
        order: list[str] = []
        for root in self._groups:
            if root in state:
                continue
            state[root] = 1
            stack: list[tuple[str, Iterator[str]]] = [(root, iter(self._groups[root].children))]
            path = [root]
            while stack:
                name, pending = stack[-1]
                child = next(pending, None)
                if child is None:
                    stack.pop()
                    path.pop()
                    state[name] = 2
                    order.append(name)
                    continue
                seen = state.get(child)
                if seen == 1:
                    cycle = [*path[path.index(child) :], child]
                    line, field, file = self._groups[name].children[child]
                    raise InputError(
                        f"cycle in children: {' -> '.join(cycle)}",
                        file=file,
                        line=line,
                        field=field,
                    )
                if seen is None:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(self._groups[child].children)))
        order.reverse()
        return order

    def _depths(self, order: list[str]) -> dict[str, int]:
        depth = dict.fromkeys(order, 0)
        for name in order:
            for child in self._groups[name].children:
                depth[child] = max(depth[child], depth[name] + 1)
        return depth

    def _ancestors(self, order: list[str]) -> dict[str, frozenset[str]]:
        parents: dict[str, list[str]] = {name: [] for name in order}
        for name in order:
            for child in self._groups[name].children:
                parents[child].append(name)
        ancestors: dict[str, frozenset[str]] = {}
        for name in order:
            found: set[str] = set()
            for parent in parents[name]:
                found.add(parent)
                found |= ancestors[parent]
            ancestors[name] = frozenset(found)
        return ancestors


def too_many_hosts(limit: int, file: str, line: int | None, field: str | None) -> InputError:
    return InputError(
        f"more than {limit:,} hosts in the inventory (set {MAX_HOSTS_ENV} to raise the limit)",
        file=file,
        line=line,
        field=field,
    )


def is_clean_name(text: str) -> bool:
    """Non-empty, printable and without blanks (``isprintable`` allows only the space)."""
    return bool(text) and text.isprintable() and " " not in text


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
