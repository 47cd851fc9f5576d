"""A fleet started for demo/drill stops by itself when its parent is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

PARENT = textwrap.dedent(
    """
    import sys, time
    from console.simfleet.process import start_fleet_process
    fleet = start_fleet_process(2, sys.argv[1], scenario="healthy", seed=1)
    print(fleet.pid, flush=True)
    time.sleep(120)
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
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the fleet outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
