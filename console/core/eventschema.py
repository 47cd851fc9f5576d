"""The ``--json`` event stream as a contract: its JSON Schema and its Markdown page.

Both are derived from the event dataclasses in :mod:`console.core.events` (names,
types, defaults, docstrings, and the comment written after a field), so the
published description cannot drift from what the engine emits: ``docs/events.md`` is
generated from :func:`events_markdown` and a test fails when the two differ.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from typing import Any

from console.core import events as ev

SCHEMA_ID = "https://rolldeck.dev/schemas/events.schema.json"


_LAYOUT = (tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)


def field_comments(cls: type) -> dict[str, str]:
    """``name -> comment`` for fields written ``name: type = default  # comment``
    (or with the comment on the line(s) just above the field)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    line_of_name: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            name = line_of_name.get(tok.start[0])
            if name is not None:
                out[name] = text
            else:
                pending.append(text)
        elif tok.type == tokenize.NAME and tok.start[1] == 4:  # a field at class level
            line_of_name[tok.start[0]] = tok.string
            if pending:
                out.setdefault(tok.string, " ".join(pending))
            pending = []
        elif tok.type not in _LAYOUT and tok.start[1] == 0:
            pending = []
    return out


# What a field name means wherever no comment in events.py says more: the words for
# names many events share, so the page and the schema explain every field.
COMMON_MEANINGS = {
    "host": "the host's inventory name",
    "hosts": "host names",
    "rollout_id": "the rollout's id (the journal is <state dir>/<id>.jsonl)",
    "service": "the spec's service",
    "version": "a version, as read or as the spec writes it",
    "operator": "who, as given with --operator (asserted, not checked)",
    "spec_path": "the spec file",
    "spec_hash": "sha256 of the spec text",
    "spec_text": "the spec as read (secret values masked)",
    "inventory_path": "the inventory file or directory",
    "batches": "host names per batch, in order",
    "settings": "the effective settings (batch sizes, budget, gates, signals)",
    "reason": "why, in words",
    "state": "the new state",
    "outcome": "how the rollout ended",
    "exit_code": "an exit code",
    "index": "the batch, 0-based",
    "total": "the number of batches",
    "succeeded": "hosts that ended healthy",
    "failed": "hosts that failed",
    "rollback": "true while rolling back",
    "after_batch": "the batch (0-based) the gate follows",
    "gate": "the gate's kind",
    "until": "when it gives up (wall clock), or null",
    "on_timeout": "what its timeout does",
    "step": "the step's name",
    "lines": "text lines, oldest first",
    "stream": "stdout or stderr",
    "status": "how it ended",
    "duration": "seconds",
    "output_tail": "the last lines of its output (secrets masked)",
    "message": "what happened, in words",
    "numbers": "the figures behind it (counts, rates, thresholds)",
    "detail": "more, in words",
    "ok": "it passed",
    "error": "why not, in words",
    "reachable": "an SSH connection was made",
    "role": "previous (before any change), current (re-read) or new (after deploy)",
    "args": "the command's arguments",
    "accepted": "the engine carried it out (false: refused, see detail)",
    "errors": "errors counted",
    "requests": "requests counted, or null in log-line mode",
    "window": "the window, seconds",
    "load1": "1-minute load average",
    "mem_used_pct": "memory in use, percent",
    "disk_used_pct": "disk in use, percent",
    "p_value": "the test's p-value, or null without enough data",
    "test": "the statistical test used",
    "scenario": "the drill's scenario",
    "seed": "the drill's seed",
    "target_version": "the version the drill deployed",
    "output": "its output's tail",
}


def _field_comments(cls: type) -> dict[str, str]:
    names = {f.name for f in dataclasses.fields(cls)}
    own = {k: v for k, v in field_comments(cls).items() if k in names and v}
    return {
        n: own.get(n) or COMMON_MEANINGS[n] for n in names if own.get(n) or n in COMMON_MEANINGS
    }


def _type_schema(tp: Any) -> dict[str, Any]:
    """JSON Schema for one field's Python type, as :func:`events.to_json` writes it."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "string", "enum": [m.value for m in tp]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is type(None):
        return {"type": "null"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0])}
        return {
            "type": "array",
            "items": [_type_schema(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    raise TypeError(f"no JSON form for {tp!r}")  # a new field type: teach this table


def _type_words(tp: Any) -> str:
    """A short human spelling of a field's type for the Markdown page."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return "any"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and origin is None:
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            tp.__name__, tp.__name__
        )
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_words(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_words(args[0])}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_words(args[0])}"
        return "[" + ", ".join(_type_words(a) for a in args) + "]"
    if origin is dict:
        return f"object of {_type_words(args[1])}"
    return str(tp)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    return value


def _doc(cls: type) -> str:
    own = cls.__dict__.get("__doc__")
    if not own or own.startswith(cls.__name__ + "("):  # dataclass's made-up signature
        return ""
    return " ".join(inspect.cleandoc(own).split())


def _summary(cls: type) -> str:
    """The docstring's first sentence."""
    return re.split(r"(?<!e\.g)(?<!i\.e)\.(?:\s|$)", _doc(cls), maxsplit=1)[0]


def _durable(cls: type[ev.Event]) -> str:
    value = inspect.getattr_static(cls, "durable")
    if isinstance(value, property):
        return "when `changed`"  # HealthSample: a repeated watch probe is streamed only
    return "yes" if value else "no"


def header_schema() -> dict[str, Any]:
    return {
        "title": "header",
        "description": "The first line of every --json output: the stream's format number "
        "and the rolldeck version that wrote it.",
        "type": "object",
        "properties": {
            "kind": {"const": "header"},
            "format": {"const": ev.STREAM_FORMAT},
            "rolldeck": {"type": "string", "examples": [ev.stream_header()["rolldeck"]]},
        },
        "required": ["kind", "format", "rolldeck"],
    }


def event_schema(cls: type[ev.Event]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    props: dict[str, Any] = {"kind": {"const": cls.kind}}
    required = ["kind"]
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        if f.name == "ts":
            prop["description"] = "wall-clock time, seconds since the epoch"
        elif f.name in comments:
            prop["description"] = comments[f.name]
        default = _default(f)
        if default is dataclasses.MISSING or f.name == "ts":
            required.append(f.name)
        else:
            prop["default"] = _json_default(default)
        props[f.name] = prop
    return {
        "title": cls.kind,
        "description": _doc(cls) or cls.__name__,
        "type": "object",
        "properties": props,
        "required": required,
    }


def stream_schema() -> dict[str, Any]:
    """JSON Schema (draft-07) for ONE line of the ``--json`` stream. Unknown kinds and
    fields are allowed: a reader must ignore what it does not know (the format number
    changes only when a field changes meaning or goes away)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "rolldeck --json stream line",
        "description": "One line of `rolldeck run|drill|attach|show --json`: the header "
        f"first (format {ev.STREAM_FORMAT}), then one object per event, told apart by kind.",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"type": "string"}},
        "definitions": {
            "header": header_schema(),
            **{cls.kind: event_schema(cls) for cls in ev.EVENT_TYPES.values()},
        },
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"$ref": f"#/definitions/{kind}"},
            }
            for kind in ("header", *ev.EVENT_TYPES)
        ],
    }


def events_markdown() -> str:
    """``docs/events.md``: every event kind and field, generated (``python -m
    console.docgen``); tests/test_events_contract.py fails when it drifts."""
    head = ev.stream_header()
    out = [
        "# The event stream (`--json`)",
        "",
        "<!-- Generated from console/core/events.py by `python -m console.docgen`; "
        "do not edit. -->",
        "",
        "`rolldeck run --json` (and `resume`, `rollback`, `demo`, `drill`, `attach --json`)",
        "writes one JSON object per line. `rolldeck show --json` writes the header line,",
        "then the rollout's timeline as one line. The journal",
        "(`<state dir>/<rollout id>.jsonl`) holds the same objects, durable events only.",
        "",
        "The first line is the header:",
        "",
        "```json",
        json.dumps(head, separators=(", ", ": ")),
        "```",
        "",
        f"`format` is {ev.STREAM_FORMAT}. It changes only when an existing field changes meaning",
        "or is removed. New kinds and new fields are additions: a reader must ignore the",
        "kinds and fields it does not know. `rolldeck schema events` prints a JSON Schema",
        "(draft-07) for one line.",
        "",
        "Every event has `kind` and `ts` (wall-clock seconds since the epoch). *Durable*",
        "events are journaled (fsync'd) before anyone sees them. Ephemeral ones",
        "(live output, log lines, samples) are streamed only.",
        "",
        "## Kinds",
        "",
        "| kind | durable | what |",
        "|---|---|---|",
    ]
    for cls in ev.EVENT_TYPES.values():
        what = _summary(cls).replace("|", "\\|")
        out.append(f"| [`{cls.kind}`](#{cls.kind}) | {_durable(cls)} | {what} |")
    for cls in ev.EVENT_TYPES.values():
        hints = typing.get_type_hints(cls)
        comments = _field_comments(cls)
        out += ["", f"## {cls.kind}", ""]
        if _doc(cls):
            out += [_doc(cls), ""]
        out += [
            f"Class `{cls.__name__}`; durable: {_durable(cls)}.",
            "",
            "| field | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for f in dataclasses.fields(cls):
            if f.name == "ts":
                continue
            default = _default(f)
            shown = (
                "required"
                if default is dataclasses.MISSING
                else f"`{_compact(_json_default(default))}`"
            )
            meaning = comments.get(f.name, "").replace("|", "\\|")
            out.append(f"| `{f.name}` | {_type_words(hints[f.name])} | {shown} | {meaning} |")
    return "\n".join(out) + "\n"


def _compact(value: Any) -> str:
    return json.dumps(value)
