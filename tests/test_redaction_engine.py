"""The emitter is the one place secrets are masked: with monitors on, a secret echoed
by the health check, the log follower, the metrics command, a step and the version
command reaches no bus event, no journal line and no part of the read model."""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.store.journal import read_journal
from tests.test_engine_helpers import Run, hosts, journal_in, make_engine, run_engine, spec_from

TOKEN = "tok-7f3a9c21e5"

SPEC = """
secrets: [token]
batches: [1, 1]
between_batches: manual
current_version: "version {vars.token}"
steps:
  - {name: install, run: "install {version} {vars.token}", timeout: 5s}
  - {name: activate, run: "activate {version}", timeout: 5s}
health: {run: "check {vars.token}", every: 0.01s, healthy_after: 2, deadline: 2s}
logs: {run: "tail {vars.token}", error_pattern: ERROR}
metrics:
  run: "metrics {vars.token}"
  requests: http_requests_total
  errors: http_errors_total
  every: 0.01s
"""


def strings(value: object) -> list[str]:
    """Every string reachable from ``value`` (dataclasses, mappings, sequences)."""
    out: list[str] = []
    stack = [value]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            stack.extend(getattr(v, f.name) for f in dataclasses.fields(v))
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple | deque | set | frozenset):
            stack.extend(v)
    return out


def script(run: Run) -> None:
    """Every command the spec renders answers with the token in its output."""
    fake = run.fake
    fake.on(r"^version ", lines=[f"1.0+{TOKEN}"])
    fake.on(r"^install ", lines=[f"installing with {TOKEN}"], stderr=[f"warn {TOKEN}"])
    fake.on(r"^check ", lines=[f"healthy, token {TOKEN}"])
    fake.on(r"^tail ", lines=[f"GET / 200 {TOKEN}", f"ERROR {TOKEN}"], hang=True)
    fake.on(r"^metrics ", exit_code=2, lines=[f"denied for {TOKEN}"])


async def test_a_secret_echoed_everywhere_is_found_nowhere(tmp_path: Path) -> None:
    journal = journal_in(tmp_path)
    spec = spec_from(SPEC)
    run = make_engine(spec, host_list=hosts(2, token=TOKEN), journal=journal, monitors=True)
    script(run)
    seen: set[str] = set()

    def react(e: Event, r: Run) -> None:
        if isinstance(e, ev.LogLines):
            seen.add("logs")
        elif isinstance(e, ev.HealthSample) and e.status:  # the monitor's watch
            seen.add("watch")
        elif isinstance(e, ev.Alert) and e.rule == "signal.metrics":
            seen.add("metrics")
        elif isinstance(e, ev.GateWaiting):
            seen.add("gate")
        if {"logs", "watch", "metrics", "gate"} <= seen and "continued" not in seen:
            seen.add("continued")
            r.engine.continue_()

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    assert {"logs", "watch", "metrics"} <= seen

    # Every path carried the secret, masked.
    masked = ev.to_json
    assert any("***" in line for e in run.kinds(ev.LogLines) for line in e.lines)
    assert any("***" in e.detail for e in run.kinds(ev.HealthSample) if e.status)
    assert any("***" in e.message for e in run.kinds(ev.Alert) if e.rule == "signal.metrics")
    assert any("***" in line for e in run.kinds(ev.StepOutput) for line in e.lines)
    assert any("***" in e.command for e in run.kinds(ev.StepStarted))
    assert {e.version for e in run.kinds(ev.VersionRead)} == {"1.0+***"}

    assert not [e for e in run.events if TOKEN in repr(masked(e))]
    assert TOKEN not in journal.path.read_text()
    assert not [s for s in strings(run.engine.view) if TOKEN in s]
    assert not [s for e in read_journal(journal.path) for s in strings(e) if TOKEN in s]
    # The records keep the raw version: rollback renders {previous_version} from it.
    assert run.engine.recs["h01"].previous_version == f"1.0+{TOKEN}"
    assert run.final("h02") == HostState.HEALTHY
