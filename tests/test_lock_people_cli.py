"""Locks for people, end to end through ``rolldeck run``: a stale lock is shown with
its details and refused; ``--break-lock --reason`` breaks it and journals who and why;
``--lock-message`` is what a second operator sees; a finish and an abort release it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from console.core import events as ev
from console.simfleet import SimFleet
from console.store.journal import list_journals, read_journal
from console.store.lock import LockInfo, RolloutLock, lock_path
from tests.fixtures.simfleet import FleetFactory
from tests.test_sighup_headless import wait_for_step
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "console"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant_stale(state: Path, fleet: SimFleet) -> Path:
    state.mkdir(mode=0o700, exist_ok=True)
    path = lock_path(state, "checkout-api", str(fleet.inventory_path))
    info = LockInfo(
        pid=dead_pid(),
        user="bob",
        host=socket.gethostname(),
        started=time.time() - 3600,
        rollout_id="checkout-api-old",
        service="checkout-api",
        inventory=str(fleet.inventory_path),
        message="friday deploy",
        heartbeat=time.time() - 3000,
    )
    path.write_text(json.dumps(asdict(info)))
    return path


def journaled(state: Path, needle: bytes) -> bool:
    paths = list_journals(state)
    return bool(paths) and needle in paths[0].read_bytes()


async def cli(*argv: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_stale_lock_is_shown_then_broken_with_a_reason(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=2, time_scale=0.05)
    state = tmp_path / "state"
    lock = plant_stale(state, fleet)
    spec = str(fleet.spec_path)
    code, _, err = await cli("run", spec, "--headless", "--state-dir", str(state))
    assert code == 3
    assert "stale lock on checkout-api" in err
    for detail in ("bob", "checkout-api-old", "friday deploy", "last heartbeat", "--break-lock"):
        assert detail in err
    assert lock.exists()  # refused: nothing broken without the operator saying so

    code, _, err = await cli(
        "run",
        spec,
        "--headless",
        "--yes",
        "--state-dir",
        str(state),
        "--operator",
        "carol",
        "--break-lock",
        "--reason",
        "bob's laptop died, INC-9",
    )
    assert code == 0, err
    assert not lock.exists()  # a finished rollout releases its lock
    (journal,) = list_journals(state)
    notices = [e.message for e in read_journal(journal) if isinstance(e, ev.Notice)]
    broke = [m for m in notices if "broke the stale lock" in m]
    assert len(broke) == 1
    assert broke[0].startswith("carol broke the stale lock of rollout checkout-api-old by bob")
    assert "reason: bob's laptop died, INC-9" in broke[0]


async def test_lock_message_reaches_the_next_operator_and_abort_releases(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=3, time_scale=0.3)
    state = tmp_path / "state"
    spec = str(fleet.spec_path)
    first = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        spec,
        "--headless",
        "--yes",
        "--state-dir",
        str(state),
        "--lock-message",
        "canary for INC-12",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    path = lock_path(state, "checkout-api", str(fleet.inventory_path))
    try:
        await wait_for_step(state)
        assert path.exists()
        code, _, err = await cli("run", spec, "--headless", "--state-dir", str(state))
        assert code == 3
        assert "is locked by" in err and '"canary for INC-12"' in err
        first.send_signal(signal.SIGINT)
        # Two SIGINTs sent before the process runs would merge into one (a pending
        # signal is not queued twice): send the second once the first made it pause.
        await wait_until(
            lambda: journaled(state, b'"command":"pause"'), what="the first SIGINT to pause"
        )
        first.send_signal(signal.SIGINT)  # twice: abort
        assert await asyncio.wait_for(first.wait(), 60) == 5
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert not path.exists()  # a clean abort releases the lock


async def test_lock_wait_waits_then_runs(sim_fleet_factory: FleetFactory, tmp_path: Path) -> None:
    fleet = await sim_fleet_factory(n=2, time_scale=0.05)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    held = RolloutLock.acquire(
        state,
        service="checkout-api",
        inventory=str(fleet.inventory_path),
        rollout_id="someone-else",
        message="almost done",
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        str(fleet.spec_path),
        "--headless",
        "--yes",
        "--state-dir",
        str(state),
        "--lock-wait",
        "60s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"waiting for the lock" in line and b"almost done" in line
        assert not list_journals(state)  # nothing started while it waits
    finally:
        held.release()
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()


async def test_bad_lock_wait_is_bad_input(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("service: x\nversion: '1'\ninventory: i.yaml\nsteps: ['echo hi']\n")
    (tmp_path / "i.yaml").write_text("hosts:\n  a: {address: 127.0.0.1}\n")
    state = str(tmp_path / "state")
    code, _, err = await cli(
        "run", str(spec), "--headless", "--state-dir", state, "--lock-wait", "soon"
    )
    assert code == 2 and "--lock-wait" in err and "not a duration" in err
