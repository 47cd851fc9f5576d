"""HostMonitor against an in-memory connection: logs, metrics, vitals, health watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from console.core.events import Alert, Event, HealthSample, LogLines, VitalsSample
from console.signals.health import VITALS_COMMAND, ErrorRateAnalyzer
from console.signals.monitor import HostMonitor
from console.spec import (
    ErrorRateSpec,
    HealthSpec,
    LogsSpec,
    MetricsSpec,
    RolloutSpec,
    VitalsSpec,
)
from console.transport.base import HostUnreachable, LineCallback, RunResult
from inventory.model import Host

Handler = Callable[[], tuple[int, list[str]]]  # -> (exit code, stdout lines); may raise


class MemoryConnection:
    """Commands answered by handlers; one followed log fed from a queue (None ends it)."""

    chains_commands = False

    def persistent_shell(self) -> None:
        return None

    def __init__(self, name: str = "web-01") -> None:
        self.host = Host(name=name, address="127.0.0.1")
        self.handlers: dict[str, Handler] = {}
        self.runs: list[tuple[str, float]] = []
        self.log: asyncio.Queue[str | None] = asyncio.Queue()
        self.streams_opened = 0
        self.streams_closed = 0

    def count(self, command: str) -> int:
        return sum(1 for c, _ in self.runs if c == command)

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        self.runs.append((command, timeout))
        code, lines = self.handlers[command]()
        for line in lines:
            if on_line:
                on_line("stdout", line)
        return RunResult("ok" if code == 0 else "failed", code, 0.0, tuple(lines[-20:]))

    async def stream(self, command: str) -> AsyncIterator[str]:
        self.streams_opened += 1
        try:
            while (line := await self.log.get()) is not None:
                yield line
        finally:
            self.streams_closed += 1

    async def close(self) -> None:
        pass


def make_spec(**kw) -> RolloutSpec:
    return RolloutSpec(path="r.yaml", text="", service="svc", version="2", inventory=None, **kw)


class Harness:
    def __init__(self, spec: RolloutSpec, *, has_metrics: bool = True, **kw) -> None:
        self.conn = MemoryConnection()
        self.events: list[Event] = []
        self.unhealthy: list[tuple[str, str]] = []
        self.analyzer = ErrorRateAnalyzer(
            spec.error_rate or ErrorRateSpec(), has_metrics=has_metrics
        )
        self.monitor = HostMonitor(
            "web-01",
            self.conn,
            spec,
            self.events.append,
            self.analyzer,
            lambda h, d: self.unhealthy.append((h, d)),
            **kw,
        )
        self.task: asyncio.Task[None] | None = None

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def warnings(self, rule: str) -> list[Alert]:
        return [a for a in self.of(Alert) if a.rule == rule and a.level == "warning"]

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.monitor.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        assert not self.task.done(), "the monitor stopped by itself"
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition on the monitor's state (it has no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class Witness:
    """Another monitor on the loop, polling vitals every 5 ms. A "nothing happened"
    check waits for some of its polls (the monitor under test had that long to act,
    however loaded the machine), not for a fixed time."""

    def __init__(self) -> None:
        self.h = Harness(make_spec(vitals=VitalsSpec(run="svc vitals", every=0.005)))
        self.h.conn.handlers["svc vitals"] = lambda: (0, ["0.10 0.20 0.30 1/100 7"])

    async def __aenter__(self) -> Witness:
        await self.h.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.h.__aexit__(*exc)

    async def polls(self, n: int = 10) -> None:
        """Until it polled ``n`` more times."""
        start = self.h.conn.count("svc vitals")
        await until(lambda: self.h.conn.count("svc vitals") >= start + n)


LOGS = LogsSpec(run="svc logs --follow", error_pattern=r"\b(ERROR|CRITICAL)\b")


async def test_log_lines_are_batched_counted_and_bounded():
    h = Harness(make_spec(logs=LOGS), has_metrics=False, vitals=False)
    async with h:
        lines = [f"{i} {'ERROR boom' if i % 10 == 0 else 'INFO ok'}" for i in range(1000)]
        for line in lines:
            h.conn.log.put_nowait(line)
        await until(lambda: h.monitor.lines_total == 1000 and h.of(LogLines))
        (batch,) = h.of(LogLines)  # a burst read at once is one event
        assert batch.errors == 100 and batch.host == "web-01"
        assert batch.lines == tuple(lines[-500:])  # bounded: the newest of the burst
        assert h.monitor.error_lines_total == 100
        assert list(h.monitor.error_lines) == [x for x in lines if "ERROR" in x]
        # Lines trickling in are coalesced too: far fewer events than writes.
        for i in range(30):
            h.conn.log.put_nowait(f"t{i} CRITICAL disk" if i % 3 == 0 else f"t{i} fine")
            if i % 3 == 2:  # three lines at a time, 10 ms apart
                await asyncio.sleep(0.01)
        await until(lambda: h.monitor.lines_total == 1030 and not h.monitor._pending_lines)
        trickle = h.of(LogLines)[1:]
        assert 1 <= len(trickle) <= 10  # never one event per line
        assert [x for b in trickle for x in b.lines] == [
            f"t{i} CRITICAL disk" if i % 3 == 0 else f"t{i} fine" for i in range(30)
        ]
        assert sum(b.errors for b in trickle) == 10
        assert len(h.monitor.error_lines) == 110
        (sample,) = [s for s in h.analyzer.samples() if s.scope == "web-01"]
        assert sample.errors == 110 and sample.unit == "per_min"


async def test_error_lines_kept_are_bounded():
    h = Harness(make_spec(logs=LOGS), has_metrics=False, vitals=False)
    async with h:
        for i in range(5000):
            h.conn.log.put_nowait(f"ERROR {i}")
        await until(lambda: h.monitor.lines_total == 5000)
        assert len(h.monitor.error_lines) == 200 and h.monitor.error_lines[-1] == "ERROR 4999"
        h.conn.log.put_nowait("x" * 100_000 + " ERROR at the end")
        await until(lambda: h.monitor.lines_total == 5001)
        assert h.monitor.error_lines_total == 5001  # matched on the whole line
        assert len(h.monitor.error_lines[-1]) == 2000  # kept cut


async def test_log_stream_restarts_warns_once_and_is_closed_on_cancel():
    h = Harness(make_spec(logs=LOGS), has_metrics=False, vitals=False, log_retry=0.01)
    async with h:
        h.conn.log.put_nowait(None)  # the log command exits
        h.conn.log.put_nowait(None)  # and again, right after restarting
        await until(lambda: h.conn.streams_opened == 3)
        assert len(h.warnings("signal.logs")) == 1  # one warning per failure episode
        h.conn.log.put_nowait("INFO back")
        await until(lambda: h.monitor.lines_total == 1)
        h.conn.log.put_nowait(None)  # a new episode after recovering: warned again
        await until(lambda: h.conn.streams_opened == 4)
        assert len(h.warnings("signal.logs")) == 2
        assert "the log command ended" in h.warnings("signal.logs")[0].message
    assert h.conn.streams_closed == h.conn.streams_opened == 4


def metrics_page(ok: int, err: int) -> list[str]:
    return [
        "# TYPE http_requests_total counter",
        f'http_requests_total{{code="200"}} {ok}',
        f'http_requests_total{{code="500"}} {err}',
        "# TYPE http_request_duration_seconds histogram",
        'http_request_duration_seconds_bucket{le="+Inf"} 5',
    ]


METRICS = MetricsSpec(
    run="svc metrics",
    requests="http_requests_total",
    errors='http_requests_total{code=~"5.."}',
    every=0.01,
    timeout=4.0,
)


async def test_metrics_feed_the_analyzer_through_a_counter_reset():
    pages = [metrics_page(0, 0), metrics_page(990, 10), metrics_page(45, 5), metrics_page(95, 5)]
    served: list[int] = []

    def handler() -> tuple[int, list[str]]:
        served.append(1)
        return 0, pages[min(len(served), len(pages)) - 1]

    h = Harness(make_spec(metrics=METRICS), vitals=False)
    h.analyzer.set_cohort("web-01", "new")
    h.conn.handlers["svc metrics"] = handler
    async with h:
        await until(lambda: len(served) >= 6)
        (s,) = [x for x in h.analyzer.samples() if x.scope == "web-01"]
        # 1000 requests / 10 errors, then a restart from 50 / 5, then +50 / +0.
        assert (s.requests, s.errors) == (1100, 15)
        assert h.analyzer.resets == 1
        assert not h.of(Alert)
    assert {t for c, t in h.conn.runs} == {4.0}


async def test_missing_and_broken_metrics_warn_once_and_never_raise():
    pages = iter(
        [["# TYPE other_total counter", "other_total 3"]] * 5
        + [['http_requests_total{code="200" 1']] * 5
    )

    def handler() -> tuple[int, list[str]]:
        return 0, next(pages, metrics_page(10, 1))

    h = Harness(
        make_spec(metrics=METRICS, vitals=VitalsSpec(run="svc vitals", every=0.01)),
    )
    h.conn.handlers["svc metrics"] = handler
    h.conn.handlers["svc vitals"] = lambda: (0, ["0.10 0.20 0.30 1/100 7"])
    async with h:
        await until(lambda: h.conn.count("svc metrics") >= 14)
        missing = h.warnings("signal.metrics.missing")
        assert len(missing) == 1
        assert missing[0].message == (
            "metrics: no series matches http_requests_total or "
            "http_requests_total{code=~\"5..\"} in the output of 'svc metrics'"
        )
        assert len(h.warnings("signal.metrics")) == 1  # the unparseable page
        assert "unparseable" in h.warnings("signal.metrics")[0].message
        assert h.of(VitalsSample)  # the other signal kept going
        assert h.analyzer.samples()[0].scope == "web-01"  # fed once the page is right


async def test_vitals_default_command_and_a_failing_signal_backs_off():
    calls: list[int] = []

    def vitals() -> tuple[int, list[str]]:
        calls.append(1)
        if len(calls) in (2, 3, 4):
            raise HostUnreachable("web-01", "connection lost")
        return 0, [
            "0.52 0.58 0.59 2/781 123",
            "MemTotal: 1000 kB",
            "MemAvailable: 250 kB",
            "Filesystem 1024-blocks Used Available Capacity Mounted on",
            "/dev/sda1 100 40 60 40% /",
        ]

    spec = make_spec(metrics=METRICS)
    h = Harness(spec)
    h.monitor.vitals_spec = VitalsSpec(every=0.01, timeout=2.5)  # the default command
    h.conn.handlers[VITALS_COMMAND] = vitals
    h.conn.handlers["svc metrics"] = lambda: (0, metrics_page(1, 0))
    async with h:
        await until(lambda: len(h.of(VitalsSample)) >= 2)
        first = h.of(VitalsSample)[0]
        assert (first.load1, first.mem_used_pct, first.disk_used_pct) == (0.52, 75.0, 40.0)
        (warning,) = h.warnings("signal.vitals")
        assert warning.message == "vitals: unreachable: connection lost"
        assert warning.host == "web-01"
        # unaffected by vitals failing: polled in each back-off gap (each > its period)
        vitals_at = [i for i, (c, _) in enumerate(h.conn.runs) if c == VITALS_COMMAND]
        failing = h.conn.runs[vitals_at[1] : vitals_at[4]]
        assert sum(c == "svc metrics" for c, _ in failing) >= 3
    assert (VITALS_COMMAND, 2.5) in h.conn.runs


async def test_unreadable_vitals_warn():
    h = Harness(make_spec(vitals=VitalsSpec(run="svc vitals", every=0.01)))
    h.conn.handlers["svc vitals"] = lambda: (127, [])
    async with h:
        await until(lambda: h.conn.count("svc vitals") >= 3)
        (w,) = h.warnings("signal.vitals")  # once, after the second failure
        assert "nothing readable from 'svc vitals': failed (exit 127)" in w.message
        assert not h.of(VitalsSample)


HEALTH = HealthSpec(
    run="svc health",
    every=0.005,
    timeout=1.5,
    healthy_after=2,
    flap_window=60,
    flap_transitions=4,
)


async def test_health_watch_reports_once_per_episode_and_flapping():
    script = [True, True, False, False, True, True, True, False, True, False, True, False]
    results: list[bool] = []

    def health() -> tuple[int, list[str]]:
        ok = script[len(results)] if len(results) < len(script) else False
        results.append(ok)
        return (0, ["ok: up"]) if ok else (1, [f"fail: 503 #{len(results)}"])

    h = Harness(make_spec(health=HEALTH), vitals=False)
    h.conn.handlers["svc health"] = health
    async with h, Witness() as witness:
        await witness.polls()
        assert not results  # nothing probed until the host is deployed and watched
        h.monitor.watch_health(True)
        await until(lambda: len(h.of(HealthSample)) >= len(script) + 2)
        h.monitor.watch_health(False)
        stopped_at = len(results)
        await witness.polls()
        assert len(results) <= stopped_at + 1  # at most the probe in flight
    samples = h.of(HealthSample)
    assert [s.ok for s in samples[: len(script)]] == script
    assert [s.consecutive for s in samples[:5]] == [1, 2, 1, 2, 1]
    statuses = [s.status for s in samples]
    assert statuses[:8] == ["healthy", "healthy"] + ["unhealthy"] * 2 + ["healthy"] * 3 + [
        "unhealthy"
    ]
    assert statuses[8:] == ["flapping"] * (len(statuses) - 8)
    # Only changes are journaled: a repeat of the last (ok, status) is streamed only.
    durable = [s.durable for s in samples[: len(script)]]
    assert durable == [True, False, True, False, True, False, False, True] + [True] * 4
    # First failure; then, after recovering for healthy_after probes, the failure at 8.
    # While flapping, the host never counts as recovered: no third call.
    assert h.unhealthy == [("web-01", "exit 1: fail: 503 #3"), ("web-01", "exit 1: fail: 503 #8")]


async def test_health_watch_fail_after_tolerates_a_blip():
    script = [True, False, True, False, False]
    results: list[bool] = []

    def health() -> tuple[int, list[str]]:
        ok = script[len(results)] if len(results) < len(script) else False
        results.append(ok)
        return (0, []) if ok else (1, [])

    h = Harness(make_spec(health=HEALTH), vitals=False, fail_after=2)
    h.conn.handlers["svc health"] = health
    async with h:
        h.monitor.watch_health(True)
        await until(lambda: len(results) >= 6)
    assert h.unhealthy == [("web-01", "exit 1")]
    assert [s.status for s in h.of(HealthSample)][:2] == ["healthy", "unhealthy"]


async def test_nothing_configured_runs_nothing_and_no_health_watch_without_spec():
    h = Harness(make_spec(), vitals=False)
    async with h, Witness() as witness:
        h.monitor.watch_health(True)
        await witness.polls()
        assert not h.monitor.watching and not h.conn.runs and not h.events


async def test_one_failed_poll_is_not_a_warning():
    """A scrape that fails while the service restarts is normal; two in a row are not."""
    script = iter([(0, metrics_page(1, 0)), (7, []), (0, metrics_page(2, 0))])
    h = Harness(make_spec(metrics=METRICS), vitals=False)
    h.conn.handlers["svc metrics"] = lambda: next(script, (7, ["refused"]))
    async with h:
        await until(lambda: h.conn.count("svc metrics") >= 3)
        assert not h.warnings("signal.metrics")
        await until(lambda: h.conn.count("svc metrics") >= 5)
        (w,) = h.warnings("signal.metrics")
        assert w.message == "metrics: 'svc metrics' failed (exit 7): refused"


async def test_set_health_judges_with_the_new_command_and_a_fresh_history():
    """A host rolling back is watched with its health re-rendered for the version it
    goes back to: the old command stops, the new one starts with no history."""
    h = Harness(make_spec(health=HEALTH), vitals=False)
    h.conn.handlers["svc health"] = lambda: (1, ["wrong version"])
    h.conn.handlers["svc health --version 1"] = lambda: (0, ["ok: 1"])
    async with h:
        h.monitor.watch_health(True)
        await until(lambda: h.unhealthy)
        h.monitor.set_health(HealthSpec(run="svc health --version 1", every=0.005))
        assert h.monitor.watching  # still watched, now against the new command
        switched = len(h.of(HealthSample))
        await until(lambda: h.conn.count("svc health --version 1") >= 3)
        old = h.conn.count("svc health")
        await until(lambda: h.conn.count("svc health --version 1") >= 6)
        assert h.conn.count("svc health") <= old + 1  # at most the probe in flight
        h.monitor.set_health(None)  # no check at all: the watch stops
        assert not h.monitor.watching
    after = [s for s in h.of(HealthSample)[switched:] if s.detail == "ok: 1"]
    assert after[0].consecutive == 1 and after[0].status == "healthy"  # fresh history
    assert h.unhealthy == [("web-01", "exit 1: wrong version")]


async def test_set_health_while_not_watching_only_replaces_the_command():
    h = Harness(make_spec(health=HEALTH), vitals=False)
    h.conn.handlers["svc health --version 1"] = lambda: (0, ["ok"])
    async with h, Witness() as witness:
        h.monitor.set_health(HealthSpec(run="svc health --version 1", every=0.005))
        await witness.polls()
        assert not h.conn.runs and not h.monitor.watching
        h.monitor.watch_health(True)
        await until(lambda: h.conn.count("svc health --version 1") >= 2)
    assert h.conn.count("svc health") == 0
