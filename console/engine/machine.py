"""The rollout's phases, written once: the legal transitions and the one derivation.

The header's phase (:class:`~console.core.events.RolloutState`) is a function of the
control flags, never a value some code path chooses: commands, gates, the rollback
phase and the end of the preflight all announce :func:`derive` of the flags as they
are now, so two paths cannot disagree about what "resumed while frozen" or "a gate
opened while paused" shows. Precedence, highest first:

1. aborted: nothing else matters any more;
2. a rollback requested and not yet started: it lifts pause and freeze when it
   starts, so the operator reads what comes next, not the pause it cancels;
3. frozen (a freeze is also a pause), then paused;
4. the preflight (until every host was checked; a resumed rollback checks too);
5. rolling back;
6. a gate open between batches (manual or bake);
7. running.

:data:`TRANSITIONS` says which phase may follow which; the engine checks every change
it announces against it (an illegal one is logged, not raised: a wrong header must
not stop a rollout). Pure and dependency-free, so it is unit-tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.core.events import RolloutState

__all__ = [
    "TRANSITIONS",
    "Flags",
    "derive",
    "legal",
    "on_failure_action",
]

S = RolloutState


@dataclass(frozen=True, slots=True)
class Flags:
    """What the phase depends on: the control flags, as plain values."""

    aborted: bool = False
    rollback_requested: bool = False
    rolling_back: bool = False
    frozen: bool = False
    paused: bool = False
    preflight: bool = False
    gate_open: str | None = None  # 'manual' | 'bake'


def derive(flags: Flags) -> RolloutState:
    """The rollout's phase for ``flags`` (precedence in the module doc)."""
    if flags.aborted:
        return S.ABORTED
    if flags.rollback_requested and not flags.rolling_back:
        return S.ROLLING_BACK
    if flags.frozen:
        return S.FROZEN
    if flags.paused:
        return S.PAUSED
    if flags.preflight:
        return S.PREFLIGHT
    if flags.rolling_back or flags.rollback_requested:
        return S.ROLLING_BACK
    if flags.gate_open:
        return S.WAITING
    return S.RUNNING


_HALTS = frozenset({S.PAUSED, S.FROZEN, S.ROLLING_BACK, S.ABORTED, S.DONE})

# Which phase may follow which; ``None`` is an engine that announced nothing yet.
# A phase may always follow itself (the same phase with a new reason). DONE is the
# end of the run (``RolloutFinished``), reachable from everywhere; nothing follows it.
TRANSITIONS: dict[RolloutState | None, frozenset[RolloutState]] = {
    None: _HALTS | {S.PREFLIGHT},  # a resumed rollout starts paused
    S.PREFLIGHT: _HALTS | {S.RUNNING},
    S.RUNNING: _HALTS | {S.WAITING},
    S.WAITING: _HALTS | {S.RUNNING},
    S.PAUSED: _HALTS | {S.RUNNING, S.WAITING, S.PREFLIGHT},
    S.FROZEN: _HALTS | {S.RUNNING, S.WAITING, S.PREFLIGHT},
    # Rollback is one way: paused or frozen within it, never back to the deploy.
    S.ROLLING_BACK: frozenset({S.PAUSED, S.FROZEN, S.ABORTED, S.DONE}),
    S.ABORTED: frozenset({S.DONE}),
    S.DONE: frozenset(),
}


def legal(current: RolloutState | None, new: RolloutState) -> bool:
    """Whether ``new`` may follow ``current`` (itself always may, but DONE)."""
    if current == new:
        return current != S.DONE
    return new in TRANSITIONS[current]


FALLBACK_NOTE = "; the spec has no rollback steps, so pausing instead"


def on_failure_action(on_failure: str, has_rollback_steps: bool) -> tuple[str, str]:
    """The action a tripped rule takes and what to add to its message: ``rollback``
    without rollback steps cannot roll anything back, so it pauses and says why."""
    if on_failure == "rollback" and not has_rollback_steps:
        return "pause", FALLBACK_NOTE
    return on_failure, ""
