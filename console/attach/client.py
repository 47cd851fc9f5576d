"""The attach client: a rollout owned by another process, seen as a local event stream.

:func:`connect` does the hello and reads the snapshot, so the caller holds the folded
state before it draws anything; :meth:`RemoteRollout.start` then feeds the live
stream into a local :class:`~console.core.bus.EventBus`, and :class:`RemoteController`
sends commands back. The console cannot tell this apart from an in-process engine:
it gets a Subscription and a Controller either way.

Refusals by the owner (a read-only console, a malformed command, a finished rollout)
come back as a local :class:`~console.core.events.Notice`, so they show up where the
operator is looking; they are never journaled, since the owner refused them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from console.attach.protocol import (
    MAX_LINE,
    VERSION,
    ProtocolError,
    addressable,
    check_hello,
    encode,
    read_message,
)
from console.core import events as ev
from console.core.bus import EventBus, Subscription
from console.core.commands import Command
from console.core.events import Event
from console.core.state import RolloutView
from console.core.text import printable

CONNECT_TIMEOUT = 5.0
SNAPSHOT_TIMEOUT = 60.0  # a long rollout's journal can take a while to replay
# The owner sends at least a stats line every second (server.STATS_EVERY): this long
# without a byte means it froze (SIGSTOP, a stuck machine) or the link is gone.
SILENCE_TIMEOUT = 15.0


class RemoteController:
    """console.core.commands.Controller over the socket: ``execute`` never blocks."""

    def __init__(self, remote: RemoteRollout, operator: str | None = None) -> None:
        self._remote = remote
        self.operator = operator  # when set, commands are sent under this name

    def execute(self, command: Command) -> None:
        if self.operator and command.operator != self.operator:
            command = dataclasses.replace(command, operator=self.operator)
        self._remote.send(command)

    def open_connections(self) -> int:
        return self._remote.open_connections


class RemoteRollout:
    """One attached session. Build it with :func:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: dict[str, Any],
        snapshot: list[Event],
        *,
        maxsize: int = 20_000,
        hard_limit: int = 200_000,
        silence: float = SILENCE_TIMEOUT,
    ) -> None:
        self._reader = reader
        self.silence = silence
        self._writer = writer
        self.hello = hello
        self.rollout_id = str(hello.get("rollout_id") or "")
        self.read_only = bool(hello.get("read_only"))
        self.snapshot = snapshot
        self.bus = EventBus()
        self.subscription: Subscription = self.bus.subscribe(maxsize, hard_limit)
        self.controller = RemoteController(self)
        self.open_connections = 0
        self.refusals: list[str] = []
        self.bye: str | None = None  # why the server hung up ('finished', 'overflow'...)
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._detached = False  # close() was called: hanging up is ours, not news

    def view(self) -> RolloutView:
        """A fresh fold of the snapshot: the state at the moment of attaching."""
        return _fold(self.snapshot)

    # -- the stream ----------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start feeding live events into :attr:`bus` (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._read(), name="attach:read")
        return self._task

    async def wait(self) -> None:
        """Until the server hangs up (the rollout ended, or the connection dropped)."""
        await self.start()

    async def _read(self) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self.silence):
                        msg = await read_message(self._reader)
                except ProtocolError as exc:
                    self.error = str(exc)
                    return
                except TimeoutError:
                    self.error = (
                        f"its owner did not answer for {self.silence:g} s "
                        "(frozen, or its machine is unreachable)"
                    )
                    return
                if msg is None:
                    return
                self._handle(msg)
                if self.bye is not None:
                    return
        finally:
            if self.bye != "finished" and not self._detached:
                why = self.error or {
                    None: "the connection dropped (did its owner die?)",
                    "overflow": "this console fell too far behind and was dropped",
                    "shutdown": "its owner stopped serving",
                }.get(self.bye, self.bye or "")
                self.bus.publish(ev.Notice(message=f"lost the rollout: {why}"))
            self.bus.close()
            self._writer.close()

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "event":
            data = msg.get("event")
            if isinstance(data, dict) and data.get("kind") in ev.EVENT_TYPES:
                self.bus.publish(ev.from_json(data))
        elif kind == "stats":
            self.open_connections = int(msg.get("open_connections") or 0)
        elif kind == "refused":
            text = f"refused by the rollout's owner: {msg.get('command')}: {msg.get('message')}"
            self.refusals.append(printable(text))  # printed as is by `attach --send`
            self.bus.publish(ev.Notice(message=text))
        elif kind == "error":
            self.error = str(msg.get("message") or "error")
            self.bus.publish(ev.Notice(message=f"attach error: {self.error}"))
        elif kind == "bye":
            self.bye = str(msg.get("reason") or "")

    # -- commands ------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        """Send a command to the owner; the result arrives as events (or a refusal)."""
        if self._writer.is_closing():
            text = f"not sent: {command.name}: the connection to the rollout is closed"
            self.refusals.append(text)
            self.bus.publish(ev.Notice(message=text))
            return
        self._writer.write(encode({"type": "command", "command": command.to_json()}))

    async def close(self) -> None:
        """Detach (the rollout goes on)."""
        self._detached = True
        self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.bus.close()


def _fold(events: list[Event]) -> RolloutView:
    view = RolloutView()
    for e in events:
        view.apply(e)
    return view


async def connect(
    socket_path: str | os.PathLike[str],
    read_only: bool = False,
    *,
    probe: bool = False,
    silence: float = SILENCE_TIMEOUT,
) -> RemoteRollout:
    """Attach to the rollout served on ``socket_path``: hello, then the snapshot.
    Raises ProtocolError (or OSError) when nothing sane answers."""
    path = Path(socket_path)
    async with asyncio.timeout(CONNECT_TIMEOUT):
        with addressable(path) as name:
            reader, writer = await asyncio.open_unix_connection(name, limit=MAX_LINE)
    try:
        mode = "probe" if probe else "attach"
        writer.write(
            encode({"type": "hello", "version": VERSION, "read_only": read_only, "mode": mode})
        )
        async with asyncio.timeout(CONNECT_TIMEOUT):
            hello = check_hello(await read_message(reader))
        snapshot: list[Event] = []
        if not probe:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                snapshot = await _read_snapshot(reader)
    except BaseException:
        writer.close()
        raise
    remote = RemoteRollout(reader, writer, hello, snapshot, silence=silence)
    if probe:
        writer.close()
    return remote


async def _read_snapshot(reader: asyncio.StreamReader) -> list[Event]:
    head = await read_message(reader)
    if head is None or head.get("type") != "snapshot":
        raise ProtocolError("expected the snapshot")
    out: list[Event] = []
    while True:
        msg = await read_message(reader)
        if msg is None:
            raise ProtocolError("the server hung up during the snapshot")
        if msg["type"] == "snapshot_end":
            return out
        data = msg.get("event")
        if msg["type"] == "event" and isinstance(data, dict) and data.get("kind") in ev.EVENT_TYPES:
            out.append(ev.from_json(data))


async def probe(socket_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The server's hello (with its ``summary``) without attaching: for ``ps``."""
    remote = await connect(socket_path, read_only=True, probe=True)
    return remote.hello
