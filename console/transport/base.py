"""The one small protocol every transport implements: connect, run, stream, close.

Three implementations sit behind it: ``ssh`` (asyncssh; production and both test
fleets), ``local`` (asyncio subprocess, for ``localhost`` hosts) and ``fake`` (in
memory, for fast unit tests of the engine). The engine never knows which it has.

Contract for :meth:`Connection.run`:

* output is delivered line by line to ``on_line(stream, line)`` as it arrives, in
  order within each stream (stdout and stderr are not ordered with each other);
* ``timeout`` is mandatory: on expiry the *remote process is stopped* (not abandoned)
  and a result with ``status="timeout"`` is returned;
* if the calling task is cancelled, the remote process is stopped (bounded time,
  shielded) and ``asyncio.CancelledError`` propagates; so does an exception raised by
  ``on_line``, after the process is stopped the same way;
* a lost connection raises :class:`HostUnreachable`, and so does a command on a
  connection that was closed.

Every capability a caller may use is declared here, with a value on every
implementation (``chains_commands`` False, ``persistent_shell()`` None, no
``accepted_keys``), so no caller probes for one with ``getattr``. The contract is
held for all three by ``tests/test_transport_contract.py``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from console.core.errors import RolldeckError
from inventory.model import Host

LineCallback = Callable[[str, str], None]  # (stream: 'stdout' | 'stderr', line)


class TransportError(RolldeckError):
    """A host could not be reached or talked to."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class HostUnreachable(TransportError):
    """Connection refused, timed out, dropped, or authentication failed."""


class HostUnresponsive(HostUnreachable):
    """The server kept the connection up but did not answer within a bound (a frozen
    host): the connection is dropped and never reused. ``operation`` and ``bound``
    (seconds) name what was awaited, for the host's reason."""

    def __init__(self, host: str, operation: str, bound: float) -> None:
        super().__init__(host, f"no answer from {host} for {bound:g} s while {operation}")
        self.operation = operation
        self.bound = bound


class HostKeyError(TransportError):
    """The host's key is unknown or changed: never accepted silently."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """``status``: 'ok' (exit 0), 'failed' (non-zero exit), 'timeout', 'cancelled'."""

    status: str
    exit_code: int | None
    duration: float
    stdout_tail: tuple[str, ...] = ()
    stderr_tail: tuple[str, ...] = ()
    signal: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def first_line(self) -> str:
        """The first line of output: a version, a health detail."""
        for line in (*self.stdout_tail, *self.stderr_tail):
            if line.strip():
                return line.strip()
        return ""


DEFAULT_CONNECT_TIMEOUT = 15.0  # seconds; ssh's own default is the TCP stack's (minutes)


@dataclass(slots=True)
class TransportOptions:
    """Connection policy shared by every host of a rollout.

    ``connect_timeout``: seconds to connect, log in, and for the server to answer any
    protocol request (a channel open, a kill, a close) once connected. None: the
    host's ``ConnectTimeout`` from the ssh config, else :data:`DEFAULT_CONNECT_TIMEOUT`.
    """

    connect_timeout: float | None = None
    max_connections: int = 256  # open connections at once
    # Concurrent handshakes to one endpoint (the address and port dialled: OpenSSH's
    # MaxStartups 10:30:100 is per sshd), and in all (the client's own CPU: key
    # exchange is the console's heaviest work). See console/transport/ssh.py.
    max_handshakes: int = 10
    max_handshakes_total: int = 32
    handshake_retries: int = 4  # retries, with backoff, of a connection dropped pre-auth
    accept_new_host_keys: bool = False  # trust on first use, written to known_hosts
    known_hosts: str | None = None  # overrides the user's ~/.ssh/known_hosts
    ssh_config: list[str] | None = None  # None: the user's ~/.ssh/config when present
    client_keys: list[str] | None = None
    tail_lines: int = 20  # how many output lines a RunResult keeps
    # POSIX sh function definitions a kept shell runs once, at its start (the lease
    # operation, console/engine/leases.py): a command then calls a function on one
    # line instead of carrying its script, and the host parses it once, not each time.
    shell_prelude: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def rollout_options(host_count: int, **kw: object) -> TransportOptions:
    """Options for a rollout over ``host_count`` hosts: the monitors keep every targeted
    host's connection open for the whole rollout, so the connection cap must hold them
    all (plus a few for preflight and retries), never less than the default."""
    options = TransportOptions(**kw)  # type: ignore[arg-type]
    options.max_connections = max(options.max_connections, host_count + 8)
    return options


@runtime_checkable
class Session(Protocol):
    """Runs commands one after another in one shell kept open on a connection (the
    monitor's polls: no channel to open per command). :meth:`run` keeps
    :meth:`Connection.run`'s contract; :meth:`close` ends the shell."""

    async def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
        alone: str | None = None,
    ) -> RunResult:
        """Run ``command`` in the kept shell (POSIX ``/bin/sh``). When it cannot go
        there (the shell is busy, or takes one line only) it runs on an exec of its
        own, under the login shell: ``alone``, when given, is what runs then (the same
        work written for any login shell), else ``command``."""
        ...

    def defines(self, name: str) -> bool:
        """Whether the shell has shell function ``name`` from its start
        (:attr:`TransportOptions.shell_prelude`)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Connection(Protocol):
    """An open connection to one host; many commands may run on it at once."""

    host: Host

    @property
    def chains_commands(self) -> bool:
        """Whether commands run in a POSIX shell, so that ``a && b || c; d`` chains them
        (the monitor then polls several signals in one command)."""
        ...

    async def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
    ) -> RunResult: ...

    def stream(self, command: str) -> AsyncGenerator[str, None]:
        """Follow a long-running command's stdout line by line (log tails).

        The remote process is stopped when the generator is closed (``aclose()``) or
        its task cancelled.
        """
        ...

    def persistent_shell(self) -> Session | None:
        """A new shell kept open for many short commands, or None where the transport
        offers none (then each command is a :meth:`run` of its own)."""
        ...

    async def exchange(self, target: str, request: bytes, *, timeout: float) -> bytes:
        """Send ``request`` to a socket this host reaches (an absolute path: a unix
        socket on the host; ``HOST:PORT``: TCP from the host) and return all it answers
        until it closes (HAProxy's runtime API; console/transport/sockets.py). Raises
        :class:`TransportError` when the socket cannot be reached, does not answer
        within ``timeout`` seconds, or the transport forwards no sockets (fake)."""
        ...

    async def close(self) -> None:
        """Close the connection: its commands raise :class:`HostUnreachable` from then on;
        ``Transport.connect`` opens a new one."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Opens connections to hosts; owns the caps on open connections and handshakes."""

    async def connect(self, host: Host) -> Connection:
        """The host's open connection, reused by every command of the host; raises
        :class:`TransportError` (:class:`HostUnreachable`, :class:`HostKeyError`)."""
        ...

    @property
    def open_connections(self) -> int:
        """Connections open now (each holds a slot under ``max_connections``)."""
        ...

    @property
    def accepted_keys(self) -> Sequence[tuple[str, str]]:
        """Host keys trusted on first use, as (host, fingerprint), for the journal;
        empty for a transport without host keys."""
        ...

    async def close_host(self, name: str) -> None:
        """Close one host's connection for good (its Connection refuses commands)."""
        ...

    async def close(self) -> None:
        """Close every connection; ``connect`` raises :class:`TransportError` after."""
        ...
