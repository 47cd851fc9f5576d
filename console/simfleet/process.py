"""Run the simulated fleet in a child process (``rolldeck sim-fleet``).

``rolldeck demo`` and ``rolldeck drill`` keep the fleet out of the console's process
so its 1,000 servers never compete with the UI's event loop. The child prints one
ready line; :func:`start_fleet_process` returns once it has, with the ports read from
DIR/fleet.json. The child's stderr goes to DIR/sim-fleet.log. Faults and true host
states go through the ``simctl`` control user (``await fleet.kill_host("api-02")``).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncssh

from console.core.errors import RolldeckError
from console.simfleet.control import CONTROL_USER, state_from_json
from console.simfleet.host import HostState
from console.simfleet.keys import CLIENT_KEY_FILE, KNOWN_HOSTS_FILE
from console.simfleet.layout import FLEET_FILE, INVENTORY_FILE, SPEC_FILE

LOG_FILE = "sim-fleet.log"
READY_PREFIX = "sim-fleet ready:"


class FleetStartError(RolldeckError):
    """The fleet process exited or stayed silent instead of becoming ready."""


@dataclass
class FleetProcess:
    """A running ``rolldeck sim-fleet`` child. ``stop()`` is idempotent."""

    proc: subprocess.Popen[bytes]
    directory: Path
    ready_line: str
    hosts: dict[str, int] = field(default_factory=dict)

    @property
    def inventory_path(self) -> Path:
        return self.directory / INVENTORY_FILE

    @property
    def spec_path(self) -> Path:
        return self.directory / SPEC_FILE

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def control(self, command: str, *, avoid: tuple[str, ...] = ()) -> str:
        """Run a ``simctl`` command (see :mod:`console.simfleet.control`) through the
        first host that answers, other than ``avoid``; returns its stdout."""
        key = self.directory / CLIENT_KEY_FILE
        known = self.directory / KNOWN_HOSTS_FILE
        last: Exception | None = None
        for name, port in self.hosts.items():
            if name in avoid:
                continue
            try:
                async with asyncssh.connect(
                    "127.0.0.1",
                    port,
                    username=CONTROL_USER,
                    client_keys=[str(key)],
                    known_hosts=str(known),
                    config=[],
                    agent_path=None,
                    connect_timeout=10,
                ) as conn:
                    r = await conn.run(command, timeout=30)
            except OSError as exc:
                last = exc  # that host is down: try the next one
                continue
            if r.exit_status != 0:
                raise RolldeckError(f"simctl {command}: {str(r.stderr).strip()}")
            return str(r.stdout)
        raise RolldeckError(f"simctl {command}: no simulated host answers ({last})")

    async def host_states(self, *names: str) -> dict[str, HostState]:
        """Every host's (or the named hosts') true state, read from the fleet."""
        out = await self.control(" ".join(("state", *names)))
        states = [state_from_json(line) for line in out.splitlines() if line.strip()]
        return {s.name: s for s in states}

    async def balancer(self) -> dict[str, Any]:
        """The fleet's HAProxy servers now and its load generator's counts (the
        ``simctl balancer`` report; RolldeckError without a load balancer)."""
        data = json.loads(await self.control("balancer"))
        if not isinstance(data, dict):
            raise RolldeckError("simctl balancer: not a JSON object")
        return data

    async def kill_host(self, name: str) -> None:
        await self.control(f"kill {name}", avoid=(name,))

    async def revive_host(self, name: str) -> None:
        await self.control(f"revive {name}", avoid=(name,))

    async def set_disk_full(self, name: str, full: bool = True) -> None:
        await self.control(f"disk-full {name} {'on' if full else 'off'}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then SIGKILL if it will not go; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> FleetProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def fleet_command(
    n: int,
    directory: str | os.PathLike[str],
    *,
    scenario: str | os.PathLike[str] = "healthy",
    seed: int = 1,
    log_rate: float | None = None,
    time_scale: float | None = None,
) -> list[str]:
    argv = [sys.executable, "-m", "console", "sim-fleet", "--hosts", str(n)]
    argv += ["--dir", str(directory), "--scenario", str(scenario), "--seed", str(seed)]
    # If the console is SIGKILLed it cannot stop us: the child notices and exits.
    argv += ["--exit-with-parent", str(os.getpid())]
    if log_rate is not None:
        argv += ["--log-rate", str(log_rate)]
    if time_scale is not None:
        argv += ["--time-scale", str(time_scale)]
    return argv


def start_fleet_process(
    n: int,
    directory: str | os.PathLike[str],
    *,
    scenario: str | os.PathLike[str] = "healthy",
    seed: int = 1,
    log_rate: float | None = None,
    time_scale: float | None = None,
    ready_timeout: float = 60.0,
) -> FleetProcess:
    """Start the fleet in a child process and block until it is ready.

    Blocking (a few hundred ms for small fleets): from async code, call it through
    ``asyncio.to_thread``.
    """
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    argv = fleet_command(
        n, path, scenario=scenario, seed=seed, log_rate=log_rate, time_scale=time_scale
    )
    with open(path / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = _read_line(proc, ready_timeout)
    if not line.startswith(READY_PREFIX):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        tail = (path / LOG_FILE).read_text(errors="replace").strip().splitlines()[-5:]
        detail = " | ".join(tail) or line or f"exit code {proc.returncode}"
        raise FleetStartError(f"sim-fleet did not start: {detail}")
    hosts = json.loads((path / FLEET_FILE).read_text(encoding="utf-8"))["hosts"]
    return FleetProcess(proc=proc, directory=path, ready_line=line, hosts=hosts)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first stdout line, or "" on exit or timeout (no thread needed)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace").strip()
