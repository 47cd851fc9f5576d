"""The console with a load balancer: each host's traffic state beside its health (the
host table's LB column, shown once a host was moved), in the host detail, and a host
kept drained in the timeline (Pilot; the synthetic rollout of tests/test_tui_helpers)."""

from __future__ import annotations

from textual.widgets import Static

from console.core.events import TrafficChanged
from screens.dashboard import DashboardScreen
from screens.host_detail import HostDetailScreen
from screens.widgets.host_table import HostTable
from screens.widgets.panels import Timeline
from tests.test_tui_helpers import SIZE, _private_config, make_app  # noqa: F401
from tests.waiting import settled


def line_of(table: HostTable, host: str) -> str:
    return table.render_line(table.shown_hosts.index(host) + 1 - int(table.scroll_y)).text


async def test_the_host_table_shows_traffic_beside_health_once_a_host_moved() -> None:
    app, _ctl, bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        table = app.screen.query_one(HostTable)
        assert " LB " not in table.render_line(0).text  # no load balancer: no column
        moves = [("web-01", "ready", False), ("web-02", "drain", False), ("web-04", "drain", True)]
        for host, state, failed in moves:
            bus.publish(
                TrafficChanged(
                    host=host,
                    backend="app",
                    server=host,
                    admin=state,
                    sessions=0,
                    detail="kept drained: exit 2 in install" if failed else "",
                    failed=failed,
                )
            )
        await settled(pilot)
        header = table.render_line(0).text
        assert header.index("Health") < header.index("LB") < header.index("Err rate")
        column = header.index("LB")
        for host, state, _failed in moves:
            table.select_host(host)
            await settled(pilot)
            assert line_of(table, host)[column:].startswith(state), line_of(table, host)
        table.select_host("web-03")
        await settled(pilot)
        assert line_of(table, "web-03")[column:].startswith("-")  # not moved yet
        timeline = app.screen.query_one(Timeline)
        said = " ".join(" ".join(timeline.lines).split())  # entries wrap
        assert "web-04 traffic drain (app/web-04, 0 sessions): kept drained" in said
        assert "web-01 traffic ready" not in said  # the table shows the routine moves

        table.select_host("web-04")
        await pilot.press("enter")
        await settled(pilot, HostDetailScreen)
        health = app.screen.query_one("#detail-health", Static)
        assert "traffic drain (kept drained: the host failed)" in str(health.render())
