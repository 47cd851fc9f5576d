"""Failure accounting: one budget across batches, all-failed batches, on_failure,
timeouts, unreachable hosts, hosts that die mid-step, health gating."""

from __future__ import annotations

from console.core import events as ev
from console.core.events import HostState, Outcome
from console.transport.fake import FakeTransport, Reply
from tests.test_engine_helpers import make_engine, run_engine, spec_from


async def test_failing_step_pause_stops_new_hosts_headless() -> None:
    spec = spec_from("batches: [1, 2]\n")
    run = make_engine(spec, 5, exit_when_paused=True)
    run.fake.on(r"^install", exit_code=1, lines=["disk full"], hosts=["h02"])
    await run_engine(run)
    assert run.outcome == Outcome.PAUSED
    assert run.final("h02") == HostState.FAILED
    assert "exit 1 in install" in run.engine.recs["h02"].detail
    assert run.final("h03") == HostState.HEALTHY  # already moving: finished
    for name in ("h04", "h05"):
        assert run.final(name) == HostState.PENDING
        assert run.commands(name) == ["version"]  # preflight only: never touched
    alert = run.kinds(ev.Alert)[0]
    assert alert.rule == "max_failures" and alert.action == "pause"
    cmd = next(c for c in run.kinds(ev.OperatorCommand) if c.command == "pause")
    assert cmd.operator == "policy" and "max_failures" in cmd.reason
    assert run.kinds(ev.RolloutFinished)[-1].exit_code == 6


async def test_budget_counts_across_batches() -> None:
    # max_failures 1: one failure in batch 2 is tolerated, the second (batch 3) fires.
    spec = spec_from("batches: [1, 2]\nmax_failures: 1\nmax_parallel: 1\n")
    run = make_engine(spec, 7, exit_when_paused=True)
    run.fake.on(r"^install", exit_code=2, hosts=["h02", "h05"])
    await run_engine(run)
    assert run.outcome == Outcome.PAUSED
    assert run.final("h03") == HostState.HEALTHY  # after the first failure it went on
    assert run.final("h04") == HostState.HEALTHY
    assert run.final("h05") == HostState.FAILED
    assert run.final("h06") == HostState.PENDING  # max_parallel 1: nothing else moving
    alerts = run.kinds(ev.Alert)
    assert len(alerts) == 1 and alerts[0].numbers["failed"] == 2


async def test_within_budget_the_rollout_succeeds() -> None:
    spec = spec_from("batches: [2]\nmax_failures: 1\n")
    run = make_engine(spec, 4)
    run.fake.on(r"^install", exit_code=1, hosts=["h03"])
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    assert "1 failed within the budget: h03" in run.kinds(ev.RolloutFinished)[-1].reason


async def test_batch_where_every_host_failed_fires_even_within_budget() -> None:
    spec = spec_from("batches: [2]\nmax_failures: 5\n")
    run = make_engine(spec, 6, exit_when_paused=True)
    run.fake.on(r"^activate", exit_code=1, hosts=["h03", "h04"])
    await run_engine(run)
    assert run.outcome == Outcome.PAUSED
    assert [a.rule for a in run.kinds(ev.Alert)] == ["batch_all_failed"]
    assert run.final("h05") == HostState.PENDING


async def test_on_failure_rollback_restores_changed_hosts_only() -> None:
    spec = spec_from("batches: [1, 2]\non_failure: rollback\n")
    run = make_engine(spec, 5)
    run.fake.on(r"^activate 2.0", exit_code=1, hosts=["h03"])
    await run_engine(run)
    assert run.outcome == Outcome.ROLLED_BACK
    for name in ("h01", "h02", "h03"):
        assert run.final(name) == HostState.ROLLED_BACK
        assert run.fleet.versions[name] == "1.0"
    for name in ("h04", "h05"):
        assert run.commands(name) == ["version"]  # untouched: never deployed nor rolled back
    # newest batch first
    rb = [e for e in run.kinds(ev.BatchStarted) if e.rollback]
    assert [set(b.hosts) for b in rb] == [{"h02", "h03"}, {"h01"}]
    assert run.kinds(ev.RolloutFinished)[-1].exit_code == 4


async def test_on_failure_abort_is_failed_not_aborted() -> None:
    spec = spec_from("batches: [1, 2]\non_failure: abort\n")
    run = make_engine(spec, 5)
    run.fake.on(r"^install", exit_code=1, delay=0.05, hosts=["h02"])
    run.fake.on(r"^activate", delay=5.0, hosts=["h03"])
    await run_engine(run)
    assert run.outcome == Outcome.FAILED
    assert run.final("h03") == HostState.INTERRUPTED
    assert run.engine.recs["h03"].detail == "aborted during activate"
    assert ("h03", "activate 2.0", "cancelled") in run.fake.cancellations
    assert run.kinds(ev.RolloutFinished)[-1].exit_code == 3


async def test_step_timeout_fails_host_and_stops_the_command() -> None:
    spec = spec_from(
        'batches: [100%]\nsteps:\n  - {name: install, run: "install {version}", timeout: 0.1s}\n'
    )
    run = make_engine(spec, 1, exit_when_paused=True)
    run.fake.on(r"^install", hang=True)
    await run_engine(run)
    assert run.final("h01") == HostState.FAILED
    assert run.engine.recs["h01"].detail == "timeout in install"
    assert ("h01", "install 2.0", "timeout") in run.fake.cancellations
    fin = run.kinds(ev.StepFinished)[0]
    assert fin.status == "timeout" and fin.exit_code is None


async def test_health_gating_deadline_fails_host() -> None:
    spec = spec_from("batches: [100%]\n")
    run = make_engine(spec, 1, exit_when_paused=True)
    run.fake.on(r"^check$", exit_code=1, lines=["503 unavailable"])
    await run_engine(run)
    assert run.final("h01") == HostState.FAILED
    detail = run.engine.recs["h01"].detail
    assert detail.startswith("health gating: 0/2 passes") and "503 unavailable" in detail


async def test_unreachable_host_refuses_the_start() -> None:
    fake = FakeTransport()
    fake.unreachable("h03", "connection refused")
    run = make_engine(spec_from(), 4, fake=fake)
    await run_engine(run)
    assert run.outcome == Outcome.FAILED
    reason = run.kinds(ev.RolloutFinished)[-1].reason
    assert "preflight refused the start" in reason and "h03: unreachable" in reason
    for name in ("h01", "h02", "h04"):
        assert not run.deploy_commands(name)
    pre = {e.host: e for e in run.kinds(ev.PreflightResult)}
    assert pre["h03"].reachable is False and pre["h01"].version == "1.0"


async def test_changed_host_key_refuses_the_start() -> None:
    fake = FakeTransport()
    fake.bad_host_key("h02")
    run = make_engine(spec_from(), 3, fake=fake)
    await run_engine(run)
    assert run.outcome == Outcome.FAILED
    assert "h02: host key" in run.kinds(ev.RolloutFinished)[-1].reason


async def test_changed_host_key_is_never_skipped_with_unreachable_allowed() -> None:
    # A down host may be left behind on request; a refused key is an alarm, not "down".
    fake = FakeTransport()
    fake.bad_host_key("h02")
    fake.unreachable("h03")
    spec = spec_from("max_failures: 5\n")
    run = make_engine(spec, 4, fake=fake, allow_unreachable=True)
    await run_engine(run)
    assert run.outcome == Outcome.FAILED
    reason = run.kinds(ev.RolloutFinished)[-1].reason
    assert "host key of 1 hosts was refused" in reason and "h02: host key" in reason
    for name in ("h01", "h03", "h04"):
        assert not run.deploy_commands(name)


async def test_allow_unreachable_counts_against_the_budget() -> None:
    fake = FakeTransport()
    fake.unreachable("h04")
    spec = spec_from("max_failures: 1\n")
    run = make_engine(spec, 5, fake=fake, allow_unreachable=True, exit_when_paused=True)
    run.fake.on(r"^install", exit_code=1, hosts=["h02"])
    await run_engine(run)
    assert run.final("h04") == HostState.SKIPPED
    assert run.engine.recs["h04"].detail.startswith("preflight: unreachable")
    # the unreachable host plus h02 make 2 > 1
    assert run.outcome == Outcome.PAUSED
    assert run.kinds(ev.Alert)[0].numbers["failed"] == 2


async def test_allow_unreachable_beyond_budget_refuses() -> None:
    fake = FakeTransport()
    fake.unreachable("h01")
    fake.unreachable("h02")
    run = make_engine(spec_from("max_failures: 1\n"), 4, fake=fake, allow_unreachable=True)
    await run_engine(run)
    assert run.outcome == Outcome.FAILED
    assert "more than max_failures" in run.kinds(ev.RolloutFinished)[-1].reason


async def test_preflight_check_failure_and_bad_template_refuse() -> None:
    spec = spec_from(
        'preflight:\n  - {name: disk, run: "df-check"}\n'
        'steps:\n  - {name: install, run: "install {vars.pkg}"}\n'
    )
    from tests.test_engine_helpers import hosts

    hs = hosts(2, pkg="shop.tgz")
    hs[1] = type(hs[1])(name="h02", address="x", vars={})  # no pkg var
    run = make_engine(spec, host_list=hs)
    run.fake.on(r"^df-check", exit_code=1, lines=["only 10 MB free"], hosts=["h01"])
    await run_engine(run)
    assert run.outcome == Outcome.FAILED
    pre = {e.host: e for e in run.kinds(ev.PreflightResult)}
    assert pre["h01"].checks == (("disk", False, "exit 1 in disk: only 10 MB free"),)
    assert "vars.pkg" in pre["h02"].error
    assert not run.deploy_commands("h01")


async def test_host_dying_mid_rollout_counts_as_failed() -> None:
    spec = spec_from("batches: [100%]\nmax_failures: 1\n")
    run = make_engine(spec, 3)
    run.fake.die_at("h02", r"^activate")
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    assert run.final("h02") == HostState.FAILED
    assert "unreachable during activate" in run.engine.recs["h02"].detail
    fin = [e for e in run.kinds(ev.StepFinished) if e.host == "h02"][-1]
    assert fin.status == "error"


async def test_version_read_failure_fails_host_before_any_change() -> None:
    spec = spec_from("batches: [100%]\nmax_failures: 1\n")
    run = make_engine(spec, 2)
    calls = {"n": 0}

    def flaky(host: str, command: str) -> Reply | None:
        if host == "h01" and command == "version":
            calls["n"] += 1
            if calls["n"] == 2:  # preflight read worked, the pre-change read fails
                return Reply(exit_code=1, stderr=["permission denied"])
        return None

    run.fake.handler(flaky)
    await run_engine(run)
    assert run.final("h01") == HostState.FAILED
    assert not run.deploy_commands("h01")
    assert not run.engine.recs["h01"].changed


async def test_failure_details_are_redacted() -> None:
    from tests.test_engine_helpers import hosts

    spec = spec_from(
        "secrets: [token]\nmax_failures: 5\n"
        "preflight:\n  - {name: auth, run: 'auth {vars.token}'}\n"
    )
    run = make_engine(
        spec, host_list=hosts(2, token="tok-123456"), allow_unreachable=True, exit_when_paused=True
    )
    run.fake.on(r"^auth", exit_code=1, lines=["bad token tok-123456"], hosts=["h01"])
    run.fake.on(r"^install", exit_code=1, lines=["denied for tok-123456"], hosts=["h02"])
    await run_engine(run)
    blob = repr([ev.to_json(e) for e in run.events])
    assert "tok-123456" not in blob
    assert run.engine.recs["h02"].detail == "exit 1 in install: denied for ***"
