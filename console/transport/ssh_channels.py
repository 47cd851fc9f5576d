"""One host's SSH connection: every command a channel, every stop a real kill.

An :class:`SSHConnection` outlives the TCP connections under it. When the transport
closes an idle connection to make room under ``max_connections`` (``evicted``), the
host's next command reconnects transparently; when the server drops it (``lost``),
commands raise :class:`HostUnreachable` until ``transport.connect(host)`` reconnects.

How a timed-out or cancelled command is stopped: :mod:`console.transport.remote_kill`.

Imports point one way: ``ssh -> ssh_channels -> ssh_shell -> ssh_running``. What this
module needs of its transport is the small :class:`ConnectionPool` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from functools import partial
from typing import Protocol

import asyncssh

from console.become import Become, command_for, kill_command
from console.transport.aio import run_shielded
from console.transport.base import (
    DEFAULT_CONNECT_TIMEOUT,
    HostUnreachable,
    HostUnresponsive,
    LineCallback,
    RunResult,
    TransportError,
)
from console.transport.deadlines import REGISTRY, bounded
from console.transport.output import READ_CHUNK, LineSplitter, OutputSink, pump
from console.transport.remote_kill import KILL_GRACE, kill_script, wrap_pgroup
from console.transport.sockets import converse, split_target
from console.transport.ssh_running import Running, reason
from console.transport.ssh_shell import PersistentShell
from inventory.model import Host

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 10  # OpenSSH's MaxSessions: channels open at once on one connection
STOP_BUDGET = KILL_GRACE + 13.0  # the most a stop may take (a loaded host is slow)
PID_WAIT = 2.0  # seconds for a stopped command's pid line, when no pump read it yet
CHANNEL_OPEN_ATTEMPTS = 6  # ~2.5 s of backoff in all
# OpenSSH answers "no more sessions" (MaxSessions) with CONNECT_FAILED.
_SESSION_REFUSED = (
    asyncssh.OPEN_CONNECT_FAILED,
    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
    asyncssh.OPEN_RESOURCE_SHORTAGE,
)


class ConnectionPool(Protocol):
    """What a connection needs from the transport that owns it
    (:class:`console.transport.ssh.SSHTransport`): declared here so that this module
    never imports that one."""

    async def connect(self, host: Host) -> SSHConnection: ...

    async def close_host(self, name: str) -> None: ...

    def capacity_changed(self) -> None: ...

    def discard(self, conn: SSHConnection) -> None: ...


class SSHConnection:
    """One host's connection; many commands may run on it at once (one channel each)."""

    def __init__(
        self,
        transport: ConnectionPool,
        host: Host,
        *,
        mode: str,
        tail_lines: int,
        max_sessions: int,
        shell: str = "sh",
        shell_prelude: str = "",
    ) -> None:
        self.host = host
        self.shell_prelude = shell_prelude
        self.mode = mode
        # Commands run in the login shell (or the simulated fleet's), which chains
        # `a && b || c; d`: the monitor may poll several signals in one command, in a
        # shell kept open. `rolldeck_shell: none` (a server without one) says not to.
        self.chains_commands = shell != "none"
        self._shell: PersistentShell | None = None  # persistent_shell(), made once
        self.state = "new"  # open | evicted (reopens by itself) | lost | closed
        self.busy = 0  # commands and streams in flight: a busy connection is never evicted
        self.last_used = 0.0
        self.connects = 0  # TCP connections opened for this host so far
        # How long the server may take to answer a request (channel open, the kill,
        # close): the host's connect timeout, set by the transport on every connect.
        self.reply_timeout = DEFAULT_CONNECT_TIMEOUT
        self.dead: HostUnresponsive | None = None  # the bound that found it frozen
        self._transport = transport
        self._raw: asyncssh.SSHClientConnection | None = None
        self._tail_lines = tail_lines
        # One below the server's MaxSessions: sshd frees a closed channel's slot a moment
        # late, and a stop closes the command's channel just before its kill exec opens.
        self._sessions = asyncio.Semaphore(max(1, max_sessions - 1))

    @property
    def closed(self) -> bool:
        """No live TCP connection under this object right now."""
        return self.state != "open" or self._raw is None or self._raw.is_closed()

    def attach(self, raw: asyncssh.SSHClientConnection, host: Host) -> None:
        self._raw = raw
        self.host = host
        self.state = "open"
        self.dead = None
        self.connects += 1

    @property
    def dead_reason(self) -> str:
        return self.dead.message if self.dead is not None else ""

    def unanswered(self) -> HostUnresponsive | None:
        """Why the connection was dropped as frozen (a fresh exception to raise), or
        None while it is not."""
        dead = self.dead
        if dead is None or self.state != "dead":
            return None
        return HostUnresponsive(dead.host, dead.operation, dead.bound)

    def _frozen(self, exc: HostUnresponsive, raw: asyncssh.SSHClientConnection) -> None:
        """A bound on ``raw`` fired: drop it for good (every wait on it ends now)."""
        if not self.owns(raw):
            return  # already replaced or dropped
        self.dead = exc
        self._transport.discard(self)

    def detach(self, state: str) -> asyncssh.SSHClientConnection | None:
        """Drop the TCP connection (returned, for the caller to close); enter ``state``."""
        raw, self._raw = self._raw, None
        self.state = state
        return raw

    def owns(self, raw: asyncssh.SSHClientConnection) -> bool:
        return self._raw is raw

    async def _live(self) -> asyncssh.SSHClientConnection:
        """The TCP connection to open a channel on; an evicted one is reopened first."""
        if self.state == "evicted":
            await self._transport.connect(self.host)
        if self.state == "open" and self._raw is not None:
            return self._raw
        if self.state == "dead":
            why = f"the connection was dropped ({self.dead_reason})"
        elif self.state == "closed":
            why = "it was closed"
        else:
            why = "the connection was lost"
        raise HostUnreachable(self.host.name, f"cannot start a command: {why}")

    def _begin(self) -> None:
        self.busy += 1

    def _end(self) -> None:
        self.busy -= 1
        self.last_used = asyncio.get_running_loop().time()
        if self.busy == 0:
            self._transport.capacity_changed()

    async def run_become(
        self,
        command: str,
        become: Become,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
    ) -> RunResult:
        """:meth:`run` through sudo (console/become.py): the password, if any, goes to
        sudo's stdin, and a stop kills the command's groups through sudo too."""
        return await self.run(command, timeout=timeout, on_line=on_line, become=become)

    async def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
        become: Become | None = None,
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sink = OutputSink(self._tail_lines, on_line)
        self._begin()
        # The whole command: its timeout, then at worst an open still unanswered and a
        # stop, each under a bound of its own.
        whole = timeout + self.reply_timeout + STOP_BUDGET + 1.0
        try:
            with REGISTRY.tracking(self.host.name, "running a command", whole):
                try:
                    async with asyncio.timeout(timeout):
                        await self._sessions.acquire()
                except TimeoutError:
                    return sink.result("timeout", None, loop.time() - started, None)
                try:
                    remaining = max(0.0, timeout - (loop.time() - started))
                    return await self._run_on_channel(command, remaining, sink, started, become)
                finally:
                    self._sessions.release()
        finally:
            self._end()

    async def _run_on_channel(
        self,
        command: str,
        timeout: float,
        sink: OutputSink,
        started: float,
        become: Become | None = None,
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        running: Running | None = None
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                running = await self._start(command, become=become)
                await running.wait(sink)
        except TimeoutError:
            if not deadline.expired():
                raise
            signal = await run_shielded(self._stop(running)) if running is not None else None
            frozen = self.unanswered()
            if frozen is not None:  # the open or the kill found the server frozen
                raise frozen from None
            return sink.result("timeout", None, loop.time() - started, signal)
        except HostUnresponsive:
            if running is not None:
                await run_shielded(self._stop(running))
            raise
        except asyncio.CancelledError:
            if running is not None:
                await run_shielded(self._stop(running))
            raise
        except (asyncssh.Error, OSError) as exc:
            if running is not None:
                await run_shielded(self._stop(running))
            raise HostUnreachable(self.host.name, f"connection lost: {reason(exc)}") from exc
        except BaseException:
            if running is not None:
                await run_shielded(self._stop(running))
            raise
        process = running.process
        exit_code = process.exit_status
        exit_signal = process.exit_signal
        if exit_code is None and exit_signal is None and running.raw.is_closed():
            raise HostUnreachable(self.host.name, "connection lost while a command was running")
        signal = exit_signal[0] if exit_signal else None
        if exit_code is not None and exit_code < 0:
            exit_code = None
        status = "ok" if exit_code == 0 else "failed"
        return sink.result(status, exit_code, loop.time() - started, signal)

    async def _start(
        self, command: str, *, eof: bool = True, become: Become | None = None
    ) -> Running:
        """Start ``command``; if cancelled while starting, stop it before re-raising.

        Without this, a cancellation landing between the exec request and our getting
        the process back would leave the remote command running with nobody to stop it.
        """
        task = asyncio.ensure_future(self._start_unguarded(command, eof, become))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await run_shielded(self._stop_when_started(task))
            raise

    async def _stop_when_started(self, task: asyncio.Future[Running]) -> None:
        # The start is bounded (:meth:`_exec`: the channel open answers within the
        # reply timeout, or the connection is dropped), so this await ends.
        await self._stop(await task)

    async def _start_unguarded(
        self, command: str, eof: bool, become: Become | None = None
    ) -> Running:
        raw = await self._live()
        stdin = None
        if become is not None:  # sudo reads the password, if any, from stdin
            command, stdin = command_for(command, become), become.stdin
        wrapped = wrap_pgroup(command) if self.mode == "pgroup" else command
        process = await self._exec(raw, wrapped, eof=eof, stdin=stdin)
        return Running(raw, process, expect_pid=self.mode == "pgroup", become=become)

    async def exchange(self, target: str, request: bytes, *, timeout: float) -> bytes:
        """A direct stream-local (unix socket) or TCP forward on this connection, no
        process on the host: the open is answered within the reply timeout (else the
        connection is dropped as frozen), the conversation within ``timeout``."""
        try:
            path, host, port = split_target(target)
        except ValueError as exc:
            raise TransportError(self.host.name, str(exc)) from None
        self._begin()
        try:
            whole = self.reply_timeout + timeout
            with REGISTRY.tracking(self.host.name, f"a request to {target}", whole):
                raw = await self._live()
                try:
                    async with bounded(
                        self.host.name, f"opening a forward to {target}", self.reply_timeout
                    ):
                        if path is not None:
                            reader, writer = await raw.open_unix_connection(path)
                        else:
                            reader, writer = await raw.open_connection(host, port)
                except HostUnresponsive as exc:
                    self._frozen(exc, raw)
                    raise
                except asyncssh.ChannelOpenError as exc:  # the host is fine, the socket not
                    raise TransportError(
                        self.host.name, f"cannot reach {target}: {reason(exc)}"
                    ) from exc
                except (asyncssh.Error, OSError) as exc:
                    raise HostUnreachable(
                        self.host.name, f"cannot reach {target}: {reason(exc)}"
                    ) from exc
                return await converse(self.host.name, target, reader, writer, request, timeout)
        finally:
            self._end()

    def persistent_shell(self) -> PersistentShell | None:
        """The shell kept open on this connection for many short commands (the
        monitor's polls, health gating, the lease operations folded with the version
        reads): one per connection, shared, so the preflight's shell is the one the
        monitor then polls in. None for a host without a shell."""
        if not self.chains_commands:
            return None
        if self._shell is None:
            self._shell = PersistentShell(self, self._tail_lines, self.shell_prelude)
        return self._shell

    async def open_session(self, command: str) -> Running:
        """Start ``command`` with its stdin left open, for a caller that feeds it (the
        persistent shell). It holds a channel slot until :meth:`session_closed`; stop
        it with :meth:`stop_session`. Cancelled while it opens, it is stopped once
        open (:meth:`_start`), so no remote shell waits on stdin forever."""
        self._begin()
        try:
            await self._sessions.acquire()
        except BaseException:
            self._end()
            raise
        try:
            return await self._start(command, eof=False)
        except BaseException:
            self.session_closed()
            raise

    async def stop_session(self, running: Running) -> str | None:
        """Stop a session's remote processes (see :meth:`_stop`); never raises."""
        return await self._stop(running)

    def session_closed(self) -> None:
        """A session from :meth:`open_session` is over: its slot is free again."""
        self._sessions.release()
        self._end()

    async def _exec(
        self,
        raw: asyncssh.SSHClientConnection,
        command: str,
        *,
        eof: bool = True,
        what: str = "opening a channel",
        stdin: bytes | None = None,
    ) -> asyncssh.SSHClientProcess[bytes]:
        """Open a channel, exec ``command`` and close its stdin.

        sshd frees a closed session's MaxSessions slot only when it garbage-collects the
        channel, a moment after the close handshake ("no more sessions" in its log), so
        a refused open is retried briefly before the host is given up on. Each open
        (channel, exec request) must be answered within the reply timeout: a server
        that does not is frozen, and its connection is dropped (:meth:`_frozen`).
        """
        for attempt in range(1, CHANNEL_OPEN_ATTEMPTS + 1):
            try:
                async with bounded(self.host.name, what, self.reply_timeout):
                    process = await raw.create_process(command, encoding=None)
                if stdin is not None:  # a become password: never on the command line
                    process.stdin.write(stdin)
                if eof:
                    process.stdin.write_eof()
                return process
            except HostUnresponsive as exc:
                self._frozen(exc, raw)
                raise
            except asyncssh.ChannelOpenError as exc:
                refused = exc.code in _SESSION_REFUSED
                if not refused or attempt == CHANNEL_OPEN_ATTEMPTS or raw.is_closed():
                    raise HostUnreachable(
                        self.host.name, f"cannot start a command: {reason(exc)}"
                    ) from exc
                await asyncio.sleep(0.02 * 2**attempt)
            except (asyncssh.Error, OSError) as exc:
                raise HostUnreachable(
                    self.host.name, f"cannot start a command: {reason(exc)}"
                ) from exc
        raise AssertionError("unreachable")

    async def _stop(self, running: Running) -> str | None:
        """Stop the command's remote processes; bounded by STOP_BUDGET, never raises.

        Returns the signal that ended it (``TERM``/``KILL``), when known.
        """
        signal: str | None = None
        if running.raw.is_closed():
            log.warning(
                "%s: connection lost; the remote command may still be running", self.host.name
            )
            return None
        budget = min(STOP_BUDGET, KILL_GRACE + self.reply_timeout + 2.0)
        try:
            async with bounded(self.host.name, "stopping a command", budget):
                if running.expect_pid and not running.finished:
                    # The marker is the command's first output, at most one RTT away. The
                    # pumps are gone by now (or never started), so read it here.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(PID_WAIT, self.reply_timeout)):
                            await running.read_pid()
                if running.finished:
                    return None
                if running.pid is not None:
                    # The pid is all the kill needs: the command's channel (and its
                    # MaxSessions slot) goes to the kill exec, so many stops on one host
                    # run in parallel instead of queueing for one spare channel.
                    running.process.close()
                    signal = await self._kill_group(running)
                else:
                    signal = await self._signal_and_wait(running)
        except HostUnresponsive as exc:
            # The kill goes to the same server: no answer means it is frozen.
            self._frozen(exc, running.raw)
            log.warning("%s: could not stop the remote command: %s", self.host.name, exc)
        except (TimeoutError, TransportError, asyncssh.Error, OSError) as exc:
            log.warning("%s: could not confirm the remote command stopped: %s", self.host.name, exc)
        finally:
            # Closing the channel is the last resort of signal mode, and waiting for the
            # server's close reply means it has processed every request sent before.
            running.process.close()
            if not running.raw.is_closed():
                with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                    async with asyncio.timeout(1.0):
                        await running.process.wait_closed()
        return signal

    async def _kill_group(self, running: Running) -> str | None:
        assert running.pid is not None
        become, stdin = running.become, None
        also = (running.become_pid,) if running.become_pid is not None else ()
        script = kill_script(running.pid, also=also)
        if become is not None:  # root's (the become user's) processes: kill through sudo
            script, stdin = kill_command(script, become), become.stdin
        killer = await self._exec(running.raw, script, what="sending the kill", stdin=stdin)
        try:
            said = (await killer.stdout.read()).decode(errors="replace").strip()
            await killer.wait_closed()
        finally:
            killer.close()
        return said if said in ("TERM", "KILL") else None

    async def _signal_and_wait(self, running: Running) -> str | None:
        """For servers without a shell: the SSH ``signal`` request, then channel close.

        Returns the signal after which the server ended the command, ``None`` if it
        never did (OpenSSH refuses the request: the caller's channel close is all
        that is left, and it does not stop a command without a pty).
        """
        if self.mode == "pgroup":
            log.warning("%s: no pid from the command; trying a signal request", self.host.name)
        process = running.process
        for signal, wait in (("TERM", KILL_GRACE), ("KILL", 1.0)):
            with contextlib.suppress(asyncssh.Error, OSError):
                process.send_signal(signal)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await process.wait_closed()
                    return signal
        log.warning("%s: the server ignored TERM and KILL signal requests", self.host.name)
        return None

    async def stream(self, command: str) -> AsyncGenerator[str, None]:
        """Stdout lines of a long-running command; closing the iterator stops it."""
        self._begin()
        running: Running | None = None
        drain: asyncio.Task[None] | None = None
        try:
            async with self._sessions:
                try:
                    running = await self._start(command)
                    stderr_tail = OutputSink(self._tail_lines, None)
                    drain = asyncio.create_task(
                        pump(running.process.stderr.read, partial(stderr_tail.emit, "stderr"))
                    )
                    async with contextlib.aclosing(self._follow(running)) as lines:
                        async for line in lines:
                            yield line
                finally:
                    if drain is not None:
                        drain.cancel()
                    if running is not None and not running.finished:
                        await run_shielded(self._stop(running))
        finally:
            self._end()

    async def _follow(self, running: Running) -> AsyncGenerator[str, None]:
        splitter = LineSplitter()
        while True:
            try:
                chunk = await running.process.stdout.read(READ_CHUNK)
            except (asyncssh.Error, OSError) as exc:
                raise HostUnreachable(self.host.name, f"connection lost: {reason(exc)}") from exc
            for line in splitter.feed(chunk) if chunk else splitter.flush():
                kept = running.stdout_line(line)
                if kept is not None:
                    yield kept
            if not chunk:
                break
        await running.process.wait_closed()
        running.finished = True

    async def close(self) -> None:
        await self._transport.close_host(self.host.name)
