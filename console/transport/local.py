"""The local transport: commands for ``localhost`` hosts as asyncio subprocesses.

Each command runs the way sshd would run it (the user's login shell with ``-c``, in
the home directory) but in a new session (``start_new_session=True``), so its pid is
its process group and a timeout or cancellation stops the whole tree: TERM to the
group, a grace period, then KILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal as signals
from collections.abc import AsyncGenerator
from functools import partial

from console.transport.aio import first_error, run_shielded
from console.transport.base import (
    HostUnreachable,
    LineCallback,
    RunResult,
    Session,
    TransportError,
    TransportOptions,
)
from console.transport.output import READ_CHUNK, LineSplitter, OutputSink, pump
from console.transport.remote_kill import KILL_GRACE
from console.transport.sockets import converse, split_target
from inventory.model import Host

Process = asyncio.subprocess.Process


def login_shell() -> str:
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    return shell if shell and os.access(shell, os.X_OK) else "/bin/sh"


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie (blocking)."""
    import psutil  # here: 10 ms of every start, for a local host's killed command only

    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False


async def stop_group(process: Process, grace: float = KILL_GRACE) -> str | None:
    """TERM the process's group, wait up to ``grace``, KILL what is left; reap the child.

    Returns the signal that ended the group, or ``None`` if it was already gone.
    """
    pgid = process.pid
    try:
        os.killpg(pgid, signals.SIGTERM)
    except ProcessLookupError:
        await process.wait()
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    sent = "TERM"
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                await process.wait()
        if not await asyncio.to_thread(group_alive, pgid):
            break
        if loop.time() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signals.SIGKILL)
            sent = "KILL"
            break
    await process.wait()
    return sent


class LocalConnection:
    """A "connection" to the local machine: every command is a new process group."""

    # The login shell may not be POSIX (fish has no `$?`), and a fork per poll is
    # cheap here: the monitor polls each signal with a command of its own.
    chains_commands = False

    def __init__(self, transport: LocalTransport, host: Host, tail_lines: int) -> None:
        self.host = host
        self.closed = False
        self._transport = transport
        self._tail_lines = tail_lines
        self._shell = login_shell()
        self._home = os.path.expanduser("~")  # where sshd would start the command

    def persistent_shell(self) -> Session | None:
        """None: a local command costs a fork, not a channel; nothing to keep open."""
        return None

    async def _spawn(self, command: str) -> Process:
        """Start ``command``; if cancelled while starting, stop it before re-raising.
        A closed connection refuses, as an SSH one does."""
        if self.closed:
            raise HostUnreachable(self.host.name, "cannot start a command: it was closed")
        task = asyncio.ensure_future(self._spawn_unguarded(command))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await run_shielded(_stop_when_started(task))
            raise

    async def _spawn_unguarded(self, command: str) -> Process:
        try:
            return await asyncio.create_subprocess_exec(
                self._shell,
                "-c",
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                cwd=self._home,
            )
        except OSError as exc:
            raise TransportError(self.host.name, f"cannot start {self._shell}: {exc}") from exc

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sink = OutputSink(self._tail_lines, on_line)
        process: Process | None = None
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                process = await self._spawn(command)
                await _collect(process, sink)
        except TimeoutError:
            if not deadline.expired():
                raise
            sent = await run_shielded(stop_group(process)) if process is not None else None
            return sink.result("timeout", None, loop.time() - started, sent)
        except BaseException:
            if process is not None:
                await run_shielded(stop_group(process))
            raise
        code = process.returncode
        if code is not None and code < 0:
            name = signals.Signals(-code).name.removeprefix("SIG")
            return sink.result("failed", None, loop.time() - started, name)
        status = "ok" if code == 0 else "failed"
        return sink.result(status, code, loop.time() - started, None)

    async def stream(self, command: str) -> AsyncGenerator[str, None]:
        """Stdout lines of a long-running command; closing the iterator stops its group."""
        process = await self._spawn(command)
        assert process.stdout is not None and process.stderr is not None
        stderr_tail = OutputSink(self._tail_lines, None)
        drain = asyncio.create_task(pump(process.stderr.read, partial(stderr_tail.emit, "x")))
        finished = False
        try:
            splitter = LineSplitter()
            while True:
                chunk = await process.stdout.read(READ_CHUNK)
                for line in splitter.feed(chunk) if chunk else splitter.flush():
                    yield line
                if not chunk:
                    break
            await process.wait()
            finished = True
        finally:
            drain.cancel()
            if not finished:
                await run_shielded(stop_group(process))

    async def exchange(self, target: str, request: bytes, *, timeout: float) -> bytes:
        """The socket itself: this host is the local machine."""
        if self.closed:
            raise HostUnreachable(self.host.name, f"cannot reach {target}: it was closed")
        try:
            path, host, port = split_target(target)
        except ValueError as exc:
            raise TransportError(self.host.name, str(exc)) from None
        try:
            async with asyncio.timeout(timeout):
                if path is not None:
                    reader, writer = await asyncio.open_unix_connection(path)
                else:
                    reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            raise TransportError(
                self.host.name, f"{target}: no connection in {timeout:g} s"
            ) from None
        except OSError as exc:
            raise TransportError(self.host.name, f"cannot reach {target}: {exc}") from exc
        return await converse(self.host.name, target, reader, writer, request, timeout)

    async def close(self) -> None:
        await self._transport.close_host(self.host.name)


async def _stop_when_started(task: asyncio.Future[Process]) -> None:
    await stop_group(await task)


async def _collect(process: Process, sink: OutputSink) -> None:
    assert process.stdout is not None and process.stderr is not None
    await first_error(_pumps(process, sink))
    await process.wait()


async def _pumps(process: Process, sink: OutputSink) -> None:
    assert process.stdout is not None and process.stderr is not None
    async with asyncio.TaskGroup() as group:
        group.create_task(pump(process.stdout.read, partial(sink.emit, "stdout")))
        group.create_task(pump(process.stderr.read, partial(sink.emit, "stderr")))


class LocalTransport:
    """Connections to ``localhost`` hosts; nothing to open, so no caps to enforce."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self._connections: dict[str, LocalConnection] = {}
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def accepted_keys(self) -> tuple[tuple[str, str], ...]:
        """Always empty: a local host has no host key."""
        return ()

    async def connect(self, host: Host) -> LocalConnection:
        if self._closed:
            raise TransportError(host.name, "the transport is closed")
        conn = self._connections.get(host.name)
        if conn is None:
            conn = LocalConnection(self, host, self.options.tail_lines)
            self._connections[host.name] = conn
        return conn

    async def close_host(self, name: str) -> None:
        conn = self._connections.pop(name, None)
        if conn is not None:
            conn.closed = True

    async def close(self) -> None:
        self._closed = True
        for name in list(self._connections):
            await self.close_host(name)
