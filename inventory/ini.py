"""Ansible INI inventories, read line by line the way Ansible's ``ini`` plugin does.

``[group]`` lists hosts (a name, a range or ``name:port``, then ``key=value`` vars),
``[group:vars]`` sets group vars, ``[group:children]`` names child groups; hosts before
any section are ``ungrouped``. Values go through ``ast.literal_eval`` as in Ansible, so
``port=8080`` is an int, ``debug=True`` a bool and anything else stays a string. A
``[group:vars]`` section needs the group declared somewhere, and a child group must
be declared too (either may come later in the file).
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from console.core.errors import InputError
from inventory.ansible_vars import AnsibleHostMaker
from inventory.builder import UNGROUPED, InventoryBuilder
from inventory.model import Inventory
from inventory.ranges import RangeError, expand, has_range, split_port

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:[#;].*)?$")
_KINDS = ("hosts", "children", "vars")
_WHITESPACE = re.compile(r"[ \t\r\n]+")  # shlex's whitespace

# literal_eval is bounded by Python's parser, but a value this long is not a var.
_MAX_LITERAL = 10_000


def parse_ini(text: str, file: str) -> Inventory:
    builder = InventoryBuilder(file, "ini", group_priority=True)
    feed_ini(text, file, builder)
    return builder.build(file, AnsibleHostMaker(file))


def feed_ini(text: str, file: str, builder: InventoryBuilder) -> None:
    """Read one INI file into ``builder`` (shared by every file of an inventory)."""
    builder.file = file
    group, kind = UNGROUPED, "hosts"
    # Groups used before being declared: name -> (line, why), checked at the end.
    pending: dict[str, tuple[int, str]] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, kind = m.group(1), m.group(2) or "hosts"
            if kind not in _KINDS:
                raise InputError(
                    f"section [{group}:{kind}] has unknown type {kind!r}"
                    " (expected :vars or :children)",
                    file=file,
                    line=number,
                    field=f"[{group}:{kind}]",
                )
            if kind == "vars":
                if not builder.has_group(group):
                    pending.setdefault(
                        group,
                        (number, f"section [{group}:vars] is for an undeclared group {group!r}"),
                    )
            else:
                pending.pop(group, None)
            builder.add_group(group, number)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InputError(
                f"invalid section header {line!r} (no spaces; [name], [name:vars] or "
                "[name:children])",
                file=file,
                line=number,
                field="section",
            )
        if kind == "hosts":
            _host_line(builder, line, number, group, file)
        elif kind == "vars":
            key, value = _var_line(line, number, group, file)
            builder.set_group_var(group, key, value, number)
        else:
            child = _child_line(line, number, group, file)
            if not builder.has_group(child):
                pending.setdefault(
                    child, (number, f"[{group}:children] names undeclared group {child!r}")
                )
            builder.add_child(group, child, number, f"[{group}:children]")
    if pending:
        name, (number, message) = min(pending.items(), key=lambda item: item[1][0])
        raise InputError(message, file=file, line=number, field=name)


def _host_line(builder: InventoryBuilder, line: str, number: int, group: str, file: str) -> None:
    try:
        tokens = _split(line)
    except ValueError as exc:
        raise InputError(
            f"cannot parse host line: {exc}", file=file, line=number, field=group
        ) from None
    if not tokens:
        return
    pattern = tokens[0]
    try:
        host_part, port = split_port(pattern)
        names = (
            expand(host_part, builder.room)
            if has_range(host_part) or "]" in host_part
            else [host_part]
        )
    except RangeError as exc:
        raise InputError(str(exc), file=file, line=number, field=pattern) from None
    if pattern == "---":
        raise InputError(
            "'---' is not a host name (is this a YAML file with an .ini name?)",
            file=file,
            line=number,
            field=group,
        )
    variables: list[tuple[str, Any]] = []
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise InputError(
                f"expected key=value after the host name, found {token!r}",
                file=file,
                line=number,
                field=pattern,
            )
        variables.append((key, parse_value(value)))
    for name in names:
        builder.add_host(name, number, group)
        if port is not None:
            builder.set_host_var(name, "ansible_port", port, number)
        for key, value in variables:
            builder.set_host_var(name, key, value, number)


def _split(line: str) -> list[str]:
    """``shlex.split(line, comments=True)``, with a fast path for lines without quotes
    or escapes (shlex reads a character at a time: most of a large file's load time)."""
    if '"' in line or "'" in line or "\\" in line:
        return shlex.split(line, comments=True)
    return [t for t in _WHITESPACE.split(line.partition("#")[0]) if t]


def _var_line(line: str, number: int, group: str, file: str) -> tuple[str, Any]:
    key, eq, value = line.partition("=")
    key = key.strip()
    if not eq or not key:
        raise InputError(
            f"expected key=value, found {line!r}",
            file=file,
            line=number,
            field=f"[{group}:vars]",
        )
    return key, parse_value(value.strip())


def _child_line(line: str, number: int, group: str, file: str) -> str:
    m = _GROUP_NAME.match(line)
    if not m:
        raise InputError(
            f"expected a group name, found {line!r}",
            file=file,
            line=number,
            field=f"[{group}:children]",
        )
    return m.group(1)


def parse_value(text: str) -> Any:
    """Ansible's INI value rule: a Python literal if it is one, else the text itself.

    Only plain data is kept (str, int, float, bool, None, lists, str-keyed dicts);
    anything else ``literal_eval`` accepts (bytes, sets, complex, ``...``) stays text,
    as Ansible turns those back into strings too.
    """
    constant = _CONSTANTS.get(text, _MISSING)
    if constant is not _MISSING:
        return constant
    if _INT.match(text):
        return int(text)
    if not text or len(text) > _MAX_LITERAL or not _may_be_literal(text):
        return text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if isinstance(value, tuple):
        value = list(value)  # as Ansible does
    return value if _plain(value) else text


_MISSING = object()
_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}
# What literal_eval reads as an int, in the common spelling (no 0x, 1_000, leading 0).
_INT = re.compile(r"^-?(?:0|[1-9][0-9]{0,17})$")


def _may_be_literal(text: str) -> bool:
    # A bare word like ``deploy`` or ``10.0.0.1`` is never a literal; skipping it keeps
    # literal_eval (the slowest call on a large inventory) for values that need it.
    first = text[0]
    if first.isdigit():
        return text.count(".") < 2  # 10.0.0.1 is an address, never a literal
    return first in "-+.[{(\"'"


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False
