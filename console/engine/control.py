"""The engine's mutable state: operator flags, per-host records and the failure budget.

Everything here is plain data touched only from the event loop; tasks that wait for a
flag to change use :meth:`Control.wait_for`, woken by every command and every host
task that ends (one shared "something changed" signal, re-armed on each wake). Its
timeouts run on the engine's :class:`~console.core.clock.Clock`, so a test steps
through a bake or a gate's timeout instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from console.core.clock import SYSTEM, Clock
from console.core.events import HostState, RolloutState
from console.engine.machine import Flags, derive
from inventory.model import Host


class Control:
    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.paused = False
        self.frozen = False
        self.aborted = False
        self.abort_by_policy = False
        self.rollback_requested = False
        self.rolling_back = False
        self.preflight = True  # until every host was checked (the engine's first phase)
        self.gate_open: str | None = None  # 'manual' | 'bake' while waiting at a gate
        self.gate_continued_by: str | None = None
        # An approval gate: who approved (uid -> "label (unix name)") and the uid that
        # runs the rollout, whose own approval never counts (a second person's).
        self.approvals: dict[int, str] = {}
        self.approvers_needed = 0
        self.owner_uid = os.geteuid()
        self.pause_reason = ""  # why it is paused or frozen (who, and their reason)
        self.abort_reason = "aborted"
        self._changed = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """Abort or rollback requested: the forward rollout must start nothing new."""
        return self.aborted or self.rollback_requested

    @property
    def halted(self) -> bool:
        """Paused or frozen: no new host (nor, frozen, step) starts."""
        return self.paused or self.frozen

    def flags(self) -> Flags:
        return Flags(
            aborted=self.aborted,
            rollback_requested=self.rollback_requested,
            rolling_back=self.rolling_back,
            frozen=self.frozen,
            paused=self.paused,
            preflight=self.preflight,
            gate_open=self.gate_open,
        )

    @property
    def phase(self) -> RolloutState:
        """The rollout's phase, as :func:`console.engine.machine.derive` says."""
        return derive(self.flags())

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def next_change(self) -> None:
        """Until the next wake()."""
        await self._changed.wait()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Until ``predicate()`` holds (True) or ``timeout`` seconds pass on the clock
        (then ``predicate()`` once more)."""
        if timeout is None:
            while not predicate():
                await self._changed.wait()
            return True
        deadline = self.clock.monotonic() + timeout
        while not predicate():
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return False
            changed = asyncio.ensure_future(self._changed.wait())
            timer = asyncio.ensure_future(self.clock.sleep(remaining))
            try:
                done, _ = await asyncio.wait((changed, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                timer.cancel()
            if changed not in done:
                return predicate()
        return True


@dataclass(slots=True)
class HostRecord:
    """What the engine knows about one host (the source of truth for its decisions;
    the RolloutView is what consumers see)."""

    host: Host
    order: int  # position in the plan: a stable sort key
    state: HostState = HostState.PENDING
    step: str | None = None  # running, or the last one reached
    detail: str = ""
    batch: int | None = None  # the batch it was started in
    previous_version: str | None = None
    previous_read: bool = False
    changed: bool = False  # a deploy step started on it: rollback covers it
    failed: bool = False  # counts against the budget
    in_step: str | None = None  # the step whose command is in flight
    gating: bool = False
    frozen_waiting: bool = False
    retry: bool = False
    attempts: int = 0
    # ``once: true`` steps that finished ok on this host (this run or, on resume, the
    # journal's): never run again, not by a retry nor by a resumed deploy.
    once_done: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.host.name


@dataclass(slots=True)
class Budget:
    """One failure budget for the whole rollout: hosts *currently* failed.

    A retried host leaves the count while it retries and re-enters it if it fails
    again, so a retry never hides a failure and never counts one twice.
    """

    allowed: int
    failed: set[str] = field(default_factory=set)

    def fail(self, host: str) -> bool:
        """Count ``host``; True when the budget is now exceeded."""
        self.failed.add(host)
        return self.exceeded

    def forgive(self, host: str) -> None:
        self.failed.discard(host)

    @property
    def exceeded(self) -> bool:
        return len(self.failed) > self.allowed
