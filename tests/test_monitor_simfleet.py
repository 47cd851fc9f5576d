"""HostMonitor over real SSH against the simulated fleet: the path a rollout takes.

Each test deploys one host by hand (the svc commands the engine's steps run), with a
monitor on every host feeding one analyzer, and checks what the operator would be
told: the bad canary's alert with its numbers, a flapping host, warnings instead of
exceptions for a metric that is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from console.core.events import Alert, ErrorRateSample, Event, HealthSample, LogLines, VitalsSample
from console.signals.health import ErrorRateAnalyzer, probe_health
from console.signals.monitor import HostMonitor
from console.simfleet import SimFleet
from console.spec import RolloutSpec, load_spec
from console.transport.base import Connection, TransportOptions
from console.transport.ssh import SSHTransport
from inventory.loader import load_inventory
from tests.fixtures.simfleet import FleetFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Watch:
    fleet: SimFleet
    spec: RolloutSpec
    conns: dict[str, Connection]
    analyzer: ErrorRateAnalyzer
    monitors: dict[str, HostMonitor]
    events: list[Event]
    unhealthy: list[tuple[str, str]]

    def of(self, kind: type, host: str | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (host is None or getattr(e, "host", None) == host)
        ]

    async def deploy(self, host: str, *, gate: bool = True) -> None:
        """What the generated rollout's steps do, health gating (unless ``gate`` is
        False: a flapping host never passes it), then the cohort and the health watch."""
        conn = self.conns[host]
        for command in (
            f"svc install {self.spec.version}",
            f"svc activate {self.spec.version}",
            "svc restart",
        ):
            result = await conn.run(command, timeout=10)
            assert result.ok, (command, result)
        self.analyzer.set_cohort(host, "new")
        # Health gating, as the engine does before it marks the host healthy.
        health = self.spec.health
        assert health is not None
        passes = 0 if gate else health.healthy_after
        async with asyncio.timeout(health.deadline):
            while passes < health.healthy_after:
                ok, _ = await probe_health(conn, health)
                passes = passes + 1 if ok else 0
                await asyncio.sleep(health.every)  # the engine's gating cadence
        self.monitors[host].watch_health(True)


@contextlib.asynccontextmanager
async def watching(
    fleet: SimFleet, change: Callable[[RolloutSpec], RolloutSpec] = lambda s: s
) -> AsyncIterator[Watch]:
    spec = change(load_spec(fleet.spec_path))
    assert spec.error_rate is not None
    hosts = load_inventory(str(fleet.inventory_path)).hosts
    transport = SSHTransport(TransportOptions(ssh_config=[], connect_timeout=5))
    try:
        conns = {name: await transport.connect(h) for name, h in hosts.items()}
        analyzer = ErrorRateAnalyzer(spec.error_rate, has_metrics=spec.metrics is not None)
        events: list[Event] = []
        unhealthy: list[tuple[str, str]] = []
        monitors = {
            name: HostMonitor(
                name,
                conn,
                spec,
                events.append,
                analyzer,
                lambda h, d: unhealthy.append((h, d)),
            )
            for name, conn in conns.items()
        }
        for name in conns:
            analyzer.set_cohort(name, "baseline")
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(m.run()) for m in monitors.values()]
            yield Watch(fleet, spec, conns, analyzer, monitors, events, unhealthy)
            assert not any(t.done() for t in tasks), "a monitor stopped by itself"
            for t in tasks:
                t.cancel()
    finally:
        await transport.close()


async def first_alert(analyzer: ErrorRateAnalyzer, within: float) -> Alert | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        alert = analyzer.evaluate()
        if alert is not None:
            return alert
        await asyncio.sleep(0.05)
    return None


def cohort(analyzer: ErrorRateAnalyzer, name: str) -> ErrorRateSample:
    return next(s for s in analyzer.samples() if s.scope == f"cohort:{name}")


async def baseline_measured(w: Watch) -> None:
    """Until every host's counters were scraped twice (so a restart shows as a reset)
    and the baseline cohort has enough requests in its window for a verdict."""
    assert w.spec.error_rate is not None
    need = w.spec.error_rate.min_requests

    def measured() -> bool:
        counted = {s.scope for s in w.analyzer.samples() if s.requests}
        baseline = cohort(w.analyzer, "baseline").requests or 0
        return counted >= set(w.conns) and baseline >= need

    await wait_until(measured, what=f"every host scraped and {need} baseline requests")


async def quiet_until(
    analyzer: ErrorRateAnalyzer, cond: Callable[[], object], *, what: str
) -> None:
    """Until ``cond()``, evaluating the analyzer at every poll: it must never alert."""
    alerts: list[Alert] = []

    def check() -> object:
        alert = analyzer.evaluate()
        if alert is not None:
            alerts.append(alert)
        return alerts or cond()

    await wait_until(check, what=what, interval=0.05)
    assert not alerts, alerts[0].message


async def test_bad_canary_alerts_with_the_numbers(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=4, scenario="bad-canary", seed=5)
    async with watching(fleet) as w:
        await baseline_measured(w)
        assert w.analyzer.evaluate() is None  # no new cohort yet: nothing to judge
        await w.deploy("web-01")
        alert = await first_alert(w.analyzer, 15.0)
        assert alert is not None, "the bad canary was not caught"
        assert w.analyzer.resets >= 1  # the canary's restart reset its counters
        await wait_until(  # 15% of ~5 lines a second: ERROR lines show up soon
            lambda: w.monitors["web-01"].error_lines and w.of(HealthSample, "web-01"),
            what="ERROR lines from web-01's log and a sample of its health watch",
        )
        await wait_until(
            lambda: all(w.of(VitalsSample, h) and w.of(LogLines, h) for h in w.conns),
            what="vitals and log lines from every host",
        )
    assert w.spec.error_rate is not None
    assert alert.rule == "error_rate.max" and alert.level == "critical"
    n = alert.numbers
    assert n["new_rate"] == pytest.approx(0.15, abs=0.02)
    assert n["baseline_rate"] == pytest.approx(0.005, abs=0.003)
    assert n["threshold"] == w.spec.error_rate.max
    assert n["requests"] >= w.spec.error_rate.min_requests
    assert alert.message.startswith("error rate of the new version is 1")
    # Every signal worked over SSH: no warnings, vitals and logs from every host.
    assert [a for a in w.of(Alert) if a.level == "warning"] == []
    for host in w.conns:
        vitals = w.of(VitalsSample, host)
        assert vitals and vitals[-1].load1 is not None
        assert vitals[-1].mem_used_pct is not None and vitals[-1].disk_used_pct is not None
        assert w.of(LogLines, host)
    assert sum(b.errors for b in w.of(LogLines, "web-01")) > 0
    assert all(" ERROR " in line for line in w.monitors["web-01"].error_lines)
    samples = {s.scope: s for s in w.analyzer.samples()}
    assert all(s.errors >= 0 and (s.requests or 0) >= 0 for s in samples.values())
    assert w.of(HealthSample, "web-01")


async def test_healthy_canary_does_not_alert(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=3, scenario="healthy", seed=2)
    # The counters are whole numbers: a window's rate is within 1/requests of the truth,
    # so "within 0.003" needs a few hundred requests (the window's count rises and falls).
    precise = 400
    samples: list[ErrorRateSample] = []

    def new_cohort_measured() -> bool:
        new = cohort(w.analyzer, "new")
        samples.append(new)
        return (new.requests or 0) >= precise

    async with watching(fleet) as w:
        await baseline_measured(w)
        await w.deploy("web-01")
        # judged (min_requests reached) and never alerting
        await quiet_until(w.analyzer, new_cohort_measured, what=f"{precise} new requests")
        await w.conns["api-01"].run("svc restart", timeout=10)  # a baseline restart
        await quiet_until(
            w.analyzer,
            lambda: w.analyzer.resets >= 2 and new_cohort_measured(),
            what="the baseline restart seen, then the new cohort judged again",
        )
    assert w.unhealthy == []
    assert [a for a in w.of(Alert) if a.level == "warning"] == []
    assert w.analyzer.resets >= 2
    new = samples[-1]
    assert new.requests and new.requests >= 100 and new.rate == pytest.approx(0.005, abs=0.003)


async def test_flapping_health_and_missing_metrics(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=3, scenario="flapping-health", seed=4)

    def misnamed(spec: RolloutSpec) -> RolloutSpec:
        assert spec.metrics is not None
        return dataclasses.replace(
            spec, metrics=dataclasses.replace(spec.metrics, errors="http_errors_total")
        )

    async with watching(fleet, misnamed) as w:
        await w.deploy("worker-01", gate=False)  # flaps on the new version
        await w.deploy("web-01")  # steady
        await wait_until(
            lambda: any(s.status == "flapping" for s in w.of(HealthSample, "worker-01")),
            what="worker-01 reported flapping",
        )
        await wait_until(
            lambda: (
                {a.host for a in w.of(Alert) if a.rule == "signal.metrics.missing"} >= set(w.conns)
            ),
            what="a missing-metrics warning from every host",
        )
    statuses = [s.status for s in w.of(HealthSample, "worker-01")]
    assert "flapping" in statuses
    assert [h for h, _ in w.unhealthy] == ["worker-01"]  # once for the episode
    assert w.unhealthy[0][1].startswith("exit 1: fail: 503")
    assert all(s.ok for s in w.of(HealthSample, "web-01")[3:])  # past its warm-up
    missing = [a for a in w.of(Alert) if a.rule == "signal.metrics.missing"]
    assert {a.host for a in missing} == set(w.conns)  # one warning per host, no exception
    assert len(missing) == len(w.conns)
    assert "http_errors_total" in missing[0].message
