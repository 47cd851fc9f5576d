"""How a rollout moves through its hosts: the :class:`Strategy` seam.

The engine does everything every rollout does (the preflight, the monitors, one
host's steps and health gating, the failure budget, operator commands, the journal);
a strategy decides the shape of the rollout on top of it. A strategy **owns**:

* the order of the batches (which plan batch runs next, or a re-cut plan: ``replan``);
* the gates between them (when ``run_gate`` runs, after which batch);
* when to stop: it calls ``stop_check`` between moves and returns the verdict it
  gives, waits while paused (``wait_unpaused``), and returns its own verdict at the end;
* how a rollback runs (:meth:`Strategy.roll_back`, which the engine calls when a
  rollback is requested and the strategy's ``stop_check`` notices it): the changed
  hosts' rollback steps in some order (:func:`roll_back_hosts`), or, for blue-green, a
  switch of traffic back to the pool that never changed.

A strategy **must not** touch host records (states, steps, batches: it reads them),
set control flags (commands and the engine do), or emit events except through
:meth:`StrategyContext.emit` (the emitter masks secrets there and journals first).
It sees the engine only as a :class:`StrategyContext`, never ``Engine``: a new
strategy (blue-green, weighted canary) is one new module implementing
:class:`Strategy`, handed to ``Engine(strategy=...)``. Today's rolling rollout is
:class:`console.engine.rolling.RollingStrategy`, the default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from console.core import events as ev
from console.core.clock import Clock
from console.core.events import HostState, Outcome
from console.core.state import RolloutView
from console.engine.batches import Batches
from console.engine.control import Budget, Control, HostRecord
from console.engine.hostwork import TrafficSwitch
from console.engine.traffic import Traffic
from console.spec import RolloutSpec
from console.transport.base import Transport

__all__ = [
    "RollbackOrder",
    "Strategy",
    "StrategyContext",
    "Verdict",
    "aborted",
    "roll_back_hosts",
    "succeeded",
]

Verdict = tuple[Outcome, str]  # how the rollout ends, and why (RolloutFinished)
RollbackOrder = Callable[[list[HostRecord]], list[tuple[str, ...]]]


class StrategyContext(Protocol):
    """What a strategy may see and do: read the rollout, drive it by named moves."""

    @property
    def spec(self) -> RolloutSpec: ...
    @property
    def control(self) -> Control:
        """The flags (paused, frozen, stopping...): read them, never set them."""
        ...

    @property
    def recs(self) -> Mapping[str, HostRecord]:
        """Every targeted host, in plan order: read only."""
        ...

    @property
    def budget(self) -> Budget: ...
    @property
    def batches(self) -> Batches:
        """The plan as it runs (operators re-cut it): change it only by ``replan``."""
        ...

    @property
    def exit_when_paused(self) -> bool: ...
    @property
    def clock(self) -> Clock:
        """The engine's clock: a strategy's own waits (a ramp, a bake) run on it."""
        ...

    @property
    def transport(self) -> Transport:
        """To reach what is not a targeted host (a load balancer); hosts' work is the
        engine's (``run_batch``, ``run_rollback_batch``)."""
        ...

    @property
    def view(self) -> RolloutView:
        """The journal's picture (a resumed rollout: what was done before the crash):
        read only."""
        ...

    @property
    def start_batch(self) -> int:
        """Where a resumed rollout continues (0 for a fresh one)."""
        ...

    @property
    def gate_first(self) -> int | None:
        """Resumed before a gate it never passed: pass gate ``after=this`` first."""
        ...

    def emit(self, event: ev.Event) -> None: ...

    def announce(self, reason: str = "") -> None:
        """Journal the phase the flags now derive (machine.derive), with why."""
        ...

    async def wait_unpaused(self) -> None:
        """Until not paused or frozen, or stopping, or headless (which then stops)."""
        ...

    async def stop_check(self) -> Verdict | None:
        """The verdict to return now (aborted; a requested rollback, run to its end
        through :meth:`Strategy.roll_back`; headless and paused with work left), or
        None to go on."""
        ...

    async def run_batch(self, index: int) -> None:
        """Deploy batch ``index`` of the plan (its PENDING hosts, at most max_parallel
        at once) until every started host is healthy or failed; journals the batch and
        fires ``batch_all_failed``. Returns early on a pause (started hosts finish)."""
        ...

    async def run_gate(self, after: int) -> None:
        """The spec's ``between_batches`` gate after batch ``after`` (auto, manual,
        bake); it may pause, abort or roll back (check ``stop_check`` after it)."""
        ...

    def replan(self, size: int | str, reason: str, hosts: Collection[str] | None = None) -> bool:
        """Re-cut the batches not started by the planner's rule, keeping the pending
        hosts (of ``hosts`` if given); journals ``PlanChanged``. True if it changed.
        ValueError on a bad size."""
        ...

    def set_aside(self, hosts: Collection[str], detail: str) -> None:
        """Leave these pending hosts out of the rollout (SKIPPED, with ``detail``; out
        of the batches not started): blue-green's live pool."""
        ...

    def begin_rollback(self) -> list[HostRecord]:
        """Enter the rollback (lifts pause and freeze, hosts a freeze stopped before
        they changed go back to pending) and return the changed hosts left to roll back."""
        ...

    async def run_rollback_batch(self, index: int, total: int, hosts: Sequence[str]) -> int:
        """Run the rollback steps on ``hosts`` (journaled as rollback batch ``index`` of
        ``total``); returns how many were left unstarted (paused or aborted)."""
        ...


class Strategy(Protocol):
    """The shape of a rollout; the engine runs it after the preflight."""

    @property
    def name(self) -> str:
        """What it is called ('rolling', 'blue-green'...)."""
        ...

    def bind(self, traffic: Traffic | None) -> TrafficSwitch | None:
        """Given the rollout's load balancer (None: no ``load_balancer:``) before the
        run, return what each host's journey calls around its change: ``traffic``
        itself (drain, deploy, ready), a wrapper (a canary readied at weight 0) or
        None (traffic left alone)."""
        ...

    async def run(self, ctx: StrategyContext) -> Verdict:
        """The forward rollout, from ``ctx.start_batch``, to its verdict."""
        ...

    async def roll_back(self, ctx: StrategyContext) -> Verdict:
        """Undo what the rollout changed; called once a rollback was requested."""
        ...


def aborted(control: Control) -> Verdict | None:
    """How an aborted rollout ends: FAILED when a rule aborted it, else ABORTED."""
    if not control.aborted:
        return None
    outcome = Outcome.FAILED if control.abort_by_policy else Outcome.ABORTED
    return outcome, control.abort_reason


def succeeded(ctx: StrategyContext) -> Verdict:
    """Every move made: SUCCEEDED, naming the hosts that failed within the budget."""
    failed = sorted(ctx.budget.failed)
    tail = f"; {len(failed)} failed within the budget: {', '.join(failed)}" if failed else ""
    healthy = sum(r.state == HostState.HEALTHY for r in ctx.recs.values())
    return Outcome.SUCCEEDED, f"{healthy} hosts on {ctx.spec.version}{tail}"


async def roll_back_hosts(ctx: StrategyContext, order: RollbackOrder) -> Verdict:
    """Run the rollback steps on every changed host, group by group as ``order`` cuts
    them; stops on abort, or headless on a pause. The rollback of any strategy that
    changes hosts in place (rolling, canary)."""
    c = ctx.control
    targets = ctx.begin_rollback()
    groups = order(targets)
    what = f"{len(targets)} changed hosts"
    ctx.announce(f"{c.pause_reason}; then {what} roll back" if c.halted else f"rolling back {what}")
    for k, group in enumerate(groups):
        if all(ctx.recs[n].state == HostState.ROLLED_BACK for n in group):
            continue
        left = await ctx.run_rollback_batch(k, len(groups), group)
        if stop := aborted(c):
            return stop
        if c.halted and ctx.exit_when_paused and left:
            return Outcome.PAUSED, "paused during rollback"
    states = Counter(r.state for r in targets)
    if c.halted and ctx.exit_when_paused:
        left = len(targets) - states[HostState.ROLLED_BACK] - states[HostState.ROLLBACK_FAILED]
        if left:
            return Outcome.PAUSED, f"paused during rollback; {left} hosts not rolled back"
    bad = [n for g in groups for n in g if ctx.recs[n].state == HostState.ROLLBACK_FAILED]
    if bad:
        return Outcome.FAILED, f"rollback failed on {len(bad)} hosts: {', '.join(bad)}"
    return Outcome.ROLLED_BACK, f"rolled back {len(targets)} hosts to their previous versions"
