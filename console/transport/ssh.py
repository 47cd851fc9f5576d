"""The asyncssh transport: one connection per host, many channels, commands really stopped.

Connections are opened on a host's first :meth:`SSHTransport.connect` and reused for
every command of that host (each command is a channel: :mod:`ssh_channels`).
Concurrent ``connect`` calls for one host share one handshake. Two caps keep a large
fleet polite:

* open connections (``max_connections``): when full, the least recently used *idle*
  connection is closed to make room (its host reconnects transparently on its next
  command); only when every open connection is busy does a new host wait. The engine
  keeps every host of a rollout, so a cap that only waited would deadlock a fleet
  larger than the cap.
* concurrent handshakes, paced per endpoint (``max_handshakes``, default 10) and in
  all (``max_handshakes_total``, default 32). OpenSSH's ``MaxStartups 10:30:100``
  starts dropping unauthenticated connections beyond 10 *per sshd*, so the limit is
  per endpoint dialled: (address, port) of a direct host; behind a shared ProxyJump
  the target's (address, port) as the jump reaches it (its sshd takes the key
  exchange; the jump relays it over its one connection), and each hop's own endpoint
  when the jump itself is opened (or, unshared, once per host). 200 hosts with one
  sshd each handshake 32 at a time, not 10; 40 names of one sshd still 10. Names are
  not resolved: two names (or a VIP) for one sshd count as two endpoints, and the
  drop retry below absorbs what that lets through. A connection dropped before
  authentication is retried with exponential backoff and jitter.

Host keys are checked strictly against known_hosts (:mod:`knownhosts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncssh

from console.transport.asyncssh_tuning import skip_unlogged_packets
from console.transport.base import (
    DEFAULT_CONNECT_TIMEOUT,
    HostKeyError,
    HostUnreachable,
    HostUnresponsive,
    TransportError,
    TransportOptions,
)
from console.transport.ciphers import preferred_ciphers
from console.transport.deadlines import bounded, debug_from_env
from console.transport.knownhosts import (
    HostKeyVerdict,
    HostNames,
    KnownHostsCache,
    KnownHostsFiles,
    append_entry,
    describe_files,
    entry_line,
    files_from_config,
    files_recording,
    fingerprint,
    hash_known_hosts,
    host_names,
    local_username,
    lookup_name,
    trusted_keys,
)
from console.transport.remote_kill import kill_mode, shell_kind
from console.transport.ssh_channels import DEFAULT_MAX_SESSIONS, SSHConnection
from console.transport.ssh_running import reason
from inventory.model import Host

__all__ = ["SSHConnection", "SSHTransport"]

log = logging.getLogger(__name__)
skip_unlogged_packets()

BACKOFF_BASE = 0.1
CLOSE_BOUND = 5.0  # seconds a closing connection may take to say goodbye (then aborted)
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
        self._accept_new = accept_new  # False when there is no user file to write to
        self.verdict: HostKeyVerdict | None = None
        self.key: asyncssh.SSHKey | None = None
        self.host = ""
        self.addr = ""
        self.port: int | None = None

    def decide(self, host: str, addr: str, port: int | None, key: asyncssh.SSHKey) -> bool:
        known = trusted_keys(self._known, host, addr, port)
        accept = self._accept_new and not known
        self.key, self.host, self.addr, self.port = key, host, addr, port
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


def _refusal(
    policy: _HostKeyPolicy, files: KnownHostsFiles, exc: Exception, accept_new: bool
) -> str:
    """The refusal in words, naming every file looked in (blocking: stats and, for a
    changed key, reads the files; run it in a thread)."""
    looked = describe_files(files.all)
    verdict = policy.verdict
    if verdict is None:  # revoked key, bad certificate: asyncssh says why
        return f"host key refused: {exc} (looked in {looked})"
    if verdict.known:
        holders = files_recording(files.all, policy.host, policy.addr, policy.port)
        recorded = "; ".join(f"{path} records {', '.join(keys)}" for path, keys in holders)
        return (
            f"HOST KEY CHANGED for {verdict.lookup}: the server presented {verdict.presented} "
            f"but {recorded or looked + ' record ' + ', '.join(verdict.known)}; refusing to "
            "connect (possible man-in-the-middle; if the host was rebuilt, remove the old key)"
        )
    if accept_new and files.writable is None:
        hint = (
            "--accept-new-host-keys cannot record it: UserKnownHostsFile is none "
            "and global files are read-only"
        )
    else:
        hint = "verify it and add it, or pass --accept-new-host-keys to trust it on first use"
    return (
        f"unknown host key for {verdict.lookup}: {verdict.presented} is not in any of "
        f"{looked}; {hint}"
    )


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


class SSHTransport:
    """Opens and caches one asyncssh connection per host, under the rollout's caps."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self.accepted_keys: list[tuple[str, str]] = []  # (host, "alg SHA256:...") on TOFU
        self.handshakes = 0  # handshake attempts, retries included
        self.handshake_retries = 0  # attempts that were retries of a dropped handshake
        self.evictions = 0  # idle connections closed to make room under max_connections
        self._connections: dict[str, SSHConnection] = {}
        self._pending: dict[str, asyncio.Task[SSHConnection]] = {}
        self._live = 0  # connections holding a TCP connection (each holds one slot)
        self._max_live = max(1, self.options.max_connections)
        self._room = asyncio.Event()  # set when a slot may have become available
        self._handshake_slots = asyncio.Semaphore(max(1, self.options.max_handshakes_total))
        self._endpoint_slots: dict[_Endpoint, asyncio.Semaphore] = {}
        self.handshakes_in_flight: dict[_Endpoint, int] = {}  # now, per endpoint
        self.peak_handshakes: dict[_Endpoint, int] = {}  # most at once, per endpoint
        self.peak_handshakes_total = 0  # most at once, all endpoints
        self._in_flight_total = 0
        self._known_hosts = KnownHostsCache()
        self._ssh_configs: dict[tuple[str, int | None, str | None], _SSHConfigFacts] = {}
        # Read once here (/proc/cpuinfo: kernel memory, no disk), not a thread per host.
        self._ciphers = preferred_ciphers()
        self._jumps: dict[str, asyncio.Task[asyncssh.SSHClientConnection]] = {}
        self.jump_connections = 0  # connections opened to jump hosts (ProxyJump), shared
        self._append_lock = asyncio.Lock()
        self._closed = False
        debug_from_env()  # ROLLDECK_DEBUG_DEADLINES=1: print waits that outlive their bound

    @property
    def open_connections(self) -> int:
        return self._live

    async def connect(self, host: Host) -> SSHConnection:
        """The host's connection, opened (or reopened) if it has no live one."""
        if self._closed:
            raise TransportError(host.name, "the transport is closed")
        kill_mode(host)  # a bad rolldeck_kill is bad input, reported before any network
        shell_kind(host)
        current = self._connections.get(host.name)
        if current is not None and not current.closed:
            return current
        task = self._pending.get(host.name)
        if task is None:
            task = asyncio.create_task(self._open(host), name=f"ssh-connect:{host.name}")
            self._pending[host.name] = task
            task.add_done_callback(partial(self._forget_pending, host.name))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and me is not None and not me.cancelling():
                # Not our cancellation: close() cancelled the shared handshake.
                message = "the transport was closed while connecting"
                raise TransportError(host.name, message) from None
            raise

    def _forget_pending(self, name: str, task: asyncio.Task[SSHConnection]) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]

    async def close_host(self, name: str) -> None:
        """Close one host's connection for good (its Connection object refuses commands)."""
        conn = self._connections.pop(name, None)
        if conn is None:
            return
        raw = conn.detach("closed")
        if raw is not None:
            self._release_slot()
            raw.close()
            try:
                async with bounded(name, "closing the connection", CLOSE_BOUND):
                    await raw.wait_closed()
            except HostUnresponsive:
                raw.abort()  # a frozen server never answers the close: drop the socket

    async def close(self) -> None:
        self._closed = True
        for pending in list(self._pending.values()):
            pending.cancel()
        async with asyncio.TaskGroup() as group:
            for name in list(self._connections):
                group.create_task(self.close_host(name))
        jumps, self._jumps = list(self._jumps.values()), {}
        for task in jumps:
            task.cancel()  # one still opening
        opened = await asyncio.gather(*jumps, return_exceptions=True)
        for jump in opened:
            if isinstance(jump, asyncssh.SSHClientConnection):
                jump.close()  # and the hops before it (set_tunnel)
                try:
                    async with bounded("jump host", "closing the connection", CLOSE_BOUND):
                        await jump.wait_closed()
                except HostUnresponsive:
                    jump.abort()
                except (asyncssh.Error, OSError):
                    pass

    def discard(self, conn: SSHConnection) -> None:
        """A server that stopped answering (a bound fired): drop its connection at once
        and for good. Aborting the socket fails every wait on it (channel opens, reads,
        the persistent shell), so nothing stays blocked on the frozen server; the
        connection is never reused (its next command fails fast until
        :meth:`connect` opens a new one)."""
        raw = conn.detach("dead")
        if raw is None:
            return
        self._release_slot()
        raw.abort()
        log.warning("%s: dropped the connection: %s", conn.host.name, conn.dead_reason)

    def capacity_changed(self) -> None:
        """A connection went idle or a slot was freed: wake hosts waiting for room."""
        self._room.set()

    def _release_slot(self) -> None:
        self._live -= 1
        self._room.set()

    async def _acquire_slot(self) -> None:
        """Take a connection slot: free, or freed by evicting the LRU idle connection."""
        while True:
            self._room.clear()
            if self._live < self._max_live:
                self._live += 1
                return
            idle = [c for c in self._connections.values() if c.state == "open" and not c.busy]
            if idle:
                self._evict(min(idle, key=lambda c: c.last_used))
                continue
            await self._room.wait()

    def _evict(self, conn: SSHConnection) -> None:
        raw = conn.detach("evicted")
        if raw is not None:
            self.evictions += 1
            self._release_slot()
            raw.close()
            log.debug("%s: idle connection closed to stay under max_connections", conn.host.name)

    def _lost(self, conn: SSHConnection, raw: asyncssh.SSHClientConnection) -> None:
        """asyncssh's connection_lost: the server or the network dropped it."""
        if conn.owns(raw):
            conn.detach("lost")
            self._release_slot()

    async def _open(self, host: Host) -> SSHConnection:
        conn = self._connections.get(host.name)
        if conn is None:
            conn = SSHConnection(
                self,
                host,
                mode=kill_mode(host),
                shell=shell_kind(host),
                tail_lines=self.options.tail_lines,
                max_sessions=_max_sessions(self.options),
                shell_prelude=self.options.shell_prelude,
            )
        await self._acquire_slot()
        try:
            raw, client, bound = await self._handshake(host)
        except BaseException:
            self._release_slot()
            raise
        _tcp_keepalive(raw)
        conn.attach(raw, host)
        conn.reply_timeout = bound
        conn.last_used = asyncio.get_running_loop().time()
        client.on_lost = partial(self._lost, conn, raw)
        self._connections[host.name] = conn
        if raw.is_closed():
            self._lost(conn, raw)
            raise HostUnreachable(host.name, "the server closed the connection right after login")
        return conn

    async def connect_bound(self, host: Host) -> float:
        """Seconds to connect and log in to ``host``, and for it to answer a request
        once connected: ``--connect-timeout`` > ``ConnectTimeout`` in the ssh config >
        :data:`DEFAULT_CONNECT_TIMEOUT`."""
        if self.options.connect_timeout is not None:
            return float(self.options.connect_timeout)
        configured = (await self._ssh_config_for(host)).connect_timeout
        return configured if configured else DEFAULT_CONNECT_TIMEOUT

    async def _handshake(self, host: Host) -> tuple[asyncssh.SSHClientConnection, _Client, float]:
        options = self.options
        try:
            paths = await self._known_hosts_files(host)
            bound = await self.connect_bound(host)
            facts = await self._ssh_config_for(host)
        except (OSError, ValueError, asyncssh.Error) as exc:
            message = f"cannot read the SSH client configuration: {exc}"
            raise HostUnreachable(host.name, message) from exc
        where = f"{host.address}:{host.port or 22}"
        attempt = 0
        while True:
            try:
                known = await asyncio.to_thread(self._known_hosts.load, paths.all)
            except (OSError, ValueError) as exc:
                raise HostKeyError(host.name, f"cannot read known_hosts: {exc}") from None
            writable = paths.writable is not None
            policy = _HostKeyPolicy(known, options.accept_new_host_keys and writable)
            clients: list[_Client] = []

            def factory(policy: _HostKeyPolicy = policy, made: list[_Client] = clients) -> _Client:
                made.append(_Client(policy))
                return made[-1]

            try:
                jump = await self._jump_for(host)
                endpoints = await self._endpoints_of(host, shared_jump=jump is not None)
                async with self._handshake_slot(endpoints):
                    self.handshakes += 1
                    # Our bound, not asyncssh's connect_timeout: it covers TCP, key
                    # exchange and authentication alike, and says which host and when.
                    async with bounded(host.name, f"connecting to {where}", bound):
                        raw = await asyncssh.connect(
                            host.address,
                            host.port or (),
                            config=self._config(),
                            username=host.user or (),
                            client_keys=self._client_keys(host),
                            known_hosts=known,
                            client_factory=factory,
                            connect_timeout=None,
                            **_ciphers(facts.ciphers),
                            **({"tunnel": jump} if jump is not None else {}),
                            **_keepalive(options),
                        )
            except HostUnresponsive:
                raise
            except _JumpFailed as exc:  # a refused jump key stops the rollout like any
                error = HostKeyError if exc.host_key else HostUnreachable
                raise error(host.name, str(exc)) from None
            except asyncssh.HostKeyNotVerifiable as exc:
                accept = options.accept_new_host_keys
                words = await asyncio.to_thread(_refusal, policy, paths, exc, accept)
                raise HostKeyError(host.name, words) from None
            except _DROPPED as exc:
                if attempt >= options.handshake_retries:
                    raise HostUnreachable(
                        host.name,
                        f"the server dropped the connection during the handshake "
                        f"{attempt + 1} times ({reason(exc)}); is it overloaded "
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
                        f"{', '.join(paths.all)} records ({reason(exc)})",
                    ) from None
                raise HostUnreachable(host.name, f"key exchange failed: {reason(exc)}") from None
            except Exception as exc:
                raise HostUnreachable(host.name, self._describe_failure(host, exc)) from None
            if policy.verdict is not None and policy.verdict.accepted:
                try:
                    await self._remember_key(host, paths, policy)
                except BaseException:  # cancelled or the file unwritable: no half-open host
                    raw.close()
                    raise
            return raw, clients[-1], bound

    async def _ssh_config_for(self, host: Host) -> _SSHConfigFacts:
        """What the ssh config says for this host (known_hosts, ProxyJump), read once
        (only those two kept: a parsed options object per host is heavy at 10,000)."""
        key = (host.address, host.port, host.user)
        facts = self._ssh_configs.get(key)
        if facts is None:
            resolved = await asyncssh.SSHClientConnectionOptions.construct(
                config=self._config(),
                host=host.address,
                port=host.port or (),
                username=host.user or (),
                client_keys=None,
            )
            jump = resolved.tunnel if isinstance(resolved.tunnel, str) else None
            timeout = resolved.connect_timeout  # ConnectTimeout, when the config sets it
            names = host_names(resolved.config, host.address, local_username())
            own_ciphers = resolved.config.get("Ciphers") is not None
            facts = self._ssh_configs[key] = _SSHConfigFacts(
                files_from_config(resolved.config, names),
                names,
                None if jump in (None, "", "none") else jump,
                float(timeout) if timeout else None,
                None if own_ciphers else self._ciphers,
            )
        return facts

    async def _jump_for(self, host: Host) -> asyncssh.SSHClientConnection | None:
        """The host's ProxyJump connection from ~/.ssh/config, shared by every host
        behind the same jump: 1,000 hosts behind one bastion are one connection to it
        (its sshd sees one login, not 1,000 handshakes) carrying one forwarded channel
        per host. ``None`` when the host has no jump. A jump that dropped is reopened;
        one that cannot be opened fails the host (and is tried again next time)."""
        try:
            spec = (await self._ssh_config_for(host)).jump
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise _JumpFailed(f"cannot read the SSH client configuration: {exc}") from exc
        if spec is None or not self.options.extra.get("share_jumps", True):
            return None  # no jump, or asyncssh opens one per host (bench/bastion.py)
        task = self._jumps.get(spec)
        if task is not None and task.done() and _unusable(task):
            task = None  # failed or dropped: open it again
        if task is None:
            task = self._jumps[spec] = asyncio.ensure_future(self._open_jump(spec))
        try:
            return await asyncio.shield(task)
        except asyncssh.HostKeyNotVerifiable as exc:  # a refusal, not a host that is down
            raise _JumpFailed(
                f"jump host {spec}: host key refused: {reason(exc)}", host_key=True
            ) from exc
        except Exception as exc:
            raise _JumpFailed(f"cannot reach jump host {spec}: {reason(exc)}") from exc

    async def _open_jump(self, spec: str) -> asyncssh.SSHClientConnection:
        """Connect through ``user@host:port[,next...]`` as OpenSSH's ProxyJump does,
        each hop with the user's ssh config (its keys, known_hosts, strict checking)."""
        conn: asyncssh.SSHClientConnection | None = None
        hops = spec.split(",")
        for index, hop in enumerate(hops):
            user, name, hop_port = _split_hop(hop)
            conn_before = conn
            hop_known, hop_files = await self._hop_known_hosts(hop, name, hop_port, user)
            via = ",".join(hops[:index])  # the hops this one is reached through
            async with self._handshake_slot(((via, name, hop_port or 22),)):
                self.jump_connections += 1
                # The jump's own ConnectTimeout (from the config) unless the flag is set.
                flag = self.options.connect_timeout
                bound = float(flag) if flag is not None else DEFAULT_CONNECT_TIMEOUT
                try:
                    async with bounded(hop, "connecting to the jump host", bound):
                        conn = await asyncssh.connect(
                            name,
                            hop_port or (),
                            username=user or (),
                            config=self._config(),
                            known_hosts=hop_known,
                            connect_timeout=flag if flag is not None else (),
                            **({"tunnel": conn} if conn is not None else {}),
                        )
                except asyncssh.HostKeyNotVerifiable as exc:
                    looked = await asyncio.to_thread(describe_files, hop_files.all)
                    raise asyncssh.HostKeyNotVerifiable(
                        f"{exc.reason}; looked in {looked}"
                    ) from None
            if previous := conn_before:
                conn.set_tunnel(previous)  # closing the last hop closes the chain
            _tcp_keepalive(conn)
        assert conn is not None
        return conn

    async def _endpoints_of(self, host: Host, *, shared_jump: bool) -> tuple[_Endpoint, ...]:
        """The endpoints a handshake to ``host`` loads: the host's (address, port), as
        the ssh config resolves them, reached directly or through its shared jump (two
        ``localhost`` behind two bastions are two servers); with an unshared jump (asyncssh
        dials it per host) the jump's first hop takes a handshake too."""
        facts = await self._ssh_config_for(host)
        spec = facts.jump
        target = (facts.names.hostname, host.port or facts.names.port)  # after HostName, Port
        if spec is None:
            return (("", *target),)
        if shared_jump:
            return ((spec, *target),)
        _, name, port = _split_hop(spec.split(",")[0])
        return (("", name, port or 22), (spec, *target))

    @contextlib.asynccontextmanager
    async def _handshake_slot(self, endpoints: tuple[_Endpoint, ...]) -> AsyncIterator[None]:
        """Hold a handshake slot of each endpoint (in the order given: the same for
        every host, so no two wait on each other), then one of the global bound."""
        async with contextlib.AsyncExitStack() as stack:
            per = max(1, self.options.max_handshakes)
            for endpoint in endpoints:
                slots = self._endpoint_slots.get(endpoint)
                if slots is None:
                    slots = self._endpoint_slots[endpoint] = asyncio.Semaphore(per)
                await stack.enter_async_context(slots)
            await stack.enter_async_context(self._handshake_slots)
            for endpoint in endpoints:
                now = self.handshakes_in_flight.get(endpoint, 0) + 1
                self.handshakes_in_flight[endpoint] = now
                self.peak_handshakes[endpoint] = max(self.peak_handshakes.get(endpoint, 0), now)
            self._in_flight_total += 1
            self.peak_handshakes_total = max(self.peak_handshakes_total, self._in_flight_total)
            try:
                yield
            finally:
                self._in_flight_total -= 1
                for endpoint in endpoints:
                    left = self.handshakes_in_flight[endpoint] - 1
                    if left:
                        self.handshakes_in_flight[endpoint] = left
                    else:
                        del self.handshakes_in_flight[endpoint]

    def _describe_failure(self, host: Host, exc: Exception) -> str:
        where = f"{host.address}:{host.port or 22}"
        if isinstance(exc, asyncssh.PermissionDenied):
            user = host.user or "the configured user"
            return f"authentication failed as {user} at {where}: {reason(exc)}"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve {host.address!r}: {exc.strerror or exc}"
        if isinstance(exc, TimeoutError):  # asyncssh's own login timer
            return f"no SSH login in time at {where}"
        if isinstance(exc, asyncssh.DisconnectError):
            return f"disconnected by {where}: {reason(exc)}"
        if isinstance(exc, OSError):
            return f"cannot connect to {where}: {reason(exc)}"
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

    async def _known_hosts_files(self, host: Host) -> KnownHostsFiles:
        """The user files (the inventory's ``known_hosts``, else ``--known-hosts``, else
        the ssh config's UserKnownHostsFile, else OpenSSH's two defaults), then the global
        ones (GlobalKnownHostsFile, else /etc/ssh/ssh_known_hosts{,2}). "UserKnownHostsFile
        none" leaves the global files: it never turns checking off (asyncssh would)."""
        files = (await self._ssh_config_for(host)).known
        explicit = host.known_hosts or self.options.known_hosts
        return files.with_user([explicit]) if explicit else files

    async def _hop_known_hosts(
        self, hop: str, name: str, port: int | None, user: str
    ) -> tuple[asyncssh.SSHKnownHosts, KnownHostsFiles]:
        """A ProxyJump hop's keys, looked up as any host's (its own ssh config entry)."""
        jump_host = Host(name=hop, address=name, port=port, user=user or None)
        files = (await self._ssh_config_for(jump_host)).known
        return await asyncio.to_thread(self._known_hosts.load, files.all), files

    async def _remember_key(
        self, host: Host, files: KnownHostsFiles, policy: _HostKeyPolicy
    ) -> None:
        """Trust on first use: append the key to the first user known_hosts file (global
        files are read-only), once; hashed when HashKnownHosts applies to the host."""
        assert policy.key is not None and policy.verdict is not None
        target = files.writable
        assert target is not None  # the policy accepts only when there is a user file
        names = (await self._ssh_config_for(host)).names
        try:
            config = self.options.ssh_config
            hashed = await asyncio.to_thread(hash_known_hosts, config, names, host.user)
            async with self._append_lock:
                known = await asyncio.to_thread(self._known_hosts.load, files.all)
                already = policy.key in trusted_keys(known, policy.host, policy.addr, policy.port)
                if not already:
                    line = entry_line(policy.host, policy.port, policy.key, hashed=hashed)
                    await asyncio.to_thread(append_entry, target, line)
        except (OSError, ValueError) as exc:
            raise HostKeyError(host.name, f"cannot record the new host key: {exc}") from None
        self.accepted_keys.append((host.name, policy.verdict.presented))
        log.warning(
            "%s: trusted new host key %s for %s on first use (added to %s%s)",
            host.name,
            policy.verdict.presented,
            policy.verdict.lookup,
            target,
            ", hashed" if hashed else "",
        )


_Endpoint = tuple[str, str, int]  # (the jump spec it is reached through or "", address, port)


def _split_hop(hop: str) -> tuple[str, str, int | None]:
    """``user@host:port`` / ``[v6::addr]:port`` of a ProxyJump -> (user, host, port)."""
    user, _, where = hop.rpartition("@")
    name, _, port = where.partition(":")
    if where.startswith("["):  # [v6::addr]:port
        name, _, port = where[1:].partition("]")
        port = port.removeprefix(":")
    return user, name, int(port) if port.isdigit() else None


@dataclass(frozen=True, slots=True)
class _SSHConfigFacts:
    known: KnownHostsFiles  # where its host keys are looked up (before --known-hosts)
    names: HostNames  # HostName, Port, User...: for HashKnownHosts' Host/Match lines
    jump: str | None  # the ProxyJump spec (`user@host:port[,...]`), None when none
    connect_timeout: float | None  # ConnectTimeout (seconds), None when not set
    ciphers: tuple[str, ...] | None  # our order (console/transport/ciphers.py), None: asyncssh's


class _JumpFailed(Exception):
    """The host's ProxyJump connection could not be opened; ``host_key``: because a
    hop's host key was refused (unknown or changed), a HostKeyError for the host."""

    def __init__(self, message: str, *, host_key: bool = False) -> None:
        super().__init__(message)
        self.host_key = host_key


def _unusable(task: asyncio.Task[asyncssh.SSHClientConnection]) -> bool:
    """A finished jump task that failed, or whose connection has since closed."""
    return task.cancelled() or task.exception() is not None or task.result().is_closed()


def _max_sessions(options: TransportOptions) -> int:
    """``extra["max_sessions"]``: the server's MaxSessions, when not OpenSSH's 10."""
    value = options.extra.get("max_sessions", DEFAULT_MAX_SESSIONS)
    return int(value) if isinstance(value, int | float | str) else DEFAULT_MAX_SESSIONS


def _ciphers(order: tuple[str, ...] | None) -> dict[str, object]:
    """The cipher order to offer, when ours applies (no ``Ciphers`` in the ssh config)."""
    return {} if order is None else {"encryption_algs": list(order)}


def _keepalive(options: TransportOptions) -> dict[str, object]:
    """SSH-level keepalives only when asked (``extra["keepalive_interval"]``) or set in
    the user's ~/.ssh/config (ServerAliveInterval, which asyncssh reads itself).

    asyncssh re-arms its keepalive timer on every packet received: at 1,000 hosts
    that was 6% of the console's CPU. During a rollout the monitors poll every host
    every few seconds under a timeout, which finds a hung host sooner, and the
    kernel's TCP keepalive (:func:`_tcp_keepalive`, free of CPU here) finds a dead
    peer or a NAT that forgot the connection within about a minute.
    """
    interval = options.extra.get("keepalive_interval")
    if interval is None:
        return {}
    return {"keepalive_interval": float(interval), "keepalive_count_max": 3}  # type: ignore[arg-type]


TCP_KEEPALIVE = (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))


def _tcp_keepalive(raw: asyncssh.SSHClientConnection) -> None:
    """Probe an idle TCP connection after 30 s, every 10 s, 3 times (Linux's default
    is to wait two hours): a dead peer is found in about a minute. Tunnelled
    connections (ProxyJump) have no socket of their own and are left alone."""
    sock = raw.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in TCP_KEEPALIVE:
        option = getattr(socket, name, None)
        if option is None and name == "TCP_KEEPIDLE":
            option = getattr(socket, "TCP_KEEPALIVE", None)  # macOS spells it so
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
