"""Detach: run a rollout in a background process that owns it and serves its socket.

``rolldeck run SPEC --detach`` calls :func:`spawn_detached`, which re-runs the same
command as ``rolldeck run SPEC --headless --serve`` in a new session (no controlling
terminal, so closing the terminal cannot signal it), stdio to a 0600 log file in the
state directory, and returns once the child's attach socket answers, with the child's
pid and rollout id. The child calls :func:`serve_headless`: the headless runner plus
an :class:`~console.attach.server.AttachServer`, and it does not stop when paused (a
detached rollout waits for an operator to attach and decide). SIGTERM pauses it and
ends it once no host is moving (exit 6, resumable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from console.attach.protocol import SOCKET_SUFFIX, VERSION, addressable, encode
from console.attach.server import serve_engine
from console.core.errors import RolldeckError
from console.core.safe_files import create_private

if TYPE_CHECKING:
    from console.core.events import Outcome
    from console.engine import Engine
    from console.headless import Mode

SPAWN_TIMEOUT = 60.0  # preflight of a large fleet happens after the socket is up
LOG_TAIL = 20  # lines of the child's log quoted when it fails to start
_SPAWNED: list[subprocess.Popen[bytes]] = []  # kept so the handles are not reaped noisily


class DetachError(RolldeckError):
    """The background rollout did not come up; the message quotes its log."""


def detached_command(argv: list[str], state_dir: str | os.PathLike[str]) -> list[str]:
    """``rolldeck`` arguments (``["run", SPEC, ...]``) for the background process:
    without ``--detach``, with ``--headless --serve`` and the state directory."""
    args = [a for a in argv if a != "--detach"]
    for flag in ("--headless", "--serve"):
        if flag not in args:
            args.append(flag)
    args += ["--state-dir", os.path.abspath(state_dir)]  # the last one wins in argparse
    return [sys.executable, "-m", "console", *args]


def spawn_detached(
    argv: list[str],
    state_dir: str | os.PathLike[str],
    *,
    timeout: float = SPAWN_TIMEOUT,
    command: list[str] | None = None,
) -> tuple[int, str]:
    """Start the rollout in the background and wait for its attach socket.

    ``argv`` are the ``rolldeck`` arguments; ``command`` replaces the whole command
    line (tests run a scripted owner). Returns ``(pid, rollout_id)``; the log is then
    ``<state_dir>/<rollout_id>.log``. Raises DetachError (with the log's tail) when the
    child exits or no socket shows up within ``timeout``."""
    sd = Path(state_dir)
    cmd = command or detached_command(argv, sd)
    before = {p.name for p in sd.glob(f"*{SOCKET_SUFFIX}")}
    log = sd / f"detached-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.log"
    fd = create_private(log, append=True)  # O_EXCL | O_NOFOLLOW, 0600
    try:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)
    _SPAWNED.append(child)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = child.poll()
        for path in sd.glob(f"*{SOCKET_SUFFIX}"):
            if path.name in before:
                continue
            hello = probe_sync(path)
            if hello is not None and hello.get("pid") == child.pid:
                rid = str(hello.get("rollout_id") or path.stem)
                final = sd / f"{rid}.log"
                with contextlib.suppress(OSError):  # never over a name already there
                    os.link(log, final)  # the child's descriptor follows the file
                    os.unlink(log)
                return child.pid, rid
        if code is not None:
            raise DetachError(
                f"the background rollout exited with {code} before serving:\n{_tail(log)}"
            )
        time.sleep(0.05)
    child.terminate()  # it never served, so its engine never started: nothing half-done
    raise DetachError(
        f"the background rollout (pid {child.pid}) did not serve within {timeout:.0f}s; "
        f"its log: {log}\n{_tail(log)}"
    )


def probe_sync(path: Path, timeout: float = 1.0) -> dict[str, object] | None:
    """The server's hello, without an event loop (for the spawning CLI process)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        with addressable(path) as name:
            s.connect(name)
        s.sendall(encode({"type": "hello", "version": VERSION, "mode": "probe"}))
        data = b""
        while not data.endswith(b"\n") and len(data) < 1 << 20:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        first = data.split(b"\n", 1)[0]
        hello = json.loads(first)
    except (OSError, ValueError):
        return None
    finally:
        s.close()
    return hello if isinstance(hello, dict) and hello.get("type") == "hello" else None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL:])


async def serve_headless(
    engine: Engine,
    state_dir: str | os.PathLike[str],
    *,
    mode: Mode = "json",
    yes: bool = False,
    group: str | None = None,
) -> Outcome:
    """The background owner's main: the headless runner with the attach server beside
    it; paused, it waits for an attached operator instead of exiting."""
    from console.headless import run_headless

    engine.exit_when_paused = False
    loop = asyncio.get_running_loop()

    def on_term() -> None:  # shutdown, or `kill PID`: stop safely, resumable
        engine.pause(reason="SIGTERM: the background owner was asked to stop")
        engine.exit_when_paused = True

    server = serve_engine(engine, state_dir, group=group)
    loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        return await run_headless(engine, mode=mode, yes=yes)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await server.close()
