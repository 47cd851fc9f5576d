"""The console driving the real engine on the embedded simulated fleet, over real SSH:
``p`` really stops new hosts, ``r`` really restores versions (read back over SSH),
and quitting a running rollout leaves it paused, resumable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from console.app import RolldeckApp, exit_code, make_console
from console.core import events as ev
from console.core.bus import EventBus, Subscription
from console.core.commands import Command
from console.core.events import HostState, Outcome, RolloutState
from console.core.state import RolloutView
from console.engine import Engine
from console.runtime.engine_thread import EngineThread
from console.runtime.session import build_engine, load_rollout
from console.simfleet import SimFleet, parse_scenario
from console.transport import TransportOptions
from screens.confirm import ConfirmScreen
from screens.dashboard import DashboardScreen
from tests.fixtures.simfleet import FleetFactory, sim_connect
from tests.test_tui_helpers import SIZE, _private_config  # noqa: F401
from tests.waiting import settled

pytestmark = pytest.mark.slow

SLOW = 0.15  # simulated durations x0.15: slow enough to press keys mid-rollout


def engine_on(fleet: SimFleet) -> Engine:
    return build_engine(
        load_rollout(str(fleet.spec_path)),
        operator="console-test",
        journal=None,
        options=TransportOptions(ssh_config=[]),
    )


async def until(app: RolldeckApp, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll the app's own view (it is folded on the app's frame tick)."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - the condition is a view query, not an event
            await asyncio.sleep(0.05)


async def version_over_ssh(fleet: SimFleet, host: str) -> str:
    async with sim_connect(fleet, host) as conn:
        result = await conn.run("svc version", check=True)
    return str(result.stdout).strip()


def started(app: RolldeckApp) -> set[str]:
    return set(app.view.changed_hosts())


async def test_pause_stops_new_hosts_and_quit_leaves_it_paused(
    sim_fleet_factory: FleetFactory,
) -> None:
    fleet = await sim_fleet_factory(n=6, time_scale=SLOW)
    engine = engine_on(fleet)
    app = make_console(engine, remember_theme=False, process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        await until(app, lambda: bool(started(app)))
        await pilot.press("p")
        await until(app, lambda: app.view.state == RolloutState.PAUSED)
        moving = {"running", "verifying"}
        await until(
            app, lambda: not [h for h in app.view.hosts.values() if h.state.value in moving]
        )
        await settled(pilot)  # everything published so far is folded into the view
        at_pause = started(app)
        # the scenario: a window in which an engine that was not paused would start hosts
        await asyncio.sleep(1.0)
        await settled(pilot)  # whatever it published meanwhile is folded too
        assert started(app) == at_pause, "no new host may start while paused"
        pending = [n for n, h in app.view.hosts.items() if h.state == HostState.PENDING]
        assert pending, "the rollout was paused before it finished"
        before = {n: app.view.hosts[n].version for n in pending}  # read in preflight
        assert all(before.values())
        await pilot.press("q")
        if isinstance(app.screen, ConfirmScreen):  # the engine was baking a gate: it asks
            await pilot.press("y")
        await until(app, lambda: not app.is_running, timeout=15)
    assert engine.outcome == Outcome.PAUSED and exit_code(app) == 6
    for name in pending:
        assert await version_over_ssh(fleet, name) == before[name]


async def test_rollback_restores_versions_read_back_over_ssh(
    sim_fleet_factory: FleetFactory,
) -> None:
    fleet = await sim_fleet_factory(n=6, time_scale=SLOW)
    engine = engine_on(fleet)
    # the engine on the UI's own loop here (the other tests: on its own thread)
    app = make_console(
        engine, threaded=False, remember_theme=False, process_stats=lambda: (0.0, 0.0)
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(
            app,
            lambda: sum(h.state == HostState.HEALTHY for h in app.view.hosts.values()) >= 2,
            timeout=60,
        )
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(app, lambda: app.engine_outcome is not None, timeout=60)
        await until(app, lambda: app.view.outcome is not None)  # the last frame folded
        changed = app.view.changed_hosts()
        previous = {n: app.view.hosts[n].previous_version for n in changed}
        assert app.view.state == RolloutState.DONE
        await pilot.press("q")
    assert engine.outcome == Outcome.ROLLED_BACK and exit_code(app) == 4
    assert changed
    for name in changed:
        assert previous[name] and previous[name] != engine.spec.version
        assert await version_over_ssh(fleet, name) == previous[name]


async def test_quitting_now_cancels_the_engine_thread_cleanly(
    sim_fleet_factory: FleetFactory,
) -> None:
    """q, y (pause and quit), then q again (quit now): the engine, on its own thread,
    is cancelled in its own loop and recorded as aborted; the thread ends."""
    # installs hang: a host is mid-install until the quit-now, however slow the console
    hang = parse_scenario("versions: {new: {install_hangs: true}}")
    fleet = await sim_fleet_factory(n=4, scenario=hang, time_scale=1.0)
    engine = engine_on(fleet)
    app = make_console(engine, remember_theme=False, process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        await until(app, lambda: any(h.step == "install" for h in app.view.hosts.values()))
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(app, lambda: app.quit_paused)  # the pause is sent, the quit pending
        # events=False: keep app.subscription the EngineThread (asserted below)
        await settled(pilot, DashboardScreen, events=False)
        assert app.is_running, "a host is mid-install: the console waits for it"
        await pilot.press("q")
        await until(app, lambda: not app.is_running, timeout=60)
    assert engine.finished and engine.outcome == Outcome.ABORTED
    assert isinstance(app.subscription, EngineThread) and app.subscription.thread is not None
    assert not app.subscription.thread.is_alive()


class _ThreadProbeEngine:
    """Just enough engine to check the thread bridge: it waits for a pause command
    and records which thread every call ran on."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.view = RolloutView()
        self.spec = None
        self.exit_when_paused = False
        self.calls: list[tuple[str, int]] = []
        self._paused: asyncio.Event | None = None

    def attach(self) -> tuple[RolloutView, Subscription]:
        return self.view, self.bus.subscribe()

    def open_connections(self) -> int:
        return 3

    def execute(self, command: Command) -> None:
        self.calls.append((command.name, threading.get_ident()))
        if command.name == "pause" and self._paused is not None:
            self._paused.set()

    async def run(self) -> Outcome:
        self.calls.append(("run", threading.get_ident()))
        self._paused = asyncio.Event()
        self.bus.publish(
            ev.RolloutStarted(
                rollout_id="r1", service="svc", version="2", operator="t", spec_path="",
                spec_hash="", spec_text="", inventory_path="", batches=(("a",),),
                hosts={"a": {"groups": ["web"]}},
            )
        )  # fmt: skip
        self.bus.publish(ev.RolloutStateChanged(state=RolloutState.RUNNING))
        await self._paused.wait()
        self.bus.publish(ev.RolloutStateChanged(state=RolloutState.PAUSED))
        self.bus.publish(ev.RolloutFinished(outcome=Outcome.PAUSED, exit_code=6))
        self.bus.close()
        return Outcome.PAUSED


async def test_engine_thread_bridge_runs_commands_on_the_engine_thread() -> None:
    engine = _ThreadProbeEngine()
    app = make_console(engine, remember_theme=False, process_stats=lambda: (0.0, 0.0))
    async with app.run_test(size=SIZE) as pilot:
        await until(app, lambda: app.view.state == RolloutState.RUNNING, timeout=10)
        assert app.controller.open_connections() == 3
        await pilot.press("p")
        await until(app, lambda: app.engine_outcome is not None, timeout=10)
        await until(app, lambda: app.view.outcome is not None, timeout=10)
        assert app.view.outcome == Outcome.PAUSED
        await pilot.press("q")
    (run, engine_thread), (pause, pause_thread) = engine.calls
    assert (run, pause) == ("run", "pause")
    assert engine_thread == pause_thread != threading.get_ident()
    assert exit_code(app) == 6
