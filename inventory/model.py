"""Inventory as pure data: hosts with their resolved connection settings and vars."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Host:
    """One target host, after group/var precedence has been resolved.

    ``name`` is the inventory name (what the operator sees); ``address`` is what we
    connect to (``ansible_host`` or the native ``address``; defaults to ``name``).
    ``port``/``user``/``key`` are ``None`` when the inventory does not set them, so the
    user's ``~/.ssh/config`` can supply them.
    """

    name: str
    address: str
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source_line: int | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The five keys ``rolldeck inventory --json`` prints, plus name."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "groups": list(self.groups),
            "vars": self.vars,
        }


@dataclass(frozen=True, slots=True)
class VarLoad:
    """One host's vars written out in full: ``nodes`` values (mappings, keys, lists
    and single values), and the heaviest var (its name, size, file and line)."""

    nodes: int
    var: str | None
    var_nodes: int
    file: str | None
    line: int | None


@dataclass(slots=True)
class Inventory:
    """Hosts in inventory order, and groups (name -> member host names, transitively).

    ``path`` is what was loaded: one file or directory, or several joined with
    ``os.pathsep`` (what the journal records and ``load_inventory`` reads back)."""

    path: str
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    format: str = "native"
    # The inventory files read, the group_vars/host_vars files read (in precedence
    # order), and what was found but not read (each a sentence naming the file).
    files: tuple[str, ...] = ()
    vars_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    # Host name -> its vars' expanded size (inventory.varload), measured once at build;
    # hosts sharing their group vars share one entry.
    var_loads: dict[str, VarLoad] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.hosts)

    def host(self, name: str) -> Host:
        return self.hosts[name]
