"""One describer, one glyph table (issue 10, finding 4): an event reads the same in
headless output, `rolldeck show` and the console's timeline, and a glyph means one
thing in every table."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import json
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App, ComposeResult
from textual.screen import Screen

from console.core import events as ev
from console.core.describe import (
    GLYPHS,
    HOST_GLYPHS,
    HOST_WORDS,
    OUTCOME_GLYPHS,
    OUTCOME_WORDS,
    ROLLOUT_GLYPHS,
    ROLLOUT_WORDS,
    Description,
    Severity,
    describe,
    format_instant,
)
from console.core.events import HostState, Outcome, RolloutState
from console.core.state import fold
from console.headless import describe as headless_words
from console.headless import render_view
from console.store.history import render_timeline, timeline
from console.store.journal import journal_path
from screens.changes import collect
from screens.format import HOST_STATE_STYLE
from screens.rows import host_cells
from screens.widgets.panels import Timeline
from tests.waiting import settled

T0 = 1_790_000_000.0  # a fixed instant, so the words are fixed too


# -- every event kind has a description ------------------------------------------------


def _sample(annotation: Any) -> Any:
    """A plausible value of a field's type, to build any event without knowing it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is tuple:
        return ()
    if origin is dict or annotation is dict:
        return {}
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return list(annotation)[-1]
    return {str: "x", int: 1, float: 1.5, bool: False}[annotation]


def _instance(cls: type[ev.Event]) -> ev.Event:
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _sample(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**kwargs)


def _event_classes() -> list[type[ev.Event]]:
    found = [
        obj
        for obj in vars(ev).values()
        if inspect.isclass(obj) and issubclass(obj, ev.Event) and obj is not ev.Event
    ]
    assert set(found) == set(ev.EVENT_TYPES.values()), "an event class is not in EVENT_TYPES"
    return sorted(found, key=lambda c: c.kind)


@pytest.mark.parametrize("cls", _event_classes(), ids=lambda c: c.kind)
def test_every_event_kind_has_a_description(cls: type[ev.Event]) -> None:
    said = describe(_instance(cls))
    assert isinstance(said, Description)
    text = said.text()
    assert text and text != cls.kind.replace("_", " "), "fell through to the fallback"
    assert "\n" not in text
    assert said.glyph in GLYPHS.values()
    assert isinstance(said.severity, Severity)
    host = getattr(_instance(cls), "host", None)
    if isinstance(host, str):
        assert said.host == host


def test_every_state_and_outcome_reads_with_its_own_glyph_and_words() -> None:
    for state in HostState:
        said = describe(ev.HostStateChanged(host="h1", state=state))
        assert said.glyph == HOST_GLYPHS[state]
        assert said.text() == f"h1 {HOST_WORDS[state]}"
    for rstate in RolloutState:
        said = describe(ev.RolloutStateChanged(state=rstate))
        assert said.glyph == ROLLOUT_GLYPHS[rstate]
        assert said.text() == f"rollout {ROLLOUT_WORDS[rstate]}"
    for outcome in Outcome:
        said = describe(ev.RolloutFinished(outcome=outcome, exit_code=0))
        assert said.glyph == OUTCOME_GLYPHS[outcome]
        assert OUTCOME_WORDS[outcome] in said.text()


# -- one glyph, one meaning --------------------------------------------------------------


def test_every_host_state_has_exactly_one_glyph_and_none_is_shared() -> None:
    assert set(HOST_GLYPHS) == set(HostState)
    assert len(set(HOST_GLYPHS.values())) == len(HostState)
    # the console's host table and detail screen use the same glyph
    for state in HostState:
        assert HOST_STATE_STYLE[state][0] == HOST_GLYPHS[state]


def test_a_glyph_means_one_thing_in_every_table() -> None:
    assert len(set(GLYPHS.values())) == len(GLYPHS), "two meanings share a glyph"
    meaning: dict[str, str] = {}
    tables: list[tuple[dict[Any, str], dict[Any, str]]] = [
        (dict(HOST_GLYPHS), dict(HOST_WORDS)),
        (dict(ROLLOUT_GLYPHS), dict(ROLLOUT_WORDS)),
        (dict(OUTCOME_GLYPHS), dict(OUTCOME_WORDS)),
    ]
    for glyphs, words in tables:
        for member, glyph in glyphs.items():
            assert meaning.setdefault(glyph, words[member]) == words[member], glyph
    assert set(ROLLOUT_GLYPHS) == set(RolloutState)
    assert set(OUTCOME_GLYPHS) == set(Outcome)
    assert HOST_GLYPHS[HostState.ROLLING_BACK] == ROLLOUT_GLYPHS[RolloutState.ROLLING_BACK]
    assert HOST_GLYPHS[HostState.ROLLED_BACK] == OUTCOME_GLYPHS[Outcome.ROLLED_BACK]


def _view_with_every_state() -> Any:
    names = {state: f"h-{state.value}" for state in HostState}
    started = ev.RolloutStarted(
        ts=T0, rollout_id="r1", service="shop", version="2.0", operator="amy",
        spec_path="s.yaml", spec_hash="0", spec_text="", inventory_path="i.yaml",
        batches=(tuple(names.values()),), hosts={n: {} for n in names.values()},
    )  # fmt: skip
    changes = [
        ev.HostStateChanged(ts=T0 + 1, host=name, state=state) for state, name in names.items()
    ]
    return names, fold([started, *changes])


def test_headless_and_console_host_tables_show_the_same_glyph_per_state() -> None:
    names, view = _view_with_every_state()
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render_view(view))
    headless: dict[str, str] = {}
    for line in out.getvalue().splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 2 and cells[1] in view.hosts:
            headless[cells[1]] = cells[0]
    for state, name in names.items():
        console_cell = host_cells(view.hosts[name], view.version, None)[1][0]
        assert headless[name] == console_cell.split()[0], state
    assert len(set(headless.values())) == len(HostState), "two states share a glyph"
    assert all(headless[name] == HOST_GLYPHS[state] for state, name in names.items())


# -- the same words in headless output, `show` and the console's timeline -------------------


@pytest.fixture
def far_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A zone where local time is not UTC, so a deadline's zone shows in its words."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _shared_events() -> list[ev.Event]:
    """Events that headless, `show` and the console's timeline all list."""
    t = T0
    return [
        ev.RolloutStarted(
            ts=t, rollout_id="shop-1", service="shop", version="2.0", operator="amy",
            spec_path="s.yaml", spec_hash="0", spec_text="", inventory_path="i.yaml",
            batches=(("h1",), ("h2", "h3")), hosts={"h1": {}, "h2": {}, "h3": {}},
        ),
        ev.PreflightResult(ts=t + 1, host="h3", reachable=False, ok=False, error="timed out"),
        ev.RolloutStateChanged(ts=t + 2, state=RolloutState.RUNNING),
        ev.BatchStarted(ts=t + 3, index=0, total=2, hosts=("h1",)),
        ev.HostStateChanged(ts=t + 4, host="h1", state=HostState.FAILED, detail="exit 1 in setup"),
        ev.BatchFinished(ts=t + 5, index=0, succeeded=(), failed=("h1",)),
        ev.Alert(ts=t + 6, level="critical", rule="max_failures", message="1 failed of 1",
                 action="pause", numbers={"failed": 1}),
        ev.RolloutStateChanged(ts=t + 6, state=RolloutState.PAUSED, reason="max_failures"),
        ev.OperatorCommand(ts=t + 7, command="skip", operator="bob", reason="bad disk",
                           args={"host": "h1"}),
        ev.OperatorCommand(ts=t + 8, command="retry", operator="bob", accepted=False,
                           detail="not failed", args={"host": "h2"}),
        ev.PlanChanged(ts=t + 9, batches=(("h1",), ("h2",), ("h3",)), reason="set_batch_size 1"),
        ev.GateWaiting(ts=t + 10, after_batch=0, gate="bake", until=t + 130),
        ev.GatePassed(ts=t + 130, after_batch=0, by="bake"),
        ev.GateWaiting(ts=t + 131, after_batch=1, gate="manual", until=t + 3731,
                       on_timeout="abort"),
        ev.GatePassed(ts=t + 140, after_batch=1, by="operator:carol"),
        ev.CanaryAnalysis(ts=t + 150, verdict="fail", test="mann-whitney", p_value=0.0123),
        ev.Notice(ts=t + 160, message="lock broken by dave", host="h2"),
        ev.HostStateChanged(ts=t + 170, host="h2", state=HostState.ROLLBACK_FAILED,
                            detail="exit 2 in activate"),
        ev.RolloutStateChanged(ts=t + 180, state=RolloutState.ROLLING_BACK, reason="operator"),
        ev.RolloutFinished(ts=t + 190, outcome=Outcome.ROLLED_BACK, exit_code=4,
                           reason="rolled back by bob"),
    ]  # fmt: skip


def _write_journal(tmp: Path, events: list[ev.Event]) -> Path:
    path = journal_path(tmp, "shop-1")
    head = {"kind": "journal", "format": 1, "rollout_id": "shop-1", "pid": None}
    lines = [head, *(ev.to_json(e) for e in events)]
    path.write_text("".join(json.dumps(x, default=str) + "\n" for x in lines))
    return path


class _TimelineApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Timeline(id="timeline")


async def _console_lines(events: list[ev.Event]) -> list[str]:
    """The console's timeline panel after these events, each line without its clock
    stamp and glyph (the stamp is the console's own time format)."""
    app = _TimelineApp()
    async with app.run_test(size=(240, 60)) as pilot:
        panel = app.query_one(Timeline)
        panel.add(collect(events).timeline)  # what the dashboard hands it per frame
        await settled(pilot, Screen, events=False)  # no dashboard here: Textual at rest
        return [str(line).split(" ", 2)[2] for line in panel.lines]


async def _three_ways(
    tmp: Path, events: list[ev.Event]
) -> tuple[list[str | None], list[str], list[str]]:
    """The words of ``events`` as headless prints them, as `show` lists them (from a
    journal) and as the console's timeline panel shows them."""
    headless = [headless_words(e) for e in events]
    entries = timeline(_write_journal(tmp, events), owners={}).entries
    return headless, [e.text for e in entries], await _console_lines(events)


async def test_one_event_reads_the_same_in_headless_show_and_console(
    tmp_path: Path, far_zone: None
) -> None:
    events = _shared_events()
    headless, show, console = await _three_ways(tmp_path, events)
    assert headless == show
    assert console == show
    # and they are the one describer's words, which `show` prints as they are
    said = [describe(e).text() for e in events]
    assert show == said
    shown = render_timeline(timeline(journal_path(tmp_path, "shop-1"), owners={}))
    for words in said:
        assert words in shown


async def test_a_gate_deadline_is_one_instant_in_one_zone_convention(
    tmp_path: Path, far_zone: None
) -> None:
    until = T0 + 130
    started, gate = _shared_events()[0], ev.GateWaiting(ts=T0, after_batch=0, gate="bake",
                                                         until=until)  # fmt: skip
    headless, show, console = await _three_ways(tmp_path, [started, gate])
    # local time with its UTC offset (Kolkata is +05:30): the same in all three
    stamp = time.strftime("%H:%M:%S", time.localtime(until)) + "+05:30"
    assert headless[1] == show[1] == console[1]
    assert show[1].endswith(f"until {stamp}")
    assert format_instant(until) == stamp
    assert describe(gate).times == (until,)  # the value, for a front end that formats it
    entries = timeline(journal_path(tmp_path, "shop-1"), owners={}).entries
    assert entries[1].numbers["until"] == until  # and in `show --json`


async def test_done_is_done_everywhere(tmp_path: Path) -> None:
    started = _shared_events()[0]
    finished = ev.BatchFinished(ts=T0 + 1, index=1, succeeded=("h1", "h2"), failed=())
    headless, show, console = await _three_ways(tmp_path, [started, finished])
    assert headless[1] == show[1] == console[1] == "batch 2 done: 2 ok, 0 failed"


def test_rolling_back_and_rolled_back_never_share_a_glyph_or_words() -> None:
    rolled = ev.HostStateChanged(host="h1", state=HostState.ROLLED_BACK)
    rolling = ev.HostStateChanged(host="h1", state=HostState.ROLLING_BACK)
    assert describe(rolled).glyph != describe(rolling).glyph
    assert (describe(rolled).text(), describe(rolling).text()) == (
        "h1 rolled back",
        "h1 rolling back",
    )
