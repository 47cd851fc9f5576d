"""Time as the engine sees it, injectable so tests drive it instead of sleeping.

The engine, gates and host work ask a :class:`Clock` for monotonic time (deadlines),
wall time (what the journal and the screen show) and to sleep. :data:`SYSTEM` is the
real one; tests pass a clock they advance themselves, so a 60 s health deadline or a
2 m bake is a condition they step through, never a wall-clock wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, durations)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (what a person reads: a gate's deadline)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Until ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM: Clock = SystemClock()


class ManualClock:
    """A clock tests advance by hand: :meth:`sleep` returns once :meth:`advance` has
    moved time past its deadline, so a test steps through a bake or a deadline in
    microseconds and asserts on what happened at each step."""

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, fut))
        try:
            await fut
        finally:
            self._sleepers = [(t, f) for t, f in self._sleepers if f is not fut]

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now (a test waits for the engine to
        reach its next sleep before advancing)."""
        return sum(1 for _, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._now += seconds
        for deadline, fut in list(self._sleepers):
            if deadline <= self._now and not fut.done():
                fut.set_result(None)
