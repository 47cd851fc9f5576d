"""The attach server: lets consoles in other terminals watch and drive a rollout.

It runs inside the process that owns the rollout, next to the engine. It follows the
engine's bus from before the first event, keeping every durable event (already
encoded: the same bytes are replayed to each late attacher) and a ring of recent
ephemeral ones (logs, vitals, error rates), so a console that attaches mid-rollout
first folds the whole state, then follows the live stream with no gap and no
duplicate: the snapshot and the client's bus subscription are taken in one
synchronous step of the event loop.

Every client is bounded: its own bus subscription (ephemeral events dropped past
``client_maxsize``, disconnected past ``client_hard_limit``) and a send timeout, so a
stuck console can neither stall the engine nor grow memory. Commands from clients go
to ``engine.execute`` as sent, except who sent them: the client names its operator (a
label, kept), and the server stamps the Unix user the kernel says is at the other end
of the socket (SO_PEERCRED; LOCAL_PEERCRED on macOS), so the journal records who
connected, not only what they claimed. A client that asked to be read-only is refused
on this side, not only in its UI.

The socket is created without a window in which anyone else could connect: bound in a
fresh 0700 directory, chmod'ed (0600, or 0660 and chgrp'ed to a named group),
hard-linked to ``<state_dir>/<rollout_id>.sock`` (never replacing a live one), and only
then listened on. It is removed when the rollout ends or the server closes. Sharing
with a group needs the group to reach it: the state directory may be 0750 (group
read and search, never group write: see ``console.core.safe_files``), and a
platform without peer credentials refuses ``group`` (it could not say who sent what).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import os
import socket
import tempfile
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.attach.protocol import (
    HELLO_TIMEOUT,
    MAX_CLIENT_LINE,
    PEER_CREDENTIALS,
    VERSION,
    ProtocolError,
    addressable,
    check_hello,
    encode,
    peer_uid,
    read_message,
    socket_alive,
    socket_path_for,
)
from console.core import events as ev
from console.core.bus import Subscription
from console.core.commands import Command, unix_user
from console.core.errors import RolldeckError
from console.core.events import Event

if TYPE_CHECKING:
    from console.engine import Engine

EPHEMERAL_KEPT = 2_000  # recent logs/vitals/rates replayed to a late attacher
CLIENT_MAXSIZE = 5_000  # per client: ephemeral events dropped past this backlog
CLIENT_HARD_LIMIT = 50_000  # per client: disconnected past this backlog
SEND_TIMEOUT = 10.0  # a client that accepts nothing for this long is disconnected
STATS_EVERY = 1.0
SHUTDOWN_GRACE = 5.0  # at the end, time for clients to receive the last events
ENCODED_KEPT = 20_000  # recently encoded events, shared by every console's sender


class AttachError(RolldeckError):
    """The socket cannot be created (a live one is in the way, bad group, ...)."""


class _Client:
    def __init__(
        self, writer: asyncio.StreamWriter, read_only: bool, sub: Subscription, user: str
    ) -> None:
        self.writer = writer
        self.read_only = read_only
        self.sub = sub
        self.user = user  # the Unix user at the other end, per the kernel
        self.uid = os.geteuid()  # and their uid (set by the session from the socket)


class AttachServer:
    """Serves one engine's rollout on ``socket_path``; create it before ``engine.run()``
    and call :meth:`start` on the running loop (:func:`serve_engine` does both)."""

    def __init__(
        self,
        engine: Engine,
        socket_path: str | os.PathLike[str],
        *,
        group: str | None = None,
        client_maxsize: int = CLIENT_MAXSIZE,
        client_hard_limit: int = CLIENT_HARD_LIMIT,
        stats_every: float = STATS_EVERY,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        if engine.view.seq:
            raise AttachError("the attach server must start before the rollout's first event")
        self.engine = engine
        self.path = Path(socket_path)
        self.group = group
        self.client_maxsize = client_maxsize
        self.client_hard_limit = client_hard_limit
        self.stats_every = stats_every
        self.send_timeout = send_timeout
        # Drained on every loop turn; only the engine's pace fills it.
        self._own = engine.bus.subscribe(maxsize=100_000, hard_limit=1_000_000)
        self._durable: list[bytes] = []  # every durable event so far, encoded
        self._ephemeral: deque[tuple[int, bytes]] = deque(maxlen=EPHEMERAL_KEPT)
        self._clients: set[_Client] = set()
        self._encoded: OrderedDict[int, tuple[Event, bytes]] = OrderedDict()
        self._server: asyncio.Server | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._client_tasks: set[asyncio.Task[None]] = set()
        self._ino: int | None = None
        self._closed = asyncio.Event()
        self._close_task: asyncio.Future[None] | None = None
        self._sock: socket.socket | None = None
        self.finished = False  # the rollout ended (the bus closed)
        self.lost_history = False  # the follower overflowed: snapshots are incomplete
        self.clients_served = 0
        self.disconnected_slow = 0

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Create the socket and listen (synchronously: it accepts when this returns),
        and start serving on the running loop."""
        sock = self._sock = self._bind()
        loop = asyncio.get_running_loop()
        self._follow_task = loop.create_task(self._follow(), name="attach:follow")
        self._serve_task = loop.create_task(self._serve(sock), name="attach:serve")

    async def _serve(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(
            self._on_client, sock=sock, limit=MAX_CLIENT_LINE
        )

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, let clients receive what they hold (up to ``grace``
        seconds), hang up on them and remove the socket. Safe to call twice, and
        from several tasks at once (they share one shutdown)."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown(grace))
        await asyncio.shield(self._close_task)

    async def _shutdown(self, grace: float) -> None:
        self._unlink()
        if self._server is not None:
            self._server.close()
        else:
            if self._serve_task is not None:
                self._serve_task.cancel()
            if self._sock is not None:
                self._sock.close()
        for client in tuple(self._clients):
            client.sub.close()  # senders flush what is pending, say bye, hang up
        if self._client_tasks:
            _, pending = await asyncio.wait(tuple(self._client_tasks), timeout=grace)
            if pending:  # stuck clients: hang up on them; their sessions end on the error
                for client in tuple(self._clients):
                    client.writer.transport.abort()
                _, pending = await asyncio.wait(pending, timeout=1.0)
            for task in pending:
                task.cancel()
        if self._follow_task is not None:
            self._follow_task.cancel()  # it may be the caller: shielded, we go on
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow_task
        self._own.close()
        self._closed.set()

    def _bind(self) -> socket.socket:
        final = self.path
        gid: int | None = None
        if self.group is not None:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                raise AttachError(f"no group named {self.group!r}") from None
            if not PEER_CREDENTIALS:
                raise AttachError(
                    "--attach-group needs the kernel to say who connects (SO_PEERCRED or "
                    "LOCAL_PEERCRED), which this platform does not: a group member's "
                    "commands could not be journaled under their Unix name"
                )
        tmpdir = Path(tempfile.mkdtemp(prefix=".attach-", dir=final.parent))  # 0700
        tmp = tmpdir / "s"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with addressable(tmp) as name:
                sock.bind(name)
            os.chmod(tmp, 0o600 if gid is None else 0o660)
            if gid is not None:
                os.chown(tmp, -1, gid)
            sock.listen(64)  # before it is published: a refused connect means a dead owner
            sock.setblocking(False)
            self._link(tmp, final)
            self._ino = os.stat(final).st_ino
        except BaseException:
            sock.close()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmpdir.rmdir()
        return sock

    @staticmethod
    def _link(tmp: Path, final: Path) -> None:
        """Publish the socket under its name, replacing only a dead one."""
        for _ in range(2):
            try:
                os.link(tmp, final)
                return
            except FileExistsError:
                if socket_alive(final):
                    raise AttachError(f"{final} is in use by a live rollout") from None
                with contextlib.suppress(FileNotFoundError):
                    final.unlink()  # left by a dead owner
        raise AttachError(f"cannot create {final}: contended")

    def _unlink(self) -> None:
        """Remove our socket file (and only ours: the inode must match)."""
        if self._ino is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._ino:
                self.path.unlink()
        self._ino = None

    # -- following the engine ---------------------------------------------------------

    async def _follow(self) -> None:
        async for batch in self._own.batches():
            self._record(batch)
        if self._own.overflowed:
            self.lost_history = True
        self.finished = True
        await self.close()

    def _sync(self) -> None:
        """Take in whatever the engine published since the follower last ran."""
        batch = self._own.drain()
        if batch:
            self._record(batch)

    def _line(self, event: Event) -> bytes:
        """The event's wire line, encoded once however many consoles receive it."""
        hit = self._encoded.get(id(event))
        if hit is not None and hit[0] is event:
            return hit[1]
        line = encode({"type": "event", "event": ev.to_json(event)})
        self._encoded[id(event)] = (event, line)  # holding the event pins its id
        if len(self._encoded) > ENCODED_KEPT:
            self._encoded.popitem(last=False)
        return line

    def _record(self, batch: list[Event]) -> None:
        for event in batch:
            line = self._line(event)
            if event.durable:
                self._durable.append(line)
            else:
                self._ephemeral.append((len(self._durable), line))

    def _snapshot(self) -> list[bytes]:
        """Every durable event and the recent ephemeral ones, in the order published."""
        out: list[bytes] = []
        eph = iter(self._ephemeral)
        nxt = next(eph, None)
        for i, line in enumerate(self._durable):
            while nxt is not None and nxt[0] <= i:
                out.append(nxt[1])
                nxt = next(eph, None)
            out.append(line)
        while nxt is not None:
            out.append(nxt[1])
            nxt = next(eph, None)
        return out

    def summary(self) -> dict[str, Any]:
        """What ``rolldeck ps`` shows for this rollout."""
        v = self.engine.view
        return {
            "rollout_id": self.engine.rollout_id,
            "service": v.service,
            "version": v.version,
            "operator": v.operator,
            "state": v.state.value,
            "outcome": v.outcome.value if v.outcome else None,
            "started": v.started,
            "batch": v.batch_index + 1 if v.batch_index is not None else None,
            "batches": len(v.batches),
            "counts": {k: n for k, n in v.counts().items() if n},
            "pid": os.getpid(),
            "clients": len(self._clients),
        }

    # -- one client ----------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._client_tasks.add(task)
        try:
            await self._session(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped reading
        finally:
            self._client_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _send(self, writer: asyncio.StreamWriter, *lines: bytes) -> None:
        writer.writelines(lines)
        await asyncio.wait_for(writer.drain(), self.send_timeout)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                hello = check_hello(await read_message(reader))
        except (ProtocolError, TimeoutError) as exc:
            msg = "no hello" if isinstance(exc, TimeoutError) else str(exc)
            await self._send(writer, encode({"type": "error", "message": msg}))
            return
        read_only = bool(hello.get("read_only"))
        user = _peer_user(writer)
        reply = {
            "type": "hello",
            "version": VERSION,
            "rollout_id": self.engine.rollout_id,
            "read_only": read_only,
            "pid": os.getpid(),
            "user": user,
            "summary": self.summary(),
        }
        if hello.get("mode") == "probe":
            await self._send(writer, encode(reply), encode({"type": "bye", "reason": "probe"}))
            return
        # One synchronous step: the snapshot ends exactly where the subscription starts.
        self._sync()
        snapshot = self._snapshot()
        sub = self.engine.bus.subscribe(
            maxsize=self.client_maxsize, hard_limit=self.client_hard_limit
        )
        if self._own.closed or self._close_task is not None:
            sub.close()  # the rollout is over: the snapshot is all there is
        client = _Client(writer, read_only, sub, user)
        client.uid = _peer_uid(writer)
        self._clients.add(client)
        self.clients_served += 1
        try:
            await self._send(
                writer,
                encode(reply),
                encode({"type": "snapshot", "count": len(snapshot)}),
                *snapshot,
                encode({"type": "snapshot_end"}),
            )
            sender = asyncio.create_task(self._sender(client))
            receiver = asyncio.create_task(self._receiver(client, reader))
            try:
                done, _ = await asyncio.wait((sender, receiver), return_when="FIRST_COMPLETED")
            finally:
                for task in (sender, receiver):
                    task.cancel()
                await asyncio.gather(sender, receiver, return_exceptions=True)
            for task in done:
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    raise failure
        finally:
            sub.close()
            self._clients.discard(client)

    async def _sender(self, client: _Client) -> None:
        sub = client.sub
        writer = client.writer
        while True:
            try:
                await asyncio.wait_for(sub.wait(), self.stats_every)
            except TimeoutError:
                await self._send(writer, encode(self._stats(sub)))
                continue
            batch = sub.drain()
            if batch:
                lines = [self._line(e) for e in batch]
                try:
                    await self._send(writer, *lines)
                except TimeoutError:
                    self.disconnected_slow += 1
                    raise
            elif sub.closed:
                if sub.overflowed:
                    self.disconnected_slow += 1
                    reason = "overflow"
                else:
                    reason = "finished" if self.finished else "shutdown"
                await self._send(writer, encode(self._stats(sub)))
                await self._send(writer, encode({"type": "bye", "reason": reason}))
                return

    def _stats(self, sub: Subscription) -> dict[str, Any]:
        try:
            conns = int(self.engine.open_connections())
        except Exception:  # a transport that cannot count must not end the session
            conns = 0
        return {
            "type": "stats",
            "open_connections": conns,
            "clients": len(self._clients),
            "dropped": sub.dropped,
        }

    async def _receiver(self, client: _Client, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                msg = await read_message(reader)
            except ProtocolError as exc:
                client.writer.write(encode({"type": "error", "message": str(exc)}))
                return
            if msg is None:
                return  # the console detached
            if msg["type"] != "command":
                client.writer.write(
                    encode({"type": "error", "message": f"unexpected {msg['type']!r}"})
                )
                continue
            self._command(client, msg.get("command"))

    def _command(self, client: _Client, data: object) -> None:
        name = data.get("name") if isinstance(data, dict) else None
        if client.read_only:
            why = "this console attached read-only: commands are refused"
            client.writer.write(encode({"type": "refused", "command": name, "message": why}))
            return
        try:
            if not isinstance(data, dict):
                raise ValueError("a command must be an object")
            command = Command.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            client.writer.write(
                encode({"type": "refused", "command": name, "message": f"bad command: {exc}"})
            )
            return
        if self.engine.finished:
            why = "the rollout is over"
            client.writer.write(encode({"type": "refused", "command": name, "message": why}))
            return
        # Who sent it is the kernel's word, whatever the client wrote; its operator
        # name stays beside it as a label.
        self.engine.execute(dataclasses.replace(command, user=client.user, uid=client.uid))


def _peer_uid(writer: asyncio.StreamWriter) -> int:
    """The uid at the other end of the socket (ours without peer credentials: only
    this process's user, or root, could have connected then)."""
    sock = writer.get_extra_info("socket")
    uid = peer_uid(sock) if sock is not None else None
    return os.geteuid() if uid is None else uid


def _peer_user(writer: asyncio.StreamWriter) -> str:
    """The Unix user at the other end of the socket. Without peer credentials (a
    platform that has none: the group feature is refused there) the socket is 0600,
    so only this process's user, or root, could have connected: named as ours."""
    sock = writer.get_extra_info("socket")
    uid = peer_uid(sock) if sock is not None else None
    return unix_user(uid)


def serve_engine(
    engine: Engine, state_dir: str | os.PathLike[str], *, group: str | None = None
) -> AttachServer:
    """Start serving ``engine`` on ``<state_dir>/<rollout_id>.sock``; call on the
    running loop before ``engine.run()``. The server closes itself when the rollout
    ends; ``await server.close()`` on every other exit path."""
    server = AttachServer(engine, socket_path_for(state_dir, engine.rollout_id), group=group)
    server.start()
    return server
