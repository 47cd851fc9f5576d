"""Events made on a thread of ours (a hook's delivery, a metrics file's failed write)
brought back to the engine: emitted through it while it runs (journal first, then the
timeline), appended to the closed journal once it is over. Shared by the notifier
and the metrics file, which both read the bus and work on threads of their own."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from console.core import events as ev
from console.store.journal import append_to

if TYPE_CHECKING:
    from console.engine import Engine


class EngineReports:
    """Thread-safe :meth:`report`; :meth:`bind` from the engine's loop first (a bus
    listener does), :meth:`close` after the run. Nothing reported after the close
    is kept: the journal is sealed by then."""

    def __init__(self, engine: Engine, journal: str = "") -> None:
        self.engine = engine
        self.journal = journal
        self.loop: asyncio.AbstractEventLoop | None = None
        self._late: list[ev.Event] = []
        self._sealed = threading.Event()

    def bind(self) -> bool:
        """Remember the running loop (once); False when there is none to come back to."""
        if self.loop is None:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
        return True

    def report(self, event: ev.Event) -> None:
        """From any thread: ``event`` to the engine (or to the journal after its end)."""
        if self.loop is None or self._sealed.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waited
            self.loop.call_soon_threadsafe(self._record, event)

    def _record(self, event: ev.Event) -> None:  # on the engine's loop
        if self._sealed.is_set():
            return
        if self.engine.finished:
            self._late.append(event)
        else:
            self.engine.emit(event)

    async def close(self, last: Sequence[ev.Event] = ()) -> None:
        """Seal, then append what came after the end (and ``last``) to the journal."""
        try:
            await asyncio.sleep(0)  # reports already queued on the loop are recorded
            self._sealed.set()
            late = [*self._late, *last]
            self._late = []
            if late and self.journal:
                await asyncio.to_thread(append_to, self.journal, late)
        finally:
            self._sealed.set()
