"""``rolldeck demo --headless`` end to end: the canary passes, a later batch reaches
the host with a full disk, the failure budget pauses the rollout; afterwards the fleet
process is gone, its temp dir removed, and only the journal remains."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from console.core import events as ev
from console.core.errors import EXIT_PAUSED
from console.core.events import HostState, Outcome
from console.engine import POLICY
from console.store.journal import read_journal

pytestmark = pytest.mark.timeout(180)


def demo_argv(state: Path, scale: str, hosts: int = 6) -> list[str]:
    return [
        sys.executable, "-m", "console", "demo", "--headless", "--hosts", str(hosts),
        "--time-scale", scale, "--state-dir", str(state),
    ]  # fmt: skip


def env_with_tmp(tmp: Path) -> dict[str, str]:
    scratch = tmp / "tmp"
    scratch.mkdir()
    return {**os.environ, "TMPDIR": str(scratch)}


def only_the_journal(tmp: Path) -> list[ev.Event]:
    """Nothing left but the journal: no temp dir, no fleet process, no lock."""
    scratch = tmp / "tmp"
    assert list(scratch.iterdir()) == []
    for p in psutil.process_iter(["cmdline"]):
        assert str(scratch) not in " ".join(p.info["cmdline"] or []), p
    (journal,) = (tmp / "state").iterdir()
    assert journal.suffix == ".jsonl"
    return read_journal(journal)


async def test_demo_pauses_after_the_bad_host(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *demo_argv(tmp_path / "state", "0.05", hosts=8),  # 4 batches: worker-02 in the 3rd
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_with_tmp(tmp_path),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 150)
    assert proc.returncode == EXIT_PAUSED, err.decode()[-2000:]
    assert b"Traceback" not in err
    assert b"sim-fleet ready" in err  # the one line said while the fleet starts came first
    assert b"paused" in out

    events = only_the_journal(tmp_path)
    finished = [e for e in events if isinstance(e, ev.BatchFinished) and not e.rollback]
    assert finished[0].index == 0 and finished[0].succeeded == ("web-01",)
    assert finished[0].failed == ()  # the canary passes
    bad = next(e for e in finished if e.failed)
    assert bad.index >= 1 and bad.failed == ("worker-02",)  # a later batch hits it
    failed = next(
        e for e in events if isinstance(e, ev.HostStateChanged) and e.state == HostState.FAILED
    )
    assert failed.host == "worker-02" and "install" in failed.detail
    alert = next(e for e in events if isinstance(e, ev.Alert) and e.level == "critical")
    assert alert.rule == "max_failures" and alert.action == "pause"
    pause = next(e for e in events if isinstance(e, ev.OperatorCommand))
    assert (pause.command, pause.operator) == ("pause", POLICY)
    end = next(e for e in events if isinstance(e, ev.RolloutFinished))
    assert end.outcome == Outcome.PAUSED
    assert end.counts == {"healthy": 6, "failed": 1, "pending": 1}  # api-03 never started
    assert not any(isinstance(e, ev.DrillScorecard) for e in events)  # a demo is not scored


async def test_ctrl_c_pauses_and_the_fleet_survives_it(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the rollout pauses (hosts in flight
    finish against a fleet still serving), then everything is cleaned up."""
    proc = await asyncio.create_subprocess_exec(
        *demo_argv(tmp_path / "state", "0.5"),
        "--json",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_with_tmp(tmp_path),
        start_new_session=True,  # its own process group, as a terminal's job
    )
    assert proc.stdout is not None and proc.stderr is not None
    while True:  # until the first host starts moving
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
        assert line, (await proc.stderr.read()).decode()[-2000:]
        if json.loads(line).get("kind") == "step_started":
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == EXIT_PAUSED, err.decode()[-2000:]
    assert b"Traceback" not in err

    events = only_the_journal(tmp_path)
    pause = next(e for e in events if isinstance(e, ev.OperatorCommand))
    assert pause.command == "pause" and "SIGINT" in pause.reason and pause.operator != POLICY
    states = {e.host: e for e in events if isinstance(e, ev.HostStateChanged)}
    assert states["web-01"].state == HostState.HEALTHY  # finished its deploy: fleet still up
    assert not any(e.state == HostState.FAILED for e in states.values())
