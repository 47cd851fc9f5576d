"""Snapshots of the console (pytest-textual-snapshot): fixed data, clock, process
figures and time zone, so they only change when the rendering does.

Each ``run_before`` waits on conditions (tests/waiting.py: events folded and drawn, the
expected screen active and mounted, layout at rest), never a fixed time: under load a
fixed pause photographs a layout that has not settled.

Update after an intended change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the SVGs in tests/__snapshots__/.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from screens.confirm import ConfirmScreen
from screens.dashboard import DashboardScreen
from screens.host_detail import HostDetailScreen
from screens.widgets.host_table import HostTable
from screens.widgets.summary import FleetProgress
from tests.test_tui_helpers import SIZE, _private_config, make_app, utc_clock  # noqa: F401
from tests.waiting import settled
from themes import THEME_NAMES

pytestmark = pytest.mark.usefixtures("utc_clock")


async def _settle(pilot: Pilot[Any]) -> None:
    await settled(pilot, DashboardScreen)


async def _detail(pilot: Pilot[Any]) -> None:
    await settled(pilot, DashboardScreen)
    pilot.app.screen.query_one(HostTable).select_host("web-04")
    await pilot.press("enter")
    await settled(pilot, HostDetailScreen)
    screen = pilot.app.screen
    assert isinstance(screen, HostDetailScreen) and screen.host == "web-04"


async def _rollback_modal(pilot: Pilot[Any]) -> None:
    await settled(pilot, DashboardScreen)
    await pilot.press("r")
    await settled(pilot, ConfirmScreen)


async def _abort_modal(pilot: Pilot[Any]) -> None:
    await settled(pilot, DashboardScreen)
    await pilot.press("a")
    await settled(pilot, ConfirmScreen)


VIEWS = {
    "running": ("running", _settle),
    "paused": ("paused", _settle),
    "rolling_back": ("rolling_back", _settle),
    "detail": ("running", _detail),
    "rollback_modal": ("running", _rollback_modal),
}


@pytest.mark.slow
@pytest.mark.parametrize("theme", THEME_NAMES)
@pytest.mark.parametrize("view", list(VIEWS))
def test_snapshot(snap_compare, view: str, theme: str) -> None:  # type: ignore[no-untyped-def]
    stage, before = VIEWS[view]
    app, _ctl, _bus, _r = make_app(stage, theme=theme)
    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_snapshot_abort_modal(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, _ctl, _bus, _r = make_app("running")
    assert snap_compare(app, terminal_size=SIZE, run_before=_abort_modal)


def test_snapshot_small_terminal(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, _ctl, _bus, _r = make_app("running")
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settle)


async def test_progress_bar_fills_its_width_after_a_resize() -> None:
    """The bar is drawn for the width it has. The clock here is fixed, so no later
    header tick redraws it: the resize itself must (the small-terminal snapshot flaked
    when the first frame came before the layout had settled)."""
    app, _ctl, _bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        for size in ((80, 24), (100, 30), SIZE):
            await pilot.resize_terminal(*size)
            await settled(pilot, DashboardScreen)
            bar = app.screen.query_one(FleetProgress)
            drawn = bar.content.cell_len  # type: ignore[union-attr]
            assert drawn == bar.size.width - 1, f"drawn for {drawn + 1} cells in {size}"
