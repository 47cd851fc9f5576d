"""The analyzer and health tracker fed by the simulated fleet's own hosts, in fake time.

``SimHost`` is the simulated service behind every sim-fleet SSH server: pure state
over a clock. Driving it with a fake clock replays minutes of a rollout in
milliseconds, so the scenarios' claims can be checked over many seeds: its Prometheus
page goes through the real parser and selectors, its log lines through the spec's
error pattern. (tests/test_monitor_simfleet.py does the same through real SSH.)
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.core.events import Alert
from console.signals.health import ErrorRateAnalyzer, HealthTracker
from console.signals.metrics import line_filter, parse_selector, read_counters
from console.simfleet import load_scenario
from console.simfleet.host import SimHost
from console.simfleet.layout import host_slots
from console.spec import ErrorRateSpec, HealthSpec

ERROR_PATTERN = re.compile(r"\b(ERROR|CRITICAL)\b")
REQUESTS = parse_selector("http_requests_total")
ERRORS = parse_selector('http_requests_total{code=~"5.."}')
KEEP = line_filter((REQUESTS, ERRORS))  # as HostMonitor reads a page
SPEC = ErrorRateSpec(window=60, max=0.02, max_vs_baseline=2.0)


class FakeTimeRollout:
    """Nine sim hosts, scraped every 5 s (staggered), logs read every second."""

    def __init__(self, scenario: str, seed: int, n: int = 9) -> None:
        self.now = 10_000.0
        sc = load_scenario(scenario)
        self.new_version = sc.target_version
        self.hosts = {
            s.name: SimHost(s.name, sc, seed=seed, time_scale=1.0, clock=self.clock)
            for s in host_slots(n)
        }
        self.by_metrics = ErrorRateAnalyzer(SPEC, has_metrics=True, clock=self.clock)
        self.by_logs = ErrorRateAnalyzer(SPEC, has_metrics=False, clock=self.clock)
        for name in self.hosts:
            self.by_metrics.set_cohort(name, "baseline")
            self.by_logs.set_cohort(name, "baseline")
        self.t = 0
        self.alerts: list[tuple[int, str, Alert]] = []  # (second, mode, alert)
        self.deployed_at: dict[str, int] = {}

    def clock(self) -> float:
        return self.now

    def deploy(self, names: list[str]) -> None:
        """install + activate + restart, as the svc commands do."""
        for name in names:
            host = self.hosts[name]
            host.installed.append(self.new_version)
            host.active = self.new_version
            host.restart()
            self.by_metrics.set_cohort(name, "new")
            self.by_logs.set_cohort(name, "new")
            self.deployed_at[name] = self.t

    def tick(self) -> None:
        self.t += 1
        self.now += 1.0
        for i, (name, host) in enumerate(self.hosts.items()):
            lines = host.generate_logs()
            errors = sum(1 for line in lines if ERROR_PATTERN.search(line))
            self.by_logs.observe_log(name, len(lines), errors)
            if (self.t + i) % 5 == 0:
                text = host.metrics_text()
                if text is not None:  # None: the process is down (restarting)
                    page = "\n".join(x for x in text.splitlines() if KEEP(x)) + "\n"
                    reading = read_counters(page, REQUESTS, ERRORS)
                    assert reading.requests is not None and reading.errors is not None
                    self.by_metrics.observe_counters(name, reading.requests, reading.errors)
        for mode, analyzer in (("metrics", self.by_metrics), ("logs", self.by_logs)):
            alert = analyzer.evaluate()
            if alert is not None:
                self.alerts.append((self.t, mode, alert))

    def run(self, batches: list[int], every: int = 40, tail: int = 40) -> None:
        """Baseline for ``every`` seconds, then a batch every ``every`` seconds."""
        names = list(self.hosts)
        for size in batches:
            for _ in range(every):
                self.tick()
            self.deploy(names[:size])
            names = names[size:]
        for _ in range(tail):
            self.tick()


@pytest.mark.parametrize("seed", range(20))
def test_healthy_fleet_never_alerts(seed):
    drill = FakeTimeRollout("healthy", seed)
    drill.run([1, 2, 3, 3])  # 200 s: every second a verdict, by metrics and by logs
    assert drill.alerts == []
    samples = {s.scope: s for s in drill.by_metrics.samples()}
    assert samples["cohort:new"].rate == pytest.approx(0.005, abs=0.002)
    assert drill.by_metrics.resets >= 9  # every host restarted: counters reset, no harm
    assert all(s.errors >= 0 and (s.requests or 0) >= 0 for s in samples.values())


@pytest.mark.parametrize("seed", range(5))
def test_bad_canary_alerts_within_seconds_with_the_numbers(seed):
    drill = FakeTimeRollout("bad-canary", seed)
    drill.run([1], tail=40)
    assert drill.alerts, "the bad canary was not caught"
    t, mode, alert = drill.alerts[0]
    assert mode == "metrics"
    assert t - drill.deployed_at["web-01"] <= 12  # restart, warm-up, two scrapes at most
    assert alert.rule == "error_rate.max"
    n = alert.numbers
    assert n["new_rate"] == pytest.approx(0.15, abs=0.02)
    assert n["baseline_rate"] == pytest.approx(0.005, abs=0.002)
    assert n["requests"] >= SPEC.min_requests and n["threshold"] == 0.02
    assert n["errors"] == pytest.approx(n["new_rate"] * n["requests"])
    assert "above the 2.0% maximum" in alert.message
    # Logs alone catch it too (error lines per host-minute against the baseline's).
    by_logs = [a for _, m, a in drill.alerts if m == "logs"]
    assert by_logs and by_logs[0].rule == "error_rate.max_vs_baseline"
    assert by_logs[0].numbers["unit"] == "per_min"


def test_flapping_health_is_reported_as_flapping():
    sc = load_scenario("flapping-health")
    now = [0.0]
    host = SimHost("worker-01", sc, seed=3, time_scale=1.0, clock=lambda: now[0])
    steady = SimHost("web-01", sc, seed=3, time_scale=1.0, clock=lambda: now[0])
    for h in (host, steady):
        h.installed.append(sc.target_version)
        h.active = sc.target_version
        h.restart()
    spec = HealthSpec(run="svc health", every=2.0, flap_window=60.0, flap_transitions=4)
    flappy, calm = HealthTracker(spec), HealthTracker(spec)
    for _ in range(40):  # 80 s of probes every 2 s
        now[0] += spec.every
        flappy.record(host.health()[0], now[0])
        calm.record(steady.health()[0], now[0])
    assert flappy.status == "flapping"
    assert calm.status == "healthy" and calm.consecutive_ok >= 35


def flapping_on_new_version(seed: int, clock: Callable[[], float]) -> SimHost:
    """flapping-health's worker-01, restarted on the version that flaps."""
    sc = load_scenario("flapping-health")
    host = SimHost("worker-01", sc, seed=seed, time_scale=1.0, clock=clock)
    host.installed.append(sc.target_version)
    host.active = sc.target_version
    host.restart()
    return host


@settings(max_examples=200)
@given(
    seed=st.integers(0, 10_000),
    gaps=st.lists(st.floats(0.0, 5.0), min_size=3, max_size=60),
)
def test_a_flapping_host_never_passes_the_gate_however_late_its_probes(
    seed: int, gaps: list[float]
) -> None:
    """The gate probes every 2 s or later (a probe starts after the last one answered
    and a sleep): whatever the delays, a host flapping every 3 s never shows 3 passes
    in a row, so the scenario's outcome does not hang on a loaded machine's timing.
    (Timing alone could: a probe late by a failing stretch would step over it.)"""
    now = [0.0]
    host = flapping_on_new_version(seed, lambda: now[0])
    now[0] = host.ready_at
    passes, results = 0, []
    for gap in gaps:
        now[0] += 2.0 + gap
        host.health()  # a look (svc status) between probes changes nothing
        ok, _ = host.health(probe=True)
        results.append(ok)
        passes = passes + 1 if ok else 0
        assert passes < 3, results
    # Probed on time, it still flaps: passes and failures both.
    now[0] += 60.0
    timely = []
    for _ in range(12):
        now[0] += 2.0
        timely.append(host.health(probe=True)[0])
    assert True in timely and False in timely


def test_svc_health_is_a_probe_and_a_restart_is_a_failure_it_did_not_see() -> None:
    """Through the simulated fleet's ``svc`` command, in fake time: ``svc health``
    counts as a probe (``svc status`` does not), and a restart between two passing
    probes fails the second, as the outage it hid would have."""
    import asyncio

    from console.simfleet.commands import Context, execute
    from console.simfleet.logs import LogPump

    now = [0.0]
    host = flapping_on_new_version(5, lambda: now[0])
    out: list[str] = []

    async def eof() -> str | None:
        return None

    ctx = Context(host, LogPump(), out.append, out.append, eof, out.append)

    def svc(*words: str) -> tuple[int, str]:
        out.clear()
        return asyncio.run(execute(" ".join(("svc", *words)), ctx)), "".join(out)

    period = 3.0
    # The first passing moment after warm-up, then a second probe in the same window.
    now[0] = host.ready_at
    while host.health()[0] is False:
        now[0] += 0.05
    assert svc("health")[0] == 0
    assert svc("status")[0] == 0  # a look: changes nothing
    now[0] += 0.01
    assert svc("health")[0] == 0
    # Two periods later the window is passing again, but a failing one went by unseen.
    now[0] += 2 * period
    code, text = svc("health")
    assert code == 1 and "fail" in text
    assert svc("health")[0] == 0  # seen now: the next probe in this window passes
    host.restart()
    now[0] = host.ready_at
    while host.health()[0] is False:
        now[0] += 0.05
    assert svc("health")[0] == 1  # the restart's outage, never probed
