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

from yaml.nodes import Node

from console.errors import did_you_mean
from inventory.builder import InventoryBuilder, ResolvedHost
from inventory.model import Host, Inventory
from inventory.yamlnodes import Doc

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


def is_native(doc: Doc, root: Node) -> bool:
    """A mapping whose top-level keys include ``defaults``, ``groups`` or ``hosts``."""
    return any(key in TOP_KEYS for key, _, _ in doc.mapping(root, "", "a mapping"))


def parse_native(root: Node, file: str) -> Inventory:
    doc = Doc(file)
    base = os.path.dirname(os.path.abspath(file))
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

    defaults = _Connection()
    known_hosts: str | None = None
    for key, knode, value in doc.mapping(sections.get("defaults"), "defaults", "a mapping"):
        field = f"defaults.{key}"
        if key == "known_hosts":
            known_hosts = _path(doc.string(value, field), base)
        else:
            _connection_field(doc, defaults, key, knode, value, field, base, DEFAULT_KEYS)

    builder = InventoryBuilder(file, "native")
    group_nodes = doc.mapping(sections.get("groups"), "groups", "a mapping of groups", names=True)
    for name, gnode, _ in group_nodes:
        builder.add_group(name, gnode.start_mark.line + 1)

    connections: dict[str, _Connection] = {}
    host_groups: list[tuple[str, Node, str]] = []
    hosts = doc.mapping(sections.get("hosts"), "hosts", "a mapping of host names", names=True)
    for name, hnode, value in hosts:
        builder.add_host(name, hnode.start_mark.line + 1)
        conn = connections[name] = _Connection()
        for key, knode, fvalue in doc.mapping(value, f"hosts.{name}", "a mapping"):
            field = f"hosts.{name}.{key}"
            if key == "vars":
                for var, vnode, vvalue in doc.mapping(fvalue, field, "a mapping of variables"):
                    builder.set_host_var(
                        name, var, doc.value(vvalue, f"{field}.{var}"), vnode.start_mark.line + 1
                    )
            elif key == "groups":
                for item in doc.sequence(fvalue, field, "a list of group names"):
                    host_groups.append((name, item, field))
            elif key == "address":
                conn.address = doc.string(fvalue, field).strip()
            else:
                _connection_field(doc, conn, key, knode, fvalue, field, base, HOST_KEYS)

    for name, _, value in group_nodes:
        field = f"groups.{name}"
        for key, knode, fvalue in doc.mapping(value, field, "a group (hosts, children, vars)"):
            sub = f"{field}.{key}"
            if key == "hosts":
                for item in doc.sequence(fvalue, sub, "a list of host names"):
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
                for item in doc.sequence(fvalue, sub, "a list of group names"):
                    child = _known_group(doc, builder, item, sub)
                    builder.add_child(name, child, item.start_mark.line + 1, sub)
            elif key == "vars":
                for var, vnode, vvalue in doc.mapping(fvalue, sub, "a mapping of variables"):
                    builder.set_group_var(
                        name, var, doc.value(vvalue, f"{sub}.{var}"), vnode.start_mark.line + 1
                    )
            else:
                raise doc.error(
                    f"unknown key {key!r}{did_you_mean(key, GROUP_KEYS)}; a group has "
                    "hosts, children and vars",
                    knode,
                    sub,
                )
    for host, item, field in host_groups:
        builder.add_host(host, None, _known_group(doc, builder, item, field))

    def make_host(resolved: ResolvedHost) -> Host:
        conn = connections[resolved.name]
        return Host(
            name=resolved.name,
            address=conn.address or resolved.name,
            port=conn.port if conn.port is not None else defaults.port,
            user=conn.user or defaults.user,
            key=conn.key or defaults.key,
            known_hosts=known_hosts,
            groups=resolved.groups,
            vars={k: v for k, (v, _line) in resolved.vars.items()},
            source_line=resolved.line,
        )

    return builder.build(file, make_host)


def _connection_field(
    doc: Doc,
    conn: _Connection,
    key: str,
    knode: Node,
    value: Node,
    field: str,
    base: str,
    allowed: tuple[str, ...],
) -> None:
    if key == "port":
        conn.port = doc.port(value, field)
    elif key == "user":
        conn.user = doc.string(value, field).strip()
    elif key == "key":
        conn.key = _path(doc.string(value, field), base)
    else:
        raise doc.error(
            f"unknown key {key!r}{did_you_mean(key, allowed)}; expected one of "
            f"{', '.join(allowed)}",
            knode,
            field,
        )


def _known_group(doc: Doc, builder: InventoryBuilder, node: Node, field: str) -> str:
    name = doc.name(node, field, "a group name")
    if not builder.has_group(name):
        raise doc.error(
            f"group {name!r} is not defined under groups{did_you_mean(name, builder.group_names)}",
            node,
            field,
        )
    return name


def _path(text: str, base: str) -> str:
    """``~`` expanded; relative paths taken from the inventory file's directory."""
    path = os.path.expanduser(text.strip())
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))
