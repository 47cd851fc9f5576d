"""The engine on its own thread and event loop, seen by a front end as an event source
and a controller.

Why a thread: with 1,000 hosts the engine's SSH traffic (a few thousand packets a
second, each decrypted in Python by asyncssh) would share the UI's event loop, and a
key press would wait in line behind it. On its own thread the engine keeps its
single-loop design, the UI thread gets the interpreter every switch interval, and the
only crossings are explicit: commands go in with ``call_soon_threadsafe``, event
batches come out through a deque (append/popleft are atomic), drained by the front
end's frame tick. Not Textual wiring, so it lives here and ``console.app`` uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from console.core.bus import Subscription
from console.core.commands import Command
from console.core.events import Event, Outcome
from console.core.state import RolloutView

if TYPE_CHECKING:
    from console.attach.server import AttachServer
    from console.engine import Engine
    from console.spec import RolloutSpec


class ThreadedEngine(Protocol):
    """What the thread needs of an engine (a real :class:`~console.engine.Engine`, or
    a test's stand-in)."""

    exit_when_paused: bool

    @property
    def spec(self) -> RolloutSpec | None: ...

    def attach(self) -> tuple[RolloutView, Subscription]: ...

    def execute(self, command: Command) -> None: ...

    def open_connections(self) -> int: ...

    async def run(self) -> Outcome: ...


class EngineThread:
    """Runs an in-process engine on its own thread and event loop (see the module doc).

    It is both the front end's event source (``drain``, ``dropped``, ``overflowed``)
    and its controller (``execute``, ``open_connections``).
    """

    MAX_QUEUED_BATCHES = 200  # back-pressure: past this the forwarder waits for the UI

    def __init__(
        self, engine: ThreadedEngine, *, serve_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.engine = engine
        # Serve an attach socket next to the engine, so another terminal (on-call
        # taking over) can `rolldeck attach` to a rollout run in this console.
        self.serve_dir = serve_dir
        self.view, self._sub = engine.attach()  # before the thread starts: no race
        self._out: deque[list[Event]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Outcome] | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    @property
    def overflowed(self) -> bool:
        return self._sub.overflowed

    @property
    def thread(self) -> threading.Thread | None:
        """The engine's thread once :meth:`run` started it (tests check it ended)."""
        return self._thread

    def pending(self) -> int:
        return sum(len(batch) for batch in tuple(self._out))

    def drain(self, max_items: int | None = None) -> list[Event]:
        out: list[Event] = []
        pop = self._out.popleft
        while self._out and (max_items is None or len(out) < max_items):
            out.extend(pop())
        return out

    def execute(self, command: Command) -> None:
        self._call(self.engine.execute, command)

    def open_connections(self) -> int:
        return self.engine.open_connections()

    def stop_when_paused(self) -> None:
        self._call(setattr, self.engine, "exit_when_paused", True)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self._started.wait(10) or self._loop is None:
            raise RuntimeError("the engine thread is not running")
        self._loop.call_soon_threadsafe(fn, *args)

    async def run(self) -> Outcome:
        """Start the engine thread and wait for its outcome (the app's worker awaits
        this). Cancelled (the console is going away): cancel the engine in its own
        loop, so in-flight remote commands are really stopped, and wait for it."""
        ui_loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = ui_loop.create_future()

        def report(outcome: Outcome | None, error: BaseException | None) -> None:
            if done.done():
                return
            if isinstance(error, asyncio.CancelledError):
                done.cancel()  # we cancelled it: nothing to report
            elif error is not None:
                done.set_exception(error)
            else:
                done.set_result(cast(Outcome, outcome))

        def hand_over(outcome: Outcome | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the UI's loop closed: nobody waits
                ui_loop.call_soon_threadsafe(report, outcome, error)

        def main() -> None:
            try:
                outcome = asyncio.run(self._serve())
            except BaseException as exc:  # handed to the UI thread, not lost
                hand_over(None, exc)
            else:
                hand_over(outcome, None)

        thread = self._thread = threading.Thread(target=main, name="rolldeck-engine", daemon=True)
        thread.start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
            raise
        finally:
            # The thread hands the outcome over as its last act, and may not have
            # ended yet: wait for it, so no part of the engine outlives this call.
            await asyncio.to_thread(thread.join, 60)

    async def _serve(self) -> Outcome:
        self._loop = asyncio.get_running_loop()
        self._task = cast("asyncio.Task[Outcome]", asyncio.current_task())
        self._started.set()
        forward = asyncio.create_task(self._forward())
        server = self._start_server()
        try:
            return await self.engine.run()
        finally:
            self._sub.close()
            await forward
            if server is not None:
                await server.close()

    def _start_server(self) -> AttachServer | None:
        if self.serve_dir is None:
            return None
        from console.attach.server import serve_engine

        engine = cast("Engine", self.engine)  # only a real engine is served
        try:
            return serve_engine(engine, self.serve_dir)
        except Exception as exc:  # the rollout matters more than the socket
            engine.notice(f"no attach socket: {exc}")
            return None

    async def _forward(self) -> None:
        async for batch in self._sub.batches():
            self._out.append(batch)
            while len(self._out) > self.MAX_QUEUED_BATCHES:  # noqa: ASYNC110 - drained by another thread
                await asyncio.sleep(0.02)  # the UI is behind: let the bus bound apply
