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
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from console.transport.base import (
    HostKeyError,
    HostUnreachable,
    LineCallback,
    RunResult,
    TransportOptions,
)
from inventory.model import Host


@dataclass(frozen=True, slots=True)
class Reply:
    """What a scripted command does: wait ``delay`` seconds while printing ``lines``
    (spread evenly over the delay), then exit with ``exit_code``; ``hang`` never exits."""

    exit_code: int = 0
    lines: Sequence[str] = ()
    stderr: Sequence[str] = ()
    delay: float = 0.0
    hang: bool = False


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
    def __init__(self, transport: FakeTransport, host: Host) -> None:
        self.host = host
        self._t = transport
        self._closed = False

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult:
        t = self._t
        rec = CommandRecord(self.host.name, command, time.monotonic())
        t.records.append(rec)
        script = t._script(self.host.name)
        if self._closed or script.dead:
            rec.status = "unreachable"
            rec.finished = time.monotonic()
            raise HostUnreachable(self.host.name, "connection lost")
        if script.die_at is not None and script.die_at.search(command):
            script.dead = True
            rec.status = "unreachable"
            rec.finished = time.monotonic()
            raise HostUnreachable(self.host.name, "connection lost (host died)")
        reply = t._reply(self.host.name, command)
        out: deque[str] = deque(maxlen=t.options.tail_lines)
        err: deque[str] = deque(maxlen=t.options.tail_lines)

        async def play() -> None:
            pause = reply.delay / max(1, len(reply.lines)) if reply.lines else 0.0
            if not reply.lines and reply.delay:
                await asyncio.sleep(reply.delay)
            for line in reply.lines:
                if pause:
                    await asyncio.sleep(pause)
                out.append(line)
                if on_line:
                    on_line("stdout", line)
            for line in reply.stderr:
                err.append(line)
                if on_line:
                    on_line("stderr", line)
            if reply.hang:
                await asyncio.Event().wait()

        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.sleep(0)  # a real round trip always yields to the loop
                await play()
        except TimeoutError:
            rec.status = "timeout"
            rec.finished = time.monotonic()
            t.cancellations.append((self.host.name, command, "timeout"))
            return RunResult("timeout", None, rec.finished - start, tuple(out), tuple(err))
        except asyncio.CancelledError:
            rec.status = "cancelled"
            rec.finished = time.monotonic()
            t.cancellations.append((self.host.name, command, "cancelled"))
            raise
        rec.finished = time.monotonic()
        rec.exit_code = reply.exit_code
        rec.status = "ok" if reply.exit_code == 0 else "failed"
        return RunResult(rec.status, reply.exit_code, rec.finished - start, tuple(out), tuple(err))

    async def stream(self, command: str) -> AsyncIterator[str]:
        """Yields the reply's lines, then follows forever if it hangs."""
        t = self._t
        rec = CommandRecord(self.host.name, command, time.monotonic())
        t.records.append(rec)
        reply = t._reply(self.host.name, command)
        try:
            for line in reply.lines:
                if reply.delay:
                    await asyncio.sleep(reply.delay / max(1, len(reply.lines)))
                yield line
            if reply.hang:
                await asyncio.Event().wait()
            rec.status = "ok"
        except (asyncio.CancelledError, GeneratorExit):
            rec.status = "cancelled"
            t.cancellations.append((self.host.name, command, "cancelled"))
            raise
        finally:
            rec.finished = time.monotonic()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._t._script(self.host.name).open -= 1


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
        s = self._script(host.name)
        if self.connect_delay:
            await asyncio.sleep(self.connect_delay)
        if s.bad_key:
            raise HostKeyError(host.name, "host key changed (fake)")
        if s.unreachable is not None or s.dead:
            raise HostUnreachable(host.name, s.unreachable or "connection lost")
        conn = self._conns.get(host.name)
        if conn is None or conn._closed:
            conn = self._conns[host.name] = FakeConnection(self, host)
            s.open += 1
            s.connects += 1
        return conn

    @property
    def open_connections(self) -> int:
        return sum(s.open for s in self._hosts.values())

    async def close(self) -> None:
        for conn in list(self._conns.values()):
            await conn.close()

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
