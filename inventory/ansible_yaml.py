"""Ansible YAML inventories: top-level groups (usually ``all``) with hosts/children/vars.

As in Ansible's ``yaml`` plugin: ``hosts`` maps host names (ranges and ``:port``
allowed) to their vars, ``children`` maps group names to nested group definitions,
``vars`` maps names to values, and a group may be defined in several places. Where
Ansible only warns (an unexpected key, a group that is not a mapping) we stop with an
error: a silently skipped group is a deployment to the wrong hosts.
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import Node, ScalarNode

from console.core.errors import InputError, did_you_mean
from console.core.yamlnodes import is_null
from inventory.ansible_vars import AnsibleHostMaker
from inventory.builder import InventoryBuilder
from inventory.model import Inventory
from inventory.ranges import RangeError, expand, has_range, split_port
from inventory.yamlnodes import InventoryDoc

GROUP_KEYS = ("hosts", "children", "vars")


def parse_ansible_yaml(root: Node, doc: InventoryDoc) -> Inventory:
    builder = InventoryBuilder(doc.file, "ansible-yaml", group_priority=True)
    feed_ansible_yaml(root, doc, builder)
    return builder.build(doc.file, AnsibleHostMaker(doc.file))


def feed_ansible_yaml(root: Node, doc: InventoryDoc, builder: InventoryBuilder) -> None:
    """Read one Ansible YAML file into ``builder`` (shared by an inventory's files)."""
    builder.file = doc.file
    for name, key_node, value in doc.mapping(root, "", "a mapping of groups", names=True):
        if name == "plugin":
            raise doc.error(
                "this is an inventory plugin configuration (a dynamic inventory), which rolldeck "
                "does not run: save what it lists (`ansible-inventory -i FILE --list --yaml > "
                "inventory.yml`) and give rolldeck that",
                key_node,
                name,
            )
        _group(doc, builder, name, key_node, value, name, set())


def _group(
    doc: InventoryDoc,
    builder: InventoryBuilder,
    name: str,
    key_node: Node,
    node: Node,
    field: str,
    inside: set[int],
) -> None:
    """``inside``: the group definitions being read; an alias back to one of them
    (``all: &a {children: {b: *a}}``) would define groups without end."""
    builder.add_group(name, key_node.start_mark.line + 1)
    if id(node) in inside:
        raise doc.error(
            "recursive alias: a group's children include its own definition", key_node, field
        )
    what = "a group (a mapping with hosts, children or vars)"
    for key, knode, value in doc.mapping(node, field, what):
        sub = f"{field}.{key}"
        if key == "hosts":
            _hosts(doc, builder, name, value, sub)
        elif key == "children":
            for child, cnode, cvalue in doc.mapping(
                value, sub, "a mapping of group names", names=True
            ):
                builder.add_child(name, child, cnode.start_mark.line + 1, sub)
                inside.add(id(node))
                _group(doc, builder, child, cnode, cvalue, f"{sub}.{child}", inside)
                inside.discard(id(node))
        elif key == "vars":
            for var, vnode, vvalue in doc.mapping(value, sub, "a mapping of variables", merge=True):
                builder.set_group_var(
                    name, var, doc.plain(vvalue, f"{sub}.{var}"), vnode.start_mark.line + 1
                )
        else:
            raise doc.error(
                f"unknown key {key!r}{did_you_mean(key, GROUP_KEYS)}; a group has "
                "hosts, children and vars",
                knode,
                sub,
            )


def _hosts(
    doc: InventoryDoc, builder: InventoryBuilder, group: str, node: Node, field: str
) -> None:
    entries: list[tuple[str, Node, Node | None]]
    if isinstance(node, ScalarNode) and not is_null(node):
        entries = [(str(node.value), node, None)]  # ``hosts: web01``, as in Ansible
    else:
        what = "a mapping of host names (one `name:` per line; a list is not valid here)"
        entries = [(k, kn, v) for k, kn, v in doc.mapping(node, field, what, names=True)]
    for pattern, pnode, value in entries:
        line = pnode.start_mark.line + 1
        try:
            host_part, port = split_port(pattern.strip())
            names = (
                expand(host_part, builder.room)
                if has_range(host_part) or "]" in host_part
                else [host_part]
            )
        except RangeError as exc:
            raise InputError(
                str(exc), file=doc.file, line=line, field=f"{field}.{pattern}"
            ) from None
        if not host_part.strip():
            raise doc.error("a host name must not be empty", pnode, field)
        host_vars: list[tuple[str, Any, int]] = []
        if value is not None:
            sub = f"{field}.{pattern}"
            for var, vnode, vvalue in doc.mapping(
                value, sub, "a mapping of host variables", merge=True
            ):
                host_vars.append(
                    (var, doc.plain(vvalue, f"{sub}.{var}"), vnode.start_mark.line + 1)
                )
        for name in names:
            builder.add_host(name, line, group)
            if port is not None:
                builder.set_host_var(name, "ansible_port", port, line)
            for var, var_value, var_line in host_vars:
                builder.set_host_var(name, var, var_value, var_line)
