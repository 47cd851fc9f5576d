"""Losing the terminal under the Textual console: ``rolldeck run`` in a real pty, the
pty hangs up mid-deploy; the rollout pauses (journaled), hosts in flight finish, and
the process exits 6 instead of dying mid-step."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import sys
import termios
from pathlib import Path

import pytest

from tests.fixtures.simfleet import FleetFactory
from tests.test_sighup_headless import (
    _controlling_tty,
    _drain,
    check_paused_safely,
    journal_events,
    wait_for_step,
)

pytestmark = pytest.mark.slow


async def test_console_pty_hangup_pauses(sim_fleet_factory: FleetFactory, tmp_path: Path) -> None:
    fleet = await sim_fleet_factory(n=4, time_scale=0.1)
    state = tmp_path / "state"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "console",
        "run",
        str(fleet.spec_path),
        "--state-dir",
        str(state),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        preexec_fn=_controlling_tty,
    )
    os.close(slave)
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)
    loop.add_reader(master, _drain, master)
    try:
        await wait_for_step(state, timeout=60)
    finally:
        loop.remove_reader(master)
        os.close(master)
    try:
        assert await asyncio.wait_for(proc.wait(), 60) == 6
    finally:
        if proc.returncode is None:  # never leave a console behind, even on failure
            proc.kill()
            await proc.wait()
    check_paused_safely(journal_events(state))
