"""The asyncssh transport: one connection per host, many channels, commands really stopped.

Connections are opened on a host's first :meth:`SSHTransport.connect` and reused for
every command of that host (each command is a channel). Concurrent ``connect`` calls
for one host share one handshake. Two caps keep a large fleet polite: open connections
(``max_connections``; a new host waits for a slot) and concurrent handshakes
(``max_handshakes``; OpenSSH's ``MaxStartups 10:30:100`` starts dropping
unauthenticated connections beyond 10). A connection dropped before authentication is
retried with exponential backoff and jitter.

How a timed-out or cancelled command is stopped is described in
:mod:`console.transport.remote_kill`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import asyncssh

from console.transport.aio import first_error, run_shielded
from console.transport.base import (
    HostKeyError,
    HostUnreachable,
    LineCallback,
    RunResult,
    TransportError,
    TransportOptions,
)
from console.transport.knownhosts import (
    HostKeyVerdict,
    KnownHostsCache,
    append_entry,
    entry_line,
    fingerprint,
    lookup_name,
    resolve_paths,
    trusted_keys,
)
from console.transport.output import READ_CHUNK, LineSplitter, OutputSink, pump
from console.transport.remote_kill import KILL_GRACE, kill_mode, kill_script, parse_pid, wrap_pgroup
from inventory.model import Host

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 10  # OpenSSH's MaxSessions: channels open at once on one connection
STOP_BUDGET = KILL_GRACE + 5.0  # the most a stop may take, kill exec included
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
# Raised when the server closes the TCP connection before authentication completes,
# which is how OpenSSH's MaxStartups (and an overloaded bastion) sheds handshakes.
_DROPPED = (
    asyncssh.ConnectionLost,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    asyncio.IncompleteReadError,
)


class _HostKeyPolicy:
    """Decides on a key that known_hosts does not already trust (asyncssh's callback)."""

    def __init__(self, known: asyncssh.SSHKnownHosts, accept_new: bool) -> None:
        self._known = known
        self._accept_new = accept_new
        self.verdict: HostKeyVerdict | None = None
        self.key: asyncssh.SSHKey | None = None
        self.host = ""
        self.port: int | None = None

    def decide(self, host: str, addr: str, port: int | None, key: asyncssh.SSHKey) -> bool:
        known = trusted_keys(self._known, host, addr, port)
        accept = self._accept_new and not known
        self.key, self.host, self.port = key, host, port
        self.verdict = HostKeyVerdict(
            lookup=lookup_name(host, port),
            presented=fingerprint(key),
            known=tuple(fingerprint(k) for k in known),
            accepted=accept,
        )
        return accept


class _Client(asyncssh.SSHClient):
    def __init__(self, policy: _HostKeyPolicy) -> None:
        self._policy = policy
        self.on_lost: Callable[[], None] | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self._policy.decide(host, addr, port, key)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_lost is not None:
            self.on_lost()


def _refusal(policy: _HostKeyPolicy, paths: tuple[str, ...], exc: Exception) -> str:
    files = ", ".join(paths)
    verdict = policy.verdict
    if verdict is None:  # revoked key, bad certificate: asyncssh says why
        return f"host key refused: {exc}"
    if verdict.known:
        return (
            f"HOST KEY CHANGED for {verdict.lookup}: the server presented {verdict.presented} "
            f"but {files} records {', '.join(verdict.known)}; refusing to connect "
            "(possible man-in-the-middle; if the host was rebuilt, remove the old key)"
        )
    return (
        f"unknown host key for {verdict.lookup}: {verdict.presented} is not in {files}; "
        "verify it and add it, or pass --accept-new-host-keys to trust it on first use"
    )


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _Running:
    """One command on one channel: its pumps and, in ``pgroup`` mode, its remote pid."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes], expect_pid: bool) -> None:
        self.process = process
        self.pid: int | None = None
        self.pid_known = asyncio.Event()
        self.finished = False
        self._expect_pid = expect_pid

    def stdout_line(self, line: str) -> str | None:
        """``line`` unless it is the pid marker (the first line in pgroup mode)."""
        if self._expect_pid:
            self._expect_pid = False
            pid = parse_pid(line)
            if pid is not None:
                self.pid = pid
                self.pid_known.set()
                return None
        return line

    async def _pumps(self, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(pump(self.process.stdout.read, out))
            group.create_task(pump(self.process.stderr.read, err))

    async def wait(self, sink: OutputSink) -> None:
        def out(line: str) -> None:
            kept = self.stdout_line(line)
            if kept is not None:
                sink.emit("stdout", kept)

        await first_error(self._pumps(out, partial(sink.emit, "stderr")))
        await self.process.wait_closed()
        self.finished = True


class SSHConnection:
    """An open asyncssh connection to one host; commands run as channels on it."""

    def __init__(
        self,
        transport: SSHTransport,
        host: Host,
        raw: asyncssh.SSHClientConnection,
        *,
        mode: str,
        tail_lines: int,
        max_sessions: int,
    ) -> None:
        self.host = host
        self.mode = mode
        self._transport = transport
        self._raw = raw
        self._tail_lines = tail_lines
        # One channel stays free for the kill exec, so a stop never waits on a busy host.
        self._sessions = asyncio.Semaphore(max(1, max_sessions - 1))
        self._kill_slot = asyncio.Semaphore(1)
        self.released = False

    @property
    def closed(self) -> bool:
        return self.released or self._raw.is_closed()

    @property
    def local_port(self) -> int | None:
        """The client-side TCP port: tells connections apart in tests and diagnostics."""
        peer = self._raw.get_extra_info("sockname")
        return int(peer[1]) if peer else None

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sink = OutputSink(self._tail_lines, on_line)
        try:
            async with asyncio.timeout(timeout):
                await self._sessions.acquire()
        except TimeoutError:
            return sink.result("timeout", None, loop.time() - started, None)
        try:
            remaining = max(0.0, timeout - (loop.time() - started))
            return await self._run_on_channel(command, remaining, sink, started)
        finally:
            self._sessions.release()

    async def _run_on_channel(
        self, command: str, timeout: float, sink: OutputSink, started: float
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        running: _Running | None = None
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                running = await self._start(command)
                await running.wait(sink)
        except TimeoutError:
            if not deadline.expired():
                raise
            signal = await self._stop(running) if running is not None else None
            return sink.result("timeout", None, loop.time() - started, signal)
        except asyncio.CancelledError:
            if running is not None:
                await run_shielded(self._stop(running))
            raise
        except (asyncssh.Error, OSError) as exc:
            if running is not None:
                await run_shielded(self._stop(running))
            raise HostUnreachable(self.host.name, f"connection lost: {_reason(exc)}") from exc
        except BaseException:
            if running is not None:
                await run_shielded(self._stop(running))
            raise
        process = running.process
        exit_code = process.exit_status
        exit_signal = process.exit_signal
        if exit_code is None and exit_signal is None and self._raw.is_closed():
            raise HostUnreachable(self.host.name, "connection lost while a command was running")
        signal = exit_signal[0] if exit_signal else None
        if exit_code is not None and exit_code < 0:
            exit_code = None
        status = "ok" if exit_code == 0 else "failed"
        return sink.result(status, exit_code, loop.time() - started, signal)

    async def _start(self, command: str) -> _Running:
        wrapped = wrap_pgroup(command) if self.mode == "pgroup" else command
        try:
            process = await self._raw.create_process(wrapped, encoding=None)
            process.stdin.write_eof()
        except (asyncssh.Error, OSError) as exc:
            raise HostUnreachable(
                self.host.name, f"cannot start a command: {_reason(exc)}"
            ) from exc
        return _Running(process, expect_pid=self.mode == "pgroup")

    async def _stop(self, running: _Running) -> str | None:
        """Stop the command's remote processes; bounded by STOP_BUDGET, never raises.

        Returns the signal that ended it (``TERM``/``KILL``), when known.
        """
        signal: str | None = None
        if self._raw.is_closed():
            log.warning(
                "%s: connection lost; the remote command may still be running", self.host.name
            )
            return None
        try:
            async with asyncio.timeout(STOP_BUDGET):
                if self.mode == "pgroup" and running.pid is None and not running.finished:
                    # The marker is the command's first output: it is at most one RTT away.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await running.pid_known.wait()
                if running.finished:
                    return None
                if running.pid is not None:
                    signal = await self._kill_group(running.pid)
                else:
                    signal = await self._signal_and_wait(running)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            log.warning("%s: could not confirm the remote command stopped: %s", self.host.name, exc)
        finally:
            # Closing the channel is the last resort of signal mode, and waiting for the
            # server's close reply means it has processed every request sent before.
            running.process.close()
            with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                async with asyncio.timeout(1.0):
                    await running.process.wait_closed()
        return signal

    async def _kill_group(self, pid: int) -> str | None:
        async with self._kill_slot:
            done = await self._raw.run(kill_script(pid), check=False, timeout=KILL_GRACE + 3.0)
        said = done.stdout.strip() if isinstance(done.stdout, str) else ""
        return said if said in ("TERM", "KILL") else None

    async def _signal_and_wait(self, running: _Running) -> str:
        """For servers without a shell: the SSH ``signal`` request, then channel close."""
        process = running.process
        with contextlib.suppress(asyncssh.Error, OSError):
            process.send_signal("TERM")
        try:
            async with asyncio.timeout(KILL_GRACE):
                await process.wait_closed()
        except TimeoutError:
            with contextlib.suppress(asyncssh.Error, OSError):
                process.send_signal("KILL")
            return "KILL"
        return "TERM"

    async def stream(self, command: str) -> AsyncIterator[str]:
        """Stdout lines of a long-running command; closing the iterator stops it."""
        await self._sessions.acquire()
        running: _Running | None = None
        drain: asyncio.Task[None] | None = None
        try:
            running = await self._start(command)
            stderr_tail = OutputSink(self._tail_lines, None)
            drain = asyncio.create_task(
                pump(running.process.stderr.read, partial(stderr_tail.emit, "stderr"))
            )
            splitter = LineSplitter()
            while True:
                try:
                    chunk = await running.process.stdout.read(READ_CHUNK)
                except (asyncssh.Error, OSError) as exc:
                    raise HostUnreachable(
                        self.host.name, f"connection lost: {_reason(exc)}"
                    ) from exc
                lines = splitter.feed(chunk) if chunk else splitter.flush()
                for line in lines:
                    kept = running.stdout_line(line)
                    if kept is not None:
                        yield kept
                if not chunk:
                    break
            await running.process.wait_closed()
            running.finished = True
        finally:
            if drain is not None:
                drain.cancel()
            if running is not None and not running.finished:
                await run_shielded(self._stop(running))
            self._sessions.release()

    async def close(self) -> None:
        await self._transport.close_host(self.host.name)

    async def shutdown(self) -> None:
        """Close the TCP connection (bounded); the transport releases its slot."""
        self._raw.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self._raw.wait_closed()


class SSHTransport:
    """Opens and caches one asyncssh connection per host, under the rollout's caps."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self.accepted_keys: list[tuple[str, str]] = []  # (host, "alg SHA256:...") on TOFU
        self.handshakes = 0  # handshake attempts, retries included
        self.handshake_retries = 0  # attempts that were retries of a dropped handshake
        self._connections: dict[str, SSHConnection] = {}
        self._pending: dict[str, asyncio.Task[SSHConnection]] = {}
        self._slots = asyncio.Semaphore(max(1, self.options.max_connections))
        self._handshake_slots = asyncio.Semaphore(max(1, self.options.max_handshakes))
        self._known_hosts = KnownHostsCache()
        self._known_paths: dict[tuple[str, int | None, str | None], tuple[str, ...]] = {}
        self._append_lock = asyncio.Lock()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def connect(self, host: Host) -> SSHConnection:
        if self._closed:
            raise TransportError(host.name, "the transport is closed")
        kill_mode(host)  # a bad rolldeck_kill is bad input, reported before any network
        current = self._connections.get(host.name)
        if current is not None and not current.closed:
            return current
        task = self._pending.get(host.name)
        if task is None:
            task = asyncio.create_task(self._open(host), name=f"ssh-connect:{host.name}")
            self._pending[host.name] = task
            task.add_done_callback(partial(self._forget_pending, host.name))
        return await asyncio.shield(task)

    def _forget_pending(self, name: str, task: asyncio.Task[SSHConnection]) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]

    async def close_host(self, name: str) -> None:
        """Close one host's connection (the engine calls it when the host is done)."""
        conn = self._connections.pop(name, None)
        if conn is not None:
            await conn.shutdown()
            self._release(conn)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._pending.values()):
            task.cancel()
        async with asyncio.TaskGroup() as group:
            for name in list(self._connections):
                group.create_task(self.close_host(name))

    def _release(self, conn: SSHConnection) -> None:
        if self._connections.get(conn.host.name) is conn:
            del self._connections[conn.host.name]
        if not conn.released:
            conn.released = True
            self._slots.release()

    async def _open(self, host: Host) -> SSHConnection:
        await self._slots.acquire()
        try:
            raw, client = await self._handshake(host)
        except BaseException:
            self._slots.release()
            raise
        conn = SSHConnection(
            self,
            host,
            raw,
            mode=kill_mode(host),
            tail_lines=self.options.tail_lines,
            max_sessions=int(self.options.extra.get("max_sessions", DEFAULT_MAX_SESSIONS)),
        )
        client.on_lost = partial(self._release, conn)
        if raw.is_closed():
            self._release(conn)
            raise HostUnreachable(host.name, "the server closed the connection right after login")
        self._connections[host.name] = conn
        return conn

    async def _handshake(self, host: Host) -> tuple[asyncssh.SSHClientConnection, _Client]:
        options = self.options
        paths = await self._known_hosts_files(host)
        attempt = 0
        while True:
            known = await asyncio.to_thread(self._known_hosts.load, paths)
            policy = _HostKeyPolicy(known, options.accept_new_host_keys)
            clients: list[_Client] = []

            def factory(policy: _HostKeyPolicy = policy, made: list[_Client] = clients) -> _Client:
                made.append(_Client(policy))
                return made[-1]

            try:
                async with self._handshake_slots:
                    self.handshakes += 1
                    raw = await asyncssh.connect(
                        host.address,
                        host.port or (),
                        config=self._config(),
                        username=host.user or (),
                        client_keys=self._client_keys(host),
                        known_hosts=known,
                        client_factory=factory,
                        connect_timeout=options.connect_timeout,
                        keepalive_interval=float(options.extra.get("keepalive_interval", 30.0)),
                        keepalive_count_max=3,
                    )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostKeyError(host.name, _refusal(policy, paths, exc)) from None
            except _DROPPED as exc:
                if attempt >= options.handshake_retries:
                    raise HostUnreachable(
                        host.name,
                        f"the server dropped the connection during the handshake "
                        f"{attempt + 1} times ({_reason(exc)}); is it overloaded "
                        "(sshd MaxStartups)?",
                    ) from None
                attempt += 1
                self.handshake_retries += 1
                await asyncio.sleep(_backoff(attempt))
                continue
            except asyncssh.KeyExchangeFailed as exc:
                if trusted_keys(known, host.address, host.address, host.port):
                    raise HostKeyError(
                        host.name,
                        f"host key changed: the server offers none of the key types "
                        f"{', '.join(paths)} records ({_reason(exc)})",
                    ) from None
                raise HostUnreachable(host.name, f"key exchange failed: {_reason(exc)}") from None
            except Exception as exc:
                raise HostUnreachable(host.name, self._describe_failure(host, exc)) from None
            if policy.verdict is not None and policy.verdict.accepted:
                await self._remember_key(host, paths, policy)
            return raw, clients[-1]

    def _describe_failure(self, host: Host, exc: Exception) -> str:
        where = f"{host.address}:{host.port or 22}"
        if isinstance(exc, asyncssh.PermissionDenied):
            user = host.user or "the configured user"
            return f"authentication failed as {user} at {where}: {_reason(exc)}"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve {host.address!r}: {exc.strerror or exc}"
        if isinstance(exc, TimeoutError):
            return f"no SSH login within {self.options.connect_timeout:g}s at {where}"
        if isinstance(exc, asyncssh.DisconnectError):
            return f"disconnected by {where}: {_reason(exc)}"
        if isinstance(exc, OSError):
            return f"cannot connect to {where}: {_reason(exc)}"
        if isinstance(exc, ValueError):  # asyncssh.KeyImportError: an unreadable client key
            return f"cannot use the client key: {exc}"
        return f"{type(exc).__name__}: {exc}"

    def _config(self) -> Any:
        """``()`` lets asyncssh load ``~/.ssh/config``; a list (maybe empty) overrides it."""
        return () if self.options.ssh_config is None else list(self.options.ssh_config)

    def _client_keys(self, host: Host) -> Any:
        if host.key:
            return [host.key]
        if self.options.client_keys:
            return list(self.options.client_keys)
        return ()  # ~/.ssh/config IdentityFile, else the default keys; the agent either way

    async def _known_hosts_files(self, host: Host) -> tuple[str, ...]:
        """The inventory's file, the option's, else what ssh_config says (strictly)."""
        explicit = host.known_hosts or self.options.known_hosts
        if explicit:
            return resolve_paths([explicit])
        key = (host.address, host.port, host.user)
        cached = self._known_paths.get(key)
        if cached is None:
            resolved = await asyncssh.SSHClientConnectionOptions.construct(
                config=self._config(),
                host=host.address,
                port=host.port or (),
                username=host.user or (),
                client_keys=None,
            )
            configured = resolved.known_hosts
            # "UserKnownHostsFile none" would disable checking in asyncssh: never here.
            cached = resolve_paths(configured if isinstance(configured, list) else None)
            self._known_paths[key] = cached
        return cached

    async def _remember_key(
        self, host: Host, paths: tuple[str, ...], policy: _HostKeyPolicy
    ) -> None:
        """Trust on first use: append the key to the first known_hosts file, once."""
        assert policy.key is not None and policy.verdict is not None
        async with self._append_lock:
            known = await asyncio.to_thread(self._known_hosts.load, paths)
            already = policy.key in trusted_keys(known, policy.host, host.address, policy.port)
            if not already:
                line = entry_line(policy.host, policy.port, policy.key)
                await asyncio.to_thread(append_entry, paths[0], line)
        self.accepted_keys.append((host.name, policy.verdict.presented))
        log.warning(
            "%s: trusted new host key %s for %s on first use (added to %s)",
            host.name,
            policy.verdict.presented,
            policy.verdict.lookup,
            paths[0],
        )
