"""Operator commands: pause, freeze, resume, abort, rollback, skip, retry,
set_batch_size, continue; idempotency and refusals, all journaled with who and why."""

from __future__ import annotations

import asyncio

from console.core import events as ev
from console.core.commands import Command
from console.core.events import Event, HostState, Outcome, RolloutState
from tests.test_engine_helpers import Run, make_engine, run_engine, spec_from


def when(pred, action):
    """A react callback running ``action(run)`` once, the first time ``pred(event)``."""
    fired = []

    def react(event: Event, run: Run) -> None:
        if not fired and pred(event):
            fired.append(event)
            action(run)

    return react


def later(delay: float, fn) -> None:
    """Only where the wait is the scenario (an operator keeping the rollout paused)."""
    asyncio.get_running_loop().call_later(delay, fn)


def script(*rules):
    """Several ``when`` rules on one run: each sees every event, in order."""

    def react(event: Event, run: Run) -> None:
        for rule in rules:
            rule(event, run)

    return react


def healthy(host: str):
    return lambda e: (
        isinstance(e, ev.HostStateChanged) and e.host == host and e.state == HostState.HEALTHY
    )


def frozen(*names: str):
    """True from the event on which the last of ``names`` turned FROZEN (it remembers:
    one per rule). A host announces FROZEN and then waits, with no await between: when
    the rule fires, every one of them is held."""
    seen: set[str] = set()

    def pred(e: Event) -> bool:
        if isinstance(e, ev.HostStateChanged) and e.state == HostState.FROZEN:
            seen.add(e.host)
        return seen >= set(names)

    return pred


def batch_finished(index: int):
    """The forward batch ``index`` is over. Paused, the strategy's next await after it
    is the wait for resume: when the rule fires, the engine is parked there."""
    return lambda e: isinstance(e, ev.BatchFinished) and e.index == index and not e.rollback


def step_started(host: str, step: str):
    return lambda e: isinstance(e, ev.StepStarted) and e.host == host and e.step == step


async def test_pause_then_resume_continues_where_it_stopped() -> None:
    run = make_engine(spec_from("batches: [1, 2]\n"), 5)
    seen: dict[str, list[str]] = {}

    def check_and_resume(r: Run) -> None:
        seen["while_paused"] = [n for n in ("h02", "h03", "h04") if r.deploy_commands(n)]
        r.engine.resume(operator="alice")

    pause = when(healthy("h01"), lambda r: r.engine.pause(reason="looks odd", operator="alice"))
    # Parked at the wait for resume, nothing moves and no event can say "still nothing
    # started": the operator stays paused a while (the scenario), time for a broken
    # pause to start batch 2.
    stay = when(batch_finished(0), lambda r: later(0.2, lambda: check_and_resume(r)))
    await run_engine(run, script(pause, stay))
    assert seen["while_paused"] == []
    issued = run.kinds(ev.OperatorCommand)
    resumed = run.events.index(next(c for c in issued if c.command == "resume"))
    started = [e.host for e in run.events[:resumed] if isinstance(e, ev.StepStarted)]
    assert set(started) == {"h01"}  # nothing else started while paused
    assert run.outcome == Outcome.SUCCEEDED
    assert all(run.final(n) == HostState.HEALTHY for n in run.engine.recs)
    cmds = [(c.command, c.operator, c.reason) for c in run.kinds(ev.OperatorCommand)]
    assert cmds == [("pause", "alice", "looks odd"), ("resume", "alice", "")]
    states = [e.state for e in run.kinds(ev.RolloutStateChanged)]
    assert RolloutState.PAUSED in states and states[-1] == RolloutState.RUNNING


async def test_pause_lets_moving_hosts_finish_steps_and_gating() -> None:
    spec = spec_from("batches: [3]\nmax_parallel: 2\n")
    run = make_engine(spec, 3, exit_when_paused=True)
    run.fake.on(r"^install", delay=0.1)
    await run_engine(run, when(step_started("h01", "install"), lambda r: r.engine.pause()))
    assert run.outcome == Outcome.PAUSED
    assert run.final("h01") == HostState.HEALTHY
    assert run.final("h02") == HostState.HEALTHY
    assert run.final("h03") == HostState.PENDING and not run.deploy_commands("h03")


async def test_pause_is_idempotent_and_journaled_twice() -> None:
    run = make_engine(spec_from(), 3, exit_when_paused=True)

    def act(r: Run) -> None:
        r.engine.pause()
        r.engine.pause()

    await run_engine(run, when(healthy("h01"), act))
    cmds = run.kinds(ev.OperatorCommand)
    assert [(c.command, c.accepted) for c in cmds] == [("pause", True), ("pause", True)]
    assert cmds[1].detail == "already paused"
    paused = [e for e in run.kinds(ev.RolloutStateChanged) if e.state == RolloutState.PAUSED]
    assert len(paused) == 1


async def test_freeze_stops_between_steps_and_resume_continues() -> None:
    spec = spec_from("batches: [100%]\n")
    run = make_engine(spec, 2)
    run.fake.on(r"^install", delay=0.1)
    frozen_at: dict[str, object] = {}

    def check(r: Run) -> None:
        frozen_at["states"] = {n: r.engine.recs[n].state for n in ("h01", "h02")}
        frozen_at["detail"] = r.engine.recs["h01"].detail
        frozen_at["activated"] = [n for n in ("h01", "h02") if r.fake.ran(n, "^activate")]
        r.engine.resume()

    freeze = when(step_started("h01", "install"), lambda r: r.engine.freeze(reason="db alarm"))
    await run_engine(run, script(freeze, when(frozen("h01", "h02"), check)))
    assert frozen_at["states"] == {"h01": HostState.FROZEN, "h02": HostState.FROZEN}
    assert frozen_at["detail"] == "frozen after install"
    assert frozen_at["activated"] == []
    assert run.outcome == Outcome.SUCCEEDED
    assert run.commands("h01").count("install 2.0") == 1  # not re-run after resume


async def test_freeze_headless_stops_paused_with_hosts_frozen() -> None:
    run = make_engine(spec_from("batches: [100%]\n"), 2, exit_when_paused=True)
    run.fake.on(r"^install", delay=0.1)
    await run_engine(run, when(step_started("h01", "install"), lambda r: r.engine.freeze()))
    assert run.outcome == Outcome.PAUSED
    assert run.final("h01") == HostState.FROZEN


async def test_abort_cancels_in_flight_and_records_where_each_host_is() -> None:
    spec = spec_from("batches: [2]\n")
    run = make_engine(spec, 4)
    run.fake.on(r"^install", delay=5.0, hosts=["h02"])
    run.fake.on(r"^activate", delay=5.0, hosts=["h01"])
    await run_engine(
        run,
        when(
            step_started("h01", "activate"), lambda r: r.engine.abort(reason="bad", operator="bob")
        ),
    )
    assert run.outcome == Outcome.ABORTED
    assert run.kinds(ev.RolloutFinished)[-1].exit_code == 5
    rec1, rec2 = run.engine.recs["h01"], run.engine.recs["h02"]
    assert (rec1.state, rec1.detail, rec1.step) == (
        HostState.INTERRUPTED,
        "aborted during activate",
        "activate",
    )
    assert (rec2.state, rec2.detail) == (HostState.INTERRUPTED, "aborted during install")
    assert ("h01", "activate 2.0", "cancelled") in run.fake.cancellations
    assert ("h02", "install 2.0", "cancelled") in run.fake.cancellations
    assert not run.fake.running()
    assert run.final("h03") == HostState.PENDING and not run.deploy_commands("h03")
    cancelled = [e for e in run.kinds(ev.StepFinished) if e.status == "cancelled"]
    assert {(e.host, e.step) for e in cancelled} == {("h01", "activate"), ("h02", "install")}


async def test_abort_while_frozen_says_after_which_step() -> None:
    run = make_engine(spec_from("batches: [100%]\n"), 1)
    run.fake.on(r"^install", delay=0.05)

    freeze = when(step_started("h01", "install"), lambda r: r.engine.freeze())
    await run_engine(run, script(freeze, when(frozen("h01"), lambda r: r.engine.abort())))
    assert run.outcome == Outcome.ABORTED
    assert run.engine.recs["h01"].detail == "aborted after install"


async def test_operator_rollback_restores_each_host_to_its_own_previous_version() -> None:
    spec = spec_from("batches: [1, 2]\nmax_parallel: 5\n")
    run = make_engine(spec, 6)
    run.fleet.versions.update({"h01": "1.0", "h02": "1.1", "h03": "0.9"})
    run.fake.on(r"^install", delay=0.1, hosts=["h03"])
    await run_engine(
        run, when(step_started("h03", "install"), lambda r: r.engine.rollback(reason="errors up"))
    )
    assert run.outcome == Outcome.ROLLED_BACK
    assert run.fleet.versions == {"h01": "1.0", "h02": "1.1", "h03": "0.9"}
    # h03 was moving: it finished deploying first, then rolled back
    assert run.commands("h03").index("activate 2.0") < run.commands("h03").index("activate 0.9")
    for name in ("h04", "h05", "h06"):
        assert run.commands(name) == ["version"]
    assert all(run.final(n) == HostState.ROLLED_BACK for n in ("h01", "h02", "h03"))
    rb_steps = [e for e in run.kinds(ev.StepStarted) if e.rollback]
    assert {e.command for e in rb_steps} == {"activate 1.0", "activate 1.1", "activate 0.9"}
    current = {e.host: e.version for e in run.kinds(ev.VersionRead) if e.role == "current"}
    assert current == {"h01": "1.0", "h02": "1.1", "h03": "0.9"}


async def test_rollback_refused_without_rollback_steps_and_twice_is_idempotent() -> None:
    spec = spec_from("rollback: {steps: []}\n")
    run = make_engine(spec, 2, exit_when_paused=True)

    def act(r: Run) -> None:
        r.engine.rollback()
        r.engine.pause()

    await run_engine(run, when(healthy("h01"), act))
    cmd = run.kinds(ev.OperatorCommand)[0]
    assert (cmd.command, cmd.accepted, cmd.detail) == (
        "rollback",
        False,
        "the spec has no rollback steps",
    )

    run2 = make_engine(spec_from(), 3)

    def twice(r: Run) -> None:
        r.engine.rollback()
        r.engine.rollback()

    await run_engine(run2, when(healthy("h01"), twice))
    cmds = run2.kinds(ev.OperatorCommand)
    assert [c.detail for c in cmds][1] == "already rolling back"
    assert run2.outcome == Outcome.ROLLED_BACK
    assert run2.commands("h01").count("activate 1.0") == 1


async def test_rollback_failure_is_reported() -> None:
    run = make_engine(spec_from("batches: [2]\n"), 2)
    run.fake.on(r"^activate 1.0", exit_code=1, hosts=["h02"])
    await run_engine(run, when(healthy("h02"), lambda r: r.engine.rollback()))
    assert run.outcome == Outcome.FAILED
    assert run.final("h02") == HostState.ROLLBACK_FAILED
    assert run.final("h01") == HostState.ROLLED_BACK
    assert "rollback failed on 1 hosts: h02" in run.kinds(ev.RolloutFinished)[-1].reason


async def test_skip_pending_host_and_refuse_skipping_a_moving_one() -> None:
    run = make_engine(spec_from("batches: [1, 2]\n"), 5)
    run.fake.on(r"^install", delay=0.05, hosts=["h01"])

    def act(r: Run) -> None:
        r.engine.skip("h04", reason="broken disk")
        r.engine.skip("h01")
        r.engine.skip("nope")

    await run_engine(run, when(step_started("h01", "install"), act))
    assert run.outcome == Outcome.SUCCEEDED
    assert run.final("h04") == HostState.SKIPPED and not run.deploy_commands("h04")
    results = [(c.args["host"], c.accepted) for c in run.kinds(ev.OperatorCommand)]
    assert results == [("h04", True), ("h01", False), ("nope", False)]
    plan = run.kinds(ev.PlanChanged)[0]
    assert all("h04" not in b for b in plan.batches)
    assert [b.hosts for b in run.kinds(ev.BatchStarted)][-1] == ("h05",)


async def test_retry_failed_host_after_budget_pause() -> None:
    run = make_engine(spec_from("batches: [1, 2]\n"), 3)
    attempts = {"n": 0}

    def flaky(host: str, command: str):
        from console.transport.fake import Reply

        if host == "h02" and command.startswith("install"):
            attempts["n"] += 1
            return Reply(exit_code=1 if attempts["n"] == 1 else 0)
        return None

    run.fake.handler(flaky)

    def act(r: Run) -> None:
        r.engine.retry("h02", reason="transient", operator="carol")
        r.engine.resume(operator="carol")

    def failed(e):
        return (
            isinstance(e, ev.HostStateChanged) and e.host == "h02" and e.state == HostState.FAILED
        )

    seen_pause = lambda e: isinstance(e, ev.RolloutStateChanged) and e.state == RolloutState.PAUSED  # noqa: E731
    done = []

    def react(e: Event, r: Run) -> None:
        if failed(e):
            done.append("failed")
        if seen_pause(e) and done == ["failed"]:
            done.append("paused")
            act(r)

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    assert run.final("h02") == HostState.HEALTHY
    assert run.commands("h02").count("install 2.0") == 2
    assert run.commands("h02").count("version") == 3  # preflight, previous (once), new
    assert run.engine.recs["h02"].previous_version == "1.0"
    assert not run.engine.budget.failed


async def test_retry_refused_for_a_healthy_host() -> None:
    run = make_engine(spec_from(), 2)
    await run_engine(run, when(healthy("h01"), lambda r: r.engine.retry("h01")))
    cmd = run.kinds(ev.OperatorCommand)[0]
    assert not cmd.accepted and "only failed hosts" in cmd.detail


async def test_set_batch_size_replans_batches_not_started() -> None:
    run = make_engine(spec_from("batches: [1, 1]\n"), 6)
    await run_engine(
        run, when(healthy("h01"), lambda r: r.engine.set_batch_size(2, reason="faster"))
    )
    started = [b.hosts for b in run.kinds(ev.BatchStarted)]
    # batch 1 was running when the command came: it stays; the rest re-cut by 2
    assert started == [("h01",), ("h02", "h03"), ("h04", "h05"), ("h06",)]
    plan = run.kinds(ev.PlanChanged)[0]
    assert plan.batches == (("h01",), ("h02", "h03"), ("h04", "h05"), ("h06",))
    assert run.engine.view.batches == list(plan.batches)


async def test_set_batch_size_percentage_and_bad_value() -> None:
    run = make_engine(spec_from("batches: [1, 1]\n"), 5)

    def act(r: Run) -> None:
        r.engine.set_batch_size("0")
        r.engine.set_batch_size("50%")

    await run_engine(run, when(healthy("h01"), act))
    cmds = run.kinds(ev.OperatorCommand)
    assert [c.accepted for c in cmds] == [False, True]
    assert [b.hosts for b in run.kinds(ev.BatchStarted)][1:] == [("h02", "h03", "h04"), ("h05",)]


async def test_execute_accepts_serialised_commands() -> None:
    run = make_engine(spec_from(), 3, exit_when_paused=True)
    payload = Command("pause", "dave", "from socket").to_json()
    await run_engine(
        run, when(healthy("h01"), lambda r: r.engine.execute(Command.from_json(payload)))
    )
    assert run.outcome == Outcome.PAUSED
    assert run.kinds(ev.OperatorCommand)[0].operator == "dave"


async def test_commands_before_start_are_journaled_after_rollout_started() -> None:
    run = make_engine(spec_from(), 2, exit_when_paused=True)
    run.engine.pause(reason="hold at start")
    await run_engine(run)
    assert isinstance(run.events[0], ev.RolloutStarted)
    assert run.outcome == Outcome.PAUSED
    assert not run.deploy_commands("h01")


async def test_console_quit_while_paused_ends_the_run_paused() -> None:
    # The console pauses, then asks the engine to stop once nothing moves.
    run = make_engine(spec_from("batches: [1, 2]\n"), 5)

    def quit_(r: Run) -> None:
        r.engine.exit_when_paused = True

    pause = when(healthy("h01"), lambda r: r.engine.pause(reason="console quit"))
    await run_engine(run, script(pause, when(batch_finished(0), quit_)))
    assert run.outcome == Outcome.PAUSED
    assert not run.deploy_commands("h02")


async def test_console_quit_while_frozen_ends_the_run_paused() -> None:
    run = make_engine(spec_from("batches: [100%]\n"), 2)
    run.fake.on(r"^install", delay=0.05)

    def quit_(r: Run) -> None:
        r.engine.exit_when_paused = True

    freeze = when(step_started("h01", "install"), lambda r: r.engine.freeze())
    await run_engine(run, script(freeze, when(frozen("h01", "h02"), quit_)))
    assert run.outcome == Outcome.PAUSED
    assert run.final("h01") == HostState.FROZEN


async def test_rollback_while_frozen_rolls_back_changed_hosts_only() -> None:
    run = make_engine(spec_from("batches: [100%]\n"), 2)
    run.fake.on(r"^install", delay=0.1, hosts=["h01"])
    run.fake.on(r"^version$", delay=0.15, lines=["1.0"], hosts=["h02"])

    freeze = when(step_started("h01", "install"), lambda r: r.engine.freeze())
    # h01 held after install, h02 (slow to read its version) before its first step
    roll_back = when(frozen("h01", "h02"), lambda r: r.engine.rollback(reason="bad build"))
    await run_engine(run, script(freeze, roll_back))
    assert run.outcome == Outcome.ROLLED_BACK
    assert run.final("h01") == HostState.ROLLED_BACK
    assert HostState.FROZEN in run.states("h01")
    assert "activate 1.0" in run.commands("h01")
    assert "activate 2.0" not in run.commands("h01")  # frozen after install: never activated
    assert run.final("h02") == HostState.PENDING
    assert not run.deploy_commands("h02")


async def test_abort_during_health_gating_says_so() -> None:
    run = make_engine(spec_from("batches: [100%]\n"), 1)
    run.fake.on(r"^check$", exit_code=1)  # never healthy: gating goes on until the deadline

    def gating(e: Event) -> bool:
        return isinstance(e, ev.HealthSample) and e.host == "h01"

    await run_engine(run, when(gating, lambda r: r.engine.abort()))
    assert run.outcome == Outcome.ABORTED
    rec = run.engine.recs["h01"]
    assert (rec.state, rec.detail) == (HostState.INTERRUPTED, "aborted during health gating")


async def test_abort_and_pause_during_preflight() -> None:
    run = make_engine(spec_from(), 4)
    run.fake.on(r"^version$", delay=5.0, lines=["1.0"], hosts=["h04"])
    preflighting = lambda e: isinstance(e, ev.PreflightResult) and e.host == "h01"  # noqa: E731
    await run_engine(run, when(preflighting, lambda r: r.engine.abort(reason="wrong fleet")))
    assert run.outcome == Outcome.ABORTED
    assert ("h04", "version", "cancelled") in run.fake.cancellations
    assert all(not run.deploy_commands(n) for n in run.engine.recs)

    run = make_engine(spec_from(), 4, exit_when_paused=True)
    run.fake.on(r"^version$", delay=0.2, lines=["1.0"], hosts=["h04"])
    await run_engine(run, when(preflighting, lambda r: r.engine.pause()))
    assert run.outcome == Outcome.PAUSED
    assert all(not run.deploy_commands(n) for n in run.engine.recs)
