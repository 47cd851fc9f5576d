"""The fake transport keeps the transport contract the engine relies on."""

from __future__ import annotations

import asyncio

import pytest

from console.transport.base import HostKeyError, HostUnreachable
from console.transport.fake import FakeTransport, Reply, VersionedFleet
from inventory.model import Host
from tests.waiting import wait_until

H1 = Host(name="h1", address="10.0.0.1")
H2 = Host(name="h2", address="10.0.0.2")


async def test_rules_per_host_latest_wins_and_lines_stream() -> None:
    fake = FakeTransport()
    fake.on(r"^deploy", lines=["a", "b"], exit_code=0)
    fake.on(r"^deploy", exit_code=3, stderr=["boom"], hosts=["h2"])
    seen: list[tuple[str, str]] = []
    c1, c2 = await fake.connect(H1), await fake.connect(H2)
    r1 = await c1.run("deploy x", timeout=1, on_line=lambda s, line: seen.append((s, line)))
    r2 = await c2.run("deploy x", timeout=1)
    assert (r1.status, r1.exit_code, r1.stdout_tail) == ("ok", 0, ("a", "b"))
    assert seen == [("stdout", "a"), ("stdout", "b")]
    assert (r2.status, r2.exit_code, r2.stderr_tail, r2.first_line) == (
        "failed",
        3,
        ("boom",),
        "boom",
    )
    assert fake.commands("h1") == ["deploy x"] and fake.ran("h2", "^deploy")


async def test_timeout_is_recorded_and_returns_timeout_status() -> None:
    fake = FakeTransport()
    fake.on("hang", hang=True)
    conn = await fake.connect(H1)
    result = await conn.run("hang", timeout=0.05)
    assert result.status == "timeout" and result.exit_code is None
    assert fake.cancellations == [("h1", "hang", "timeout")]
    assert not fake.running()


async def test_cancellation_propagates_and_is_recorded() -> None:
    fake = FakeTransport()
    fake.on("slow", delay=5)
    conn = await fake.connect(H1)
    task = asyncio.create_task(conn.run("slow", timeout=10))
    await wait_until(fake.running, what="the slow command to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.cancellations == [("h1", "slow", "cancelled")]
    assert fake.records[0].status == "cancelled"


async def test_unreachable_bad_key_and_dying_hosts() -> None:
    fake = FakeTransport()
    fake.unreachable("h1", "no route")
    fake.bad_host_key("h2")
    with pytest.raises(HostUnreachable, match="no route"):
        await fake.connect(H1)
    with pytest.raises(HostKeyError):
        await fake.connect(H2)
    fake.reachable("h1")
    fake.die_at("h1", "^restart")
    conn = await fake.connect(H1)
    assert (await conn.run("ok", timeout=1)).ok
    with pytest.raises(HostUnreachable):
        await conn.run("restart", timeout=1)
    with pytest.raises(HostUnreachable):
        await fake.connect(H1)


async def test_connections_are_shared_and_counted() -> None:
    fake = FakeTransport()
    a, b = await fake.connect(H1), await fake.connect(H1)
    await fake.connect(H2)
    assert a is b and fake.open_connections == 2 and fake.connects("h1") == 1
    await fake.close()
    assert fake.open_connections == 0


async def test_versioned_fleet_and_stream() -> None:
    fake = FakeTransport()
    fleet = VersionedFleet(default="1.0")
    fake.handler(fleet)
    fake.on("^tail", Reply(lines=["l1", "l2"], hang=True))
    conn = await fake.connect(H1)
    await conn.run("activate '2.0'", timeout=1)
    assert (await conn.run("version", timeout=1)).first_line == "2.0"
    got: list[str] = []
    stream = conn.stream("tail")
    async for line in stream:
        got.append(line)
        if len(got) == 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert got == ["l1", "l2"]
    assert ("h1", "tail", "cancelled") in fake.cancellations
