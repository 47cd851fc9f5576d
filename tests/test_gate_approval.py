"""``between_batches: {gate: approval}``: a second person's approval, the uid from the
kernel (the attach socket's SO_PEERCRED), never the owner's own; tested in process
and with a real second Unix user running ``rolldeck approve``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest

from console.attach.server import serve_engine
from console.cli import main as cli_main
from console.core import events as ev
from console.core.commands import Command, unix_user
from console.core.errors import EXIT_FAILED, InputError
from console.core.events import Outcome
from console.store.journal import Journal, read_journal
from tests.fixtures.second_user import OtherUser, other_user, shared_base  # noqa: F401
from tests.test_engine_helpers import Run, make_engine, run_engine, spec_from
from tests.waiting import wait_until

GATE = "between_batches: {gate: approval, approvers: 1, timeout: 60s}\n"
OTHER_UID = os.geteuid() + 4242


def approve(uid: int, operator: str, reason: str = "") -> Command:
    """An approve as the attach server hands it over: uid and name from the socket."""
    return Command("approve", operator=operator, reason=reason, user=f"uid {uid}", uid=uid)


def approvals(run: Run) -> list[ev.OperatorCommand]:
    return [c for c in run.kinds(ev.OperatorCommand) if c.command in ("approve", "continue")]


async def test_the_owner_cannot_approve_and_another_user_can() -> None:
    run = make_engine(spec_from(GATE), 3)

    def react(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting) and e.gate == "approval":
            r.engine.execute(Command("approve", operator="tester", reason="mine"))
            r.engine.continue_(operator="tester")  # the console's `c`: the same rule
            r.engine.execute(approve(OTHER_UID, "bob", "diff reviewed"))
            r.engine.execute(approve(OTHER_UID, "bob"))  # twice: counted once

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    own, own_c, bob, again = approvals(run)
    assert not own.accepted and "another Unix user" in own.detail and own.uid == os.geteuid()
    assert not own_c.accepted and own_c.command == "continue"
    assert bob.accepted and (bob.uid, bob.reason) == (OTHER_UID, "diff reviewed")
    assert f"uid {OTHER_UID}" in bob.detail and "1 of 1" in bob.detail
    assert again.accepted and again.detail.startswith("already approved")
    (passed,) = run.kinds(ev.GatePassed)
    assert passed.by.startswith("approval:bob")


async def test_before_final_asks_only_before_the_last_batch() -> None:
    spec = spec_from("batches: [1, 1, 1]\nbetween_batches: {gate: approval, before: final}\n")
    run = make_engine(spec, 3)

    def react(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting):
            r.engine.execute(approve(OTHER_UID, "bob"))

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    assert [(w.after_batch, w.gate) for w in run.kinds(ev.GateWaiting)] == [(1, "approval")]
    assert run.kinds(ev.GatePassed)[0].by == "auto"


async def test_no_approval_within_the_timeout_applies_on_timeout() -> None:
    spec = spec_from("between_batches: {gate: approval, timeout: 200ms, on_timeout: abort}\n")
    run = await run_engine(make_engine(spec, 3))
    assert run.outcome == Outcome.FAILED
    alert = next(a for a in run.kinds(ev.Alert) if a.rule == "gate.timeout")
    assert "0 of 1 approvals" in alert.message and not run.deploy_commands("h02")


def test_approval_gate_spec_errors_name_the_field() -> None:
    with pytest.raises(InputError) as bad:
        spec_from("between_batches: {gate: approval, approvers: 0}\n")
    assert bad.value.field == "between_batches.approvers"
    with pytest.raises(InputError) as bad:
        spec_from("between_batches: {gate: manual, approvers: 2}\n")
    assert "only an approval gate" in str(bad.value)
    g = spec_from("between_batches: {gate: approval, approvers: 2, before: final}\n")
    assert (g.between_batches.approvers, g.between_batches.before) == (2, "final")


async def test_a_second_real_user_approves_over_the_socket_and_the_owner_cannot(
    other_user: OtherUser,  # noqa: F811
    shared_base: Path,  # noqa: F811
) -> None:
    user = other_user
    state = shared_base / "state"
    state.mkdir()
    os.chown(state, os.geteuid(), user.gid)
    state.chmod(0o750)
    journal = Journal.create(state, "appr1", {"who": "tester"})
    run = make_engine(spec_from(GATE), 3, journal=journal, rollout_id="appr1")
    server = serve_engine(run.engine, state, group=user.group)
    waiting = asyncio.Event()
    run.engine.bus.listen(lambda e: waiting.set() if isinstance(e, ev.GateWaiting) else None)
    task = asyncio.create_task(run.engine.run())
    try:
        async with asyncio.timeout(60):
            await waiting.wait()
        argv = ["approve", "appr1", "--state-dir", str(state), "--reason", "mine"]
        assert await asyncio.to_thread(cli_main, argv) == EXIT_FAILED  # the owner's uid
        proc = await asyncio.create_subprocess_exec(
            *user.rolldeck(
                "approve", "appr1", "--operator", "bob", "--reason", "diff reviewed",
                "--state-dir", str(state),
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(90):
            out, err = await proc.communicate()
        assert proc.returncode == 0, (out, err)
        assert b"approved appr1" in out
        async with asyncio.timeout(60):
            assert await task == Outcome.SUCCEEDED
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.close()
        await journal.close()
    done = [
        e for e in read_journal(journal.path)
        if isinstance(e, ev.OperatorCommand) and e.command == "approve"
    ]  # fmt: skip
    mine, bob = done
    assert not mine.accepted and mine.user == unix_user() and mine.uid == os.geteuid()
    assert bob.accepted and (bob.operator, bob.user, bob.uid) == ("bob", user.name, user.uid)
    assert bob.reason == "diff reviewed"
    passed = next(e for e in read_journal(journal.path) if isinstance(e, ev.GatePassed))
    assert user.name in passed.by


async def test_a_headless_run_serves_its_socket_for_the_approval(
    other_user: OtherUser,  # noqa: F811
    shared_base: Path,  # noqa: F811
) -> None:
    """`rolldeck run --headless` with an approval gate, end to end: the second user's
    `rolldeck approve` reaches it over the socket it serves for that."""
    user = other_user
    state = shared_base / "state"
    state.mkdir()
    os.chown(state, os.geteuid(), user.gid)
    state.chmod(0o750)
    (shared_base / "inventory.yaml").write_text(
        "all:\n  hosts:\n    a: {ansible_connection: local}\n    b: {ansible_connection: local}\n"
    )
    spec = shared_base / "rollout.yaml"
    spec.write_text(
        'service: shop\nversion: "2.0"\ninventory: inventory.yaml\nbatches: [1, 1]\n'
        'steps: ["true"]\nbetween_batches: {gate: approval, timeout: 60s}\n'
    )
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console", "run", str(spec), "--headless",
        "--state-dir", str(state), "--attach-group", user.group,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        def at_gate() -> bool:
            return any("gate_waiting" in p.read_text() for p in state.glob("*.jsonl"))

        await wait_until(at_gate, timeout=60, what="the rollout to reach its approval gate")
        (path,) = state.glob("*.jsonl")
        proc = await asyncio.create_subprocess_exec(
            *user.rolldeck("approve", path.stem, "--state-dir", str(state), "--reason", "ok"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(90):
            out, err = await proc.communicate()
        assert proc.returncode == 0, (out, err)
        async with asyncio.timeout(60):
            await owner.communicate()
        assert owner.returncode == 0
    finally:
        if owner.returncode is None:
            owner.kill()
            await owner.wait()
    done = [e for e in read_journal(path) if isinstance(e, ev.OperatorCommand)]
    assert [(c.command, c.user, c.uid, c.accepted) for c in done] == [
        ("approve", user.name, user.uid, True)
    ]
