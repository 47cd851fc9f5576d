"""The ``--json`` event stream as a contract: the header line, docs/events.md generated
from the event classes (and failing when they drift), and `rolldeck schema events`
validating every line a real run writes."""

from __future__ import annotations

import dataclasses
import io
import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from console import __version__
from console.cli import main as cli_main
from console.core import events as ev
from console.core.eventschema import events_markdown, field_comments, stream_schema
from console.docgen import DOCS, PAGES, drifted
from console.headless import run_headless
from tests.test_engine_helpers import journal_in, make_engine, run_engine, spec_from

VALIDATOR = jsonschema.Draft7Validator(stream_schema())


def test_docs_match_the_code() -> None:
    """docs/events.md and docs/spec.md are what `python -m console.docgen` writes;
    after changing an event class or a spec key, run it."""
    assert drifted() == [], "run: python -m console.docgen"


def test_the_events_page_names_every_kind_and_field() -> None:
    page = (DOCS / "events.md").read_text()
    for cls in ev.EVENT_TYPES.values():
        assert f"## {cls.kind}\n" in page
        for f in dataclasses.fields(cls):
            if f.name != "ts":
                assert f"| `{f.name}` |" in page.split(f"## {cls.kind}\n")[1], (cls, f.name)


def test_a_new_field_would_show_as_drift(tmp_path: Path) -> None:
    """The check compares text: a page missing one field's row is drift."""
    page = events_markdown()
    (tmp_path / "events.md").write_text(page.replace("| `operator` |", "| `operatr` |", 1))
    for name, make in PAGES.items():
        if name != "events.md":
            (tmp_path / name).write_text(make())
    assert drifted(tmp_path) == ["events.md"]


def test_field_comments_come_from_the_source() -> None:
    assert field_comments(ev.GatePassed)["by"].startswith("'auto', 'bake'")
    assert "streamed, not journaled" in field_comments(ev.HealthSample)["changed"]


def _sample(tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, ev.enum.Enum):
        return next(iter(tp))
    if tp is bool:
        return True
    if tp in (int, float):
        return tp(1)
    if tp is str:
        return "x"
    if origin is tuple:
        return (_sample(args[0]),) if args[-1] is Ellipsis else tuple(_sample(a) for a in args)
    if origin is dict:
        return {"k": _sample(args[1])}
    if origin is list:
        return [_sample(args[0])]
    if args:  # a union: its first member
        return _sample(args[0])
    return "x"


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.kind)
def test_every_event_class_serialises_to_its_schema(cls: type[ev.Event]) -> None:
    hints = typing.get_type_hints(cls)
    full = cls(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls)})
    bare = cls(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls) if _required(f)})
    for event in (full, bare):
        line = json.loads(json.dumps(ev.to_json(event), default=str))
        errors = [e.message for e in VALIDATOR.iter_errors(line)]
        assert errors == [], errors
    wrong = {**ev.to_json(full), "ts": "yesterday"}
    assert list(VALIDATOR.iter_errors(wrong))


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


async def test_a_real_json_run_starts_with_the_header_and_every_line_validates() -> None:
    run = make_engine(spec_from(), 3, exit_when_paused=True)
    run.fake.on(r"^install", lines=["unpacking"])
    out = io.StringIO()
    await run_headless(run.engine, mode="json", out=out, handle_signals=False)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"kind": "header", "format": 1, "rolldeck": __version__}
    assert sum(line["kind"] == "header" for line in lines) == 1
    for line in lines:
        assert [e.message for e in VALIDATOR.iter_errors(line)] == [], line["kind"]
    assert {"rollout_started", "step_output", "rollout_finished"} <= {x["kind"] for x in lines}


async def test_show_json_starts_with_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_engine(spec_from(), 2, journal=journal_in(tmp_path, "shop-h1"), rollout_id="shop-h1")
    await run_engine(run)
    assert cli_main(["show", "shop-h1", "--state-dir", str(tmp_path), "--json"]) == 0
    header, doc, *rest = capsys.readouterr().out.splitlines()
    assert json.loads(header) == ev.stream_header() and rest == []
    assert json.loads(doc)["rollout"]["rollout_id"] == "shop-h1"


def test_schema_events_prints_the_stream_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["schema", "events"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(stream_schema()))
    assert set(printed["definitions"]) == {"header", *ev.EVENT_TYPES}


def test_an_unknown_kind_or_field_is_allowed_forward_compatible() -> None:
    assert list(VALIDATOR.iter_errors({"kind": "from_the_future", "x": 1})) == []
    line = {**ev.to_json(ev.Notice(message="hi")), "new_field": [1]}
    assert list(VALIDATOR.iter_errors(line)) == []
