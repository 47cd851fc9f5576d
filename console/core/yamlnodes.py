"""The one YAML walker every loader stands on (spec, inventory, scenario).

``yaml.safe_load`` forgets where values came from, silently keeps the last of two
duplicate keys and will happily expand a "billion laughs" document. Here YAML is
composed to its node tree instead, so each error can name file, line and field, and
the tree is checked before any loader walks it:

- **Depth**: at most :data:`MAX_DEPTH` levels, counting levels reached through
  aliases, so no walker (ours or PyYAML's constructor) can hit a RecursionError.
- **Alias expansion**: a tree whose aliases, expanded, come to more than
  :data:`MAX_NODES` nodes (or :data:`MAX_EXPANSION` times the nodes written, for a
  large document) is refused before it is walked: walkers follow aliases, so their
  work is the expanded size, not the written one.

Both checks are one pass over the distinct nodes (iterative, memoized on shared
nodes), so they fail fast on a bomb. Recursive aliases (``&a [*a]``) are allowed
through that pass and reported by the walk that meets them (a merge or a value), as
only that walk knows the field.

:class:`Doc` is the walk: mappings (duplicate keys, allowed and required keys, merge
keys ``<<``), lists, single values, and plain data for pass-through values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from console.core.errors import InputError, did_you_mean

# Hand-written configuration is rarely 10 levels deep; 100 leaves room and keeps any
# recursive walk far from Python's recursion limit (libyaml itself stops at 1,000).
MAX_DEPTH = 100
# Aliases may expand a document to this many nodes, or to MAX_EXPANSION times the
# nodes written when that is more (a big inventory reusing one anchor per host).
MAX_NODES = 1_000_000
MAX_EXPANSION = 10

TAG = "tag:yaml.org,2002:"
NULL_TAG = TAG + "null"
MERGE_TAG = TAG + "merge"


class _GuardedLoader(yaml.SafeLoader):
    """The pure-Python loader, used without libyaml: its composer recurses once per
    level, so it stops at the depth limit instead of at Python's recursion limit."""

    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.depth >= MAX_DEPTH:
            raise ComposerError(None, None, "nested too deeply", self.get_mark())
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# libyaml when present: linear on deep nesting (the pure-Python scanner is quadratic
# there), and it stops at 1,000 levels with a proper error.
_LOADER: Any = getattr(yaml, "CSafeLoader", _GuardedLoader)


class Entry(NamedTuple):
    """One key of a mapping, merged keys included: its name, key node and value."""

    key: str
    key_node: ScalarNode
    value: Node


def line_of(node: Node) -> int:
    """1-based line where ``node`` starts."""
    return int(node.start_mark.line) + 1


def is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG)


def kind(node: Node | None) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if is_null(node):
        return "nothing"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    assert node is not None
    text = str(node.value)
    return f"a value ({text if len(text) <= 40 else text[:37] + '...'!r})"


def join(parent: str, key: str) -> str:
    """The field path of ``key`` inside ``parent`` (``health`` + ``run``)."""
    return f"{parent}.{key}" if parent else key


def compose(text: str, file: str) -> Node | None:
    """Compose one YAML document and check its depth and alias expansion; None when
    the document is empty. Every failure is an InputError naming ``file``."""
    try:
        root: Node | None = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in problem or "nested too deeply" in problem:
            raise _too_deep(file, line) from None
        raise InputError(f"YAML syntax error: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:  # ReaderError: control characters, bad encoding
        raise InputError(f"YAML error: {' '.join(str(exc).split())}", file=file) from None
    except RecursionError:  # no path is known to lead here; a traceback would be worse
        raise _too_deep(file, None) from None
    if root is not None:
        check_tree(root, file)
    return root


def _too_deep(file: str, line: int | None) -> InputError:
    return InputError(f"YAML nested too deeply (at most {MAX_DEPTH} levels)", file=file, line=line)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_tree(root: Node, file: str) -> None:
    """Refuse a tree nested deeper than MAX_DEPTH or whose aliases expand too far.

    One iterative depth-first pass over the distinct collections: each one's expanded
    size and height are computed once, however many aliases point at it (scalars are
    counted in place, the bulk of any file). An alias back to a collection being
    visited (a recursive alias) is skipped here; the walk that meets it reports it.
    """
    if not isinstance(root, MappingNode | SequenceNode):
        return
    measured: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
    on_path = {id(root)}
    post: list[Node] = []  # collections, innermost first
    written = 0
    # frames: [node, children, next child, expanded size so far, tallest child]
    stack: list[list[Any]] = [[root, _children(root), 0, 1, 0]]
    while stack:
        frame = stack[-1]
        node, children, depth = frame[0], frame[1], len(stack)
        pushed = False
        while frame[2] < len(children):
            child = children[frame[2]]
            frame[2] += 1
            if isinstance(child, ScalarNode):
                if depth >= MAX_DEPTH:
                    raise _too_deep(file, line_of(child))
                written += 1
                frame[3] += 1
                frame[4] = frame[4] or 1
                continue
            key = id(child)
            seen = measured.get(key)
            if seen is not None:  # an alias to a collection already measured
                if depth + seen[1] > MAX_DEPTH:
                    raise _too_deep(file, line_of(node))
                frame[3] += seen[0]
                frame[4] = max(frame[4], seen[1])
                continue
            if key in on_path:
                continue  # recursive alias: the walk that meets it says where
            if depth >= MAX_DEPTH:
                raise _too_deep(file, line_of(child))
            on_path.add(key)
            stack.append([child, _children(child), 0, 1, 0])
            pushed = True
            break
        if pushed:
            continue
        stack.pop()
        on_path.discard(id(node))
        measured[id(node)] = (frame[3], frame[4] + 1)
        post.append(node)
        if stack:
            parent = stack[-1]
            parent[3] += frame[3]
            parent[4] = max(parent[4], frame[4] + 1)
    limit = max(MAX_NODES, MAX_EXPANSION * (written + len(post)))
    if measured[id(root)][0] > limit:
        worst = next(n for n in post if measured[id(n)][0] > limit)  # the innermost culprit
        raise InputError(
            f"YAML too large after alias expansion (more than {limit:,} nodes)",
            file=file,
            line=line_of(worst),
        )


class Doc:
    """One YAML file: its composed tree and the typed walks over it.

    Every failure is an InputError with this file, the node's line and the field path
    the caller passes (``steps[2].timeout``), so a loader only states its schema.
    """

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.root = compose(text, file)
        self.constructor = SafeConstructor()
        # Plain values built so far, by node: an alias anywhere in the file (say one
        # anchor that every host's vars refer to) is one shared object, built once.
        self._built: dict[int, Any] = {}

    def error(self, message: str, node: Node | None, field: str | None) -> InputError:
        line = line_of(node) if node is not None else None
        return InputError(message, file=self.file, line=line, field=field or None)

    def fail(self, node: Node | None, field: str | None, message: str) -> NoReturn:
        raise self.error(message, node, field)

    def mapping(
        self,
        node: Node | None,
        field: str,
        what: str = "a mapping",
        *,
        allowed: Sequence[str] | None = None,
        required: Sequence[str] = (),
        merge: bool = True,
        names: bool = False,
        null_empty: bool = False,
    ) -> list[Entry]:
        """The keys of a mapping in file order, merged keys last.

        Keys must be plain scalars and unique (PyYAML would keep the last of two);
        with ``allowed``, unknown keys are errors with a "did you mean"; ``required``
        keys must be there after merging. ``names``: keys are host or group names and
        must not be blank. ``merge``: ``<<: *anchor`` brings in the anchor's keys as
        YAML defines it: keys written here win, an earlier merged mapping wins over a
        later one. ``null_empty``: null reads as an empty mapping.
        """
        if null_empty and is_null(node):
            return []
        if not isinstance(node, MappingNode):
            self.fail(node, field, f"expected {what}, got {kind(node)}")
        entries = self._mapping(node, field, allowed, merge, names, set())
        for key in required:
            if not any(entry.key == key for entry in entries):
                self.fail(node, join(field, key), f"missing required key {key!r}")
        return entries

    def _mapping(
        self,
        node: MappingNode,
        field: str,
        allowed: Sequence[str] | None,
        merge: bool,
        names: bool,
        active: set[int],
    ) -> list[Entry]:
        seen: dict[str, int] = {}
        entries: list[Entry] = []
        merged: list[Entry] = []
        for key_node, value in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == MERGE_TAG:
                if not merge:
                    self.fail(key_node, field, "merge keys (<<) are not supported here")
                sources = value.value if isinstance(value, SequenceNode) else [value]
                active.add(id(node))
                for source in sources:
                    if not isinstance(source, MappingNode):
                        self.fail(source, field, f"a merge (<<) takes mappings, got {kind(source)}")
                    if id(source) in active:
                        self.fail(
                            key_node,
                            field,
                            "recursive alias: a merge (<<) refers to a mapping containing it",
                        )
                    merged += self._mapping(source, field, allowed, merge, names, active)
                active.discard(id(node))
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, field, f"a key must be a plain name, got {kind(key_node)}")
            key = str(key_node.value)
            if names and not key.strip():
                self.fail(key_node, field, "a name must not be empty")
            if not key:
                self.fail(key_node, field, "a key must be a plain name, got nothing")
            child = join(field, key)
            if key in seen:
                self.fail(key_node, child, f"duplicate key {key!r} (first on line {seen[key]})")
            if allowed is not None and key not in allowed:
                self.fail(key_node, child, f"unknown key {key!r}{did_you_mean(key, allowed)}")
            seen[key] = line_of(key_node)
            entries.append(Entry(key, key_node, value))
        for entry in merged:
            if entry.key not in seen:
                seen[entry.key] = line_of(entry.key_node)
                entries.append(entry)
        return entries

    def sequence(
        self, node: Node | None, field: str, what: str = "a list", *, null_empty: bool = False
    ) -> list[Node]:
        """The items of a list; ``null_empty``: null reads as an empty list."""
        if null_empty and is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.fail(node, field, f"expected {what}, got {kind(node)}")
        return list(node.value)

    def scalar(self, node: Node, field: str) -> Any:
        """A single value by its resolved tag: None, bool, int, float or str (a date
        stays the text written). Other tags (``!!binary``, ``!foo``) are errors."""
        if not isinstance(node, ScalarNode):
            self.fail(node, field, f"expected a single value, got {kind(node)}")
        tag = node.tag
        if tag in (TAG + "str", TAG + "timestamp"):
            return str(node.value)
        if tag not in (NULL_TAG, TAG + "bool", TAG + "int", TAG + "float"):
            self.fail(node, field, f"unsupported YAML tag {tag!r}")
        try:
            return self.constructor.construct_object(node)
        except (ValueError, yaml.YAMLError):
            self.fail(node, field, f"{node.value!r} is not a valid {tag.rsplit(':', 1)[-1]}")
        finally:
            self.constructor.constructed_objects = {}

    def plain(self, node: Node, field: str) -> Any:
        """Plain data (a var's value, an override passed through): dicts, lists and
        scalars as PyYAML's safe loader makes them, with duplicate keys, merge keys and
        recursive aliases handled as everywhere else. Aliases share one object, across
        the whole file as within one value (as ``yaml.safe_load`` builds them): the
        work is the nodes written, never their expansion."""
        return self._plain(node, field, self._built, {})

    def _plain(self, node: Node, field: str, done: dict[int, Any], active: dict[int, str]) -> Any:
        """``active``: the collections being built, with their fields, so a recursive
        alias is reported where its anchor is."""
        key = id(node)
        if key in done:
            return done[key]
        if key in active:
            self.fail(node, active[key], "recursive alias in value")
        value: Any
        if isinstance(node, ScalarNode):
            value = self._construct(node, field)
        elif isinstance(node, SequenceNode):
            active[key] = field
            value = [
                self._plain(item, f"{field}[{i}]", done, active)
                for i, item in enumerate(node.value)
            ]
            del active[key]
        else:
            active[key] = field
            value = {}
            # Spelled out: a subclass's defaults (inventories turn merge keys off
            # where they name hosts) must not reach nested plain data.
            for entry in self.mapping(node, field, merge=True, null_empty=False):
                name = self._construct(entry.key_node, field)
                value[name] = self._plain(entry.value, join(field, entry.key), done, active)
            del active[key]
        done[key] = value
        return value

    def _construct(self, node: ScalarNode, field: str) -> Any:
        """Any safe scalar (dates, binary too), as PyYAML's safe loader builds it."""
        constructor = self.constructor
        try:
            return constructor.construct_object(node)
        except yaml.YAMLError as exc:
            self.fail(node, field, f"invalid value: {' '.join(str(exc).split())}")
        except (ValueError, TypeError, OverflowError) as exc:
            # The constructor's own conversions (timestamps, base64) raise plain errors.
            self.fail(node, field, f"invalid value: {exc}")
        finally:
            constructor.constructed_objects = {}
