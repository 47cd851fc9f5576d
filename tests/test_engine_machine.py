"""The phase machine: the one derivation of the rollout's phase from the control flags,
the legal transitions, and the engine announcing only what they allow."""

from __future__ import annotations

import itertools
import logging

import pytest

from console.core import events as ev
from console.core.events import Outcome, RolloutState
from console.engine.machine import TRANSITIONS, Flags, derive, legal, on_failure_action
from tests.test_engine_helpers import Run, make_engine, run_engine, spec_from

S = RolloutState


@pytest.mark.parametrize(
    ("flags", "phase"),
    [
        (Flags(), S.RUNNING),
        (Flags(preflight=True), S.PREFLIGHT),
        (Flags(gate_open="manual"), S.WAITING),
        (Flags(gate_open="bake"), S.WAITING),
        (Flags(paused=True), S.PAUSED),
        (Flags(paused=True, frozen=True), S.FROZEN),  # a freeze is also a pause
        (Flags(paused=True, preflight=True), S.PAUSED),
        (Flags(paused=True, frozen=True, preflight=True), S.FROZEN),
        (Flags(paused=True, gate_open="bake"), S.PAUSED),
        (Flags(frozen=True, paused=True, gate_open="manual"), S.FROZEN),
        (Flags(rollback_requested=True), S.ROLLING_BACK),
        # a pending rollback lifts the pause when it starts: say what comes next
        (Flags(rollback_requested=True, paused=True, frozen=True), S.ROLLING_BACK),
        (Flags(rollback_requested=True, rolling_back=True), S.ROLLING_BACK),
        (Flags(rollback_requested=True, rolling_back=True, paused=True), S.PAUSED),
        (Flags(rollback_requested=True, rolling_back=True, paused=True, frozen=True), S.FROZEN),
        # a resumed rollback checks its hosts first
        (Flags(rollback_requested=True, rolling_back=True, preflight=True), S.PREFLIGHT),
        (Flags(aborted=True, paused=True, frozen=True, gate_open="manual"), S.ABORTED),
        (Flags(aborted=True, rollback_requested=True, rolling_back=True), S.ABORTED),
    ],
)
def test_derive(flags: Flags, phase: RolloutState) -> None:
    assert derive(flags) == phase


def test_derive_is_total_and_aborted_wins() -> None:
    for bits in itertools.product((False, True), repeat=6):
        for gate in (None, "manual", "bake"):
            flags = Flags(*bits, gate_open=gate)
            phase = derive(flags)
            assert isinstance(phase, RolloutState)
            assert (phase == S.ABORTED) == flags.aborted
            assert phase != S.DONE  # the end is RolloutFinished, not a flag


def test_transitions() -> None:
    assert set(TRANSITIONS) == {None, *RolloutState}
    assert legal(None, S.PREFLIGHT) and legal(None, S.PAUSED)  # a resumed rollout
    assert legal(S.RUNNING, S.RUNNING)  # the same phase with a new reason
    assert legal(S.WAITING, S.RUNNING) and legal(S.FROZEN, S.WAITING)
    assert legal(S.ROLLING_BACK, S.PAUSED) and legal(S.PAUSED, S.ROLLING_BACK)
    assert not legal(S.ROLLING_BACK, S.RUNNING)  # rollback never goes back to the deploy
    assert not legal(S.ROLLING_BACK, S.WAITING)
    assert not legal(S.ABORTED, S.RUNNING) and not legal(S.ABORTED, S.PAUSED)
    assert not legal(S.RUNNING, S.PREFLIGHT)
    assert not legal(S.DONE, S.DONE) and not legal(S.DONE, S.RUNNING)
    for current in set(RolloutState) - {S.DONE}:
        assert legal(current, S.DONE) and legal(current, S.ABORTED)


def test_on_failure_fallback_is_written_once() -> None:
    assert on_failure_action("rollback", True) == ("rollback", "")
    action, note = on_failure_action("rollback", False)
    assert action == "pause" and note == "; the spec has no rollback steps, so pausing instead"
    assert on_failure_action("abort", False) == ("abort", "")
    assert on_failure_action("pause", False) == ("pause", "")


def phases(run: Run) -> list[RolloutState]:
    return [e.state for e in run.kinds(ev.RolloutStateChanged)]


def assert_legal(seq: list[RolloutState]) -> None:
    current: RolloutState | None = None
    for phase in seq:
        assert legal(current, phase), f"{current} -> {phase} in {seq}"
        current = phase


async def test_frozen_before_the_batches_says_frozen_not_paused() -> None:
    """Frozen before the start: the phase stays FROZEN through the preflight and after
    it (the old engine said PREFLIGHT, then PAUSED: the derivation that ignored
    frozen), until the operator resumes."""
    run = make_engine(spec_from(), 3)
    run.engine.freeze(reason="look first", operator="dana")
    seen: dict[str, object] = {}

    def react(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.Notice) and e.message.startswith("preflight:"):
            seen["preflight_done"] = True
        elif (
            isinstance(e, ev.RolloutStateChanged)
            and seen.get("preflight_done")
            and "after" not in seen
        ):
            seen["after"] = e.state
            r.engine.resume(operator="dana")

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    assert seen["after"] == S.FROZEN
    seq = phases(run)
    assert S.PAUSED not in seq and S.PREFLIGHT not in seq
    assert seq[-1] == S.RUNNING
    assert_legal(seq)


async def test_frozen_headless_stops_frozen() -> None:
    run = make_engine(spec_from(), 3, exit_when_paused=True)
    run.engine.freeze(reason="look first", operator="dana")
    await run_engine(run)
    assert run.outcome == Outcome.PAUSED
    seq = phases(run)
    assert seq and all(p == S.FROZEN for p in seq), seq
    assert run.kinds(ev.RolloutStateChanged)[-1].reason == "frozen by dana: look first"


async def test_resume_while_frozen_at_the_start_shows_the_preflight() -> None:
    run = make_engine(spec_from(), 3)
    run.engine.freeze(operator="dana")
    run.engine.resume(operator="dana")
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    seq = phases(run)
    assert seq[:3] == [S.FROZEN, S.PREFLIGHT, S.PREFLIGHT]
    assert seq[-1] == S.RUNNING
    assert_legal(seq)


async def test_every_phase_change_is_legal(caplog: pytest.LogCaptureFixture) -> None:
    """Rollouts through gates, pauses, a rollback and an abort announce only legal
    phase changes (the engine logs an illegal one)."""
    caplog.set_level(logging.ERROR, logger="console.engine.core")
    manual = make_engine(spec_from("between_batches: manual\n"), 5)

    def react_manual(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting):
            r.engine.pause(operator="dana")
            r.engine.freeze(operator="dana")
            r.engine.resume(operator="dana")
            r.engine.continue_(operator="dana")

    await run_engine(manual, react_manual)
    assert manual.outcome == Outcome.SUCCEEDED
    assert S.WAITING in phases(manual) and S.FROZEN in phases(manual)

    rolled = make_engine(spec_from("between_batches: manual\n"), 5)

    def react_rollback(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting):
            r.engine.pause(operator="dana")
            r.engine.rollback(operator="dana")
        if isinstance(e, ev.BatchStarted) and e.rollback:
            r.engine.pause(operator="dana")
            r.engine.resume(operator="dana")

    await run_engine(rolled, react_rollback)
    assert rolled.outcome == Outcome.ROLLED_BACK
    assert phases(rolled)[-1] == S.ROLLING_BACK

    aborted = make_engine(spec_from("between_batches: manual\n"), 5)
    await run_engine(
        aborted,
        lambda e, r: r.engine.abort() if isinstance(e, ev.GateWaiting) else None,
    )
    assert aborted.outcome == Outcome.ABORTED
    for run in (manual, rolled, aborted):
        assert_legal(phases(run))
    assert not [r for r in caplog.records if "illegal phase" in r.getMessage()]
