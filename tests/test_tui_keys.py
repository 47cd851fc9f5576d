"""Pilot tests: every key binding and screen, asserting on state and on the Commands the
controller received (a recording controller answers on the bus like an engine).

Assertions follow a wait on a condition (tests/waiting.py), never a fixed pause:
``settled`` for "events folded and drawn, this screen up, layout at rest", ``wait_until``
for anything else. Their timeouts only matter when something is broken."""

from __future__ import annotations

import json
import os
import stat

from console.app import RolldeckApp, exit_code
from console.core.bus import EventBus
from console.core.commands import Command
from console.core.events import HostState, LogLines, Outcome, RolloutFinished, RolloutState
from screens.confirm import ConfirmScreen
from screens.dashboard import DashboardScreen
from screens.help import HelpScreen
from screens.host_detail import HostDetailScreen
from screens.messages import LogSourceChanged
from screens.widgets.host_table import HostTable
from screens.widgets.stream_log import StreamLog
from tests.test_tui_helpers import SIZE, _private_config, make_app  # noqa: F401
from tests.waiting import settled, wait_until


def table(app: RolldeckApp) -> HostTable:
    return app.screen.query_one(HostTable)


async def test_pause_is_instant_and_resume_follows() -> None:
    app, ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("p")
        assert ctl.names() == ["pause"]
        await settled(pilot)
        assert isinstance(app.screen, DashboardScreen), "pause must not ask"
        assert app.view.state == RolloutState.PAUSED
        await pilot.press("p")
        assert ctl.names() == ["pause", "resume"]
        await settled(pilot)
        assert app.view.state == RolloutState.RUNNING


async def test_continue_only_at_a_manual_gate() -> None:
    app, ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("c")
        await settled(pilot, DashboardScreen)
        assert ctl.commands == []
    app, ctl, _bus, _r = make_app("gate")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("c")
        assert ctl.names() == ["continue"]


async def test_rollback_asks_and_names_hosts_and_versions() -> None:
    app, ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("r")
        await settled(pilot, ConfirmScreen)
        assert isinstance(app.screen, ConfirmScreen)
        body = str(app.screen.body)
        changed = app.view.changed_hosts()
        assert f"{len(changed)} host" in app.screen.title_text
        assert "back to 2.4.0" in body
        for name in changed:
            assert name in body
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("enter")  # Enter on the focused button cancels
        await settled(pilot, DashboardScreen)
        assert ctl.commands == []
        await pilot.press("r")
        await settled(pilot, ConfirmScreen)
        await pilot.press("y")
        assert ctl.names() == ["rollback"]
        await settled(pilot)
        assert app.view.state == RolloutState.ROLLING_BACK


async def test_abort_asks_and_escape_cancels() -> None:
    app, ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("a")
        await settled(pilot, ConfirmScreen)
        assert isinstance(app.screen, ConfirmScreen)
        assert "in flight, will be interrupted: 2" in app.screen.body
        await pilot.press("p")  # control keys are inert under a modal
        await pilot.press("escape")
        await settled(pilot, DashboardScreen)
        assert ctl.commands == []
        await pilot.press("a")
        await settled(pilot, ConfirmScreen)
        await pilot.click("#confirm")
        await wait_until(lambda: ctl.commands, what="the abort command")
        assert ctl.names() == ["abort"]


async def test_enter_opens_host_detail_with_steps_and_retry_skip() -> None:
    app, ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        t = table(app)
        t.select_host("web-04")  # the host whose install failed
        await pilot.press("enter")
        await settled(pilot, HostDetailScreen)
        screen = app.screen
        assert isinstance(screen, HostDetailScreen) and screen.host == "web-04"
        steps = screen.query_one("#steps")
        assert steps.row_count == 2  # drain ok, install failed
        out = screen.query_one("#step-output", StreamLog)
        assert any("checksum mismatch" in line for line in out.lines)
        await pilot.press("R")
        await pilot.press("S")
        assert [(c.name, c.args) for c in ctl.commands] == [
            ("retry", {"host": "web-04"}),
            ("skip", {"host": "web-04"}),
        ]
        await settled(pilot)
        assert app.view.hosts["web-04"].state == HostState.SKIPPED
        await pilot.press("escape")
        await settled(pilot, DashboardScreen)


async def test_host_detail_log_search_and_live_lines() -> None:
    app, _ctl, bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        table(app).select_host("web-02")
        await pilot.press("enter")
        await settled(pilot, HostDetailScreen)
        screen = app.screen
        assert isinstance(screen, HostDetailScreen)
        log = screen.query_one("#host-log", StreamLog)
        before = len(log.lines)
        bus.publish(LogLines(host="web-02", lines=("INFO live one", "ERROR live two")))
        bus.publish(LogLines(host="web-03", lines=("INFO not mine",)))
        await settled(pilot, HostDetailScreen)
        assert len(log.lines) == before + 2
        await pilot.press("slash", *"error")
        await settled(pilot, HostDetailScreen)
        assert screen.query_text == "error"
        assert log.lines and all("error" in line.lower() for line in log.lines)
        await pilot.press("enter")
        await settled(pilot, HostDetailScreen)
        assert screen.query_one("#search").display  # search kept, box stays visible


async def test_log_source_toggle_follows_the_cursor() -> None:
    messages: list[object] = []
    app, _ctl, bus, _r = make_app("running")
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await settled(pilot, DashboardScreen)
        dash = app.screen
        assert isinstance(dash, DashboardScreen)
        bus.publish(LogLines(host="web-05", lines=("from five",)))
        bus.publish(LogLines(host="web-06", lines=("from six",)))
        await settled(pilot)
        log = dash.query_one("#log", StreamLog)
        assert log.lines[-2:] == ["web-05    │ from five", "web-06    │ from six"]
        table(app).select_host("web-05")
        await pilot.press("l")
        await settled(pilot)
        assert dash.log_host == "web-05"
        assert log.lines[-1] == "from five" and "from six" not in log.lines
        await pilot.press("down")
        await settled(pilot)
        assert dash.log_host == table(app).cursor_host() != "web-05"
        await pilot.press("l")
        await settled(pilot)
        assert dash.log_host is None
        sources = [m.host for m in messages if isinstance(m, LogSourceChanged)]
        assert sources[0] == "web-05" and sources[-1] is None


async def test_log_follow_stops_when_scrolled_up() -> None:
    app, _ctl, bus, _r = make_app("running", hosts=6)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        dash = app.screen
        log = dash.query_one("#log", StreamLog)
        for i in range(60):
            bus.publish(LogLines(host="web-01", lines=(f"line {i}",)))
        await settled(pilot)
        assert log.following and log.is_vertical_scroll_end
        log.scroll_to(y=0, animate=False, immediate=True)
        await settled(pilot)
        assert log.scroll_y == 0
        bus.publish(LogLines(host="web-01", lines=("late",)))
        await settled(pilot)
        assert log.scroll_y == 0, "a user who scrolled up is not dragged down"
        assert "scrolled back" in str(log.border_title)
        await pilot.press("g")
        await settled(pilot)
        assert log.is_vertical_scroll_end


async def test_filter_failing_first_and_sort() -> None:
    app, _ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        t = table(app)
        assert t.row_count == 24
        await pilot.press("f")
        assert t.shown_hosts[0] == "web-04" and t.cursor_host() == "web-04"
        await pilot.press("f")
        assert t.shown_hosts[0] == "web-01"
        await pilot.press("slash", *"api")
        assert t.row_count > 0 and all(h.startswith("api") for h in t.shown_hosts)
        await pilot.press("enter")
        assert t.has_focus
        await pilot.press("escape")
        assert t.row_count == 24
        await pilot.press("s")
        assert t.sort_mode == "name"
        assert t.shown_hosts == sorted(t.shown_hosts)
        await pilot.press("s")
        assert t.sort_mode == "state"
        assert t.shown_hosts[0] == "web-04"  # failed ranks first


async def test_table_rows_follow_events_without_rebuilds() -> None:
    app, _ctl, bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        t = table(app)
        from console.core.events import HostStateChanged

        bus.publish(
            HostStateChanged(host="api-09", state=HostState.FAILED, detail="exit 2 in drain")
        )
        await settled(pilot)
        cells = dict(
            zip([c.key for c in t._columns], [c for c in range(len(t._columns))], strict=True)
        )
        row = t._cells_for(app.view.hosts["api-09"])
        assert row[1][0] == "✖ FAILED" and row[1][1] == "host-failed"
        assert "exit 2 in drain" in row[-1][0]
        assert cells  # columns laid out
        await pilot.press("f")
        assert set(t.shown_hosts[:2]) == {"web-04", "api-09"}


async def test_theme_cycles_and_is_remembered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bus = EventBus()
    app = RolldeckApp(bus.subscribe(), _Null(), process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "rolldeck-dark"
        await pilot.press("t")
        assert app.theme == "rolldeck-light"
        await pilot.press("t")
        assert app.theme == "rolldeck-contrast"
    path = tmp_path / "config" / "rolldeck" / "console.json"
    assert json.loads(path.read_text())["theme"] == "rolldeck-contrast"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    app2 = RolldeckApp(bus.subscribe(), _Null(), process_stats=lambda: (0.0, 0.0))
    async with app2.run_test(size=SIZE):
        assert app2.theme == "rolldeck-contrast"


async def test_bad_theme_file_is_a_notification_not_a_crash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "config" / "rolldeck" / "console.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    app = RolldeckApp(EventBus().subscribe(), _Null(), process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        assert app.theme == "rolldeck-dark"
        await wait_until(
            lambda: any("ignored" in n.message for n in app._notifications),
            what="a notification that the theme file was ignored",
        )


async def test_help_lists_every_key_including_remapped() -> None:
    app, _ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        app.set_keymap({"pause": "P"})
        await pilot.press("question_mark")
        await settled(pilot, HelpScreen)
        assert isinstance(app.screen, HelpScreen)
        from screens.help import help_table

        tables = [r for r in help_table(app.screen.sections, app.screen.keymap).renderables]
        grids = [t for t in tables if hasattr(t, "columns")]
        keys = [str(c) for t in grids for c in t.columns[0]._cells]
        descriptions = [str(c) for t in grids for c in t.columns[1]._cells]
        for key in ("P", "c", "r", "a", "enter", "l", "/", "f", "t", "q", "R", "S", "?"):
            assert key in keys, key
        assert "Pause" in descriptions and "Retry" in descriptions
        await pilot.press("escape")
        await settled(pilot, DashboardScreen)
        await pilot.press("p")  # the old key no longer pauses
        await settled(pilot, DashboardScreen)
        assert _ctl.commands == []
        await pilot.press("P")
        assert _ctl.names() == ["pause"]


async def test_command_palette_offers_every_action() -> None:
    app, ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        names = {a.name for a in app.palette_actions(app.screen)}
        assert {"Pause", "Continue", "Rollback", "Abort", "Theme", "Help", "Quit"} <= names
        assert {"Detail", "Log", "Filter", "Failing", "Sort"} <= names
        action = next(a for a in app.palette_actions(app.screen) if a.name == "Pause")
        action.run()
        await wait_until(lambda: ctl.commands, what="the palette action to run")
        assert ctl.names() == ["pause"]


async def test_read_only_disables_control_keys_and_says_so() -> None:
    app, ctl, _bus, _r = make_app("running", read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        for key in ("p", "c", "r", "a"):
            await pilot.press(key)
        await settled(pilot, DashboardScreen)
        assert ctl.commands == []
        header = app.screen.query_one("#header")
        status = app.screen.query_one("#status")
        await wait_until(
            lambda: "control keys disabled" in str(status.render()),
            what="the status line (drawn after the first refresh)",
        )
        assert "READ-ONLY" in str(header.render())
        assert app.send(Command("pause")) is False
        assert "Pause" not in {a.name for a in app.palette_actions(app.screen)}
        table(app).select_host("web-04")
        await pilot.press("enter")
        await settled(pilot, HostDetailScreen)
        await pilot.press("R", "S")
        await settled(pilot, HostDetailScreen)
        assert ctl.commands == []
        await pilot.press("escape")
        await settled(pilot, DashboardScreen)
        await pilot.press("q")  # quitting an observer never pauses
        await wait_until(lambda: app.return_code is not None, what="the console to exit")
    assert ctl.commands == []


async def test_quit_running_pauses_first_then_exits() -> None:
    app, ctl, bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("q")
        await settled(pilot, ConfirmScreen)
        assert isinstance(app.screen, ConfirmScreen)
        assert "rolldeck resume 20250615-checkout-api-7f3a" in app.screen.body
        await pilot.press("y")
        assert ctl.names() == ["pause"] and ctl.commands[0].reason == "console quit"
        await settled(pilot)
        assert app.is_running, "two hosts are still moving: wait for them"
        for host in ("web-06", "web-07"):
            bus.publish(_healthy(host))
        await wait_until(
            lambda: app.return_code is not None, what="the console to exit once no host moves"
        )
    assert app.quit_paused and exit_code(app) == 6


async def test_quit_when_finished_does_not_ask() -> None:
    app, ctl, _bus, _r = make_app("done")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        await pilot.press("q")
        await wait_until(lambda: app.return_code is not None, what="the console to exit")
    assert ctl.commands == []
    assert exit_code(app) == 0


async def test_engine_runner_outcome_is_the_exit_code() -> None:
    bus = EventBus()

    async def runner() -> Outcome:
        bus.publish(RolloutFinished(outcome=Outcome.ROLLED_BACK, exit_code=4))
        return Outcome.ROLLED_BACK

    app = RolldeckApp(bus.subscribe(), _Null(), runner=runner, process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.engine_outcome is not None, what="the engine's outcome")
        await settled(pilot, DashboardScreen)
        assert app.engine_outcome == Outcome.ROLLED_BACK
        await pilot.press("q")
        await wait_until(lambda: app.return_code is not None, what="the console to exit")
    assert exit_code(app) == 4


def _healthy(host: str) -> object:
    from console.core.events import HostStateChanged

    return HostStateChanged(host=host, state=HostState.HEALTHY)


class _Null:
    def execute(self, command: Command) -> None:
        raise AssertionError(f"unexpected command {command}")

    def open_connections(self) -> int:
        return 0


async def test_mouse_header_sorts_and_double_click_opens_detail() -> None:
    app, _ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        t = table(app)
        host_x = 1 + sum(w + 2 for w in t._widths[:2]) + 1  # inside the Host header
        await pilot.click(HostTable, offset=(1 + host_x, 1))  # +1: the border
        await settled(pilot, DashboardScreen)
        assert t.sort_mode == "name"
        assert "sort: name" in str(t.border_title)
        await pilot.click(HostTable, offset=(5, 4), times=2)  # third row
        await settled(pilot, HostDetailScreen)
        assert isinstance(app.screen, HostDetailScreen)
        assert app.screen.host == t.shown_hosts[2]


async def test_error_rate_panel_draws_the_threshold() -> None:
    app, _ctl, _bus, _r = make_app("rolling_back")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        text = str(app.screen.query_one("#rates").render())
        assert "─" * 10 in text and "max 2.0%" in text and "≤2x base" in text
        assert "● new 3.1%" in text
