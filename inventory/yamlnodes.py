"""YAML read as a node tree, so every error can name the line it comes from.

``yaml.safe_load`` loses positions and silently keeps the last of two duplicate keys;
composing to nodes keeps each node's start mark and lets us reject duplicates. Values
that are pure data (vars) are constructed from their node with PyYAML's safe
constructor, after a walk that rejects recursive aliases and alias bombs.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from console.core.errors import InputError

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# An inventory's vars are small; a value that expands to more nodes than this is an
# alias bomb, not configuration.
MAX_EXPANDED_NODES = 100_000

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
NULL_TAG = "tag:yaml.org,2002:null"


def line_of(node: Node) -> int:
    """1-based line where ``node`` starts."""
    return node.start_mark.line + 1


def compose(text: str, file: str) -> Node | None:
    """Compose one YAML document; a syntax error names the line of its problem mark."""
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"YAML syntax error: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        # Reader errors (control characters) and "more than one document".
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(exc).split())
        raise InputError(f"YAML error: {message}", file=file, line=line) from None
    except RecursionError:
        raise InputError("YAML nesting too deep", file=file) from None


class Doc:
    """Helpers bound to one file, so each raised error carries that file's name.

    ``anchors`` says whether the text may hold aliases (it has an ``&``); without
    them no value can be recursive or an alias bomb, and the check is skipped.
    """

    def __init__(self, file: str, *, anchors: bool = True) -> None:
        self.file = file
        self.anchors = anchors
        self._constructor = SafeConstructor()

    def error(self, message: str, node: Node | None, field: str | None) -> InputError:
        line = line_of(node) if node is not None else None
        return InputError(message, file=self.file, line=line, field=field or None)

    def is_null(self, node: Node | None) -> bool:
        return node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG)

    def mapping(
        self,
        node: Node | None,
        field: str,
        what: str,
        *,
        names: bool = False,
        merge: bool = False,
    ) -> list[tuple[str, Node, Node]]:
        """``(key, key_node, value_node)`` in file order; null counts as empty.

        Keys must be scalars and unique: PyYAML would silently keep the last of two.
        With ``names``, keys are host or group names and must not be blank. With
        ``merge`` (mappings of vars), ``<<: *anchor`` merge keys are expanded as YAML
        defines them: keys written in the mapping win over merged ones, and an earlier
        merged mapping wins over a later one.
        """
        return self._mapping(node, field, what, names, merge, set())

    def _mapping(
        self,
        node: Node | None,
        field: str,
        what: str,
        names: bool,
        merge: bool,
        active: set[int],
    ) -> list[tuple[str, Node, Node]]:
        if self.is_null(node):
            return []
        if not isinstance(node, MappingNode):
            raise self.error(f"expected {what}, found {_kind(node)}", node, field)
        seen: dict[str, int] = {}
        items: list[tuple[str, Node, Node]] = []
        merged: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(
                    f"a key must be a plain name, found {_kind(key_node)}", key_node, field
                )
            if key_node.tag == "tag:yaml.org,2002:merge":
                if not merge:
                    raise self.error("merge keys (<<) are not supported here", key_node, field)
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise self.error(
                            f"a merge key (<<) takes mappings, found {_kind(source)}",
                            source,
                            field,
                        )
                    if id(source) in active:
                        raise self.error("recursive alias in merge key", key_node, field)
                    active.add(id(node))
                    merged += self._mapping(source, field, what, names, merge, active)
                    active.discard(id(node))
                continue
            key = key_node.value
            if names and not key.strip():
                raise self.error("a name must not be empty", key_node, field)
            if key in seen:
                raise self.error(
                    f"duplicate key {key!r} (first on line {seen[key]})",
                    key_node,
                    f"{field}.{key}" if field else key,
                )
            seen[key] = line_of(key_node)
            items.append((key, key_node, value_node))
        for key, key_node, value_node in merged:
            if key not in seen:
                seen[key] = line_of(key_node)
                items.append((key, key_node, value_node))
        return items

    def sequence(self, node: Node | None, field: str, what: str) -> list[Node]:
        if self.is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            raise self.error(f"expected {what}, found {_kind(node)}", node, field)
        return list(node.value)

    def name(self, node: Node, field: str, what: str) -> str:
        """A non-empty scalar used as a name (host, group); numbers are taken as text."""
        if not isinstance(node, ScalarNode) or self.is_null(node):
            raise self.error(f"expected {what}, found {_kind(node)}", node, field)
        text = node.value.strip()
        if not text:
            raise self.error(f"{what} must not be empty", node, field)
        return text

    def string(self, node: Node, field: str) -> str:
        """A non-empty scalar, taken as the text written (``user: 1000`` is ``"1000"``)."""
        if not isinstance(node, ScalarNode) or self.is_null(node) or not node.value.strip():
            raise self.error(f"expected a non-empty string, found {_kind(node)}", node, field)
        if not node.value.isprintable():
            raise self.error(f"{_kind(node)} has a control character", node, field)
        return node.value

    def port(self, node: Node, field: str) -> int:
        value = self.value(node, field)
        port = parse_port(value)
        if port is None:
            raise self.error(f"expected a port number 1-65535, found {value!r}", node, field)
        return port

    def value(self, node: Node, field: str) -> Any:
        """Construct plain data (a var's value) from ``node``."""
        if self.anchors:
            _check_acyclic(self, node, field)
        constructor = self._constructor
        try:
            return constructor.construct_document(node)
        except yaml.YAMLError as exc:
            message = " ".join(str(exc).split())
            raise self.error(f"invalid value: {message}", node, field) from None
        except (ValueError, TypeError, OverflowError) as exc:
            # The constructor's own conversions (dates, timestamps, base64) can fail
            # with plain exceptions on odd input.
            raise self.error(f"invalid value: {exc}", node, field) from None
        except RecursionError:
            raise self.error("value nested too deep", node, field) from None
        finally:
            # construct_document resets this state only when it succeeds.
            constructor.constructed_objects = {}
            constructor.recursive_objects = {}
            constructor.state_generators = []
            constructor.deep_construct = False


def parse_port(value: Any) -> int | None:
    """A TCP port from an int or a digit string; ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 5:
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= 65535:
        return value
    return None


def _check_acyclic(doc: Doc, root: Node, field: str) -> None:
    """Reject a recursive alias (``&a [*a]``) or a value whose aliases expand too far."""
    budget = MAX_EXPANDED_NODES
    stack: list[tuple[Node, int]] = [(root, 0)]
    path: list[Node] = []
    on_path: set[int] = set()
    while stack:
        node, depth = stack.pop()
        while len(path) > depth:
            on_path.discard(id(path.pop()))
        if id(node) in on_path:
            raise doc.error("recursive alias in value", node, field)
        budget -= 1
        if budget < 0:
            raise doc.error("value too large (alias expansion)", root, field)
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            continue
        path.append(node)
        on_path.add(id(node))
        stack.extend((child, depth + 1) for child in children)


def _kind(node: Node | None) -> str:
    if node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG):
        return "nothing"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    return repr(text)
