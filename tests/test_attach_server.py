"""Attach: several consoles on one running engine over the Unix socket.

Real engine (FakeTransport with slow steps), real socket, real client: snapshot then
live stream, a pause from one console seen by both, read-only refused on the owner's
side, a late attacher's fold equal to the engine's own view, mode 0600, and ``ps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from console.attach.client import RemoteRollout, connect, probe
from console.attach.protocol import ProtocolError, socket_path_for
from console.attach.server import AttachError, AttachServer, serve_engine
from console.cli import main as cli_main
from console.core import events as ev
from console.core.commands import Command
from console.core.events import Event, HostState, Outcome, RolloutState
from console.core.state import RolloutView
from console.transport.fake import Reply
from tests.test_engine_helpers import Run, journal_in, make_engine, spec_from
from tests.waiting import wait_until

SLOW = "batches: [1, 2, 3]\nmax_parallel: 3\n"


def slow_run(tmp: Path, rid: str = "shop-r1", n: int = 6, delay: float = 0.15) -> Run:
    run = make_engine(spec_from(SLOW), n, journal=journal_in(tmp, rid), rollout_id=rid)
    run.fake.on(r"^install", lines=["unpacking", "done"], delay=delay)
    return run


async def until(pred: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 (a predicate over several objects)
            await asyncio.sleep(0.01)


MOVING = frozenset(
    {HostState.PREFLIGHT, HostState.RUNNING, HostState.VERIFYING, HostState.ROLLING_BACK}
)


def parked(run: Run) -> bool:
    """The paused engine has nothing left to publish: no host task running and every
    host's last change published (none moving in the view), and the batch being
    dispatched either holds hosts that will not start until a resume or has ended
    with its ``BatchFinished`` published (then the strategy waits for the resume)."""
    engine = run.engine
    if not engine.control.paused:
        return False
    if any(r.task is not None and not r.task.done() for r in engine.recs.values()):
        return False
    view = engine.view
    if any(h.state in MOVING for h in view.hosts.values()):
        return False
    batches = engine.batches
    if batches.queue:  # hosts left that no one starts while paused
        return True
    return batches.queue is None and any(
        isinstance(e, ev.BatchFinished) and e.index == batches.index and not e.rollback
        for e in view.timeline
    )


class Watcher:
    """Collects a remote's live events."""

    def __init__(self, remote: RemoteRollout) -> None:
        self.remote = remote
        self.events: list[Event] = []
        remote.start()
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for batch in self.remote.subscription.batches():
            self.events.extend(batch)

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def projection(view: RolloutView) -> dict[str, Any]:
    return {
        "id": view.rollout_id,
        "state": view.state,
        "reason": view.state_reason,
        "batch": view.batch_index,
        "batches": view.batches,
        "outcome": view.outcome,
        "counts": view.counts(),
        "alerts": len(view.alerts),
        "hosts": {
            n: (h.state, h.step, h.detail, h.version, h.previous_version, h.changed, len(h.steps))
            for n, h in view.hosts.items()
        },
        "timeline": [ev.to_json(e) for e in view.timeline],
    }


async def test_two_consoles_pause_read_only_late_attach_and_ps(tmp_path: Path) -> None:
    run = slow_run(tmp_path)
    # batch 2 holds until alice's pause is in: it lands between batches 2 and 3, however
    # slow the socket round trips are
    paused = asyncio.Event()
    run.fake.on(r"^install", Reply(lines=["unpacking", "done"], wait=paused), hosts=["h02", "h03"])
    server = serve_engine(run.engine, tmp_path)
    sock = socket_path_for(tmp_path, "shop-r1")
    assert sock.exists()
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    engine_task = asyncio.create_task(run.engine.run())
    try:
        await until(lambda: run.engine.view.batch_index is not None)
        alice = Watcher(await connect(sock))
        bob = Watcher(await connect(sock, read_only=True))
        for w in (alice, bob):
            assert w.remote.rollout_id == "shop-r1"
            first = w.remote.snapshot[0]
            assert isinstance(first, ev.RolloutStarted) and first.rollout_id == "shop-r1"
            assert any(isinstance(e, ev.BatchStarted) for e in w.remote.snapshot)
        assert bob.remote.read_only and not alice.remote.read_only

        # live events reach both; alice pauses and both see it, with her name and reason
        await until(lambda: alice.of(ev.StepFinished) and bob.of(ev.StepFinished))
        alice.remote.controller.execute(Command("pause", operator="alice", reason="looks bad"))
        await until(lambda: run.engine.control.paused)
        paused.set()
        for w in (alice, bob):
            await until(lambda w=w: any(c.command == "pause" for c in w.of(ev.OperatorCommand)))
            cmd = next(c for c in w.of(ev.OperatorCommand) if c.command == "pause")
            assert (cmd.operator, cmd.reason, cmd.accepted) == ("alice", "looks bad", True)
            await until(
                lambda w=w: any(
                    s.state == RolloutState.PAUSED for s in w.of(ev.RolloutStateChanged)
                )
            )

        # bob is read-only: refused by the server, nothing reaches the engine
        bob.remote.controller.execute(Command("resume", operator="bob"))
        await until(lambda: bob.remote.refusals)
        assert "read-only" in bob.remote.refusals[0]
        await until(lambda: any(isinstance(n, ev.Notice) for n in bob.of(ev.Notice)))
        await wait_until(lambda: parked(run), what="the paused engine to have no host moving")
        assert run.engine.control.paused
        assert not any(
            isinstance(e, ev.OperatorCommand) and e.operator == "bob"
            for e in run.engine.view.timeline
        )

        # a late attacher folds exactly the engine's state
        carol = await connect(sock)
        assert projection(carol.view()) == projection(run.engine.view)
        assert carol.view().seq == run.engine.view.seq

        # ps sees it, with its state and owner
        out = io.StringIO()
        with redirect_stdout(out):
            code = await asyncio.to_thread(cli_main, ["ps", "--state-dir", str(tmp_path), "--json"])
        assert code == 0
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [r["rollout_id"] for r in rows] == ["shop-r1"]
        assert rows[0]["state"] == "paused" and rows[0]["operator"] == "tester"
        assert rows[0]["pid"] == os.getpid() and rows[0]["clients"] == 3

        # alice resumes; everyone follows to the end; the socket goes away
        alice.remote.controller.execute(Command("resume", operator="alice"))
        async with asyncio.timeout(20):
            outcome = await engine_task
        assert outcome == Outcome.SUCCEEDED
        carol_w = Watcher(carol)
        for w in (alice, bob, carol_w):
            async with asyncio.timeout(10):
                await w.remote.wait()
                await w.task
            assert w.remote.bye == "finished"
            assert isinstance(w.events[-1], ev.RolloutFinished)
        await until(lambda: not sock.exists())
        await server.wait_closed()
        final = alice.remote.view()
        for e in alice.events:
            final.apply(e)
        assert projection(final) == projection(run.engine.view)
    finally:
        engine_task.cancel()
        await server.close()


async def test_bad_hello_and_bad_commands_are_refused(tmp_path: Path) -> None:
    run = slow_run(tmp_path, "shop-r2", n=3, delay=0.2)
    server = serve_engine(run.engine, tmp_path)
    sock = socket_path_for(tmp_path, "shop-r2")
    task = asyncio.create_task(run.engine.run())
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b'{"type": "hello", "version": 99}\n')
        reply = json.loads(await reader.readline())
        assert reply["type"] == "error" and "version 99" in reply["message"]
        writer.close()

        remote = await connect(sock)
        w = Watcher(remote)
        remote._writer.write(b'{"type": "command", "command": {"name": "explode"}}\n')
        await until(lambda: remote.refusals)
        assert "unknown command 'explode'" in remote.refusals[0]
        remote.send(Command("abort", operator="dave", reason="test over"))
        async with asyncio.timeout(10):
            assert await task == Outcome.ABORTED
        await remote.wait()
        await w.task
        aborts = [c for c in w.of(ev.OperatorCommand) if c.command == "abort"]
        assert aborts and aborts[0].operator == "dave"
    finally:
        await server.close()
    assert not sock.exists()


async def test_probe_and_live_socket_is_never_replaced(tmp_path: Path) -> None:
    run = slow_run(tmp_path, "shop-r3", n=2)
    server = serve_engine(run.engine, tmp_path)
    sock = socket_path_for(tmp_path, "shop-r3")
    try:
        hello = await probe(sock)
        assert hello["rollout_id"] == "shop-r3" and hello["summary"]["pid"] == os.getpid()
        other = make_engine(spec_from(SLOW), 2, rollout_id="shop-r3")
        with pytest.raises(AttachError, match="in use"):
            serve_engine(other.engine, tmp_path)
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
    finally:
        await server.close()
    assert not sock.exists()
    with pytest.raises(OSError):
        await connect(sock)


async def test_stale_socket_is_replaced_and_late_start_refused(tmp_path: Path) -> None:
    import socket as socketmod

    sock = socket_path_for(tmp_path, "shop-r4")
    dead = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()  # a socket file nobody listens on: left by a dead owner
    run = slow_run(tmp_path, "shop-r4", n=2, delay=0.0)
    server = serve_engine(run.engine, tmp_path)
    try:
        hello = await probe(sock)
        assert hello["rollout_id"] == "shop-r4"
    finally:
        await server.close()
    started = make_engine(spec_from(SLOW), 2, rollout_id="shop-r5")
    await started.engine.run()
    with pytest.raises(AttachError, match="before"):
        AttachServer(started.engine, socket_path_for(tmp_path, "shop-r5"))


async def test_slow_client_is_disconnected_not_the_engine(tmp_path: Path) -> None:
    run = make_engine(spec_from("batches: [100%]\nmax_parallel: 20\n"), 20, rollout_id="shop-r6")
    big = "x" * 2000
    run.fake.on(r"^install", lines=[f"{i} {big}" for i in range(200)], delay=0.3)
    sock = socket_path_for(tmp_path, "shop-r6")
    server = AttachServer(
        run.engine, sock, client_maxsize=5, client_hard_limit=10, send_timeout=0.5
    )
    server.start()
    # A client that says hello and then never reads.
    _, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(b'{"type": "hello", "version": 1}\n')
    await writer.drain()
    async with asyncio.timeout(20):
        assert await run.engine.run() == Outcome.SUCCEEDED
        await server.wait_closed()
    assert server.clients_served == 1 and server.disconnected_slow == 1
    writer.close()
    assert not sock.exists()


async def test_client_refused_when_not_speaking_protocol(tmp_path: Path) -> None:
    sock = tmp_path / "x.sock"

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-nope\n")
        await w.drain()
        w.close()

    srv = await asyncio.start_unix_server(handler, path=str(sock))
    try:
        with pytest.raises(ProtocolError):
            await connect(sock)
    finally:
        srv.close()


async def test_group_socket_is_0660_and_unknown_group_refused(tmp_path: Path) -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    run = slow_run(tmp_path, "shop-g1", n=2, delay=0.0)
    sock = socket_path_for(tmp_path, "shop-g1")
    server = AttachServer(run.engine, sock, group=group)
    server.start()
    try:
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getgid()
    finally:
        await server.close()
    other = make_engine(spec_from(SLOW), 2, rollout_id="shop-g2")
    with pytest.raises(AttachError, match="no group"):
        AttachServer(other.engine, tmp_path / "g2.sock", group="no-such-group-xyz").start()
    assert not (tmp_path / "g2.sock").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".attach-")]  # no bind dir left


async def test_oversized_client_line_is_cut_off(tmp_path: Path) -> None:
    run = slow_run(tmp_path, "shop-big", n=2, delay=0.0)
    server = serve_engine(run.engine, tmp_path)
    sock = socket_path_for(tmp_path, "shop-big")
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b'{"type": "hello", "version": 1, "pad": "' + b"x" * 200_000 + b'"}\n')
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply["type"] == "error" and "too long" in reply["message"]
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and hung up
        writer.close()
    finally:
        await server.close()


def test_ps_lists_a_locked_rollout_without_a_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from console.store.lock import RolloutLock
    from tests.test_history_audit import write_unfinished

    write_unfinished(tmp_path, "shop-l1", os.getpid())
    lock = RolloutLock.acquire(tmp_path, service="shop", inventory="", rollout_id="shop-l1")
    try:
        assert cli_main(["ps", "--state-dir", str(tmp_path), "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert cli_main(["ps", "--state-dir", str(tmp_path)]) == 0
        text = capsys.readouterr().out
    finally:
        lock.release()
    assert [(r["rollout_id"], r["socket"], r["pid"]) for r in rows] == [
        ("shop-l1", None, os.getpid())
    ]
    assert rows[0]["operator"] == "dave" and rows[0]["batch"] == 1
    assert "shop-l1" in text and "no socket" in text
    assert cli_main(["ps", "--state-dir", str(tmp_path)]) == 0
    assert "no rollouts running" in capsys.readouterr().out


async def test_client_is_told_when_the_owner_stops_serving(tmp_path: Path) -> None:
    run = slow_run(tmp_path, "shop-s1", n=3, delay=0.3)
    run.fake.on(r"^install", Reply(wait=asyncio.Event()), hosts=["h03"])  # still running
    server = serve_engine(run.engine, tmp_path)
    task = asyncio.create_task(run.engine.run())
    try:
        await until(lambda: run.engine.view.batch_index is not None)
        w = Watcher(await connect(socket_path_for(tmp_path, "shop-s1")))
        await server.close()
        async with asyncio.timeout(5):
            await w.remote.wait()
            await w.task
        assert w.remote.bye == "shutdown"
        lost = w.of(ev.Notice)[-1]
        assert "lost the rollout" in lost.message and "stopped serving" in lost.message
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_state_dir_deeper_than_a_socket_address_allows(tmp_path: Path) -> None:
    from console.attach.detach import probe_sync
    from console.store.history import socket_alive

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    sock = socket_path_for(deep, "shop-deep")
    assert len(str(sock)) > 108  # sockaddr_un cannot name it directly
    run = slow_run(deep, "shop-deep", n=2, delay=0.0)
    server = serve_engine(run.engine, deep)
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert (await probe(sock))["rollout_id"] == "shop-deep"
        hello = await asyncio.to_thread(probe_sync, sock)
        assert hello is not None and hello["rollout_id"] == "shop-deep"
        assert await asyncio.to_thread(socket_alive, sock)
        remote = await connect(sock)
        assert remote.rollout_id == "shop-deep"
        await remote.close()
    finally:
        await server.close()
    assert not await asyncio.to_thread(socket_alive, sock)


async def test_ps_sweeps_a_socket_whose_owner_died(tmp_path: Path) -> None:
    """kill -9 leaves `<id>.sock` behind; the next look (ps, attach) removes it, and
    never a live one."""
    import socket as socketmod

    from console.attach.discovery import running_rollouts

    stale = socket_path_for(tmp_path, "shop-dead")
    dead = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()
    run = slow_run(tmp_path, "shop-live", n=2, delay=0.0)
    server = serve_engine(run.engine, tmp_path)
    try:
        rows = await running_rollouts(tmp_path)
        assert [r["rollout_id"] for r in rows] == ["shop-live"]
        assert not stale.exists()
        assert socket_path_for(tmp_path, "shop-live").exists()
    finally:
        await server.close()
