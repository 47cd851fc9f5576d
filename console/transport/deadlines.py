"""Every wait on a server has a deadline, and this module knows them all.

A frozen server (SIGSTOPped sshd, a stuck hypervisor, a full disk blocking sshd)
keeps its TCP connection up and answers nothing: any await on it without a bound
hangs the rollout. The transport therefore awaits the server only inside
:func:`bounded` (a bound of its own that raises :class:`HostUnresponsive` naming the
host, the operation and the time) or inside :meth:`Deadlines.tracking` (a compound
operation, such as a whole command, whose parts are bounded and which must end by its
stated bound).

Both record ``(operation, host, bound, started)`` in :data:`REGISTRY` while they wait,
so that a test, or an operator with ``ROLLDECK_DEBUG_DEADLINES=1``, can list the
waits that outlived their bound (:meth:`Deadlines.overdue`): each one is a bug, a
wait that escaped its deadline. The registry is shared by every event loop of the
process (the engine runs on a thread of its own), so it takes a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TextIO

from console.core.text import printable
from console.transport.base import HostUnresponsive

log = logging.getLogger(__name__)

DEBUG_ENV = "ROLLDECK_DEBUG_DEADLINES"
OVERDUE_GRACE = 1.0  # seconds past its bound before a wait counts as overdue


@dataclass(frozen=True, slots=True)
class Wait:
    """One wait on a server in progress."""

    operation: str
    host: str
    bound: float  # seconds
    started: float  # time.monotonic()
    task: str

    def waited(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def describe(self, now: float | None = None) -> str:
        return (
            f"{self.host}: {self.operation}: waiting {self.waited(now):.1f} s, "
            f"bound {self.bound:g} s (task {self.task})"
        )


class Deadlines:
    """The waits on servers in progress, with their bounds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: dict[int, Wait] = {}
        self._ids = itertools.count()

    def begin(self, host: str, operation: str, bound: float) -> int:
        task = _task_name()
        wait = Wait(operation, host, bound, time.monotonic(), task)
        with self._lock:
            token = next(self._ids)
            self._waits[token] = wait
        return token

    def end(self, token: int) -> None:
        with self._lock:
            self._waits.pop(token, None)

    @contextlib.contextmanager
    def tracking(self, host: str, operation: str, bound: float) -> Iterator[None]:
        """Record a compound wait whose parts bound themselves (no timeout of its own)."""
        token = self.begin(host, operation, bound)
        try:
            yield
        finally:
            self.end(token)

    def pending(self, host: str | None = None) -> list[Wait]:
        """Waits in progress (of one host), oldest first."""
        with self._lock:
            waits = list(self._waits.values())
        return sorted((w for w in waits if host is None or w.host == host), key=lambda w: w.started)

    def overdue(self, grace: float = OVERDUE_GRACE, now: float | None = None) -> list[Wait]:
        """Waits still in progress more than ``grace`` seconds past their bound."""
        at = time.monotonic() if now is None else now
        return [w for w in self.pending() if w.waited(at) > w.bound + grace]


REGISTRY = Deadlines()


@contextlib.asynccontextmanager
async def bounded(
    host: str, operation: str, bound: float, *, registry: Deadlines = REGISTRY
) -> AsyncIterator[None]:
    """Run the body under ``bound`` seconds; on expiry raise :class:`HostUnresponsive`
    ("no answer from HOST for BOUND s while OPERATION"). A :class:`TimeoutError` of an
    inner, shorter deadline passes through untouched."""
    token = registry.begin(host, operation, bound)
    try:
        async with asyncio.timeout(bound) as deadline:
            yield
    except TimeoutError:
        if deadline.expired():
            raise HostUnresponsive(host, operation, bound) from None
        raise
    finally:
        registry.end(token)


def _task_name() -> str:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return "-"
    return task.get_name() if task is not None else "-"


class _Watchdog:
    """With ``ROLLDECK_DEBUG_DEADLINES=1``: a daemon thread that prints every overdue
    wait to stderr (and the log) once. A thread, not a task: a blocked event loop is
    exactly what it must still see."""

    def __init__(self) -> None:
        self._started = False
        self._lock = threading.Lock()

    def start(self, registry: Deadlines, out: TextIO, every: float = 1.0) -> bool:
        with self._lock:
            if self._started:
                return False
            self._started = True
        thread = threading.Thread(
            target=self._watch, args=(registry, out, every), name="deadline-watchdog", daemon=True
        )
        thread.start()
        return True

    def _watch(self, registry: Deadlines, out: TextIO, every: float) -> None:
        reported: set[tuple[str, str, float, str]] = set()
        while True:
            time.sleep(every)
            now = time.monotonic()
            for wait in registry.overdue(now=now):
                key = (wait.host, wait.operation, wait.started, wait.task)
                if key in reported:
                    continue
                reported.add(key)
                line = printable(f"rolldeck: overdue wait: {wait.describe(now)}")  # host names
                log.warning("%s", line)
                with contextlib.suppress(OSError, ValueError):
                    print(line, file=out, flush=True)


WATCHDOG = _Watchdog()


def debug_from_env(out: TextIO | None = None) -> bool:
    """Start the overdue-wait watchdog when ``ROLLDECK_DEBUG_DEADLINES`` is set (1, yes,
    true); returns whether it started now."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("1", "yes", "true", "on"):
        return False
    return WATCHDOG.start(REGISTRY, out or sys.stderr)
