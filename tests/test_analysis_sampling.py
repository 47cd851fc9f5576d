"""Sampled monitors: with Prometheus as the source of judgement the per-host monitors
run on the hosts in flight, the new cohort and a stable sample of the rest, so the
console's cost grows with the batch, not the fleet (console/signals/polls.py,
``Engine._start_monitor``). A 300-host rollout over the fake transport, checked at
every host state change; the SSH-judged spec still monitors every host."""

from __future__ import annotations

from pathlib import Path

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.core.state import HostView
from console.signals.polls import (
    MONITOR_SAMPLE,
    monitor_sample,
    sampled_monitors,
    sampling_note,
)
from console.subcommands.check import analyse, format_report
from screens.rows import COLUMNS, host_cells
from tests.test_engine_helpers import Run, hosts, make_engine, run_engine, spec_from

# A Prometheus nobody answers, asked rarely: the judge's loop stays quiet (no_data
# acts only after a whole window), the monitors are what is under test.
ANALYSIS = """
analysis:
  interval: 1h
  window: 2h
  prometheus: {url: 'http://127.0.0.1:9', timeout: 1s}
  metrics:
    - name: error-ratio
      query: 'sum(rate(e{instance=~"{instances}"}[{window}]))'
      max: 5%
"""
SHAPE = """
batches: [1, 10%, 25%, 100%]
max_parallel: 10
"""
SSH_JUDGED = """
metrics:
  run: page
  requests: http_requests_total
  errors: 'http_requests_total{code="500"}'
error_rate:
  max: 5%
"""
N = 300


def test_sampling_applies_only_when_prometheus_judges_alone() -> None:
    prom = spec_from(ANALYSIS)
    assert sampled_monitors(prom)
    assert not sampled_monitors(spec_from(ANALYSIS + SSH_JUDGED))  # error_rate needs all
    assert not sampled_monitors(spec_from(SSH_JUDGED))
    assert not sampled_monitors(spec_from())
    note = sampling_note(prom, N)
    assert note is not None and f"sample of {MONITOR_SAMPLE} of the {N}" in note
    assert sampling_note(spec_from(SSH_JUDGED), N) is None


def test_the_sample_is_stable_bounded_and_spread() -> None:
    names = [h.name for h in hosts(N)]
    sample = monitor_sample(names)
    assert len(sample) == MONITOR_SAMPLE
    assert sample == monitor_sample(reversed(names))  # the same on every run
    assert monitor_sample(names[:10]) == frozenset(names[:10])
    # spread over the plan, not its first or last hosts
    positions = sorted(names.index(n) for n in sample)
    assert positions[0] < N // 4 and positions[-1] >= 3 * N // 4


def _check_bound(run: Run, sample: frozenset[str], seen: list[tuple[int, int]]) -> None:
    engine = run.engine
    monitored = engine.monitored
    in_flight = {n for n, r in engine.recs.items() if r.task is not None and not r.task.done()}
    started = {n for n, r in engine.recs.items() if r.batch is not None}
    index = engine.batches.index
    batch = set(engine.batches.hosts(index)) if index is not None and index >= 0 else set()
    new = {n for n, r in engine.recs.items() if r.state == HostState.HEALTHY}
    assert in_flight <= monitored, f"in flight without a monitor: {in_flight - monitored}"
    assert monitored <= sample | started, "a host neither sampled nor started is monitored"
    assert len(monitored) <= len(batch | new) + MONITOR_SAMPLE
    seen.append((len(monitored), len(in_flight)))


async def test_a_300_host_rollout_judged_by_prometheus_monitors_the_batch_not_the_fleet() -> None:
    spec = spec_from(SHAPE + ANALYSIS)
    run = make_engine(spec, host_list=hosts(N, metrics_port=9100), monitors=True, watched=False)
    run.fake.on("^check", lines=["ok"])
    sample = monitor_sample(run.engine.recs)
    seen: list[tuple[int, int]] = []
    at_first_batch: list[frozenset[str]] = []

    def react(event: Event, r: Run) -> None:
        if isinstance(event, ev.BatchStarted) and not at_first_batch:
            at_first_batch.append(r.engine.monitored)
        if isinstance(event, ev.HostStateChanged | ev.BatchStarted | ev.BatchFinished):
            _check_bound(r, sample, seen)

    await run_engine(run, react, timeout=60)
    assert run.outcome == Outcome.SUCCEEDED, [
        e for e in run.events if isinstance(e, ev.Alert | ev.RolloutFinished)
    ]
    # as the first batch starts: the sample and that batch's canary only (events are
    # seen a moment after they happen: the canary may already be dispatched)
    canary = set(run.engine.batches.hosts(0))
    assert sample <= at_first_batch[0] and at_first_batch[0] - sample <= canary
    notices = [e.message for e in run.kinds(ev.Notice)]
    assert any(f"a sample of {MONITOR_SAMPLE} of the {N}" in m for m in notices), notices
    assert len(seen) > N  # checked at every host's state changes
    assert any(flying for _, flying in seen)
    # every host got its monitor when its batch started it; all are the new cohort
    assert run.engine.monitored == frozenset(run.engine.recs)
    # health gating ran in the hosts' monitors (no exec per probe for the unsampled)
    unsampled = next(n for n in run.engine.recs if n not in sample)
    assert run.fake.ran(unsampled, "^check")


async def test_an_ssh_judged_rollout_still_monitors_every_host() -> None:
    spec = spec_from(SHAPE + SSH_JUDGED)
    run = make_engine(spec, n=60, monitors=True, watched=False)
    run.fake.on("^check", lines=["ok"])
    run.fake.on("^page", lines=["http_requests_total 1", 'http_requests_total{code="500"} 0'])
    first: list[frozenset[str]] = []

    def react(event: Event, r: Run) -> None:
        if isinstance(event, ev.BatchStarted) and not first:
            first.append(r.engine.monitored)

    await run_engine(run, react, timeout=60)
    assert run.outcome == Outcome.SUCCEEDED
    assert first[0] == frozenset(run.engine.recs)


def test_check_says_which_hosts_are_polled(tmp_path: Path) -> None:
    inv = "".join(f"web-{i:03d} ansible_host=127.0.0.1 metrics_port=9100\n" for i in range(80))
    (tmp_path / "inv.ini").write_text("[web]\n" + inv)
    head = 'service: api\nversion: "2"\nsteps: ["deploy {version}"]\ninventory: inv.ini\n'
    (tmp_path / "prom.yaml").write_text(head + ANALYSIS.lstrip("\n"))
    (tmp_path / "ssh.yaml").write_text(head + ANALYSIS.lstrip("\n") + SSH_JUDGED.lstrip("\n"))
    prom = analyse(str(tmp_path / "prom.yaml"))
    text = format_report(prom)
    polls = text[text.index("\npolls") :]
    assert f"stable sample of {MONITOR_SAMPLE} of the 80 targeted hosts" in polls, polls
    assert prom.to_json()["polls_sampled"] == prom.polls_sampled
    ssh = analyse(str(tmp_path / "ssh.yaml"))
    assert ssh.polls_sampled is None and "sample" not in format_report(ssh)


def test_an_unsampled_hosts_row_shows_its_vitals_as_absent_not_failing() -> None:
    row = host_cells(HostView(name="web-999"), "2", ceiling=0.05)
    keys = [c.key for c in COLUMNS]
    health, vitals = row[keys.index("health")], row[keys.index("vitals")]
    assert vitals == ("-", None) and health == ("-", "muted")
    assert all(style != "host-failed" for _, style in row)
