"""The ``blue-green-bad`` drill in the console: the real engine and the real blue-green
strategy on the embedded simulated fleet behind a real HAProxy, over real SSH. The
console must show the pools, the switch to the bad green and the switch back to blue,
and end rolled back with blue live (the Pilot drives the app the user would see)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from console.app import RolldeckApp, make_console
from console.core.describe import describe
from console.core.events import Outcome, RolloutState
from console.runtime.session import build_engine, load_rollout
from console.transport import TransportOptions
from screens.confirm import ConfirmScreen
from screens.widgets.host_table import HostTable
from screens.widgets.panels import Timeline
from screens.widgets.summary import TrafficLine
from tests.fixtures.haproxy import require_haproxy
from tests.fixtures.simfleet import FleetFactory
from tests.test_tui_helpers import SIZE, _private_config  # noqa: F401

pytestmark = pytest.mark.slow


async def until(
    app: RolldeckApp, cond: Callable[[], bool], what: str, timeout: float = 60.0
) -> None:
    """Poll the app's own view (folded on the app's frame tick)."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():  # noqa: ASYNC110 - the condition is a view query, not an event
                await asyncio.sleep(0.05)
    except TimeoutError:
        said = "\n".join(describe(e).text() for e in app.view.timeline)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}:\n{said}") from None


async def test_the_blue_green_bad_drill_shows_the_switch_back(
    sim_fleet_factory: FleetFactory,
) -> None:
    """As ``rolldeck drill blue-green-bad`` runs in the console (``--policy operator``,
    its default there): the alert pauses the rollout with green live on the bad
    version, the operator rolls back (r, y), and traffic is switched back to blue."""
    require_haproxy()
    fleet = await sim_fleet_factory(n=4, scenario="blue-green-bad")
    engine = build_engine(
        load_rollout(leave_failures_to_the_operator(Path(fleet.spec_path))),
        operator="console-test",
        journal=None,
        options=TransportOptions(ssh_config=[]),
    )
    app = make_console(engine, remember_theme=False, process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        view = app.view
        await until(app, lambda: bool(view.live_pool), "the pools read from HAProxy")
        live, idle = view.live_pool, view.idle_pool
        await until(
            app, lambda: view.state == RolloutState.PAUSED and bool(view.alerts), "the alert"
        )
        # the bad pool has the traffic: what the operator sees before deciding
        await until(
            app,
            lambda: traffic_line(app).startswith(f"app: {idle} LIVE {engine.spec.version} "),
            "the traffic line showing the switch",
        )
        assert f"{live} idle" in traffic_line(app) and "switched " in traffic_line(app)

        await pilot.press("r")
        modal = app.screen
        assert isinstance(modal, ConfirmScreen)
        assert f"Switch traffic back to {live}?" in str(modal.query_one("#dialog-title").render())
        await pilot.press("y")
        await until(app, lambda: view.outcome is not None, "the end of the rollout")
        await until(
            app, lambda: "switched back" in traffic_line(app), "the traffic line switched back"
        )
        assert view.outcome == Outcome.ROLLED_BACK
        assert (view.live_pool, view.idle_pool) == (live, idle)  # back where it started
        said = traffic_line(app)
        assert said.startswith(f"app: {live} LIVE "), said
        assert f"{idle} idle {engine.spec.version}" in said and "switched back" in said, said
        table = app.screen.query_one(HostTable)
        header = table.render_line(0).text
        assert "Pool" in header and "LB" in header
        pool_at, lb_at = header.index("Pool"), header.index("LB")
        pooled = [name for name, h in view.hosts.items() if h.pool]
        assert len(pooled) == 4
        for name in pooled:
            y = table.shown_hosts.index(name) + 1 - int(table.scroll_y)
            row = table.render_line(y).text
            pool = view.hosts[name].pool
            assert row[pool_at:].startswith(pool), row
            assert row[lb_at:].startswith("ready" if pool == live else "drain"), row
        timeline = " ".join(" ".join(app.screen.query_one(Timeline).lines).split())
        assert f"traffic switched to {idle}; {live} idle" in timeline
        assert f"traffic switched back to {live}; {idle} idle" in timeline
    assert engine.outcome == Outcome.ROLLED_BACK


def leave_failures_to_the_operator(spec_path: Path) -> str:
    """What ``drill --policy operator`` does to the fleet's spec: a tripped rule only
    pauses; rolling back is the operator's call."""
    text = spec_path.read_text(encoding="utf-8")
    assert "on_failure: rollback" in text
    spec_path.write_text(text.replace("on_failure: rollback", "on_failure: pause"))
    return str(spec_path)


def traffic_line(app: RolldeckApp) -> str:
    line = app.screen.query_one(TrafficLine)
    return str(line.render()) if line.display else ""
