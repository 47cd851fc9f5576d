"""An in-memory transport for fast, deterministic engine tests.

Commands are answered by scripted :class:`Reply` values: per host or for every host,
matched by regular expression (the latest matching rule wins), else by a handler
function that can keep state (a host's active version, say). Every command run is
recorded per host, in order, with monotonic timestamps and how it ended, and every
cancellation or timeout is recorded too, so a test can assert "this never ran on X"
or "the hung step was stopped".

Timeouts and cancellation behave as the real transports promise: on expiry the
"remote process" is stopped and ``status='timeout'`` is returned; on cancellation the
stop is recorded and ``CancelledError`` propagates. Unreachable hosts refuse
``connect``; a host scripted to die at a command raises :class:`HostUnreachable` there
and refuses every later command and connection.

tests/test_transport_contract.py runs one set of tests over this fake and the two
real transports, so that what the engine's tests learn from it holds in production.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

from console.transport.base import (
    HostKeyError,
    HostUnreachable,
    LineCallback,
    RunResult,
    Session,
    TransportError,
    TransportOptions,
)
from console.transport.output import LineSplitter, OutputSink
from inventory.model import Host


@dataclass(frozen=True, slots=True)
class Reply:
    """What a scripted command does: wait ``delay`` seconds while printing ``lines``
    (spread evenly over the delay), then exit with ``exit_code`` (or die of
    ``signal``, e.g. ``"KILL"``); ``hang`` never exits. ``wait``: the command first
    waits (under its timeout) until this event is set; a test holds a host mid-step
    until what it races against has happened, instead of betting on a delay."""

    exit_code: int = 0
    lines: Sequence[str] = ()
    stderr: Sequence[str] = ()
    delay: float = 0.0
    hang: bool = False
    signal: str | None = None
    wait: asyncio.Event | None = None


Handler = Callable[[str, str], Reply | None]  # (host name, command) -> reply or fall through


@dataclass(slots=True)
class CommandRecord:
    """One command as the fake host saw it. ``status``: 'running', 'ok', 'failed',
    'timeout', 'cancelled', 'unreachable'."""

    host: str
    command: str
    started: float
    finished: float | None = None
    status: str = "running"
    exit_code: int | None = None


@dataclass(slots=True)
class _Rule:
    pattern: re.Pattern[str]
    reply: Reply
    hosts: frozenset[str] | None


@dataclass(slots=True)
class _HostScript:
    unreachable: str | None = None  # reason connect() fails
    bad_key: bool = False
    die_at: re.Pattern[str] | None = None
    dead: bool = False
    open: int = 0
    connects: int = 0


class FakeConnection:
    """One fake host's connection, held to the real ones' contract (base.py) by
    tests/test_transport_contract.py: output goes through the same line splitter and
    tails, a closed connection refuses commands, a stop is recorded."""

    # The fake matches whole commands against rules, so it cannot run the monitor's
    # chained polls: like a host with `rolldeck_shell: none`, it has no shell.
    chains_commands = False

    def __init__(self, transport: FakeTransport, host: Host) -> None:
        self.host = host
        self.closed = False
        self._t = transport

    def persistent_shell(self) -> Session | None:
        """None: no shell to keep open (see :attr:`chains_commands`)."""
        return None

    def _begin(self, command: str) -> tuple[CommandRecord, Reply]:
        """Record ``command`` and find its reply; a closed connection or a dead host
        raises :class:`HostUnreachable` as the real transports do."""
        t = self._t
        rec = CommandRecord(self.host.name, command, time.monotonic())
        t.records.append(rec)
        script = t._script(self.host.name)
        if self.closed or script.dead:
            rec.status = "unreachable"
            rec.finished = time.monotonic()
            why = "it was closed" if self.closed else "connection lost"
            raise HostUnreachable(self.host.name, f"cannot start a command: {why}")
        if script.die_at is not None and script.die_at.search(command):
            script.dead = True
            rec.status = "unreachable"
            rec.finished = time.monotonic()
            raise HostUnreachable(self.host.name, "connection lost (host died)")
        return rec, t._reply(self.host.name, command)

    def _stopped(self, rec: CommandRecord, why: str) -> None:
        """The fake's model of stopping the remote process."""
        rec.status = "timeout" if why == "timeout" else "cancelled"
        rec.finished = time.monotonic()
        self._t.cancellations.append((self.host.name, rec.command, why))

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        rec, reply = self._begin(command)
        sink = OutputSink(self._t.options.tail_lines, on_line)

        async def play() -> None:
            if reply.wait is not None:
                await reply.wait.wait()
            async for line in _play(reply.lines, reply.delay):
                sink.emit("stdout", line)
            for line in _lines(reply.stderr):
                sink.emit("stderr", line)
            if reply.hang:
                await asyncio.Event().wait()

        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.sleep(0)  # a real round trip always yields to the loop
                await play()
        except TimeoutError:
            self._stopped(rec, "timeout")
            # Both real transports stop a timed-out command with TERM first.
            return sink.result("timeout", None, time.monotonic() - start, "TERM")
        except asyncio.CancelledError:
            self._stopped(rec, "cancelled")
            raise
        except BaseException:  # on_line raised: the real transports stop the command
            self._stopped(rec, "error")
            raise
        rec.finished = time.monotonic()
        if reply.signal is not None:
            rec.status = "failed"
            return sink.result("failed", None, rec.finished - start, reply.signal)
        rec.exit_code = reply.exit_code
        rec.status = "ok" if reply.exit_code == 0 else "failed"
        return sink.result(rec.status, reply.exit_code, rec.finished - start)

    async def stream(self, command: str) -> AsyncGenerator[str, None]:
        """Yields the reply's stdout lines, then follows forever if it hangs."""
        rec, reply = self._begin(command)
        try:
            if reply.wait is not None:
                await reply.wait.wait()
            async for line in _play(reply.lines, reply.delay):
                yield line
            if reply.hang:
                await asyncio.Event().wait()
            rec.exit_code = None if reply.signal else reply.exit_code
            rec.status = "ok" if rec.exit_code == 0 else "failed"
        except (asyncio.CancelledError, GeneratorExit):
            self._stopped(rec, "cancelled")
            raise
        finally:
            rec.finished = time.monotonic()

    async def exchange(self, target: str, request: bytes, *, timeout: float) -> bytes:
        """Refused: a fake host has no sockets to forward to."""
        raise TransportError(
            self.host.name, f"cannot reach {target}: the fake transport forwards no sockets"
        )

    async def close(self) -> None:
        await self._t.close_host(self.host.name)


async def _play(lines: Sequence[str], delay: float) -> AsyncGenerator[str, None]:
    """``lines`` as a command would print them: spread evenly over ``delay``."""
    if not lines:
        if delay:
            await asyncio.sleep(delay)
        return
    pause = delay / len(lines)
    for line in lines:
        if pause:
            await asyncio.sleep(pause)
        for piece in _lines((line,)):
            yield piece


def _lines(lines: Sequence[str]) -> list[str]:
    """Scripted lines as the real transports deliver them: through the same splitter
    (an embedded newline makes two lines, a line over MAX_LINE comes in pieces)."""
    splitter = LineSplitter()
    out: list[str] = []
    for line in lines:
        out += splitter.feed(line.encode() + b"\n")
    return out


class FakeTransport:
    """Scripted hosts in memory. Configure with :meth:`on`, :meth:`handler`,
    :meth:`unreachable`, :meth:`die_at`; inspect :attr:`records`, :meth:`commands`,
    :attr:`cancellations`."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self.records: list[CommandRecord] = []
        self.cancellations: list[tuple[str, str, str]] = []  # (host, command, why)
        self.accepted_keys: list[tuple[str, str]] = []
        self._rules: list[_Rule] = []
        self._handlers: list[Handler] = []
        self._hosts: dict[str, _HostScript] = {}
        self._conns: dict[str, FakeConnection] = {}
        self._closed = False
        self.connect_delay = 0.0

    # -- scripting ----------------------------------------------------------------

    def on(
        self,
        pattern: str,
        reply: Reply | None = None,
        *,
        hosts: Sequence[str] | None = None,
        **kw: object,
    ) -> None:
        """Answer commands matching ``pattern`` (re.search) with ``reply`` (or
        ``Reply(**kw)``), for ``hosts`` or every host. Later rules win."""
        rep = reply if reply is not None else Reply(**kw)  # type: ignore[arg-type]
        self._rules.append(
            _Rule(re.compile(pattern), rep, frozenset(hosts) if hosts is not None else None)
        )

    def handler(self, fn: Handler) -> None:
        """A stateful answerer, consulted when no rule matches (rules inject faults over
        it); return None to fall through."""
        self._handlers.append(fn)

    def unreachable(self, host: str, reason: str = "connection refused") -> None:
        self._script(host).unreachable = reason

    def reachable(self, host: str) -> None:
        s = self._script(host)
        s.unreachable = None
        s.dead = False

    def bad_host_key(self, host: str) -> None:
        self._script(host).bad_key = True

    def die_at(self, host: str, pattern: str) -> None:
        """The host goes down when a command matching ``pattern`` starts."""
        self._script(host).die_at = re.compile(pattern)

    # -- inspection ---------------------------------------------------------------

    def commands(self, host: str) -> list[str]:
        return [r.command for r in self.records if r.host == host]

    def ran(self, host: str, pattern: str) -> bool:
        rx = re.compile(pattern)
        return any(rx.search(c) for c in self.commands(host))

    def running(self) -> list[CommandRecord]:
        return [r for r in self.records if r.status == "running"]

    def connects(self, host: str) -> int:
        return self._script(host).connects

    # -- Transport protocol -------------------------------------------------------

    async def connect(self, host: Host) -> FakeConnection:
        if self._closed:
            raise TransportError(host.name, "the transport is closed")
        s = self._script(host.name)
        if self.connect_delay:
            await asyncio.sleep(self.connect_delay)
        if s.bad_key:
            raise HostKeyError(host.name, "host key changed (fake)")
        if s.unreachable is not None or s.dead:
            raise HostUnreachable(host.name, s.unreachable or "connection lost")
        conn = self._conns.get(host.name)
        if conn is None or conn.closed:
            conn = self._conns[host.name] = FakeConnection(self, host)
            s.open += 1
            s.connects += 1
        return conn

    @property
    def open_connections(self) -> int:
        return sum(s.open for s in self._hosts.values())

    async def close_host(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        if conn is not None and not conn.closed:
            conn.closed = True
            self._script(name).open -= 1

    async def close(self) -> None:
        self._closed = True
        for name in list(self._conns):
            await self.close_host(name)

    # -- internals ----------------------------------------------------------------

    def _script(self, host: str) -> _HostScript:
        s = self._hosts.get(host)
        if s is None:
            s = self._hosts[host] = _HostScript()
        return s

    def _reply(self, host: str, command: str) -> Reply:
        for rule in reversed(self._rules):
            if (rule.hosts is None or host in rule.hosts) and rule.pattern.search(command):
                return rule.reply
        for fn in reversed(self._handlers):
            rep = fn(host, command)
            if rep is not None:
                return rep
        return Reply()


@dataclass(slots=True)
class VersionedFleet:
    """A stateful handler for the common deploy shape: ``install V`` / ``activate V``
    set a host's version, ``version`` prints it. Useful for rollback assertions."""

    versions: dict[str, str] = field(default_factory=dict)
    default: str = "1.0"

    def __call__(self, host: str, command: str) -> Reply | None:
        words = command.split()
        if not words:
            return None
        if words[0] == "version":
            return Reply(lines=(self.versions.get(host, self.default),))
        if words[0] == "activate" and len(words) > 1:
            self.versions[host] = words[1].strip("'")
            return Reply()
        return None
