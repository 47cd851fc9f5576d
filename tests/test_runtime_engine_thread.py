"""The engine thread without Textual: the engine runs on its own thread and loop,
commands cross into that loop, event batches come out in order, and cancelling the
front end's wait cancels the engine in its own loop and ends the thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from console.core import events as ev
from console.core.bus import EventBus, Subscription
from console.core.commands import Command
from console.core.events import Outcome, RolloutState
from console.core.state import RolloutView
from console.runtime.engine_thread import EngineThread
from tests.waiting import wait_until


class StubEngine:
    """Publishes the states a ``pause`` command carries, records the thread of every
    call, and ends when a ``continue`` arrives (or raises when told to fail)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.bus = EventBus()
        self.view = RolloutView()
        self.spec = None
        self.exit_when_paused = False
        self.fail = fail
        self.threads: dict[str, int] = {}
        self.cancelled = False
        self._finish: asyncio.Event | None = None

    def attach(self) -> tuple[RolloutView, Subscription]:
        return self.view, self.bus.subscribe()

    def open_connections(self) -> int:
        return 7

    def execute(self, command: Command) -> None:
        self.threads[command.name] = threading.get_ident()
        if command.name == "pause":
            for state in command.args["states"]:
                self.bus.publish(ev.RolloutStateChanged(state=state))
        elif command.name == "continue" and self._finish is not None:
            self._finish.set()

    async def run(self) -> Outcome:
        self.threads["run"] = threading.get_ident()
        self._finish = asyncio.Event()
        if self.fail:
            raise RuntimeError("the engine broke")
        try:
            await self._finish.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.bus.close()
        return Outcome.SUCCEEDED


async def test_commands_run_on_the_engine_thread_and_events_come_out_in_order() -> None:
    engine = StubEngine()
    bridge = EngineThread(engine)
    runner = asyncio.create_task(bridge.run())
    await wait_until(lambda: "run" in engine.threads, what="the engine to start")
    assert bridge.thread is not None and bridge.thread.is_alive()
    states = [RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.RUNNING]
    bridge.execute(Command("pause", args={"states": states}))
    seen: list[ev.Event] = []

    def drained() -> bool:
        seen.extend(bridge.drain())
        return len(seen) >= 3

    await wait_until(drained, what="three events out of the engine thread")
    assert [e.state for e in seen if isinstance(e, ev.RolloutStateChanged)] == states
    assert bridge.dropped == 0 and not bridge.overflowed and bridge.pending() == 0
    assert bridge.open_connections() == 7
    bridge.stop_when_paused()
    await wait_until(lambda: engine.exit_when_paused, what="exit_when_paused set")
    bridge.execute(Command("continue"))
    assert await runner == Outcome.SUCCEEDED
    here = threading.get_ident()
    assert engine.threads["run"] == engine.threads["pause"] == engine.threads["continue"] != here
    bridge.thread.join(10)
    assert not bridge.thread.is_alive()


async def test_a_bounded_drain_hands_out_whole_batches_and_loses_nothing() -> None:
    engine = StubEngine()
    bridge = EngineThread(engine)
    runner = asyncio.create_task(bridge.run())
    await wait_until(lambda: "run" in engine.threads, what="the engine to start")
    for _ in range(3):
        bridge.execute(Command("pause", args={"states": [RolloutState.RUNNING] * 2}))
    await wait_until(lambda: bridge.pending() >= 6, what="six events queued")
    first = bridge.drain(max_items=1)
    assert first  # at least the first whole batch, however the bus grouped them
    assert len(first) + len(bridge.drain()) == 6
    bridge.execute(Command("continue"))
    assert await runner == Outcome.SUCCEEDED


async def test_cancelling_the_wait_cancels_the_engine_in_its_own_loop() -> None:
    """The console is going away: in-flight remote commands must really stop."""
    engine = StubEngine()
    bridge = EngineThread(engine)
    runner = asyncio.create_task(bridge.run())
    await wait_until(lambda: "run" in engine.threads, what="the engine to start")
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert engine.cancelled
    assert bridge.thread is not None and not bridge.thread.is_alive()


async def test_an_engine_error_reaches_the_front_end() -> None:
    bridge = EngineThread(StubEngine(fail=True))
    with pytest.raises(RuntimeError, match="the engine broke"):
        await bridge.run()
