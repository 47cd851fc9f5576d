"""Pure parts of the console: formatting, rows, dirty sets, chart, modal texts, themes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from console.core import events as ev
from console.core.events import HostState, RolloutState
from console.core.state import fold
from screens.changes import collect
from screens.chart import BASE_GLYPH, NEW_GLYPH, THRESHOLD_GLYPH, plot
from screens.confirm import abort_text, quit_text, rollback_text
from screens.describe import describe
from screens.format import (
    HOST_STATE_STYLE,
    estimate_left,
    format_duration,
    format_rate,
    sparkline,
    state_label,
)
from screens.rows import COLUMN_KEYS, COLUMNS, host_cells, matches, sort_key
from tests.fixtures.synthetic import STAGES, LoadStream, SyntheticRollout
from tests.test_tui_helpers import _private_config  # noqa: F401
from themes import SEMANTIC_VARIABLES, THEME_NAMES, THEMES
from themes.store import config_path, load_theme_choice, save_theme_choice


def test_every_state_has_symbol_word_and_colour_variable() -> None:
    symbols = set()
    for state in HostState:
        symbol, word, var = HOST_STATE_STYLE[state]
        assert symbol and word and var in SEMANTIC_VARIABLES
        symbols.add((symbol, word))
    assert len(symbols) == len(HostState), "two states would read the same without colour"


def test_every_theme_defines_every_semantic_variable() -> None:
    for theme in THEMES:
        missing = set(SEMANTIC_VARIABLES) - set(theme.variables)
        assert not missing, (theme.name, missing)
    assert len(THEME_NAMES) == 3 and THEME_NAMES[0] == "rolldeck-dark"


def test_sparkline_rate_duration() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([0.01], ceiling=0.02) == "▅"
    assert sparkline(range(20), width=4) == "▇▇██"  # 16..19 of 19
    assert format_rate(None) == "-"
    assert format_rate(0.0123) == "1.2%"
    assert format_rate(0.25) == "25%"
    assert format_rate(3.0, "per_min") == "3.0/m"
    assert format_duration(None) == "-"
    assert format_duration(42) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"


@pytest.mark.parametrize(
    ("stage", "word"),
    [
        ("running", "RUNNING"),
        ("gate", "WAITING AT GATE"),
        ("paused", "PAUSED"),
        ("rolling_back", "ROLLING BACK"),
        ("done", "SUCCEEDED"),
    ],
)
def test_header_state_words(stage: str, word: str) -> None:
    view = fold(SyntheticRollout(12).scenario(stage))
    assert state_label(view)[0] == word


def test_estimate_left_only_while_running() -> None:
    r = SyntheticRollout(12)
    view = fold(r.scenario("running"))
    left = estimate_left(view, r.t)
    assert left is not None and left > 0
    assert estimate_left(fold(SyntheticRollout(12).scenario("paused")), r.t) is None


def test_host_cells_and_filter_and_sort() -> None:
    view = fold(SyntheticRollout(24).scenario("running"))
    failed = view.hosts["web-04"]
    cells = host_cells(failed, view.version, 0.02, 40)
    assert len(cells) == len(COLUMNS)
    assert cells[1] == ("✖ FAILED", "host-failed")
    assert cells[-1][0].startswith("exit 1 in install") and cells[-1][1] == "host-failed"
    healthy = host_cells(view.hosts["web-02"], view.version, 0.02, 40)
    assert healthy[COLUMN_KEYS.index("version")] == ("2.4.1", "host-healthy")
    assert matches(failed, "web failed") and matches(failed, "B2") and not matches(failed, "api")
    order = {n: i for i, n in enumerate(view.hosts)}
    hosts = list(view.hosts.values())
    by_batch = sorted(hosts, key=sort_key("batch", False, order))
    assert by_batch[0].name == "web-01"
    assert sorted(hosts, key=sort_key("batch", True, order))[0].name == "web-04"
    assert sorted(hosts, key=sort_key("state", False, order))[0].name == "web-04"


def test_collect_marks_dirty_hosts_logs_and_timeline() -> None:
    events = [
        ev.LogLines(host="a", lines=("x", "y")),
        ev.ErrorRateSample(scope="b", rate=0.1, errors=1, requests=10, window=60),
        ev.ErrorRateSample(scope="cohort:new", rate=0.1, errors=1, requests=10, window=60),
        ev.HostStateChanged(host="c", state=HostState.RUNNING),
        ev.HostStateChanged(host="d", state=HostState.FAILED, detail="exit 1"),
        ev.OperatorCommand(command="pause", operator="bob"),
    ]
    ch = collect(events)
    assert ch.hosts == {"a", "b", "c", "d"}
    assert ch.log_lines == [("a", "x"), ("a", "y")]
    assert ch.rates and ch.header
    assert [type(e).__name__ for e in ch.timeline] == ["HostStateChanged", "OperatorCommand"]
    many = collect([ev.LogLines(host="a", lines=tuple(map(str, range(50))))], log_cap=10)
    assert [line for _, line in many.log_lines] == [str(i) for i in range(40, 50)]
    assert not collect([])


def test_timeline_words_name_the_operator() -> None:
    _, text, _ = describe(ev.OperatorCommand(command="pause", operator="alice", reason="web-04"))
    assert text == "pause by alice (web-04)"
    _, text, _ = describe(ev.BatchStarted(index=1, total=4, hosts=("a", "b")))
    assert text == "batch 2/4 started: 2 hosts (a, b)"
    _, text, _ = describe(
        ev.Alert(level="critical", rule="error_rate.max", message="3% > 2%", action="pause")
    )
    assert text == "ALERT [critical] error_rate.max: 3% > 2% -> pause"


def test_chart_draws_series_and_threshold_with_distinct_glyphs() -> None:
    grid, top = plot([0.01, 0.03], [0.01, 0.01], 0.02, width=6, height=5)
    assert top == pytest.approx(0.03)
    flat = ["".join(c for c, _ in row) for row in grid]
    assert any(THRESHOLD_GLYPH * 4 in row for row in flat)
    assert flat[0].endswith(NEW_GLYPH)  # the newest new-version sample is the max
    assert any(BASE_GLYPH in row for row in flat)
    assert all(len(row) == 6 for row in grid)


def test_modal_texts_say_exactly_what_happens() -> None:
    view = fold(SyntheticRollout(24).scenario("running"))
    title, body = rollback_text(view)
    changed = view.changed_hosts()
    assert title == f"Roll back {len(changed)} hosts?"
    assert "back to 2.4.0: 7 hosts" in body and "Untouched hosts are not touched" in body
    title, body = abort_text(view)
    assert "in flight, will be interrupted: 2" in body and "web-06, web-07" in body
    assert "untouched: 17" in body and "no rollback" in body
    _, body = quit_text(view, view.rollout_id)
    assert f"rolldeck resume {view.rollout_id}" in body and "2 hosts in flight" in body
    empty = fold(SyntheticRollout(4).started())
    assert "nothing" in rollback_text(empty)[1]


def test_theme_store_roundtrip_mode_and_bad_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert load_theme_choice(THEME_NAMES) == (None, None)
    path = save_theme_choice("rolldeck-light")
    assert path == config_path() and path.is_relative_to(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert load_theme_choice(THEME_NAMES) == ("rolldeck-light", None)
    path.write_text(json.dumps({"theme": "neon"}))
    theme, problem = load_theme_choice(THEME_NAMES)
    assert theme is None and problem is not None and "neon" in problem
    path.write_text("[")
    theme, problem = load_theme_choice(THEME_NAMES)
    assert theme is None and problem is not None


def test_synthetic_stages_and_load_stream_rate() -> None:
    for stage in STAGES:
        view = fold(SyntheticRollout(12).scenario(stage))
        assert len(view.hosts) == 12
    assert fold(SyntheticRollout(12).scenario("done")).state == RolloutState.DONE
    stream = LoadStream(SyntheticRollout(100), lines_per_s=1000, lines_per_event=5)
    events = [e for _ in range(10) for e in stream.step(0.1)]
    lines = sum(len(e.lines) for e in events if isinstance(e, ev.LogLines))
    assert lines == 1000
    with pytest.raises(ValueError):
        SyntheticRollout(4).scenario("nope")


def test_last_log_cell_drops_timestamp_and_syslog_tag() -> None:
    view = fold(SyntheticRollout(4).started())
    h = view.hosts["web-01"]
    h.last_log = "2026-11-26T07:50:20.165Z INFO  checkout-api[36061]: POST /api/checkout 200"
    assert host_cells(h, view.version, None, 40)[-1] == ("INFO  POST /api/checkout 200", "muted")
    h.last_log = "ERROR upstream timeout after 3000ms path=/api/cart"
    assert host_cells(h, view.version, None, 20)[-1][0] == "ERROR upstream time…"


def test_parent_groups_are_shown_after_their_children() -> None:
    """The inventory sorts a host's groups by name (`eu` before `eu-west`): the view
    moves a group that contains another of the host's groups after it."""
    from console.core import events as ev
    from console.core.state import RolloutView

    hosts = {
        "web-01": {"groups": ["eu", "eu-west", "web"]},
        "web-02": {"groups": ["eu", "eu-central", "web"]},
        "api-01": {"groups": ["api", "eu", "eu-west"]},
        "api-02": {"groups": ["api", "eu", "eu-central"]},
        "solo": {"groups": ["a", "b"]},  # same members: neither is a parent
    }
    view = RolloutView()
    view.apply(
        ev.RolloutStarted(
            rollout_id="r",
            service="s",
            version="2",
            operator="o",
            spec_path="s.yaml",
            spec_hash="h",
            spec_text="",
            inventory_path="i.yaml",
            hosts=hosts,
            batches=(tuple(hosts),),
        )
    )
    assert view.hosts["web-01"].groups == ("eu-west", "web", "eu")
    assert view.hosts["web-02"].groups == ("eu-central", "web", "eu")
    assert view.hosts["api-01"].groups == ("api", "eu-west", "eu")
    assert view.hosts["solo"].groups == ("a", "b")


async def test_timeline_wraps_under_its_text_and_rewraps_on_resize() -> None:
    from screens.dashboard import DashboardScreen
    from screens.widgets.panels import Timeline
    from tests.test_tui_helpers import make_app
    from tests.waiting import settled

    app = make_app("rolling_back")[0]
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, DashboardScreen)
        t = app.screen.query_one(Timeline)
        narrow = list(t.lines)
        assert t._wrap_at > 0 and all(len(line) <= t._wrap_at for line in narrow)
        assert any(line.startswith(" " * 11) and line.strip() for line in narrow)
        await pilot.resize_terminal(200, 40)
        await settled(pilot, DashboardScreen)
        wide = list(t.lines)
        assert t._wrap_at > 60 and len(wide) < len(narrow)
        # the same words, in the same order, whatever the width
        assert " ".join(narrow).split() == " ".join(wide).split()
