"""One long-lived shell per host for the monitor's polls: one channel, many commands.

An exec channel costs about a millisecond of CPU on each side (channel open, exec
request, exit status, EOF and close are a dozen packets through asyncssh's Python);
at 1,000 hosts polled every 2 s that is most of the console's work, and of a small
host's sshd. A shell that reads its script from the channel runs each poll for one
packet out and its output back.

Framing: a command is written as one line, then an end line that prints a marker
with ``$?`` on stdout and a bare marker on stderr (the two streams are not ordered
with each other, so a command is over when both markers arrived). The marker holds
a random nonce, so no command output can fake it. Over a real shell the marker is
printed at the start of a line of its own (``printf '\n...'``; the empty line that
makes when the output ended with a newline is dropped), so a long unterminated
output line, which the line splitter cuts in pieces, can never cut the marker.

Over a real shell (``pgroup`` hosts) the script is an eval loop that reads the
script from fd 3 and gives each command ``/dev/null`` as stdin, so a command that
reads its stdin cannot swallow the next poll. Hosts in ``signal`` mode (servers
without a real shell, the simulated fleet) get a plain ``sh`` reading stdin.

A timeout, a cancellation or a lost connection ends the shell: it is stopped the way
any command is (:mod:`console.transport.remote_kill`: the shell's process group, the
hung command included) and the next :meth:`PersistentShell.run` starts a new one. A
command that ends the shell itself (``exit 3``) reports the shell's exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncssh

from console.transport.aio import run_shielded
from console.transport.base import HostUnreachable, HostUnresponsive, LineCallback, RunResult
from console.transport.output import OutputSink, pump
from console.transport.ssh_running import Running
from inventory.model import Host

EOF_GRACE = 1.0  # seconds an idle shell gets to exit by itself on close

# fd 3 is the script, every command's stdin is /dev/null; `read -r` keeps backslashes;
# each line runs in a subshell, so a poll's `cd`, `set -e`, traps or variables do not
# leak into the next (as with one exec per poll); `$?` is carried across lines (`read`
# would reset it) by a function that returns it.
EVAL_LOOP = (
    "exec 3<&0 </dev/null; rolldeck_s=0; rolldeck_r() { return $1; }; "
    "while IFS= read -r rolldeck_l <&3; do "
    'rolldeck_r $rolldeck_s; (eval "$rolldeck_l"); rolldeck_s=$?; done'
)


# A prelude (function definitions) comes as the first line on stdin, written for
# `printf %b` (:func:`prelude_line`), never through the login shell (csh limits a word's
# length, fish rewrites backslashes in quotes). `command eval`: a prelude that does not
# parse fails alone; the shell and its loop go on (dash would exit on a plain `eval`).
PRELUDE_READ = 'IFS= read -r rolldeck_p; command eval "$(printf \'%b\' "$rolldeck_p")"; '


def shell_command(mode: str, prelude: bool = False) -> str:
    """The command that starts the persistent shell on a host of kill ``mode``; with
    ``prelude``, it first reads and defines the prelude line (:func:`prelude_line`).
    The simulated fleet's shell (not POSIX) gets none."""
    if mode == "pgroup":
        start = (PRELUDE_READ if prelude else "") + EVAL_LOOP
        return "exec /bin/sh -c '" + start.replace("'", "'\"'\"'") + "'"
    return "sh"


def _for_printf_b(text: str) -> str:
    """``text`` on one line that ``printf '%b'`` gives back exactly: backslashes
    doubled, line breaks written ``\\n`` and ``\\r``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def prelude_line(prelude: str) -> str:
    """``prelude`` as the one line :data:`PRELUDE_READ` reads (``printf %b``)."""
    return _for_printf_b(prelude) + "\n"


def end_line(mode: str, marker: str) -> str:
    """The script line after each command: the end markers, ``$?`` on stdout."""
    if mode == "pgroup":
        return f"printf '\\n%s%s\\n' '{marker}' \"$?\"; printf '\\n%s\\n' '{marker}' >&2\n"
    return f'echo "{marker}$?"; echo {marker} >&2\n'


def script_line(command: str, mode: str) -> str | None:
    """``command`` as one line of the script, or None (it then runs on an exec of its
    own). Over a real shell a multi-line script (a lease operation folded with a version
    read) is carried as ``eval "$(printf '%b' '...')"``: every backslash doubled and
    every line break written ``\n`` inside single quotes, so ``printf`` gives back the
    exact text and the shell runs it as written. The simulated fleet's shell runs one
    line only."""
    if "\n" not in command and "\r" not in command:
        return command
    if mode != "pgroup":
        return None
    quoted = "'" + _for_printf_b(command).replace("'", "'\"'\"'") + "'"
    return f"eval \"$(printf '%b' {quoted})\""


class _Job:
    """The command in flight: its output sink and the two end markers it waits for."""

    def __init__(self, sink: OutputSink, loop: asyncio.AbstractEventLoop) -> None:
        self.sink = sink
        self.status: asyncio.Future[int | None] = loop.create_future()
        self.stderr_done: asyncio.Future[None] = loop.create_future()
        self.held = {"stdout": False, "stderr": False}  # an empty line not yet passed on

    def line(self, stream: str, text: str) -> None:
        """A line of the command's output; an empty one is held back, since it may be
        the newline printed before an end marker."""
        if self.held[stream]:
            self.held[stream] = False
            self.sink.emit(stream, "")
        if text:
            self.sink.emit(stream, text)
        else:
            self.held[stream] = True

    def ended(self, exc: BaseException) -> None:
        """The shell ended first: the command's result is ``exc``."""
        if not self.status.done():
            self.status.set_exception(exc)
        if not self.stderr_done.done():
            self.stderr_done.set_result(None)


class ShellHost(Protocol):
    """What the shell needs from its connection (an :class:`~console.transport.
    ssh_channels.SSHConnection`): declared here so this module does not import it."""

    host: Host
    mode: str  # the host's kill mode: how the shell is started and framed

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult: ...

    async def open_session(self, command: str) -> Running: ...

    async def stop_session(self, running: Running) -> str | None: ...

    def session_closed(self) -> None: ...

    def unanswered(self) -> HostUnresponsive | None: ...


class PersistentShell:
    """Runs one command at a time in a shell kept open on ``conn``.

    :meth:`run` has :meth:`Connection.run`'s contract (line by line output, a
    mandatory timeout that stops the remote command, cancellation that stops it,
    :class:`HostUnreachable` on a lost connection). When a command is already running
    in the shell, another is run on an exec channel of its own rather than queued.
    """

    def __init__(self, conn: ShellHost, tail_lines: int = 20, prelude: str = "") -> None:
        self.conn = conn
        self.tail_lines = tail_lines
        self.prelude = prelude if conn.mode == "pgroup" else ""
        self.started = 0  # shells opened so far (1 while nothing went wrong)
        self._lock = asyncio.Lock()
        self._running: Running | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._job: _Job | None = None
        self._marker = ""

    async def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
        alone: str | None = None,
    ) -> RunResult:
        line = script_line(command, self.conn.mode)
        if self._lock.locked() or line is None:
            exec_command = command if alone is None else alone
            return await self.conn.run(exec_command, timeout=timeout, on_line=on_line)
        async with self._lock:
            return await self._run(line, timeout, on_line)

    def defines(self, name: str) -> bool:
        """From the prelude's text: a definition the host's shell failed to make shows
        as the call failing ("not found"), which the caller reports."""
        return re.search(rf"(?m)^{re.escape(name)}\(\) \{{", self.prelude) is not None

    async def _run(self, command: str, timeout: float, on_line: LineCallback | None) -> RunResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sink = OutputSink(self.tail_lines, on_line)
        job = _Job(sink, loop)
        try:
            async with asyncio.timeout(timeout) as deadline:
                running = await self._ensure()
                self._job = job
                script = command + "\n" + end_line(self.conn.mode, self._marker)
                try:
                    running.process.stdin.write(script.encode())
                except (asyncssh.Error, OSError) as exc:
                    raise HostUnreachable(self.conn.host.name, f"connection lost: {exc}") from exc
                code = await job.status
                await job.stderr_done
        except TimeoutError:
            signal = await run_shielded(self._discard())
            if not deadline.expired():
                raise
            frozen = self.conn.unanswered()
            if frozen is not None:  # the open or the kill found the server frozen
                raise frozen from None
            return sink.result("timeout", None, loop.time() - started, signal)
        except _ShellEnded as ended:
            await run_shielded(self._discard())
            if ended.lost:
                raise HostUnreachable(
                    self.conn.host.name, "connection lost while a command was running"
                ) from None
            code, signal = ended.exit_code, ended.signal
            status = "ok" if code == 0 else "failed"
            return sink.result(status, code, loop.time() - started, signal)
        except BaseException:
            await run_shielded(self._discard())
            raise
        finally:
            self._job = None
        status = "ok" if code == 0 else "failed"
        return sink.result(status, code, loop.time() - started)

    async def _ensure(self) -> Running:
        """The open shell, started when there is none (or the last one ended)."""
        if self._running is not None and any(t.done() for t in self._readers):
            await run_shielded(self._discard())  # it ended between commands
        if self._running is not None:
            return self._running
        self._marker = f"\x1erolldeck-end-{secrets.token_hex(6)} "
        running = await self.conn.open_session(shell_command(self.conn.mode, bool(self.prelude)))
        self.started += 1
        self._running = running
        process = running.process
        if self.prelude:
            try:
                process.stdin.write(prelude_line(self.prelude).encode())
            except (asyncssh.Error, OSError) as exc:
                await run_shielded(self._discard())
                raise HostUnreachable(self.conn.host.name, f"connection lost: {exc}") from exc
        self._readers = [
            asyncio.create_task(self._read(running, process.stdout.read, self._stdout_line)),
            asyncio.create_task(self._read(running, process.stderr.read, self._stderr_line)),
        ]
        return running

    async def _read(
        self,
        running: Running,
        read: Callable[[int], Awaitable[bytes]],
        deliver: Callable[[str], None],
    ) -> None:
        """Pump one stream; at its end (the shell exited, the connection dropped)
        fail the command in flight. A callback that raises fails it too."""
        try:
            await pump(read, deliver)
        except (asyncssh.Error, OSError):
            pass
        except Exception as exc:  # the caller's on_line: its error is the command's
            if self._job is not None:
                self._job.ended(exc)
            return
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await running.process.wait_closed()
        process = running.process
        if process.exit_status is not None or process.exit_signal is not None:
            running.finished = True  # nothing left to stop
        job = self._job
        if job is None or self._running is not running:
            return
        lost = running.raw.is_closed() and process.exit_status is None
        exit_signal = process.exit_signal
        code = process.exit_status
        if code is not None and code < 0:
            code = None
        job.ended(_ShellEnded(lost, code, exit_signal[0] if exit_signal else None))

    def _stdout_line(self, line: str) -> None:
        running, job = self._running, self._job
        if running is not None:
            kept = running.stdout_line(line)  # the pid marker, first in pgroup mode
            if kept is None:
                return
        if job is None:
            return  # output between commands (a background job's): nobody's
        at = line.find(self._marker)
        if at < 0:
            job.line("stdout", line)
            return
        if at > 0:  # `echo` framing: the command's last line had no newline
            job.line("stdout", line[:at])
        value = line[at + len(self._marker) :].strip()
        if not job.status.done():
            job.status.set_result(int(value) if value.isdigit() else None)

    def _stderr_line(self, line: str) -> None:
        job = self._job
        if job is None:
            return
        at = line.find(self._marker.rstrip())
        if at < 0:
            job.line("stderr", line)
            return
        if at > 0:
            job.line("stderr", line[:at])
        if not job.stderr_done.done():
            job.stderr_done.set_result(None)

    async def _discard(self, *, graceful: bool = False) -> str | None:
        """Stop the shell (and what runs in it); returns the signal that ended it.
        ``graceful``: an idle shell is first asked to end (EOF on its script)."""
        running, self._running = self._running, None
        readers, self._readers = self._readers, []
        if running is None:
            for task in readers:
                task.cancel()
            return None
        try:
            if graceful and not running.finished and not running.raw.is_closed():
                with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                    running.process.stdin.write_eof()
                    async with asyncio.timeout(EOF_GRACE):
                        await running.process.wait_closed()
                process = running.process
                if process.exit_status is not None or process.exit_signal is not None:
                    running.finished = True
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            return await self.conn.stop_session(running)
        finally:
            self.conn.session_closed()

    async def close(self) -> None:
        """End the shell: asked to exit when idle, stopped when a command still runs."""
        await run_shielded(self._discard(graceful=not self._lock.locked()))


class _ShellEnded(Exception):
    """The shell's output ended before the command's end markers."""

    def __init__(self, lost: bool, exit_code: int | None, signal: str | None) -> None:
        super().__init__("the shell ended")
        self.lost, self.exit_code, self.signal = lost, exit_code, signal
