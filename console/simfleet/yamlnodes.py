"""YAML read as nodes, so every validation error can name its file, line and field.

``yaml.safe_load`` forgets where values came from; composing to nodes keeps a mark on
each one. :class:`Fields` walks one mapping node: it rejects unknown keys (with a
"did you mean") and hands out values together with the line they sit on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from console.core.errors import InputError, did_you_mean


def compose(text: str, path: str) -> yaml.Node | None:
    """Parse ``text`` into a node tree; a syntax error becomes an InputError at its line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"YAML syntax error: {exc.problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {exc}", file=path) from None


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def plain(node: yaml.Node, path: str, field: str) -> Any:
    """Construct the plain Python value of a node (for pass-through values)."""
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise InputError(str(exc), file=path, line=line_of(node), field=field) from None


class Fields:
    """The keys of one YAML mapping, checked against the keys allowed there."""

    def __init__(self, node: yaml.Node, path: str, where: str, allowed: Iterable[str]) -> None:
        self.path = path
        self.where = where
        self.line = line_of(node)
        if not isinstance(node, yaml.MappingNode):
            raise InputError("expected a mapping", file=path, line=self.line, field=where or None)
        allowed = tuple(allowed)
        self.items: dict[str, yaml.Node] = {}
        self.key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            name = self.field(str(key))
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                raise InputError(
                    f"unknown key{hint}", file=path, line=line_of(key_node), field=name
                )
            if key in self.items:
                raise InputError("duplicate key", file=path, line=line_of(key_node), field=name)
            self.items[key] = value_node
            self.key_lines[key] = line_of(key_node)

    def field(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def error(self, key: str, message: str) -> InputError:
        node = self.items.get(key)
        line = line_of(node) if node is not None else self.line
        return InputError(message, file=self.path, line=line, field=self.field(key))

    def scalar(self, key: str) -> Any:
        """The constructed value of a scalar key (None when absent)."""
        node = self.items.get(key)
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(key, "expected a single value")
        return plain(node, self.path, self.field(key))
