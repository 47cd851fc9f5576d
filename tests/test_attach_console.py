"""Two consoles on one rollout: the Textual console attached read-only over the socket
(Pilot), and a second, read-write console attached beside it. The observer's ``p``
sends nothing; the other's pause reaches the engine and the observer's screen shows it;
quitting the observer detaches without pausing and the rollout goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from console.app import RolldeckApp
from console.attach.client import connect
from console.attach.protocol import socket_path_for
from console.attach.server import serve_engine
from console.core import events as ev
from console.core.commands import Command
from console.core.events import Outcome, RolloutState
from console.transport.fake import Reply
from tests.test_engine_helpers import journal_in, make_engine, spec_from
from tests.test_tui_helpers import SIZE, _private_config  # noqa: F401
from tests.waiting import settled

pytestmark = pytest.mark.slow


async def until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - a view query, not an event
            await asyncio.sleep(0.05)


async def test_read_only_console_and_a_second_console_on_one_rollout(tmp_path: Path) -> None:
    run = make_engine(
        spec_from("batches: [1, 2, 3]\nmax_parallel: 1\n"),
        6,
        journal=journal_in(tmp_path, "shop-c1"),
        rollout_id="shop-c1",
    )
    run.fake.on(r"^install", lines=["unpacking"], delay=0.3)
    # the last host holds until the final resume: the pause lands before the end however
    # slow the console's start is
    last = asyncio.Event()
    run.fake.on(r"^install", Reply(lines=["unpacking"], wait=last), hosts=["h06"])
    server = serve_engine(run.engine, tmp_path)
    sock = socket_path_for(tmp_path, "shop-c1")
    engine_task = asyncio.create_task(run.engine.run())
    try:
        await until(lambda: run.engine.view.batch_index is not None)
        observer = await connect(sock, read_only=True)
        driver = await connect(sock)
        driver.start()
        app = RolldeckApp(
            observer.subscription,
            observer.controller,
            initial_view=observer.view(),
            read_only=True,
            pause_on_quit=False,
            remember_theme=False,
            process_stats=lambda: (0.0, 0.0),
        )
        observer.start()
        async with app.run_test(size=SIZE) as pilot:
            assert app.view.rollout_id == "shop-c1"  # the snapshot, before any live event
            assert app.check_action("pause_resume", ()) is None  # disabled, shown dimmed
            await pilot.press("p")
            await settled(pilot)  # the key handled, the console at rest
            assert not run.engine.control.paused

            driver.controller.execute(Command("pause", operator="erin", reason="check logs"))
            await until(lambda: app.view.state == RolloutState.PAUSED)
            assert "erin" in app.view.state_reason
            assert run.engine.control.paused
            commands = [
                (e.command, e.operator)
                for e in run.engine.view.timeline
                if isinstance(e, ev.OperatorCommand)
            ]
            assert commands == [("pause", "erin")], "a read-only console sent a command"

            # The owner refuses the observer's commands even if it sends one directly.
            observer.controller.execute(Command("resume", operator="mallory"))
            await until(lambda: bool(observer.refusals))
            # one connection is in order: had ``p`` sent a pause, it was refused first
            assert len(observer.refusals) == 1 and ": resume:" in observer.refusals[0], (
                observer.refusals
            )
            assert run.engine.control.paused

            await pilot.press("q")
            await until(lambda: not app.is_running)
        await observer.close()
        assert run.engine.control.paused, "detaching must not change the rollout"
        assert not engine_task.done()

        last.set()
        driver.controller.execute(Command("resume", operator="erin"))
        async with asyncio.timeout(30):
            assert await engine_task == Outcome.SUCCEEDED
            await driver.wait()
        assert driver.bye == "finished"
    finally:
        engine_task.cancel()
        await server.close()
