"""What each operator command does to a running engine, and when it is refused.

:func:`decide` is pure with respect to the outside world: it inspects the engine and
returns ``(accepted, detail, effect)``; the engine journals the command first and
then applies ``effect``. Every command is idempotent: repeating one that already
holds is accepted with "already ..." and changes nothing.

Commands see the engine as an :class:`~console.engine.context.EngineContext`: they flip
flags and then ``announce()``, and the phase journaled is the one the machine derives
from the flags (never one chosen here). ``set_batch_size`` re-cuts with the planner's
own rule (:func:`console.plan.recut`), so it cuts what ``rolldeck check`` would.

Budget accounting for ``retry``: a failed host leaves the failure count while it is
retried (it runs its steps again from the first one, keeping the previous version
read before its first attempt) and counts again if it fails again.
"""

from __future__ import annotations

from collections.abc import Callable

from console.core import events as ev
from console.core.commands import Command
from console.core.events import HostState
from console.engine.context import EngineContext
from console.plan import parse_size

Effect = Callable[[], None] | None
Decision = tuple[bool, str, Effect]


def decide(engine: EngineContext, cmd: Command) -> Decision:
    handler = _HANDLERS[cmd.name]
    return handler(engine, cmd)


def _by(verb: str, cmd: Command) -> str:
    return f"{verb} by {cmd.operator}" + (f": {cmd.reason}" if cmd.reason else "")


def _pause(engine: EngineContext, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if c.paused:
        return True, "already paused", None

    def effect() -> None:
        c.paused = True
        c.pause_reason = _by("paused", cmd)
        engine.announce(c.pause_reason)

    moving = sum(1 for r in engine.recs.values() if r.task is not None and not r.task.done())
    return True, f"no new host starts; {moving} moving hosts finish", effect


def _freeze(engine: EngineContext, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if c.frozen:
        return True, "already frozen", None

    def effect() -> None:
        c.paused = c.frozen = True
        c.pause_reason = _by("frozen", cmd)
        engine.announce(c.pause_reason)

    return True, "no new step starts on any host", effect


def _resume(engine: EngineContext, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if not c.halted:
        return True, "not paused", None

    def effect() -> None:
        c.paused = c.frozen = False
        engine.announce(f"resumed by {cmd.operator}")

    return True, "continuing where it stopped", effect


def _abort(engine: EngineContext, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return True, "already aborting", None
    moving = [r for r in engine.recs.values() if r.task is not None and not r.task.done()]

    def effect() -> None:
        c.aborted = True
        c.abort_reason = _by("aborted", cmd)
        engine.announce(c.abort_reason)
        for rec in moving:
            assert rec.task is not None
            rec.task.cancel()

    return True, f"cancelling {len(moving)} in-flight hosts; hosts are left as they are", effect


def _rollback(engine: EngineContext, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if c.rollback_requested:
        return True, "already rolling back", None
    if not engine.spec.rollback.steps:
        return False, "the spec has no rollback steps", None
    changed = [r.name for r in engine.recs.values() if r.changed]

    def effect() -> None:
        c.rollback_requested = True
        engine.announce(
            f"rollback by {cmd.operator}: no new host starts; moving hosts finish, then "
            f"{len(changed)} changed hosts roll back"
        )

    return True, f"rolling back {len(changed)} changed hosts (and any still moving)", effect


def _continue(engine: EngineContext, cmd: Command) -> Decision:
    c = engine.control
    if c.gate_open == "approval":  # the console's `c` at an approval gate approves
        return _approve(engine, cmd)
    if c.gate_open not in ("manual", "command"):  # a command gate: the operator overrides
        return False, "no manual gate is waiting", None
    if c.gate_continued_by is not None:
        return True, "already continued", None

    def effect() -> None:
        c.gate_continued_by = cmd.operator

    return True, "gate passed", effect


def _approve(engine: EngineContext, cmd: Command) -> Decision:
    """An approval counts once per Unix user, never the rollout owner's: the uid is the
    kernel's (this process, or the attach socket's peer), not a name on the wire."""
    c = engine.control
    if c.gate_open != "approval":
        return False, "no approval gate is waiting", None
    who = f"{cmd.operator} (unix {cmd.user}, uid {cmd.uid})"
    if cmd.uid == c.owner_uid:
        return (
            False,
            f"an approval must come from another Unix user than the one running the "
            f"rollout ({cmd.user}, uid {cmd.uid}): run `rolldeck approve` as yourself",
            None,
        )
    if cmd.uid in c.approvals:
        return True, f"already approved by {c.approvals[cmd.uid]}", None
    have = len(c.approvals) + 1

    def effect() -> None:
        c.approvals[cmd.uid] = who

    return True, f"approved by {who}: {have} of {c.approvers_needed}", effect


def _host_arg(engine: EngineContext, cmd: Command) -> str | None:
    host = cmd.args.get("host")
    return host if isinstance(host, str) and host in engine.recs else None


def _skip(engine: EngineContext, cmd: Command) -> Decision:
    name = _host_arg(engine, cmd)
    if name is None:
        return False, f"unknown host {cmd.args.get('host')!r}", None
    rec = engine.recs[name]
    if rec.state == HostState.SKIPPED:
        return True, "already skipped", None
    if rec.state != HostState.PENDING or engine.control.rolling_back:
        return False, f"{name} is {rec.state.value}: only hosts not started can be skipped", None

    def effect() -> None:
        engine.set_host_state(rec, HostState.SKIPPED, detail=f"skipped by {cmd.operator}")
        if engine.batches.remove(name):
            _plan_changed(engine, f"{name} skipped")

    return True, f"{name} will not be deployed", effect


def _retry(engine: EngineContext, cmd: Command) -> Decision:
    name = _host_arg(engine, cmd)
    c = engine.control
    if name is None:
        return False, f"unknown host {cmd.args.get('host')!r}", None
    rec = engine.recs[name]
    if rec.retry and rec.state == HostState.PENDING:
        return True, "already queued for retry", None
    if c.stopping or c.rolling_back:
        return False, "the rollout is stopping", None
    if not rec.failed or rec.state not in (HostState.FAILED, HostState.SKIPPED):
        return False, f"{name} is {rec.state.value}: only failed hosts can be retried", None

    def effect() -> None:
        engine.budget.forgive(name)
        rec.failed = False
        rec.retry = True
        engine.set_host_state(rec, HostState.PENDING, detail=f"retry requested by {cmd.operator}")
        where = engine.batches.place_retry(name)
        _plan_changed(engine, f"retry {name} in {where}")

    return True, f"{name} leaves the failure count and runs again from its first step", effect


def _set_batch_size(engine: EngineContext, cmd: Command) -> Decision:
    """The hosts not started, re-cut by the planner's own rule (console.plan.recut)."""
    value = cmd.args.get("size")
    try:
        parse_size(value)
    except ValueError:
        return False, f"bad batch size {value!r}: a count >= 1 or a percentage", None
    if engine.control.rolling_back:
        return False, "the rollout is rolling back", None
    trial = engine.batches.copy()  # a no-op command changes nothing
    size, count, changed = trial.recut(value, _pending(engine))
    if not changed:
        return True, f"batches not started already have size {size}", None
    left = len(trial) - trial.first_unstarted

    def effect() -> None:
        engine.batches.recut(value, _pending(engine))
        _plan_changed(
            engine, f"batch size {size} for the {left} batches not started (by {cmd.operator})"
        )

    return True, f"{count} hosts re-planned in batches of {size}", effect


def _pending(engine: EngineContext) -> Callable[[str], bool]:
    return lambda name: engine.recs[name].state == HostState.PENDING


def _plan_changed(engine: EngineContext, reason: str) -> None:
    engine.emit(ev.PlanChanged(batches=engine.batches.snapshot(), reason=reason))


_HANDLERS: dict[str, Callable[[EngineContext, Command], Decision]] = {
    "pause": _pause,
    "freeze": _freeze,
    "resume": _resume,
    "abort": _abort,
    "rollback": _rollback,
    "continue": _continue,
    "approve": _approve,
    "skip": _skip,
    "retry": _retry,
    "set_batch_size": _set_batch_size,
}
