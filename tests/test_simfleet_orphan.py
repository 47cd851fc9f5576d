"""A fleet started for demo/drill stops by itself when its parent is SIGKILLed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import psutil

from tests.waiting import wait_until_sync

PARENT = textwrap.dedent(
    """
    import sys, time
    from console.simfleet.process import start_fleet_process
    fleet = start_fleet_process(2, sys.argv[1], scenario="healthy", seed=1)
    print(fleet.pid, flush=True)
    time.sleep(120)  # the scenario: a parent that lives on until the test SIGKILLs it
    """
)


def test_fleet_child_exits_when_parent_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "fleet")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = parent.stdout.readline()
        child = int(line)
        assert psutil.pid_exists(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)

        def child_gone() -> bool:
            try:
                return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        try:
            wait_until_sync(child_gone, what="the fleet to exit after its parent", interval=0.05)
        except AssertionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            raise
    finally:
        if parent.poll() is None:
            parent.kill()
