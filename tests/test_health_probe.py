"""probe_health, HealthTracker (flapping) and vitals parsing."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator

import pytest

from console.signals.health import VITALS_COMMAND, HealthTracker, Vitals, parse_vitals, probe_health
from console.spec import HealthSpec
from console.transport.base import HostUnreachable, LineCallback, RunResult
from inventory.model import Host


class ScriptedConnection:
    """Answers every command with one scripted outcome."""

    def __init__(self, outcome: RunResult | BaseException | None) -> None:
        self.host = Host(name="web-01", address="127.0.0.1")
        self.outcome = outcome
        self.timeouts: list[float] = []

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        self.timeouts.append(timeout)
        if self.outcome is None:  # hang until cancelled
            await asyncio.Event().wait()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    async def stream(self, command: str) -> AsyncIterator[str]:
        yield ""  # pragma: no cover

    async def close(self) -> None:
        pass


SPEC = HealthSpec(run="curl -fsS http://127.0.0.1/healthz", timeout=3.0)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (RunResult("ok", 0, 0.01, ("  ok: up 5s  ",)), (True, "ok: up 5s")),
        (RunResult("ok", 0, 0.01), (True, "ok")),
        (
            RunResult("failed", 7, 0.01, (), ("curl: (7) refused",)),
            (False, "exit 7: curl: (7) refused"),
        ),
        (RunResult("failed", 1, 0.01), (False, "exit 1")),
        (RunResult("timeout", None, 3.0), (False, "timed out after 3s")),
        (RunResult("failed", None, 0.1, signal="KILL"), (False, "killed by KILL")),
        (HostUnreachable("web-01", "connection lost"), (False, "unreachable: connection lost")),
        (ConnectionResetError("reset by peer"), (False, "connection error: reset by peer")),
        (RuntimeError("boom"), (False, "probe error: RuntimeError: boom")),
    ],
)
async def test_probe_outcomes(outcome, expected):
    conn = ScriptedConnection(outcome)
    assert await probe_health(conn, SPEC) == expected
    assert conn.timeouts == [3.0]


async def test_probe_detail_is_one_bounded_line():
    conn = ScriptedConnection(RunResult("failed", 1, 0.0, ("x" * 500 + "\tmore",)))
    ok, detail = await probe_health(conn, SPEC)
    assert not ok and "\n" not in detail and len(detail) <= 200


async def test_probe_cancellation_propagates():
    task = asyncio.create_task(probe_health(ScriptedConnection(None), SPEC))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_tracker_states_and_consecutive_counts():
    t = HealthTracker(HealthSpec(run="x", flap_window=60, flap_transitions=4))
    assert [t.record(ok, now) for ok, now in [(True, 0), (True, 2), (True, 4)]] == ["healthy"] * 3
    assert t.consecutive_ok == 3 and t.consecutive_failed == 0
    assert t.record(False, 6) == "unhealthy"
    assert t.consecutive_failed == 1 and t.consecutive_ok == 0
    assert t.record(False, 8) == "unhealthy" and t.consecutive == 2
    assert t.record(True, 10) == "healthy"  # 2 transitions so far
    assert t.record(False, 12) == "unhealthy"  # 3
    assert t.record(True, 14) == "flapping"  # 4 transitions within 60 s
    assert t.record(True, 16) == "flapping"  # still 4 in the window
    # The transitions at 6 and 10 leave the window at 66 and 70: steady again.
    assert t.record(True, 66.5) == "healthy"
    assert t.transitions(66.5) == 3 and not t.is_flapping(66.5)


def test_tracker_slow_alternation_is_not_flapping():
    t = HealthTracker(HealthSpec(run="x", flap_window=10, flap_transitions=3))
    statuses = [t.record(i % 2 == 0, now=i * 6.0) for i in range(20)]
    assert "flapping" not in statuses
    fast = HealthTracker(HealthSpec(run="x", flap_window=10, flap_transitions=3))
    assert [fast.record(i % 2 == 0, now=i * 2.0) for i in range(5)][-1] == "flapping"


def test_tracker_memory_is_bounded_and_uses_its_clock():
    now = [0.0]
    t = HealthTracker(HealthSpec(run="x", flap_transitions=4), clock=lambda: now[0], history=50)
    for i in range(10_000):
        now[0] = i * 0.5
        t.record(i % 3 == 0)
    assert len(t.history) == 50 and t.history[-1] == (4999.5, True)  # 9999 % 3 == 0
    assert len(t._transitions) <= 4
    assert t.status == "flapping"


LINUX_VITALS = """\
0.52 0.58 0.59 2/781 123456
MemTotal:       16303520 kB
MemFree:          913872 kB
MemAvailable:    8151760 kB
Buffers:          400000 kB
Cached:          6000000 kB
Filesystem     1024-blocks      Used Available Capacity Mounted on
/dev/nvme0n1p2   479079112 239539556 215156592      53% /
"""

# What the simulated fleet's `svc vitals` prints (console/simfleet/host.py).
SIMFLEET_VITALS = """\
0.31 0.27 0.19 1/127 4242
MemTotal:        8000000 kB
MemFree:         1866666 kB
MemAvailable:    5400000 kB
Filesystem     1K-blocks     Used Available Use% Mounted on
/dev/vda1       41943040 20971520  20971520  50% /
"""


def test_parse_linux_vitals():
    v = parse_vitals(LINUX_VITALS.splitlines())
    assert v.load1 == 0.52
    assert v.mem_used_pct == pytest.approx(100 * (16303520 - 8151760) / 16303520)
    assert v.disk_used_pct == pytest.approx(100 * 239539556 / (239539556 + 215156592))


def test_parse_simfleet_vitals():
    v = parse_vitals(SIMFLEET_VITALS.splitlines())
    assert v == Vitals(load1=0.31, mem_used_pct=pytest.approx(32.5), disk_used_pct=50.0)


def test_parse_vitals_old_kernel_any_order_and_garbage():
    text = [
        "/dev/sda1 1000 900 100 90% /",
        "MemTotal: 1000 kB",
        "MemFree: 100 kB",
        "Buffers: 100 kB",
        "Cached: 300 kB",
        "grep: /proc/x: No such file",
        "1.50 1.00 0.50 3/200 99",
    ]
    v = parse_vitals(text)
    assert v.load1 == 1.5 and v.mem_used_pct == pytest.approx(50.0)
    assert v.disk_used_pct == pytest.approx(90.0)
    assert parse_vitals(["command not found", ""]).empty
    assert parse_vitals(["/dev/x 0 0 0 100% /"]).disk_used_pct == 100.0


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs Linux /proc")
def test_default_vitals_command_reads_this_machine():
    out = subprocess.run(
        ["sh", "-c", VITALS_COMMAND], capture_output=True, text=True, timeout=10, check=True
    )
    v = parse_vitals(out.stdout.splitlines())
    assert v.load1 is not None and v.load1 >= 0
    assert v.mem_used_pct is not None and 0 < v.mem_used_pct < 100
    assert v.disk_used_pct is not None and 0 < v.disk_used_pct <= 100
