"""rolldeck's own inventory format: ``defaults``, ``groups`` and ``hosts``.

```yaml
defaults: {user: deploy, port: 22, key: ~/.ssh/id_ed25519, known_hosts: ./known_hosts}
groups:
  web: {hosts: [web-01, web-02], vars: {http_port: 8080}}
  eu:  {children: [web]}
hosts:
  web-01: {address: 10.0.0.1}
  web-02: {address: 10.0.0.2, port: 2222, vars: {weight: 2}, groups: [eu]}
```

Stricter than Ansible's formats by design: every host a group names, and every group
a host or a ``children`` list names, must be defined; hosts are named once. Relative
``key`` and ``known_hosts`` paths are relative to the inventory file, so the file
means the same whatever directory rolldeck runs from. Vars follow the same precedence
as Ansible (host over child group over parent group over ``all``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from yaml.nodes import Node

from console.core.errors import did_you_mean
from inventory.builder import InventoryBuilder, ResolvedHost, is_clean_name
from inventory.model import Host, Inventory
from inventory.yamlnodes import InventoryDoc

TOP_KEYS = ("defaults", "groups", "hosts")
DEFAULT_KEYS = ("user", "port", "key", "known_hosts")
GROUP_KEYS = ("hosts", "children", "vars")
HOST_KEYS = ("address", "port", "user", "key", "vars", "groups")


@dataclass(slots=True)
class _Connection:
    address: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None


def is_native(doc: InventoryDoc, root: Node) -> bool:
    """A mapping whose top-level keys include ``defaults``, ``groups`` or ``hosts``."""
    return any(key in TOP_KEYS for key, _, _ in doc.mapping(root, "", "a mapping"))


def parse_native(root: Node, doc: InventoryDoc) -> Inventory:
    return _NativeParser(doc).parse(root)


class _NativeParser:
    """One pass per section: defaults, then hosts (so groups can check the names they
    list), then groups, then the groups hosts listed for themselves."""

    def __init__(self, doc: InventoryDoc) -> None:
        self.doc = doc
        self.base = os.path.dirname(os.path.abspath(doc.file))
        self.builder = InventoryBuilder(doc.file, "native")
        self.defaults = _Connection()
        self.known_hosts: str | None = None
        self.connections: dict[str, _Connection] = {}

    def parse(self, root: Node) -> Inventory:
        doc = self.doc
        sections: dict[str, Node] = {}
        for key, knode, value in doc.mapping(root, "", "a mapping"):
            if key not in TOP_KEYS:
                raise doc.error(
                    f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}; an inventory has "
                    "defaults, groups and hosts",
                    knode,
                    key,
                )
            sections[key] = value
        self._defaults(sections.get("defaults"))
        groups = doc.mapping(sections.get("groups"), "groups", "a mapping of groups", names=True)
        for name, gnode, _ in groups:
            self.builder.add_group(name, gnode.start_mark.line + 1)
        host_groups = self._hosts(sections.get("hosts"))
        for name, _, value in groups:
            self._group(name, value)
        for host, item, field in host_groups:
            self.builder.add_host(host, None, self._known_group(item, field))
        return self.builder.build(doc.file, self._make_host)

    def _defaults(self, node: Node | None) -> None:
        for key, knode, value in self.doc.mapping(node, "defaults", "a mapping"):
            field = f"defaults.{key}"
            if key == "known_hosts":
                self.known_hosts = _path(self.doc.string(value, field), self.base)
            else:
                self._connection_field(self.defaults, key, knode, value, field, DEFAULT_KEYS)

    def _hosts(self, node: Node | None) -> list[tuple[str, Node, str]]:
        """Declare hosts in file order; return their ``groups:`` items, checked later."""
        doc, builder = self.doc, self.builder
        host_groups: list[tuple[str, Node, str]] = []
        for name, hnode, value in doc.mapping(node, "hosts", "a mapping of host names", names=True):
            builder.add_host(name, hnode.start_mark.line + 1)
            conn = self.connections[name] = _Connection()
            for key, knode, fvalue in doc.mapping(value, f"hosts.{name}", "a mapping", merge=True):
                field = f"hosts.{name}.{key}"
                if key == "vars":
                    for var, line, var_value in self._vars(fvalue, field):
                        builder.set_host_var(name, var, var_value, line)
                elif key == "groups":
                    for item in doc.sequence(fvalue, field, "a list of group names"):
                        host_groups.append((name, item, field))
                elif key == "address":
                    conn.address = self._clean(fvalue, field)
                else:
                    self._connection_field(conn, key, knode, fvalue, field, HOST_KEYS)
        return host_groups

    def _group(self, name: str, node: Node) -> None:
        doc, builder = self.doc, self.builder
        field = f"groups.{name}"
        for key, knode, value in doc.mapping(node, field, "a group (hosts, children, vars)"):
            sub = f"{field}.{key}"
            if key == "hosts":
                for item in doc.sequence(value, sub, "a list of host names"):
                    host = doc.name(item, sub, "a host name")
                    if not builder.has_host(host):
                        raise doc.error(
                            f"host {host!r} is not defined under hosts"
                            f"{did_you_mean(host, builder.host_names)}",
                            item,
                            sub,
                        )
                    builder.add_host(host, None, name)
            elif key == "children":
                for item in doc.sequence(value, sub, "a list of group names"):
                    child = self._known_group(item, sub)
                    builder.add_child(name, child, item.start_mark.line + 1, sub)
            elif key == "vars":
                for var, line, var_value in self._vars(value, sub):
                    builder.set_group_var(name, var, var_value, line)
            else:
                raise doc.error(
                    f"unknown key {key!r}{did_you_mean(key, GROUP_KEYS)}; a group has "
                    "hosts, children and vars",
                    knode,
                    sub,
                )

    def _vars(self, node: Node, field: str) -> list[tuple[str, int, Any]]:
        doc = self.doc
        return [
            (var, vnode.start_mark.line + 1, doc.plain(value, f"{field}.{var}"))
            for var, vnode, value in doc.mapping(node, field, "a mapping of variables", merge=True)
        ]

    def _connection_field(
        self,
        conn: _Connection,
        key: str,
        knode: Node,
        value: Node,
        field: str,
        allowed: tuple[str, ...],
    ) -> None:
        doc = self.doc
        if key == "port":
            conn.port = doc.port(value, field)
        elif key == "user":
            conn.user = self._clean(value, field)
        elif key == "key":
            conn.key = _path(doc.string(value, field), self.base)
        else:
            raise doc.error(
                f"unknown key {key!r}{did_you_mean(key, allowed)}; expected one of "
                f"{', '.join(allowed)}",
                knode,
                field,
            )

    def _clean(self, node: Node, field: str) -> str:
        text = self.doc.string(node, field).strip()
        if not is_clean_name(text):
            raise self.doc.error(f"{text!r} has a blank or a control character", node, field)
        return text

    def _known_group(self, node: Node, field: str) -> str:
        name = self.doc.name(node, field, "a group name")
        if not self.builder.has_group(name):
            raise self.doc.error(
                f"group {name!r} is not defined under groups"
                f"{did_you_mean(name, self.builder.group_names)}",
                node,
                field,
            )
        return name

    def _make_host(self, resolved: ResolvedHost) -> Host:
        conn, defaults = self.connections[resolved.name], self.defaults
        return Host(
            name=resolved.name,
            address=conn.address or resolved.name,
            port=conn.port if conn.port is not None else defaults.port,
            user=conn.user or defaults.user,
            key=conn.key or defaults.key,
            known_hosts=self.known_hosts,
            groups=resolved.groups,
            vars={k: v for k, (v, _line, _file) in resolved.vars.items()},
            source_line=resolved.line,
        )


def _path(text: str, base: str) -> str:
    """``~`` expanded; relative paths taken from the inventory file's directory."""
    path = os.path.expanduser(text.strip())
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))
