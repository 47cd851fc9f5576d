"""The console's traffic views for the strategies that move a backend as a whole: the
LB cell with each server's weight, the Pool column and the traffic line of a blue-green
rollout (live, idle, switched, switched back), a weighted canary's share, the host
detail's weight and pool, and the table fitting 80 columns with every traffic column.

Pilot tests over event histories built the way tests/fixtures/synthetic.py builds the
others: the same typed events the engine journals (TrafficShifted, TrafficChanged),
published on the bus the app drains and folded by the app's own tick, never a view
patched by hand. ``BlueGreenHistory`` follows the strategy contract of
console/engine/blue_green.py: pools read at start, the live pool set aside, the idle
pool deployed in batches, the switch, the bake, the alert, the switch back.
"""

from __future__ import annotations

from typing import Any

import pytest
from rich.style import Style
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widgets import Static

from console.app import RolldeckApp
from console.core import events as ev
from console.core.bus import EventBus
from console.core.events import HostState, Outcome, RolloutState
from console.core.state import HostView, RolloutView, fold
from screens.changes import collect
from screens.confirm import rollback_label, rollback_text
from screens.dashboard import DashboardScreen
from screens.format import SPARK_CHARS
from screens.host_detail import HostDetailScreen
from screens.rows import COLUMN_KEYS, host_cells, pool_cell, traffic_cell
from screens.traffic import traffic_summary
from screens.widgets.host_table import HostTable
from screens.widgets.palette_styles import theme_styles
from screens.widgets.panels import Timeline
from screens.widgets.summary import TrafficLine
from tests.fixtures.synthetic import SyntheticRollout
from tests.test_tui_helpers import (  # noqa: F401
    SIZE,
    SPEC,
    RecordingController,
    _private_config,
    utc_clock,
)
from tests.waiting import settled

BLUE = ("blue-01", "blue-02", "blue-03", "blue-04")
GREEN = ("green-01", "green-02", "green-03", "green-04")
BG_STAGES = ("pools", "deployed", "switched", "switched_back")


def tick(r: SyntheticRollout, dt: float = 1.0) -> float:
    """The history's clock, moved on by ``dt`` seconds."""
    r.t += dt
    return r.t


class BlueGreenHistory:
    """A blue-green rollout of 2.4.1 over ``blue`` (live on 2.4.0) and ``green`` (idle),
    event by event; :meth:`upto` gives the history ending at a stage of
    :data:`BG_STAGES`, :meth:`next_stage` the events from one stage to the next."""

    def __init__(self) -> None:
        r = SyntheticRollout(len(BLUE) + len(GREEN))
        r.names = [*BLUE, *GREEN]  # started() groups each host by its name: blue, green
        r.batches = ((GREEN[0],), GREEN[1:])  # batches over the idle pool only
        self.r = r

    def _servers(self, hosts: tuple[str, ...], admin: str, weight: int) -> list[ev.Event]:
        return [
            ev.TrafficChanged(
                ts=self.r.t,
                host=h,
                backend="app",
                server=h,
                admin=admin,
                sessions=0,
                weight=weight,
            )
            for h in hosts
        ]

    def _move(self, move: str, live: str, idle: str, on: tuple[str, ...], off: tuple[str, ...]):  # type: ignore[no-untyped-def]
        r = self.r
        out: list[ev.Event] = [
            ev.TrafficShifted(ts=tick(r), move=move, phase="start", backend="app",
                              live=live, idle=idle),
        ]  # fmt: skip
        tick(r, 0.4)
        out += self._servers(on, "ready", 1)
        out += self._servers(off, "drain", 1)
        out.append(
            ev.TrafficShifted(
                ts=tick(r, 0.2), move=move, phase="done", backend="app", live=live, idle=idle
            )
        )
        return out

    def stage(self, stage: str) -> list[ev.Event]:
        r = self.r
        out: list[ev.Event] = []
        if stage == "pools":
            out += r.started()
            out.append(
                ev.TrafficShifted(
                    ts=tick(r),
                    move="pools",
                    backend="app",
                    live="blue",
                    idle="green",
                    pools={"blue": list(BLUE), "green": list(GREEN)},
                    servers={h: h for h in (*BLUE, *GREEN)},
                    original=dict.fromkeys((*BLUE, *GREEN), 1),
                )
            )
            for h in BLUE:
                out.append(
                    ev.HostStateChanged(
                        ts=r.t,
                        host=h,
                        state=HostState.SKIPPED,
                        detail="live pool blue on 2.4.0: not changed",
                    )
                )
        elif stage == "deployed":
            for i, batch in enumerate(r.batches):
                out.append(
                    ev.BatchStarted(
                        ts=tick(r),
                        index=i,
                        total=2,
                        hosts=batch,
                    )
                )
                for h in batch:
                    out += self._servers((h,), "drain", 1)  # held out of traffic, as read
                    out += r.deploy(h)
                out.append(
                    ev.BatchFinished(
                        ts=tick(r),
                        index=i,
                        succeeded=batch,
                        failed=(),
                    )
                )
        elif stage == "switched":
            out += self._move("switch", "green", "blue", GREEN, BLUE)
            out.append(
                ev.GateWaiting(
                    ts=tick(r),
                    after_batch=1,
                    gate="bake",
                    until=r.t + 120,
                )
            )
            out.append(ev.RolloutStateChanged(ts=r.t, state=RolloutState.WAITING, reason="bake"))
            out += r.signals(list(GREEN), samples=4, bad=0.034)
        elif stage == "switched_back":
            out.append(
                ev.Alert(
                    ts=tick(r),
                    level="critical",
                    rule="error_rate.max",
                    message="new version 3.4% > max 2.0% over 60s",
                    numbers={"new": 0.034, "max": 0.02},
                    action="rollback",
                )
            )
            out.append(
                ev.RolloutStateChanged(
                    ts=r.t, state=RolloutState.ROLLING_BACK, reason="error_rate.max"
                )
            )
            out += self._move("switch_back", "blue", "green", BLUE, GREEN)
            out.append(
                ev.RolloutFinished(
                    ts=tick(r),
                    outcome=Outcome.ROLLED_BACK,
                    exit_code=4,
                    reason="error_rate.max: switched back to blue",
                )
            )
        else:
            raise ValueError(stage)
        return out

    def upto(self, stage: str) -> list[ev.Event]:
        out: list[ev.Event] = []
        for s in BG_STAGES[: BG_STAGES.index(stage) + 1]:
            out += self.stage(s)
        return out


def canary_weights_history() -> tuple[SyntheticRollout, list[ev.Event]]:
    """The synthetic rollout at its first gate, its canary (web-01) at 5% by weights:
    4 against 7 on each of the other 11 servers gives 4/81 = 4.94%."""
    r = SyntheticRollout(12)
    out = r.scenario("gate")
    weights = {name: (4 if name == "web-01" else 7) for name in r.names}
    original = dict.fromkeys(r.names, 1)
    out.append(
        ev.TrafficShifted(ts=tick(r), move="weights", phase="start", backend="app", step=0,
                          share=5.0, weights=weights, original=original)
    )  # fmt: skip
    for name, w in weights.items():
        out.append(
            ev.TrafficChanged(
                ts=r.t, host=name, backend="app", server=name, admin="ready", weight=w
            )
        )
    out.append(
        ev.TrafficShifted(ts=tick(r), move="weights", phase="done", backend="app", step=0,
                          share=5.0, achieved=400 / 81, weights=weights, original=original)
    )  # fmt: skip
    return r, out


def app_over(events: list[ev.Event], clock_at: float) -> tuple[RolldeckApp, EventBus]:
    """An app whose view was folded from ``events`` (as make_app does); more events go
    through its bus and its own frame tick."""
    bus = EventBus()
    app = RolldeckApp(
        bus.subscribe(),
        RecordingController(bus),
        spec=SPEC,
        initial_view=fold(events),
        clock=lambda: clock_at,
        remember_theme=False,
        process_stats=lambda: (4.0, 61.0),
    )
    return app, bus


def line_of(table: HostTable, host: str) -> str:
    table.select_host(host)
    return table.render_line(table.shown_hosts.index(host) + 1 - int(table.scroll_y)).text


def row_of(table: HostTable, host: str) -> Strip:
    """The host's row as drawn, without moving the cursor onto it (its colours)."""
    y = table.shown_hosts.index(host) + 1 - int(table.scroll_y)
    assert 0 < y < table.size.height, f"{host} is not on screen"
    return table.render_line(y)


def style_at(strip: Strip, x: int) -> Style:
    at = 0
    for seg in strip:
        if at <= x < at + len(seg.text):
            return seg.style or Style()
        at += len(seg.text)
    raise AssertionError(f"nothing drawn at {x}")


def traffic_text(app: RolldeckApp) -> str:
    line = app.screen.query_one(TrafficLine)
    return str(line.render()) if line.display else ""


# -- pure parts -------------------------------------------------------------------------


def test_the_lb_cell_says_state_and_weight_and_never_by_colour_alone() -> None:
    h = HostView(name="a")
    assert traffic_cell(h) == ("-", "muted")
    h.traffic, h.weight = "ready", 19
    assert traffic_cell(h) == ("ready 19", "host-healthy")
    h.weight = 0  # ready, but no share of the traffic
    assert traffic_cell(h) == ("ready 0", "muted")
    h.traffic = "drain"
    assert traffic_cell(h) == ("drain", "batch-active")
    assert traffic_cell(h, idle=True) == ("drain", "muted")  # the idle pool: as expected
    h.traffic_kept = True
    assert traffic_cell(h, idle=True) == ("drain ✖", "host-failed")
    h.traffic, h.traffic_kept, h.weight = "maint", False, None
    assert traffic_cell(h) == ("maint", "host-failed")
    h.pool = "blue"
    assert pool_cell(h, "blue") == ("blue", "host-healthy")
    assert pool_cell(h, "green") == ("blue", "muted")


def test_a_backend_move_redraws_every_row_and_the_traffic_line() -> None:
    history = BlueGreenHistory().upto("switched")
    ch = collect(history[-60:])
    assert ch.traffic and ch.shift
    assert any(isinstance(e, ev.TrafficShifted) for e in ch.timeline)
    drained = collect([ev.TrafficChanged(host="a", backend="app", server="a", admin="drain")])
    assert drained.traffic and not drained.shift and drained.hosts == {"a"}
    assert not drained.timeline  # a routine drain: the table shows it


def test_the_traffic_line_follows_the_pools_through_switch_and_switch_back() -> None:
    bg = BlueGreenHistory()
    events: list[ev.Event] = []
    said = {}
    for stage in BG_STAGES:
        events += bg.stage(stage)
        said[stage] = "".join(text for text, _ in traffic_summary(fold(events)))
    assert said["pools"] == "app: blue LIVE 2.4.0 (4) · green idle 2.4.0 (4)"
    assert said["deployed"] == "app: blue LIVE 2.4.0 (4) · green idle 2.4.1 (4)"
    assert said["switched"].startswith(
        "app: green LIVE 2.4.1 (4) · blue idle 2.4.0 (4) · ⇄ switched "
    )
    assert said["switched_back"].startswith(
        "app: blue LIVE 2.4.0 (4) · green idle 2.4.1 (4) · ↩ switched back "
    )
    # cut in half (the switch started, one server moved): the counts say so
    half = [*bg.upto("deployed")]
    start = BlueGreenHistory()._move("switch", "green", "blue", GREEN, BLUE)
    half += [start[0], start[1]]
    words = "".join(text for text, _ in traffic_summary(fold(half)))
    assert "blue LIVE 2.4.0 (4)" in words and "green idle 2.4.1 (4, 1 ready)" in words
    assert words.endswith("switching…" + words.split("switching…")[-1])


def test_a_rolling_rollout_has_no_traffic_line() -> None:
    view = fold(SyntheticRollout(6).scenario("running"))
    assert traffic_summary(view) == []
    view.apply(ev.TrafficChanged(host="web-01", backend="app", server="web-01", admin="drain"))
    assert traffic_summary(view) == []  # per-host drains: the LB column is enough


def test_the_canary_line_gives_the_share_asked_got_and_the_weights() -> None:
    r, events = canary_weights_history()
    before = fold(events[: -2 - len(r.names)])  # at the gate, before any move
    before.apply(
        ev.TrafficShifted(move="before", backend="app", original=dict.fromkeys(r.names, 1))
    )
    words = "".join(text for text, _ in traffic_summary(before))
    assert words == "⇄ canary of app: no traffic yet · weights of 12 servers read"
    view: RolloutView = fold(events)
    words = "".join(text for text, _ in traffic_summary(view))
    assert words == "⇄ canary 5% of app (step 1): weights 4/7 give 4.94%"
    cells = host_cells(view.hosts["web-01"], view.version, None)
    assert cells[COLUMN_KEYS.index("traffic")] == ("ready 4", "host-healthy")
    view.apply(
        ev.TrafficShifted(move="restore", backend="app", original=dict.fromkeys(view.hosts, 1))
    )
    assert "".join(t for t, _ in traffic_summary(view)).startswith("app: ⇄ weights restored")


def test_the_rollback_modal_of_blue_green_says_switch_back_not_revert() -> None:
    bg = BlueGreenHistory()
    deployed = fold(bg.upto("deployed"))
    title, body = rollback_text(deployed)
    assert title == "Roll back (traffic never left blue)"
    assert "pool green (4 hosts, on 2.4.1) stays idle" in body and "Nothing is reverted" in body
    assert rollback_label(deployed) == ("Roll back", "rolling back")
    switched = fold([*bg.upto("deployed"), *bg.stage("switched")])
    title, body = rollback_text(switched)
    assert title == "Switch traffic back to blue?"
    assert "Pool blue (4 hosts, on 2.4.0) takes the traffic again" in body
    assert "pool green (4 hosts, on 2.4.1) is drained and left idle" in body
    assert "Nothing is deployed or reverted" in body
    assert rollback_label(switched) == ("Switch back to blue", "switching traffic back to blue")
    _r, events = canary_weights_history()
    title, body = rollback_text(fold(events))
    assert title == "Roll back 1 host?" and body.startswith("First every server")


# -- the console ------------------------------------------------------------------------


async def test_blue_green_pools_show_in_the_table_and_follow_the_switch() -> None:
    bg = BlueGreenHistory()
    r = bg.r
    app, bus = app_over(bg.upto("deployed"), r.t + 5)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        table = app.screen.query_one(HostTable)
        header = table.render_line(0).text
        assert header.index("Host") < header.index("Pool") < header.index("Version")
        assert header.index("Health") < header.index("LB") < header.index("Err rate")
        pool_at, lb_at = header.index("Pool"), header.index("LB")
        assert line_of(table, "blue-02")[pool_at:].startswith("blue")
        # the live pool's servers were read, not moved: no state of their own yet
        assert line_of(table, "blue-02")[lb_at:].startswith("- ")
        assert line_of(table, "green-03")[lb_at:].startswith("drain ")
        assert traffic_text(app) == "app: blue LIVE 2.4.0 (4) · green idle 2.4.1 (4)"
        styles = theme_styles(app)
        live, idle = styles["host-healthy"].color, styles["muted"].color
        assert live != idle

        def pool_colour(host: str) -> Any:
            return style_at(row_of(table, host), pool_at).color

        assert pool_colour("blue-01") == live and pool_colour("green-01") == idle

        for e in bg.stage("switched"):
            bus.publish(e)
        await settled(pilot)
        said = traffic_text(app)
        assert said.startswith("app: green LIVE 2.4.1 (4) · blue idle 2.4.0 (4) · ⇄ switched ")
        assert line_of(table, "green-03")[lb_at:].startswith("ready 1 ")
        assert line_of(table, "blue-02")[lb_at:].startswith("drain ")
        assert pool_colour("green-01") == live and pool_colour("blue-01") == idle

        for e in bg.stage("switched_back"):
            bus.publish(e)
        await settled(pilot)
        said = traffic_text(app)
        assert said.startswith("app: blue LIVE 2.4.0 (4) · green idle 2.4.1 (4) · ↩ switched back")
        assert line_of(table, "blue-02")[lb_at:].startswith("ready 1 ")
        assert line_of(table, "green-03")[lb_at:].startswith("drain ")
        timeline = " ".join(" ".join(app.screen.query_one(Timeline).lines).split())
        assert "app: traffic switched back to blue; green idle" in timeline
        assert "app: traffic switched to green; blue idle" in timeline
        assert "ROLLED BACK" in str(app.screen.query_one("#header", Static).render())

        for _ in range(4):  # batch -> name -> state -> error -> pool
            await pilot.press("s")
        await settled(pilot)
        assert table.sort_mode == "pool"
        assert table.shown_hosts == [*BLUE, *GREEN]  # each pool together
        await pilot.press("s")
        assert table.sort_mode == "batch"

        await pilot.press("slash")
        await pilot.press(*"green")
        await settled(pilot)
        assert table.shown_hosts == list(GREEN)  # the filter knows the pool


async def test_the_host_detail_shows_weight_and_pool() -> None:
    bg = BlueGreenHistory()
    app, bus = app_over(bg.upto("switched"), bg.r.t + 5)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        app.screen.query_one(HostTable).select_host("green-02")
        await pilot.press("enter")
        await settled(pilot, HostDetailScreen)
        health = app.screen.query_one("#detail-health", Static)
        text = str(health.render())
        assert "traffic ready  weight 1  pool green (LIVE)" in text
        assert "error rate" in text and health.size.height == 3  # nothing cut off
        for e in bg.stage("switched_back"):
            bus.publish(e)
        await settled(pilot)
        assert "traffic drain  weight 1  pool green (idle)" in str(health.render())


async def test_a_weighted_canary_shows_its_share_in_the_console() -> None:
    r, events = canary_weights_history()
    app, bus = app_over(events[:-14], r.t + 5)  # before the weights were set
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        assert traffic_text(app) == ""
        assert not app.screen.query_one(TrafficLine).display
        for e in events[-14:]:
            bus.publish(e)
        await settled(pilot)
        assert traffic_text(app) == "⇄ canary 5% of app (step 1): weights 4/7 give 4.94%"
        table = app.screen.query_one(HostTable)
        lb_at = table.render_line(0).text.index("LB")
        assert line_of(table, "web-01")[lb_at:].startswith("ready 4 ")
        assert line_of(table, "api-05")[lb_at:].startswith("ready 7 ")
        assert "Pool" not in table.render_line(0).text  # no pools in a canary
        for _ in range(4):  # and no pool order to cycle through
            await pilot.press("s")
        assert table.sort_mode == "batch"


@pytest.mark.parametrize("stage", ["deployed", "switched_back"])
async def test_every_traffic_column_fits_80_columns(stage: str) -> None:
    """At 80x24 the table squeezes names and the sparkline, then drops Step, rather
    than cropping the error rate off the right edge."""
    bg = BlueGreenHistory()
    app, _bus = app_over(bg.upto(stage), bg.r.t + 5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, DashboardScreen)
        table = app.screen.query_one(HostTable)
        header = table.render_line(0).text.rstrip()
        for label in ("State", "Host", "Pool", "Version", "Health", "LB", "Err rate"):
            assert label in header, header
        assert "Step" not in header
        assert len(header) <= table.size.width
        row = line_of(table, "green-04").rstrip()
        assert len(row) <= table.size.width, row
        rate = row[header.index("Err rate") :].split()
        assert rate[0] == "-" or rate[0].endswith("%"), row  # the figure, whole
        if len(rate) > 1:  # and a sparkline cut to the column, not by an ellipsis
            assert set(rate[1]) <= set(SPARK_CHARS), row
        assert traffic_text(app).startswith("app: ")


async def test_a_rolling_rollout_with_a_balancer_fits_80_columns_with_its_step() -> None:
    r = SyntheticRollout(24)
    events = r.scenario("running")
    events += [
        ev.TrafficChanged(ts=r.t, host=h, backend="app", server=h, admin="ready", weight=100)
        for h in r.names[:5]
    ]
    app, _bus = app_over(events, r.t + 5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, DashboardScreen)
        table = app.screen.query_one(HostTable)
        header = table.render_line(0).text.rstrip()
        for label in ("State", "Host", "Version", "Step", "Health", "LB", "Err rate"):
            assert label in header, header
        lb_at = header.index("LB")
        assert line_of(table, "web-02")[lb_at:].startswith("ready 100")
        assert len(line_of(table, "web-02").rstrip()) <= table.size.width


# -- snapshot ---------------------------------------------------------------------------


async def _settle(pilot: Pilot[Any]) -> None:
    await settled(pilot, DashboardScreen)


@pytest.mark.usefixtures("utc_clock")
@pytest.mark.parametrize("size", [SIZE, (80, 24)], ids=["120x40", "80x24"])
def test_snapshot_blue_green_switched_back(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """The main screen after a bad green was switched back: blue LIVE on the old
    version, green idle on the new, every server's state and weight, the move in the
    traffic line and the timeline."""
    bg = BlueGreenHistory()
    app, _bus = app_over(bg.upto("switched_back"), bg.r.t + 5)
    assert snap_compare(app, terminal_size=size, run_before=_settle)
