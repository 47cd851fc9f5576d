"""The inventory's conventions on top of the one YAML walker
(:mod:`console.core.yamlnodes`, which checks depth, alias expansion, duplicate keys
and merge keys).

Inventories differ from the spec in three ways: a null section is an empty one
(``hosts:`` with nothing under it), merge keys (``<<``) are allowed only where vars
are (a merged group structure would hide which group a host is in), and names,
strings and ports are read as the text written (``user: 1000`` is ``"1000"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from yaml.nodes import Node, ScalarNode

from console.core.yamlnodes import Doc, Entry, is_null, kind


class InventoryDoc(Doc):
    """One inventory file; every error carries its name, the line and the field."""

    def mapping(
        self,
        node: Node | None,
        field: str,
        what: str = "a mapping",
        *,
        allowed: Sequence[str] | None = None,
        required: Sequence[str] = (),
        merge: bool = False,
        names: bool = False,
        null_empty: bool = True,
    ) -> list[Entry]:
        """As :meth:`Doc.mapping`, with null as empty and merge keys off by default."""
        return super().mapping(
            node,
            field,
            what,
            allowed=allowed,
            required=required,
            merge=merge,
            names=names,
            null_empty=null_empty,
        )

    def sequence(
        self, node: Node | None, field: str, what: str = "a list", *, null_empty: bool = True
    ) -> list[Node]:
        """As :meth:`Doc.sequence`, with null as an empty list."""
        return super().sequence(node, field, what, null_empty=null_empty)

    def name(self, node: Node, field: str, what: str) -> str:
        """A non-empty scalar used as a name (host, group); numbers are taken as text."""
        if not isinstance(node, ScalarNode) or is_null(node):
            raise self.error(f"expected {what}, found {kind(node)}", node, field)
        text = str(node.value).strip()
        if not text:
            raise self.error(f"{what} must not be empty", node, field)
        return text

    def string(self, node: Node, field: str) -> str:
        """A non-empty scalar, taken as the text written (``user: 1000`` is ``"1000"``)."""
        if not isinstance(node, ScalarNode) or is_null(node) or not str(node.value).strip():
            raise self.error(f"expected a non-empty string, found {kind(node)}", node, field)
        text = str(node.value)
        if not text.isprintable():
            raise self.error(f"{kind(node)} has a control character", node, field)
        return text

    def port(self, node: Node, field: str) -> int:
        value = self.plain(node, field)
        port = parse_port(value)
        if port is None:
            raise self.error(f"expected a port number 1-65535, found {value!r}", node, field)
        return port


def parse_port(value: Any) -> int | None:
    """A TCP port from an int or a digit string; ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 5:
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= 65535:
        return value
    return None
