"""Rollback judges what the host should now run: ``{version}`` is the rollout's target
while deploying and the host's previous version while it rolls back (steps, health
gating, the monitor's health watch); ``{new_version}`` is always the target."""

from __future__ import annotations

import pytest

from console.core import events as ev
from console.core.events import HostState, Outcome
from console.signals.monitor import HostMonitor
from console.spec import HealthSpec
from console.transport.fake import Reply
from tests.test_engine_helpers import Run, make_engine, run_engine, spec_from


def version_aware(run: Run) -> None:
    """``check V`` passes only where V is the host's active version."""

    def check(host: str, command: str) -> Reply | None:
        words = command.split()
        if words[0] != "check":
            return None
        active = run.fleet.versions.get(host, run.fleet.default)
        return Reply(exit_code=0 if words[1].strip("'") == active else 1)

    run.fake.handler(check)


@pytest.fixture
def set_health_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """(host, health command) of every HostMonitor.set_health call."""
    calls: list[tuple[str, str | None]] = []
    real = HostMonitor.set_health

    def spy(self: HostMonitor, health: HealthSpec | None) -> None:
        calls.append((self.host, health.run if health else None))
        real(self, health)

    monkeypatch.setattr(HostMonitor, "set_health", spy)
    return calls


async def test_a_version_aware_health_check_passes_during_rollback(
    set_health_calls: list[tuple[str, str | None]],
) -> None:
    spec = spec_from(
        "batches: [1, 2]\non_failure: rollback\n"
        "health: {run: 'check {version}', every: 0.01s, healthy_after: 2, deadline: 1s}\n"
        "rollback:\n"
        "  steps:\n"
        "    - {name: restore, run: 'activate {version}', timeout: 5s}\n"
        "    - {name: note, run: 'note {previous_version} {new_version}', timeout: 5s}\n"
    )
    run = make_engine(spec, 3, monitors=True)
    run.fleet.versions.update({"h01": "1.0", "h02": "1.1", "h03": "0.9"})
    version_aware(run)
    run.fake.on(r"^install", exit_code=1, hosts=["h03"])  # a host of the last batch
    await run_engine(run)

    assert run.outcome == Outcome.ROLLED_BACK
    assert isinstance(run.events[-1], ev.RolloutFinished) and run.events[-1].exit_code == 4
    for host, version in (("h01", "1.0"), ("h02", "1.1"), ("h03", "0.9")):
        assert run.final(host) == HostState.ROLLED_BACK, run.engine.recs[host].detail
        assert run.fleet.versions[host] == version
        assert f"activate {version}" in run.commands(host)  # {version}: going back
        assert f"note {version} 2.0" in run.commands(host)  # the other two names
        assert f"check {version}" in run.commands(host)
        assert (host, f"check {version}") in set_health_calls  # the monitor's watch too
    assert "check 2.0" in run.commands("h01")  # deploying, {version} was the target


async def test_rollback_without_a_recorded_version_says_why_it_cannot_judge() -> None:
    spec = spec_from(
        "batches: [1]\non_failure: rollback\ncurrent_version: null\n"
        "health: {run: 'check {version}', every: 0.01s, healthy_after: 1, deadline: 1s}\n"
        "rollback:\n  steps:\n    - {name: restore, run: 'activate 1.0', timeout: 5s}\n"
    )
    run = make_engine(spec, 1)
    version_aware(run)
    run.fake.on(r"^activate 2\.0", exit_code=1)
    await run_engine(run)
    assert run.final("h01") == HostState.ROLLBACK_FAILED
    detail = run.engine.recs["h01"].detail
    assert detail.startswith("health:") and "{version} cannot be filled" in detail, detail
    assert "goes back to is unknown" in detail
