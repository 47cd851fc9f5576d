"""Gates between batches: auto, manual (with and without timeout), bake with health
that must keep passing, and the health of deployed hosts after they were healthy."""

from __future__ import annotations

import asyncio

from console.core import events as ev
from console.core.events import Event, HostState, Outcome, RolloutState
from console.transport.fake import Reply
from tests.test_engine_helpers import Run, make_engine, run_engine, spec_from


def gate_waiting(kind: str):
    return lambda e: isinstance(e, ev.GateWaiting) and e.gate == kind


async def test_manual_gate_waits_for_continue() -> None:
    run = make_engine(spec_from("between_batches: manual\n"), 5)
    waited: dict[str, object] = {}

    def react(e: Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting) and e.after_batch == 0:

            def go() -> None:
                waited["batch2_started"] = bool(r.deploy_commands("h02"))
                waited["state"] = r.engine.view.state
                r.engine.continue_(reason="canary fine", operator="erin")

            asyncio.get_running_loop().call_later(0.2, go)
        if isinstance(e, ev.GateWaiting) and e.after_batch == 1:
            r.engine.continue_()
            r.engine.continue_()  # twice: idempotent

    await run_engine(run, react)
    assert waited == {"batch2_started": False, "state": RolloutState.WAITING}
    assert run.outcome == Outcome.SUCCEEDED
    passed = run.kinds(ev.GatePassed)
    assert [p.by for p in passed] == ["operator:erin", "operator:tester"]
    cmds = run.kinds(ev.OperatorCommand)
    assert [(c.command, c.accepted) for c in cmds] == [("continue", True)] * 3
    assert cmds[2].detail == "already continued"


async def test_continue_refused_when_no_gate() -> None:
    run = make_engine(spec_from(), 2)
    await run_engine(
        run,
        lambda e, r: (
            r.engine.continue_() if isinstance(e, ev.BatchStarted) and e.index == 0 else None
        ),
    )
    cmd = run.kinds(ev.OperatorCommand)[0]
    assert not cmd.accepted and cmd.detail == "no manual gate is waiting"


async def test_manual_gate_timeout_aborts_by_default() -> None:
    spec = spec_from("between_batches: {gate: manual, timeout: 0.2s}\n")
    run = await run_engine(make_engine(spec, 3))
    assert run.outcome == Outcome.FAILED  # the policy stopped it, not an operator
    alert = next(a for a in run.kinds(ev.Alert) if a.rule == "gate.timeout")
    assert alert.action == "abort"
    assert not run.deploy_commands("h02")
    gw = run.kinds(ev.GateWaiting)[0]
    assert gw.on_timeout == "abort" and gw.until is not None


async def test_manual_gate_timeout_continue_when_the_spec_says_so() -> None:
    spec = spec_from("between_batches: {gate: manual, timeout: 0.1s, on_timeout: continue}\n")
    run = await run_engine(make_engine(spec, 3))
    assert run.outcome == Outcome.SUCCEEDED
    assert {p.by for p in run.kinds(ev.GatePassed)} == {"timeout"}


async def test_manual_gate_timeout_rollback() -> None:
    spec = spec_from("between_batches: {gate: manual, timeout: 0.1s, on_timeout: rollback}\n")
    run = await run_engine(make_engine(spec, 3))
    assert run.outcome == Outcome.ROLLED_BACK
    assert run.final("h01") == HostState.ROLLED_BACK
    assert run.final("h02") == HostState.PENDING


async def test_manual_gate_without_timeout_never_continues_by_itself() -> None:
    run = make_engine(spec_from("between_batches: manual\n"), 3)

    def react(e: Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting):
            asyncio.get_running_loop().call_later(0.4, r.engine.abort)

    await run_engine(run, react)
    assert run.outcome == Outcome.ABORTED
    assert not run.deploy_commands("h02")


async def test_bake_passes_when_health_holds() -> None:
    spec = spec_from("between_batches: 0.15s\n")
    run = await run_engine(make_engine(spec, 5))
    assert run.outcome == Outcome.SUCCEEDED
    assert [p.by for p in run.kinds(ev.GatePassed)] == ["bake", "bake"]
    # during the bake the healthy canary was probed again
    assert run.commands("h01").count("check") > 2


def sick_after_healthy(run: Run, hosts: set[str]):
    """Health passes during gating, then fails once the host was reported healthy,
    for as long as it runs the new version."""
    state = {"healthy": set()}

    def handler(host: str, command: str) -> Reply | None:
        sick = host in hosts and host in state["healthy"] and run.fleet.versions[host] == "2.0"
        if command == "check" and sick:
            return Reply(exit_code=1, lines=["500 errors"])
        return None

    def react(e: Event, r: Run) -> None:
        if isinstance(e, ev.HostStateChanged) and e.state == HostState.HEALTHY:
            state["healthy"].add(e.host)

    return handler, react


async def test_bake_health_failure_fails_the_host_and_fires_on_failure() -> None:
    spec = spec_from("between_batches: 0.5s\non_failure: rollback\n")
    run = make_engine(spec, 3)
    handler, react = sick_after_healthy(run, {"h01"})
    run.fake.handler(handler)
    await run_engine(run, react)
    assert run.outcome == Outcome.ROLLED_BACK
    states = run.states("h01")
    assert HostState.FAILED in states and states[-1] == HostState.ROLLED_BACK
    failed = next(
        e for e in run.kinds(ev.HostStateChanged) if e.host == "h01" and e.state == HostState.FAILED
    )
    assert failed.detail.startswith("unhealthy after deploy")
    assert not run.deploy_commands("h02")


async def test_monitors_watch_health_after_deploy() -> None:
    spec = spec_from("between_batches: 0.5s\n")
    run = make_engine(spec, 3, monitors=True, exit_when_paused=True)
    handler, react = sick_after_healthy(run, {"h01"})
    run.fake.handler(handler)
    await run_engine(run, react)
    assert run.outcome == Outcome.PAUSED
    assert run.final("h01") == HostState.FAILED
    assert run.kinds(ev.Alert)[-1].rule == "max_failures"
    assert not run.deploy_commands("h02")


async def test_monitors_run_rendered_commands() -> None:
    spec = spec_from(
        "between_batches: 0.3s\n"
        "health: {run: 'check {host}', every: 0.01s, healthy_after: 1, deadline: 1s}\n"
        "logs: {run: 'tail {vars.log}', error_pattern: ERROR}\n"
    )
    from tests.test_engine_helpers import hosts

    run = make_engine(spec, host_list=hosts(3, log="/var/log/app.log"), monitors=True)
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    seen = {c for h in ("h01", "h02", "h03") for c in run.commands(h)}
    assert "check h01" in seen and "tail /var/log/app.log" in seen
    assert not [c for c in seen if "{" in c]


async def test_paused_during_a_batch_no_bake_or_next_batch_until_resumed() -> None:
    """A pause holds the rollout between batches: no bake clock, no next batch, the
    state stays PAUSED (not WAITING) until the operator resumes."""
    run = make_engine(spec_from("between_batches: 0.05s\n"), 3)
    seen: dict[str, object] = {}

    def react(e: Event, r: Run) -> None:
        if isinstance(e, ev.BatchStarted) and e.index == 0:
            r.engine.pause(reason="look first", operator="dana")
        if isinstance(e, ev.BatchFinished) and e.index == 0:

            def check() -> None:
                seen["state"] = r.engine.view.state
                seen["gates"] = len(r.kinds(ev.GateWaiting))
                seen["batches"] = len(r.kinds(ev.BatchStarted))
                r.engine.resume(operator="dana")

            asyncio.get_running_loop().call_later(0.3, check)

    await run_engine(run, react)
    assert seen == {"state": RolloutState.PAUSED, "gates": 0, "batches": 1}
    assert run.outcome == Outcome.SUCCEEDED
    assert [g.gate for g in run.kinds(ev.GateWaiting)] == ["bake"]
