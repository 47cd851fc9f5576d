"""Snapshots of the console (pytest-textual-snapshot): fixed data, clock, process
figures and time zone, so they only change when the rendering does.

Update after an intended change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the SVGs in tests/__snapshots__/.
"""

from __future__ import annotations

import time

import pytest
from textual.pilot import Pilot

from screens.widgets.host_table import HostTable
from tests.test_tui_helpers import SIZE, _private_config, make_app  # noqa: F401
from themes import THEME_NAMES


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def _settle(pilot: Pilot) -> None:
    await pilot.pause(0.3)


async def _detail(pilot: Pilot) -> None:
    pilot.app.screen.query_one(HostTable).select_host("web-04")
    await pilot.press("enter")
    await pilot.pause(0.3)


async def _rollback_modal(pilot: Pilot) -> None:
    await pilot.press("r")
    await pilot.pause(0.3)


async def _abort_modal(pilot: Pilot) -> None:
    await pilot.press("a")
    await pilot.pause(0.3)


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
