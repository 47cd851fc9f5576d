"""What each operator command does to a running engine, and when it is refused.

:func:`decide` is pure with respect to the outside world: it inspects the engine and
returns ``(accepted, detail, effect)``; the engine journals the command first and
then applies ``effect``. Every command is idempotent: repeating one that already
holds is accepted with "already ..." and changes nothing.

Budget accounting for ``retry``: a failed host leaves the failure count while it is
retried (it runs its steps again from the first one, keeping the previous version
read before its first attempt) and counts again if it fails again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from console.core import events as ev
from console.core.commands import Command
from console.core.events import HostState, RolloutState

if TYPE_CHECKING:
    from console.engine.core import Engine

Effect = Callable[[], None] | None
Decision = tuple[bool, str, Effect]
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def decide(engine: Engine, cmd: Command) -> Decision:
    handler = _HANDLERS[cmd.name]
    return handler(engine, cmd)


def _moving_state(engine: Engine) -> RolloutState:
    c = engine.control
    if c.frozen:
        return RolloutState.FROZEN
    if c.paused:
        return RolloutState.PAUSED
    if c.rolling_back or c.rollback_requested:
        return RolloutState.ROLLING_BACK
    if c.gate_open:
        return RolloutState.WAITING
    return RolloutState.RUNNING


def _pause(engine: Engine, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if c.paused:
        return True, "already paused", None

    def effect() -> None:
        c.paused = True
        engine._pause_reason = f"paused by {cmd.operator}" + (
            f": {cmd.reason}" if cmd.reason else ""
        )
        engine._state(RolloutState.PAUSED, engine._pause_reason)

    moving = sum(1 for r in engine.recs.values() if r.task is not None and not r.task.done())
    return True, f"no new host starts; {moving} moving hosts finish", effect


def _freeze(engine: Engine, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if c.frozen:
        return True, "already frozen", None

    def effect() -> None:
        c.paused = c.frozen = True
        engine._pause_reason = f"frozen by {cmd.operator}" + (
            f": {cmd.reason}" if cmd.reason else ""
        )
        engine._state(RolloutState.FROZEN, engine._pause_reason)

    return True, "no new step starts on any host", effect


def _resume(engine: Engine, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return False, "the rollout is aborting", None
    if not (c.paused or c.frozen):
        return True, "not paused", None

    def effect() -> None:
        c.paused = c.frozen = False
        engine._state(_moving_state(engine), f"resumed by {cmd.operator}")

    return True, "continuing where it stopped", effect


def _abort(engine: Engine, cmd: Command) -> Decision:
    c = engine.control
    if c.aborted:
        return True, "already aborting", None
    moving = [r for r in engine.recs.values() if r.task is not None and not r.task.done()]

    def effect() -> None:
        c.aborted = True
        engine._abort_reason = f"aborted by {cmd.operator}" + (
            f": {cmd.reason}" if cmd.reason else ""
        )
        engine._state(RolloutState.ABORTED, engine._abort_reason)
        for rec in moving:
            assert rec.task is not None
            rec.task.cancel()

    return True, f"cancelling {len(moving)} in-flight hosts; hosts are left as they are", effect


def _rollback(engine: Engine, cmd: Command) -> Decision:
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
        engine._state(
            RolloutState.ROLLING_BACK,
            f"rollback by {cmd.operator}: no new host starts; moving hosts finish, then "
            f"{len(changed)} changed hosts roll back",
        )

    return True, f"rolling back {len(changed)} changed hosts (and any still moving)", effect


def _continue(engine: Engine, cmd: Command) -> Decision:
    c = engine.control
    if c.gate_open != "manual":
        return False, "no manual gate is waiting", None
    if c.gate_continued_by is not None:
        return True, "already continued", None

    def effect() -> None:
        c.gate_continued_by = cmd.operator

    return True, "gate passed", effect


def _host_arg(engine: Engine, cmd: Command) -> str | None:
    host = cmd.args.get("host")
    return host if isinstance(host, str) and host in engine.recs else None


def _skip(engine: Engine, cmd: Command) -> Decision:
    name = _host_arg(engine, cmd)
    if name is None:
        return False, f"unknown host {cmd.args.get('host')!r}", None
    rec = engine.recs[name]
    if rec.state == HostState.SKIPPED:
        return True, "already skipped", None
    if rec.state != HostState.PENDING or engine.control.rolling_back:
        return False, f"{name} is {rec.state.value}: only hosts not started can be skipped", None

    def effect() -> None:
        engine._work.set_state(rec, HostState.SKIPPED, detail=f"skipped by {cmd.operator}")
        if engine._queue is not None and name in engine._queue:
            engine._queue.remove(name)
        _remove_from_plan(engine, name, keep_started=True)

    return True, f"{name} will not be deployed", effect


def _retry(engine: Engine, cmd: Command) -> Decision:
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
        engine._work.set_state(rec, HostState.PENDING, detail=f"retry requested by {cmd.operator}")
        _place_retry(engine, name)

    return True, f"{name} leaves the failure count and runs again from its first step", effect


def _set_batch_size(engine: Engine, cmd: Command) -> Decision:
    size = _parse_size(cmd.args.get("size"), len(engine.recs))
    if size is None:
        return False, f"bad batch size {cmd.args.get('size')!r}: a count >= 1 or a percentage", None
    if engine.control.rolling_back:
        return False, "the rollout is rolling back", None
    start = _first_unstarted(engine)
    remaining = [
        n for b in engine._batches[start:] for n in b if engine.recs[n].state == HostState.PENDING
    ]
    cut = [remaining[i : i + size] for i in range(0, len(remaining), size)]
    if cut == engine._batches[start:]:
        return True, f"batches not started already have size {size}", None

    def effect() -> None:
        engine._batches[start:] = cut
        engine._emit(
            ev.PlanChanged(
                batches=tuple(tuple(b) for b in engine._batches),
                reason=f"batch size {size} for the {len(cut)} batches not started "
                f"(by {cmd.operator})",
            )
        )

    return True, f"{len(remaining)} hosts re-planned in batches of {size}", effect


def _parse_size(value: object, targeted: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    if isinstance(value, str):
        if value.strip().isdigit():
            return int(value) if int(value) >= 1 else None
        m = _PERCENT.match(value)
        if m and 0 < float(m.group(1)) <= 100:
            return max(1, math.ceil(targeted * float(m.group(1)) / 100.0))
    return None


def _first_unstarted(engine: Engine) -> int:
    """Index of the first batch not started yet."""
    return 0 if engine._batch_index is None else engine._batch_index + 1


def _remove_from_plan(engine: Engine, name: str, *, keep_started: bool) -> None:
    start = _first_unstarted(engine) if keep_started else 0
    changed = False
    for batch in engine._batches[start:]:
        if name in batch:
            batch.remove(name)
            changed = True
    engine._batches[start:] = [b for b in engine._batches[start:] if b]
    if changed:
        engine._emit(
            ev.PlanChanged(
                batches=tuple(tuple(b) for b in engine._batches), reason=f"{name} skipped"
            )
        )


def _place_retry(engine: Engine, name: str) -> None:
    """Into the running batch if there is one, else at the front of the next batch.
    Batches already started are history and stay as they were."""
    first = _first_unstarted(engine)
    for batch in engine._batches[first:]:
        if name in batch:
            batch.remove(name)
    running = engine._batch_index if engine._queue is not None else None
    if running is not None:
        engine._queue.append(name)  # type: ignore[union-attr]
        if name not in engine._batches[running]:
            engine._batches[running].append(name)
        where = f"batch {running + 1}"
    elif first < len(engine._batches):
        engine._batches[first].insert(0, name)
        where = f"batch {first + 1}"
    else:
        engine._batches.append([name])
        where = f"batch {len(engine._batches)}"
    engine._batches[first:] = [b for b in engine._batches[first:] if b]
    engine._emit(
        ev.PlanChanged(
            batches=tuple(tuple(b) for b in engine._batches), reason=f"retry {name} in {where}"
        )
    )


_HANDLERS: dict[str, Callable[[Engine, Command], Decision]] = {
    "pause": _pause,
    "freeze": _freeze,
    "resume": _resume,
    "abort": _abort,
    "rollback": _rollback,
    "continue": _continue,
    "skip": _skip,
    "retry": _retry,
    "set_batch_size": _set_batch_size,
}
