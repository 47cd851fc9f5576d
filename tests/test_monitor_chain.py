"""HostMonitor's chained polls: the signals due together in one command, each with its
own outcome, timeout and exit code, and the overload guard on health timeouts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import console.signals.monitor as monitor_mod
from console.core.events import Alert, Event, HealthSample, VitalsSample
from console.signals.health import ErrorRateAnalyzer
from console.signals.monitor import HostMonitor, _chainable, _marker_status
from console.spec import ErrorRateSpec, HealthSpec, MetricsSpec, RolloutSpec, VitalsSpec
from console.transport.base import LineCallback, RunResult
from inventory.model import Host
from tests.waiting import wait_until

Handler = Callable[[], Awaitable[tuple[int, list[str]]]]
_PART = re.compile(r'^(.*) && echo (\S+)ok \|\| echo "(\S+)failed \$\?"$')

VITALS_OUT = ["0.50 0.40 0.30 1/100 123", "MemTotal: 1000 kB", "MemAvailable: 500 kB"]
METRICS_OUT = ["http_requests_total 100", 'http_errors_total{code="500"} 1']


class ShellConnection:
    """Runs the monitor's chains as a POSIX shell would: ``A && echo Mok || echo
    "Mfailed $?"; B``, ``$?`` expanded; the command's status is the last part's."""

    chains_commands = True

    def persistent_shell(self) -> None:
        return None

    def __init__(self) -> None:
        self.host = Host(name="web-01", address="127.0.0.1")
        self.handlers: dict[str, Handler] = {}
        self.commands: list[str] = []
        self.stopped = 0  # commands cancelled (stopped by the "transport")

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        self.commands.append(command)
        emit = on_line or (lambda stream, line: None)
        code, lines = 0, []
        try:
            async with asyncio.timeout(timeout):
                for segment in command.split("; "):
                    m = _PART.match(segment)
                    code, lines = await self.handlers[m.group(1) if m else segment]()
                    for line in lines:
                        emit("stdout", line)
                    if m:
                        emit(
                            "stdout",
                            f"{m.group(2)}ok" if code == 0 else f"{m.group(3)}failed {code}",
                        )
        except TimeoutError:
            return RunResult("timeout", None, timeout)
        except asyncio.CancelledError:
            self.stopped += 1
            raise
        return RunResult("ok" if code == 0 else "failed", code, 0.0, tuple(lines))

    async def stream(self, command: str) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""

    async def close(self) -> None:
        pass


def answer(code: int, lines: list[str]) -> Handler:
    async def handler() -> tuple[int, list[str]]:
        return code, lines

    return handler


def spec(**kw) -> RolloutSpec:
    return RolloutSpec(path="r.yaml", text="", service="svc", version="2", inventory=None, **kw)


HEALTH = HealthSpec(run="svc health", every=0.1, healthy_after=1, timeout=0.3)
VITALS = VitalsSpec(run="svc vitals", every=0.25, timeout=0.3)
METRICS = MetricsSpec(
    run="svc metrics",
    requests="http_requests_total",
    errors="http_errors_total",
    every=0.25,
    timeout=0.3,
)


class Harness:
    def __init__(self, rollout: RolloutSpec) -> None:
        self.conn = ShellConnection()
        self.conn.handlers = {
            "svc health": answer(0, ["ok"]),
            "svc vitals": answer(0, VITALS_OUT),
            "svc metrics": answer(0, METRICS_OUT),
        }
        self.events: list[Event] = []
        self.unhealthy: list[tuple[str, str]] = []
        self.analyzer = ErrorRateAnalyzer(ErrorRateSpec(max=0.05), has_metrics=True)
        self.monitor = HostMonitor(
            "web-01",
            self.conn,
            rollout,
            self.events.append,
            self.analyzer,
            lambda h, d: self.unhealthy.append((h, d)),
        )
        self.observed = 0
        observe = self.analyzer.observe_counters

        def counting(*args, **kw) -> None:
            self.observed += 1
            observe(*args, **kw)

        self.analyzer.observe_counters = counting  # type: ignore[method-assign]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def warnings(self) -> list[Alert]:
        return [a for a in self.of(Alert) if a.level == "warning"]

    async def run_until(self, cond: Callable[[], object], *, what: str) -> None:
        """Run the monitor until ``cond()`` holds, then stop it (it must not have
        stopped by itself, and must end by cancellation)."""
        task = asyncio.create_task(self.monitor.run())
        try:
            await wait_until(lambda: task.done() or cond(), what=what)
        finally:
            ended = task.done()
            task.cancel()
            if ended:
                await task  # its exception, if it raised
            else:
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert not ended, "the monitor stopped by itself"


def test_markers_and_what_can_be_chained():
    assert _marker_status("ok") == 0
    assert _marker_status("failed 7") == 7
    assert _marker_status("failed $?") is None  # a shell without $? (the simulated one)
    assert _chainable("svc health") and _chainable("curl -fsS http://x/ | grep -q ok")
    assert _chainable("cat /proc/loadavg; df -P /")
    assert not _chainable("svc health # comment")
    assert not _chainable("a\nb") and not _chainable("sleep 1 &") and not _chainable("a;")


async def test_polls_due_together_run_as_one_command():
    h = Harness(spec(health=HEALTH, vitals=VITALS, metrics=METRICS))
    h.monitor.watch_health(True)
    await h.run_until(
        lambda: len(h.of(HealthSample)) >= 8 and len(h.of(VitalsSample)) >= 3 and h.observed >= 3,
        what="8 health samples, 3 vitals samples and 3 metrics scrapes",
    )
    health = h.of(HealthSample)
    assert len(health) >= 8 and all(s.ok for s in health)
    assert len(h.of(VitalsSample)) >= 3 and h.observed >= 3
    # One command per health tick: vitals and metrics rode in health's commands. A
    # stalled event loop (a loaded machine) pushes health's next tick off the grid the
    # others were snapped to: each of them may then miss it once, and run alone.
    assert len(h.conn.commands) <= len(health) + 1 + 2
    chained = [c for c in h.conn.commands if "svc vitals" in c or "svc metrics" in c]
    riding = [c for c in chained if c.endswith("; svc health")]
    assert riding and len(chained) - len(riding) <= 2, chained
    assert h.warnings() == [] and h.unhealthy == []


async def test_each_part_keeps_its_own_exit_code_and_detail():
    h = Harness(spec(health=HEALTH, vitals=VITALS, metrics=METRICS))
    h.conn.handlers["svc metrics"] = answer(7, ["refused"])
    h.conn.handlers["svc health"] = answer(1, ["fail: 503"])
    h.monitor.watch_health(True)
    await h.run_until(
        lambda: h.unhealthy and h.warnings() and h.of(VitalsSample),
        what="the health failure, the metrics warning and a vitals sample",
    )
    assert h.unhealthy and h.unhealthy[0] == ("web-01", "exit 1: fail: 503")
    (w,) = h.warnings()
    assert w.rule == "signal.metrics"
    assert w.message == "metrics: 'svc metrics' failed (exit 7): refused"
    assert h.of(VitalsSample)  # a failing neighbour does not take vitals down


async def test_a_hung_part_times_out_alone_and_the_rest_still_run():
    h = Harness(spec(health=HEALTH, vitals=VITALS))

    async def hang() -> tuple[int, list[str]]:
        await asyncio.Event().wait()
        return 0, []

    h.conn.handlers["svc vitals"] = hang
    h.monitor.watch_health(True)
    await h.run_until(
        lambda: h.warnings() and h.conn.stopped >= 2 and len(h.of(HealthSample)) >= 5,
        what="the vitals warning, 2 hung commands stopped and 5 health samples",
    )
    (w,) = h.warnings()
    assert w.rule == "signal.vitals" and "timeout" in w.message
    assert h.conn.stopped >= 2  # the hung command was stopped, not abandoned
    health = h.of(HealthSample)
    assert len(health) >= 5 and all(s.ok for s in health) and h.unhealthy == []


@pytest.mark.parametrize("starved", [True, False])
async def test_a_health_timeout_while_the_console_is_starved_is_rechecked(
    monkeypatch: pytest.MonkeyPatch, starved: bool
):
    # STARVED_LAG 0: any lag counts as starvation; 1e9: none ever does.
    monkeypatch.setattr(monitor_mod, "STARVED_LAG", 0.0 if starved else 1e9)
    h = Harness(spec(health=HEALTH))
    calls = 0

    async def once_slow() -> tuple[int, list[str]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return 0, ["ok"]

    h.conn.handlers["svc health"] = once_slow
    h.monitor.watch_health(True)
    # the first probe's timeout judged (as starvation, or as a failure) and 2 more probes
    await h.run_until(lambda: calls >= 3 and h.of(HealthSample), what="3 probes, a health sample")
    health = h.of(HealthSample)
    assert calls >= 3 and health
    if starved:
        assert all(s.ok for s in health) and h.unhealthy == []
    else:
        assert health[0].ok is False and health[0].detail == "timed out after 0.3s"
        assert h.unhealthy == [("web-01", "timed out after 0.3s")]


async def test_set_health_on_the_chained_path_runs_the_new_command():
    h = Harness(spec(health=HEALTH, vitals=VITALS))
    h.conn.handlers["svc health --version 1"] = answer(0, ["ok 1"])
    task = asyncio.create_task(h.monitor.run())
    try:
        h.monitor.watch_health(True)
        await wait_until(
            lambda: any(c.endswith("svc health") for c in h.conn.commands),
            what="a chained command ending with the health check",
        )
        h.monitor.set_health(HealthSpec(run="svc health --version 1", every=0.1))
        await wait_until(
            lambda: any(c.endswith("svc health --version 1") for c in h.conn.commands),
            what="a chained command ending with the new health check",
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    first_new = next(i for i, c in enumerate(h.conn.commands) if c.endswith("--version 1"))
    assert not [c for c in h.conn.commands[first_new + 1 :] if c.endswith("svc health")]
    assert any(s.detail == "ok 1" for s in h.of(HealthSample))
