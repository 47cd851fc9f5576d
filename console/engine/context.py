"""The engine as its parts see it: the narrow, named API of one running rollout.

``commands``, ``gates`` and ``preflight`` take an :class:`EngineContext`, never the
``Engine`` class: they read the spec, the flags, the host records, the budget and the
running plan, and act only through the operations named here (emit an event, announce
the phase, set a host's state, apply a policy...). The engine satisfies the protocol;
these modules do not import it, so there is no cycle and no reaching into its
private state. A strategy sees the engine through its own, narrower protocol
(:class:`console.engine.strategy.StrategyContext`). A resumed rollout reaches the
engine through a :class:`RestorePoint` (``Engine.restore``), built by
:mod:`console.resume` from the journal and the hosts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from console.core import events as ev
from console.core.clock import Clock
from console.core.events import HostState
from console.core.state import RolloutView
from console.engine.batches import Batches
from console.engine.control import Budget, Control, HostRecord
from console.engine.leases import Leases
from console.spec import HealthSpec, RolloutSpec
from console.transport.base import Connection, Transport

if TYPE_CHECKING:
    from console.engine.canary import CanaryJudge


class EngineContext(Protocol):
    """What commands, gates and the preflight may see and do."""

    @property
    def spec(self) -> RolloutSpec: ...
    @property
    def control(self) -> Control: ...
    @property
    def recs(self) -> dict[str, HostRecord]: ...
    @property
    def budget(self) -> Budget: ...
    @property
    def batches(self) -> Batches: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def allow_unreachable(self) -> bool: ...
    @property
    def exit_when_paused(self) -> bool: ...
    @property
    def leases(self) -> Leases | None:
        """The fleet lock and host leases this rollout holds (None: not taken)."""
        ...

    @property
    def preflight_hint(self) -> str:
        """What a refused preflight suggests (the command line sets it: it names that
        command's own flag), or ''."""
        ...

    @property
    def has_monitors(self) -> bool:
        """Monitors watch the deployed hosts' health (else a bake probes them)."""
        ...

    def emit(self, event: ev.Event) -> None: ...

    def announce(self, reason: str = "") -> None:
        """Journal the phase the flags now derive (machine.derive), with why."""
        ...

    def set_host_state(self, rec: HostRecord, state: HostState, detail: str = "") -> None: ...

    def policy(self, action: str, reason: str) -> None:
        """Apply ``action`` as the engine's own journaled command (``on_failure``...)."""
        ...

    def judge_error_rate(self) -> bool:
        """Evaluate the error rate now; True if it fired ``on_failure``."""
        ...

    def new_version_requests(self) -> float:
        """Requests the analyzer has seen on the new version in its window."""
        ...

    @property
    def canary(self) -> CanaryJudge | None:
        """The Prometheus canary analysis (console/engine/canary.py), or None."""
        ...

    def host_unhealthy(self, host: str, detail: str) -> None:
        """A deployed host's health failed: it has failed."""
        ...

    async def probe(self, conn: Connection, health: HealthSpec) -> tuple[bool, str]: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task that lives (at most) as long as the rollout."""
        ...

    def connected(self, host: str, conn: Connection) -> None:
        """The preflight reached ``host``: monitors use ``conn``."""
        ...


@dataclass(frozen=True, slots=True)
class HostRestore:
    """One host as a resumed rollout takes it over (journal facts + reconciliation)."""

    state: HostState
    detail: str
    step: str | None
    changed: bool
    batch: int | None
    once_done: frozenset[str] = frozenset()
    previous_version: str | None = None
    previous_read: bool = False
    failed: bool = False  # counts against the budget
    observed_version: str | None = None  # read on the host now: journaled as current


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """Where a resumed rollout continues from (``Engine(resume=...)``)."""

    view: RolloutView  # the journal's picture, replayed
    first_event: ev.Event  # the run's first event instead of RolloutStarted
    hosts: Mapping[str, HostRestore]
    start_batch: int  # the first batch with work left
    gate_first: int | None  # a gate to pass before it (never passed before)
    rolling_back: bool
    plan_text: str  # the rest of the rollout, in words (journaled as a notice)
    pause_reason: str  # it starts paused: the operator resumes it
