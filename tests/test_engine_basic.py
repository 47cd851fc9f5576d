"""Engine happy paths on the fake transport: order, parallelism, versions, output."""

from __future__ import annotations

from console.core import events as ev
from console.core.events import HostState, Outcome
from console.transport.fake import Reply
from tests.test_engine_helpers import hosts, make_engine, run_engine, spec_from


async def test_full_rollout_in_batch_order_with_versions() -> None:
    run = await run_engine(make_engine(spec_from(), 5))
    assert run.outcome == Outcome.SUCCEEDED
    started = run.kinds(ev.BatchStarted)
    assert [b.hosts for b in started] == [("h01",), ("h02", "h03"), ("h04", "h05")]
    for name in ("h01", "h02", "h03", "h04", "h05"):
        assert run.final(name) == HostState.HEALTHY
        assert run.fleet.versions[name] == "2.0"
        cmds = run.commands(name)
        # previous version read before any change, steps in order, health, new version
        assert cmds[:4] == ["version", "version", "install 2.0", "activate 2.0"]
        assert cmds[4:6] == ["check", "check"]
        assert cmds[-1] == "version"
    reads = {(e.host, e.role): e.version for e in run.kinds(ev.VersionRead)}
    assert reads[("h03", "previous")] == "1.0"
    assert reads[("h03", "new")] == "2.0"
    # a batch starts only after the previous one finished
    order = [e for e in run.events if isinstance(e, ev.BatchStarted | ev.BatchFinished)]
    assert [type(e).__name__ for e in order] == ["BatchStarted", "BatchFinished"] * 3
    finished = run.kinds(ev.RolloutFinished)[-1]
    assert finished.exit_code == 0 and finished.counts == {"healthy": 5}
    assert run.engine.view.outcome == Outcome.SUCCEEDED


async def test_previous_version_journaled_before_first_step() -> None:
    run = await run_engine(make_engine(spec_from(), 3))
    for name in ("h01", "h02", "h03"):
        mine = [e for e in run.events if getattr(e, "host", None) == name]
        first_step = next(i for i, e in enumerate(mine) if isinstance(e, ev.StepStarted))
        prev = next(
            i for i, e in enumerate(mine) if isinstance(e, ev.VersionRead) and e.role == "previous"
        )
        assert prev < first_step


async def test_max_parallel_is_respected() -> None:
    spec = spec_from("batches: [100%]\nmax_parallel: 3\n")
    run = make_engine(spec, 9)
    run.fake.on(r"^install", delay=0.05)
    await run_engine(run)
    installs = [r for r in run.fake.records if r.command.startswith("install")]
    assert len(installs) == 9
    peak = 0
    for r in installs:
        overlapping = sum(1 for o in installs if o.started <= r.started < (o.finished or 0))
        peak = max(peak, overlapping)
    assert peak == 3


async def test_health_gating_needs_consecutive_passes() -> None:
    spec = spec_from("batches: [100%]\n")
    run = make_engine(spec, 1)
    answers = iter([1, 0, 1, 0, 0])

    def health(host: str, command: str) -> Reply | None:
        if command == "check":
            return Reply(exit_code=next(answers, 0))
        return None

    run.fake.handler(health)
    await run_engine(run)
    samples = [e for e in run.kinds(ev.HealthSample)]
    assert [s.ok for s in samples] == [False, True, False, True, True]
    assert samples[-1].consecutive == 2
    assert run.final("h01") == HostState.HEALTHY


async def test_output_is_streamed_batched_and_tail_kept() -> None:
    spec = spec_from("batches: [100%]\n")
    run = make_engine(spec, 1)
    lines = [f"line {i}" for i in range(300)]
    run.fake.on(r"^install", lines=lines, delay=0.25)
    await run_engine(run)
    outputs = [e for e in run.kinds(ev.StepOutput) if e.step == "install"]
    streamed = [line for e in outputs for line in e.lines]
    assert streamed == lines
    assert 1 < len(outputs) < 50  # coalesced, not one event per line
    finished = next(e for e in run.kinds(ev.StepFinished) if e.step == "install")
    assert finished.output_tail[-1] == "line 299"
    view_step = run.engine.view.hosts["h01"].steps[0]
    assert list(view_step.output)[-1] == "line 299"


async def test_secrets_redacted_from_commands_output_and_start_event() -> None:
    spec = spec_from(
        "secrets: [api_token]\n"
        'steps:\n  - {name: install, run: "install {version} {vars.api_token}"}\n'
    )
    hs = hosts(2, api_token="s3cr3t-value")
    run = make_engine(spec, host_list=hs)
    run.fake.on(r"^install", lines=["using token s3cr3t-value"])
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    assert run.commands("h01")[2] == "install 2.0 s3cr3t-value"  # the real command has it
    blob = repr([ev.to_json(e) for e in run.events])
    assert "s3cr3t-value" not in blob
    started = run.kinds(ev.StepStarted)[0]
    assert started.command == "install 2.0 ***"


async def test_hostile_values_are_quoted_in_commands() -> None:
    spec = spec_from('steps:\n  - {name: install, run: "install {version} {vars.note}"}\n')
    hostile = "$(touch /tmp/x); rm -rf / 'q\""
    run = make_engine(spec, host_list=hosts(1, note=hostile))
    await run_engine(run)
    cmd = run.commands("h01")[2]
    import shlex

    assert shlex.split(cmd) == ["install", "2.0", hostile]


async def test_no_health_spec_means_healthy_after_steps() -> None:
    base_no_health = "\n".join(
        ln
        for ln in spec_from().text.splitlines()
        if not ln.startswith(
            ("health:", "  run: check", "  every", "  healthy_after", "  deadline")
        )
    )
    from console.spec import parse_spec

    spec = parse_spec(base_no_health, "spec.yaml")
    assert spec.health is None
    run = await run_engine(make_engine(spec, 2))
    assert run.outcome == Outcome.SUCCEEDED
    assert not any(c == "check" for c in run.commands("h01"))


async def test_late_consumer_gets_a_snapshot() -> None:
    run = make_engine(spec_from(), 3)
    await run_engine(run)
    view, sub = run.engine.attach()
    assert view.outcome == Outcome.SUCCEEDED
    assert {h.state for h in view.hosts.values()} == {HostState.HEALTHY}
    assert sub.closed  # the bus closed when the rollout ended


async def test_preflight_notice_reports_version_skew() -> None:
    run = make_engine(spec_from(), 4)
    run.fleet.versions["h02"] = "0.9"
    await run_engine(run)
    notes = [e.message for e in run.kinds(ev.Notice)]
    assert (
        "preflight: 4/4 hosts passed; version skew: 1.0 on 3 (h01, h03, h04); 0.9 on 1 (h02)"
        in notes
    )
    assert run.engine.recs["h02"].previous_version == "0.9"
