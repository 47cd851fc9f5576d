"""Losing the terminal: a real ``rolldeck run --headless`` process gets SIGHUP (sent
directly, and by its pty hanging up) while hosts are mid-deploy. It pauses (journaled
as the operator command "terminal lost (SIGHUP)"), lets the moving hosts finish, exits
6, and the next ``rolldeck run`` of the service says how to resume it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import sys
import termios
import time
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.events import HostState
from console.resume import unfinished_hints
from console.store.journal import list_journals, read_journal
from console.store.lock import RolloutLock
from tests.fixtures.simfleet import FleetFactory

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "console"]


def journal_events(state_dir: Path) -> list[ev.Event]:
    (path,) = list_journals(state_dir)
    return read_journal(path)


async def wait_for_step(state_dir: Path, timeout: float = 30.0) -> None:
    """Until the journal shows a deploy step started (a host is moving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = list_journals(state_dir)
        if paths and b'"kind":"step_started"' in paths[0].read_bytes():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no step started")


def check_paused_safely(events: list[ev.Event]) -> None:
    pauses = [e for e in events if isinstance(e, ev.OperatorCommand) and e.command == "pause"]
    assert [p.reason for p in pauses] == ["terminal lost (SIGHUP)"]
    finished = [e for e in events if isinstance(e, ev.RolloutFinished)]
    assert finished and finished[-1].outcome == ev.Outcome.PAUSED
    last: dict[str, HostState] = {}
    for e in events:
        if isinstance(e, ev.HostStateChanged):
            last[e.host] = e.state
    # Nobody was cut mid-step: every host that started finished its deploy.
    assert set(last.values()) <= {HostState.HEALTHY, HostState.PENDING}, last
    assert HostState.HEALTHY in last.values()
    started = {e.host for e in events if isinstance(e, ev.StepStarted)}
    ended = {e.host for e in events if isinstance(e, ev.StepFinished) and e.status == "ok"}
    assert started == ended


async def test_sighup_pauses_then_resume_finishes(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=4, time_scale=0.1)
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        str(fleet.spec_path),
        "--headless",
        "--state-dir",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await wait_for_step(state)
    proc.send_signal(signal.SIGHUP)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 6, err.decode()
    assert b"Traceback" not in err
    events = journal_events(state)
    check_paused_safely(events)
    rid = next(e for e in events if isinstance(e, ev.RolloutStarted)).rollout_id

    # The next start says how to continue it: `rolldeck history`, and `rolldeck run`
    # of the same service (refused here by a lock we hold, after saying it).
    code, hist, _ = await cli("history", "--state-dir", str(state))
    assert f"{rid} is paused: rolldeck resume {rid}" in hist
    held = RolloutLock.acquire(
        state, service=fleet_service(events), inventory=str(fleet.inventory_path), rollout_id="x"
    )
    try:
        code, _, err = await cli(
            "run", str(fleet.spec_path), "--headless", "--state-dir", str(state)
        )
    finally:
        held.release()
    assert code == 3
    assert "stopped unfinished, paused: paused by " in err
    assert f"terminal lost (SIGHUP); continue it with: rolldeck resume {rid}" in err

    res = await asyncio.create_subprocess_exec(
        *CLI,
        "resume",
        rid[:20],
        "--headless",
        "--yes",
        "--state-dir",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(res.communicate(), 90)
    assert res.returncode == 0, (out + err).decode()
    after = journal_events(state)
    assert len(list_journals(state)) == 1  # one rollout, one journal
    assert after[-1].outcome == ev.Outcome.SUCCEEDED  # type: ignore[attr-defined]
    for name in fleet.hosts:
        st = fleet.host_state(name)
        assert st.active == st.running == "2.4.1"
    assert unfinished_hints(state, fleet_service(events)) == []


async def cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def fleet_service(events: list[ev.Event]) -> str:
    return next(e for e in events if isinstance(e, ev.RolloutStarted)).service


def _controlling_tty() -> None:
    """In the child: make the pty (its stdin) the controlling terminal of its session."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def test_pty_hangup_pauses(sim_fleet_factory: FleetFactory, tmp_path: Path) -> None:
    """The real thing: the terminal goes away (the pty's master closes), the kernel
    sends SIGHUP, writes to the dead tty would fail; the run still pauses safely."""
    fleet = await sim_fleet_factory(n=4, time_scale=0.1)
    state = tmp_path / "state"
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        str(fleet.spec_path),
        "--headless",
        "--state-dir",
        str(state),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_controlling_tty,
    )
    os.close(slave)
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)
    loop.add_reader(master, _drain, master)  # the child never blocks on a full tty
    try:
        await wait_for_step(state)
    finally:
        loop.remove_reader(master)
        os.close(master)  # hang up: the kernel sends SIGHUP to the session leader
    try:
        assert await asyncio.wait_for(proc.wait(), 60) == 6
    finally:
        if proc.returncode is None:  # never leave a rollout behind, even on failure
            proc.kill()
            await proc.wait()
    check_paused_safely(journal_events(state))


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.read(fd, 65536)
