"""The SSH side of a simulated host: a listener, its connections, exec sessions.

Each host listens on its own 127.0.0.1 port with its own ed25519 host key, accepts
public-key authentication for one user and one client key, and runs every exec
request as a task (:func:`console.simfleet.commands.execute`). A ``signal`` channel
request (TERM, KILL, INT, HUP, QUIT), a break, or the channel closing cancels that
task and ends the channel the way a killed process would. Sessions are plain
:class:`asyncssh.SSHServerSession` callbacks rather than the process/streams API to
keep the cost per channel small at 1,000 hosts.

Forwarding (``direct-streamlocal`` to a unix socket, ``direct-tcpip`` to a port) is
refused everywhere except on the load balancer host of a ``load_balancer`` fleet,
and there only for the deploy user and only to HAProxy's admin socket and its TCP
runtime API (:class:`Forwards`): how rolldeck's ``Connection.exchange`` reaches the
runtime API, and nothing else of this machine.

``kill()`` makes the host unreachable: the listener closes (new connections are
refused) and every open connection is aborted. ``revive()`` listens again on the
same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncssh

from console.simfleet.commands import Context, execute
from console.simfleet.host import SimHost
from console.simfleet.logs import LogPump

log = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({"TERM", "KILL", "INT", "HUP", "QUIT", "PIPE"})
_STDIN_HIGH_WATER = 16  # queued stdin chunks before the channel stops reading


@dataclass(frozen=True, slots=True)
class Auth:
    """Who may log in: the deploy user, and the control user (same keys) whose
    commands drive the fleet itself (:mod:`console.simfleet.control`)."""

    user: str
    keys: frozenset[bytes]  # public_data of the allowed client keys
    control_user: str | None = None


@dataclass(frozen=True, slots=True)
class Forwards:
    """Where the deploy user may forward to through this host: nothing else."""

    unix: frozenset[str] = frozenset()  # socket paths
    tcp: frozenset[tuple[str, int]] = frozenset()  # (address, port)


Runner = Callable[[str, Context], Awaitable[int]]


def base_options(any_host_key: asyncssh.SSHKey) -> asyncssh.SSHServerConnectionOptions:
    """Options shared by every host; each host copies them with its own key."""
    return asyncssh.SSHServerConnectionOptions(
        server_host_keys=[any_host_key],
        server_version="rolldeck_simfleet",
        gss_host=None,
        password_auth=False,
        kbdint_auth=False,
        host_based_auth=False,
        public_key_auth=True,
        # AES-GCM only: asyncssh builds a new cipher context per packet for
        # chacha20-poly1305, which dominated the fleet's CPU when streaming logs.
        encryption_algs=["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"],
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        line_editor=False,
        login_timeout=30,
        keepalive_interval=0,
        encoding="utf-8",
        errors="replace",
    )


class HostServer:
    """One simulated host's listener and live connections."""

    def __init__(
        self,
        host: SimHost,
        base: asyncssh.SSHServerConnectionOptions,
        host_key: asyncssh.SSHKey,
        auth: Auth,
        pump: LogPump,
        address: str = "127.0.0.1",
        control: Runner | None = None,
        forwards: Forwards | None = None,
    ) -> None:
        self.host = host
        self.control = control
        self.forwards = forwards or Forwards()
        self.auth = auth
        self.pump = pump
        self.address = address
        self.host_key = host_key
        self.port = 0
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncio.Server | None = None
        self._options = asyncssh.SSHServerConnectionOptions(
            options=base,
            server_host_keys=[host_key],
            server_factory=functools.partial(_Server, self),
        )

    @property
    def listening(self) -> bool:
        return self._acceptor is not None

    async def listen(self, port: int = 0, *, exact: bool = False) -> int:
        """Listen on ``port`` (0: any free port). Unless ``exact``, a busy preferred
        port falls back to a free one. Returns the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.address, port))
            except OSError:
                if exact or port == 0:
                    raise
                sock.bind((self.address, 0))
            # What asyncssh.listen() does, minus its per-call copy of the options in a
            # worker thread: 1,000 of those round trips were most of the start time.
            loop = asyncio.get_running_loop()
            options = self._options
            self._acceptor = await loop.create_server(
                lambda: asyncssh.SSHServerConnection(loop, options), sock=sock, backlog=128
            )
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.host.port = self.port
        self.host.reachable = True
        return self.port

    def kill(self) -> None:
        """Unreachable from now on: refuse new connections, drop the open ones."""
        self.host.reachable = False
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
        for conn in tuple(self.connections):
            conn.abort()
        self.connections.clear()

    async def revive(self) -> None:
        if self._acceptor is None:
            await self.listen(self.port, exact=True)

    async def close(self) -> None:
        acceptor = self._acceptor
        self.kill()
        if acceptor is not None:
            with contextlib.suppress(Exception):
                await acceptor.wait_closed()


class _Server(asyncssh.SSHServer):
    """Per connection: public-key auth for the fleet's user, exec sessions."""

    def __init__(self, hs: HostServer) -> None:
        self._hs = hs
        self._conn: asyncssh.SSHServerConnection | None = None
        self._user = ""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._hs.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._hs.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        self._user = username
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        auth = self._hs.auth
        return username in (auth.user, auth.control_user) and key.public_data in auth.keys

    def unix_connection_requested(self, dest_path: str) -> bool:
        if self._user == self._hs.auth.user and dest_path in self._hs.forwards.unix:
            return True  # asyncssh connects to the socket and relays
        raise _refused(f"unix socket {dest_path}")

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        if self._user == self._hs.auth.user and (dest_host, dest_port) in self._hs.forwards.tcp:
            return True
        raise _refused(f"{dest_host} port {dest_port}")

    def session_requested(self) -> asyncssh.SSHServerSession[str]:
        control = self._hs.control
        if self._user == self._hs.auth.control_user and control is not None:
            return _ExecSession(self._hs, control)
        return _ExecSession(self._hs, execute)


def _refused(where: str) -> asyncssh.ChannelOpenError:
    return asyncssh.ChannelOpenError(
        asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
        f"forwarding to {where} is not allowed: only to the load balancer's runtime API",
    )


class _ExecSession(asyncssh.SSHServerSession[str]):
    """One exec channel: runs the command as a task; signals and close cancel it."""

    def __init__(self, hs: HostServer, runner: Runner) -> None:
        self._hs = hs
        self._runner = runner
        self._chan: asyncssh.SSHServerChannel[str] | None = None
        self._command = ""
        self._task: asyncio.Task[None] | None = None
        self._stdin: asyncio.Queue[str | None] = asyncio.Queue()
        self._reading_paused = False
        self._writing_paused = False
        self._done = False
        self.dropped_lines = 0

    # asyncssh callbacks

    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: object, term_modes: object) -> bool:
        return True

    def shell_requested(self) -> bool:
        return False  # exec only, like a locked-down deploy account

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def session_started(self) -> None:
        ctx = Context(
            host=self._hs.host,
            pump=self._hs.pump,
            out=self._out,
            err=self._err,
            read=self._read,
            follow_sink=self._follow,
        )
        self._task = asyncio.get_running_loop().create_task(self._run(ctx))

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        self._stdin.put_nowait(data)
        if self._stdin.qsize() >= _STDIN_HIGH_WATER and self._chan and not self._reading_paused:
            self._reading_paused = True  # the SSH window now bounds what can arrive
            self._chan.pause_reading()

    def eof_received(self) -> bool:
        self._stdin.put_nowait(None)
        return True  # stay half-open: output may still follow

    def signal_received(self, signal: str) -> None:
        if signal.upper() in STOP_SIGNALS:
            self._stop(signal.upper())

    def break_received(self, msec: int) -> bool:
        self._stop("INT")
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        if self._task is not None:
            self._task.cancel()

    # the command's side

    async def _run(self, ctx: Context) -> None:
        try:
            status = await self._runner(self._command, ctx)
        except asyncio.CancelledError:
            return  # stopped by a signal or a closed channel; they end the channel
        except Exception:
            log.exception("%s: command failed: %s", self._hs.host.name, self._command)
            self._err("simfleet: internal error\n")
            status = 70
        if not self._done and self._chan is not None:
            self._done = True
            self._chan.exit(status)

    def _stop(self, signal: str) -> None:
        if self._done or self._chan is None:
            return
        self._done = True
        if self._task is not None:
            self._task.cancel()
        self._chan.exit_with_signal(signal)

    def _out(self, text: str) -> None:
        self._write(text, stderr=False)

    def _err(self, text: str) -> None:
        self._write(text, stderr=True)

    def _write(self, text: str, *, stderr: bool) -> None:
        """Output to a channel the client already closed is dropped, as a pipe would."""
        if self._done or self._chan is None:
            return
        try:
            if stderr:
                self._chan.write_stderr(text)
            else:
                self._chan.write(text)
        except (BrokenPipeError, ConnectionError):
            self._done = True
            if self._task is not None:
                self._task.cancel()

    def _follow(self, text: str) -> None:
        """Log lines: dropped while the client is not reading, so nothing piles up."""
        if self._writing_paused:
            self.dropped_lines += text.count("\n")
        else:
            self._out(text)

    async def _read(self) -> str | None:
        data = await self._stdin.get()
        if self._reading_paused and self._stdin.qsize() < _STDIN_HIGH_WATER // 4 and self._chan:
            self._reading_paused = False
            self._chan.resume_reading()
        return data
