"""One command running on one SSH channel, shared by the channel and shell layers.

Its own module so that :mod:`ssh_channels` (which starts and stops commands) and
:mod:`ssh_shell` (which keeps one open as a shell) both depend on it, and neither
on the other's internals: the imports point one way, ``ssh -> ssh_channels ->
ssh_shell -> ssh_running``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import asyncssh

from console.become import Become
from console.become import parse_pid as parse_become_pid
from console.transport.aio import first_error
from console.transport.output import READ_CHUNK, LineSplitter, OutputSink, pump
from console.transport.remote_kill import parse_pid


def reason(exc: BaseException) -> str:
    """A one-line reason for an asyncssh or socket error."""
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Running:
    """One command on one channel: its pumps and, in ``pgroup`` mode, its remote pid."""

    def __init__(
        self,
        raw: asyncssh.SSHClientConnection,
        process: asyncssh.SSHClientProcess[bytes],
        expect_pid: bool,
        become: Become | None = None,
    ) -> None:
        self.raw = raw
        self.process = process
        self.pid: int | None = None
        self.finished = False
        self.expect_pid = expect_pid  # the pid marker line has not been seen yet
        # Under become (console/become.py) the command's own shell reports its pid
        # next: with sudo's use_pty it leads a process group of its own to stop too.
        self.become = become
        self.become_pid: int | None = None
        self.expect_become_pid = become is not None

    def stdout_line(self, line: str) -> str | None:
        """``line`` unless it is the pid marker (the first line in pgroup mode)."""
        if self.expect_pid:
            self.expect_pid = False
            pid = parse_pid(line)
            if pid is not None:
                self.pid = pid
                return None
        if self.expect_become_pid:
            self.expect_become_pid = False
            become_pid = parse_become_pid(line)
            if become_pid is not None:
                self.become_pid = become_pid
                return None
        return line

    async def read_pid(self) -> None:
        """Read stdout up to the pid marker line, when no pump is reading it any more."""
        splitter = LineSplitter()
        while self.expect_pid:
            chunk = await self.process.stdout.read(READ_CHUNK)
            for line in splitter.feed(chunk) if chunk else splitter.flush():
                self.stdout_line(line)
            if not chunk:
                return

    async def _pumps(self, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(pump(self.process.stdout.read, out))
            group.create_task(pump(self.process.stderr.read, err))

    async def wait(self, sink: OutputSink) -> None:
        """Deliver the command's output to ``sink`` until it exits."""

        def out(line: str) -> None:
            kept = self.stdout_line(line)
            if kept is not None:
                sink.emit("stdout", kept)

        await first_error(self._pumps(out, partial(sink.emit, "stderr")))
        await self.process.wait_closed()
        self.finished = True
