"""Identity from the kernel on the attach socket (issue 18, point 3).

A real second Unix user, in the group the rollout's socket is shared with
(``--attach-group``), sends ``rolldeck attach --send pause --operator alice``: the
journal records their Unix name (SO_PEERCRED) beside the label "alice", a ``user``
the client writes into its command is ignored, and ``show``/``history`` print both.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

import console.attach.server as server_mod
from console.attach.protocol import encode, peer_uid, socket_path_for
from console.attach.server import AttachError, AttachServer, serve_engine
from console.cli import main as cli_main
from console.core import events as ev
from console.core.commands import Command, unix_user
from console.store.history import history, render_history
from console.store.journal import Journal, read_journal
from console.transport.fake import Reply
from tests.fixtures.second_user import OtherUser, other_user, shared_base  # noqa: F401
from tests.test_engine_helpers import Run, make_engine, spec_from
from tests.waiting import wait_until

SLOW = "batches: [1, 2, 3]\nmax_parallel: 3\n"


def slow_run(state: Path, rid: str) -> tuple[Run, Journal]:
    journal = Journal.create(state, rid, {"who": "tester"})
    run = make_engine(spec_from(SLOW), 6, journal=journal, rollout_id=rid)
    run.fake.on(r"^install", lines=["unpacking", "done"], delay=0.2)
    return run, journal


def commands(path: Path) -> list[ev.OperatorCommand]:
    return [e for e in read_journal(path) if isinstance(e, ev.OperatorCommand)]


def test_peer_uid_is_the_connecting_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer_uid(a) == os.geteuid()


def test_old_journal_command_without_user_reads_as_label_only() -> None:
    old = {"kind": "operator_command", "ts": 1.0, "command": "pause", "operator": "carol"}
    event = ev.from_json(old)
    assert isinstance(event, ev.OperatorCommand) and event.user == ""
    assert Command.from_json({"name": "pause", "user": "root"}).user == unix_user()


async def test_group_socket_refused_without_peer_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grp

    monkeypatch.setattr(server_mod, "PEER_CREDENTIALS", False)  # a platform without
    run, journal = slow_run(tmp_path, "g1")
    group = grp.getgrgid(os.getgid()).gr_name
    with pytest.raises(AttachError, match="SO_PEERCRED"):
        AttachServer(run.engine, socket_path_for(tmp_path, "g1"), group=group).start()
    await journal.close()


async def test_a_forged_user_on_the_wire_is_ignored(tmp_path: Path) -> None:
    run, journal = slow_run(tmp_path, "f1")
    server = serve_engine(run.engine, tmp_path)
    task = asyncio.create_task(run.engine.run())
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path_for(tmp_path, "f1")))
        writer.write(encode({"type": "hello", "version": 1, "mode": "attach"}))
        hello = json.loads(await reader.readline())
        assert hello["type"] == "hello" and hello["user"] == unix_user()
        forged = {"name": "pause", "operator": "mallory", "user": "nobody"}
        writer.write(encode({"type": "command", "command": forged}))  # a client that lies
        await writer.drain()

        def mallory_journaled() -> bool:
            return any(c.operator == "mallory" for c in commands(journal.path))

        await wait_until(mallory_journaled, timeout=20, what="the forged command journaled")
        run.engine.abort(operator="tester")
        async with asyncio.timeout(30):
            await task
        writer.close()
    finally:
        await server.close()
        await journal.close()
    cmd = next(c for c in commands(journal.path) if c.operator == "mallory")
    assert cmd.user == unix_user() != "nobody"


async def test_second_user_command_is_journaled_with_their_unix_name(
    other_user: OtherUser,  # noqa: F811
    shared_base: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = other_user
    state = shared_base / "state"
    state.mkdir()
    os.chown(state, os.geteuid(), user.gid)
    state.chmod(0o750)  # the group may list and connect, never plant a file
    run, journal = slow_run(state, "team1")
    # the last host holds until the pause is in: a second interpreter's start, slow
    # under load, still finds the rollout running
    held = asyncio.Event()
    run.fake.on(r"^install", Reply(lines=["unpacking", "done"], wait=held), hosts=["h06"])
    server = serve_engine(run.engine, state, group=user.group)
    task = asyncio.create_task(run.engine.run())
    try:
        proc = await asyncio.create_subprocess_exec(
            *user.rolldeck(
                "attach",
                "team1",
                "--send",
                "pause",
                "--operator",
                "alice",
                "--reason",
                "checking latency",
                "--state-dir",
                str(state),
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(90):
            out, err = await proc.communicate()
        assert proc.returncode == 0, (out, err)
        assert b"pause accepted" in out
        await wait_until(lambda: run.engine.control.paused, what="the pause to apply")
        held.set()
        run.engine.resume(operator="tester")
        async with asyncio.timeout(60):
            await task
    finally:
        await server.close()
        await journal.close()

    by_label = {c.operator: c for c in commands(journal.path)}
    assert by_label["alice"].command == "pause" and by_label["alice"].accepted
    assert by_label["alice"].user == user.name  # the kernel's word, not the client's
    assert by_label["tester"].user == unix_user()  # the owner's own command: its uid

    assert cli_main(["show", "team1", "--state-dir", str(state)]) == 0
    shown = capsys.readouterr().out
    assert f"who: alice (unix {user.name})" in shown
    assert f"pause by alice (unix {user.name}) (checking latency)" in shown
    assert cli_main(["show", "team1", "--json", "--state-dir", str(state)]) == 0
    data = json.loads(capsys.readouterr().out.splitlines()[1])  # after the header
    decision = data["stopped"]["decisions"][0]
    assert (decision["operator"], decision["user"]) == ("alice", user.name)
    table = render_history(history(state))
    assert f"tester (unix {unix_user()})" in table
