"""Opening many connections: handshake cap and retry, shared handshakes, connection cap."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from console.transport.base import HostUnreachable
from console.transport.ssh import SSHTransport
from tests.fixtures.sshd import DEFAULT_STARTUPS, SSHDServer, SSHFleet, make_fleet
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd


@pytest.fixture(scope="module")
def stock_sshd(sshd_factory: Callable[..., SSHDServer]) -> SSHDServer:
    """An sshd with OpenSSH's default MaxStartups 10:30:100, like a stock bastion."""
    return sshd_factory(max_startups=DEFAULT_STARTUPS)


async def connect_all(transport: SSHTransport, fleet: SSHFleet) -> list[object]:
    async def one(host):  # type: ignore[no-untyped-def]
        conn = await transport.connect(host)
        return await conn.run("echo up", timeout=30)

    return await asyncio.gather(*(one(h) for h in fleet.hosts), return_exceptions=True)


@pytest.mark.slow
async def test_forty_hosts_behind_default_maxstartups_all_connect(stock_sshd, tmp_path) -> None:
    fleet = make_fleet(stock_sshd, tmp_path, 40)
    options = dataclasses.replace(fleet.options, max_handshakes=10, handshake_retries=6)
    transport = SSHTransport(options)
    try:
        results = await connect_all(transport, fleet)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        assert all(r.stdout_tail == ("up",) for r in results)  # type: ignore[attr-defined]
        assert transport.open_connections == 40
    finally:
        await transport.close()


@pytest.mark.slow
async def test_without_cap_or_retry_maxstartups_drops_handshakes(stock_sshd, tmp_path) -> None:
    """The control for the test above: the sshd really does shed a 40-handshake burst."""
    fleet = make_fleet(stock_sshd, tmp_path, 40)
    options = dataclasses.replace(fleet.options, max_handshakes=40, handshake_retries=0)
    transport = SSHTransport(options)
    try:
        results = await connect_all(transport, fleet)
        dropped = [r for r in results if isinstance(r, HostUnreachable)]
        assert dropped, "expected MaxStartups 10:30:100 to drop some of 40 handshakes"
        assert all("dropped the connection during the handshake" in str(e) for e in dropped)
        assert transport.open_connections == 40 - len(dropped)
    finally:
        await transport.close()


async def test_concurrent_connects_to_one_host_share_a_handshake(sshd_fleet) -> None:
    fleet = sshd_fleet(1)
    transport = SSHTransport(fleet.options)
    try:
        conns = await asyncio.gather(*(transport.connect(fleet.hosts[0]) for _ in range(10)))
        assert all(c is conns[0] for c in conns)
        assert transport.handshakes == 1
    finally:
        await transport.close()


async def test_a_failed_handshake_is_not_cached(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = dataclasses.replace(fleet.hosts[0], known_hosts=str(empty))
    transport = SSHTransport(fleet.options)
    try:
        with pytest.raises(Exception, match="unknown host key"):
            await transport.connect(host)
        empty.write_text(fleet.server.known_hosts_line())  # the operator adds the key
        assert (await (await transport.connect(host)).run("true", timeout=10)).ok
    finally:
        await transport.close()


async def test_connection_cap_evicts_the_idle_lru_and_reconnects_it(sshd_fleet) -> None:
    fleet = sshd_fleet(3)
    transport = SSHTransport(dataclasses.replace(fleet.options, max_connections=2))
    try:
        first = await transport.connect(fleet.hosts[0])
        second = await transport.connect(fleet.hosts[1])
        assert (await second.run("true", timeout=10)).ok  # first is now the LRU
        third = await transport.connect(fleet.hosts[2])
        assert transport.open_connections == 2
        assert first.state == "evicted" and not second.closed and not third.closed
        # The engine still holds `first`: its next command reconnects transparently.
        result = await first.run("echo back", timeout=10)
        assert result.stdout_tail == ("back",)
        assert first.connects == 2
        assert transport.open_connections == 2
        assert transport.evictions == 2  # first, then second (the LRU by then)
        assert await transport.connect(fleet.hosts[0]) is first
    finally:
        await transport.close()


async def test_connection_cap_waits_while_every_connection_is_busy(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(3)
    transport = SSHTransport(dataclasses.replace(fleet.options, max_connections=2))
    flag = tmp_path / "release"
    hold = f"echo holding; while [ ! -e {flag} ]; do sleep 0.02; done"
    try:
        busy = [await transport.connect(h) for h in fleet.hosts[:2]]
        started = [asyncio.Event(), asyncio.Event()]
        holders = [
            asyncio.create_task(c.run(hold, timeout=30, on_line=lambda s, line, e=e: e.set()))
            for c, e in zip(busy, started, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 15)
        third = asyncio.create_task(transport.connect(fleet.hosts[2]))
        # Something that must NOT happen: 0.5 s only bounds how long we look for it.
        done, _ = await asyncio.wait([third], timeout=0.5)
        assert not done, "a third connection opened while both were busy"
        assert transport.open_connections == 2 and transport.handshakes == 2
        flag.touch()
        assert all(r.ok for r in await asyncio.gather(*holders))
        conn = await asyncio.wait_for(third, 10)
        assert (await conn.run("true", timeout=10)).ok
        assert transport.open_connections == 2
        assert transport.evictions == 1
    finally:
        await transport.close()


async def test_closed_transport_refuses_new_connections(sshd_fleet) -> None:
    fleet = sshd_fleet(1)
    transport = SSHTransport(fleet.options)
    await transport.connect(fleet.hosts[0])
    await transport.close()
    assert transport.open_connections == 0
    with pytest.raises(Exception, match="transport is closed"):
        await transport.connect(fleet.hosts[0])


async def test_closing_the_transport_mid_handshake_is_a_transport_error(stock_sshd) -> None:
    """A caller waiting on a handshake that close() cancels gets an error, not a
    CancelledError it never asked for."""
    from console.transport.base import TransportError

    connected = asyncio.Event()

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # the client is in the handshake, waiting for our banner
        await reader.read()

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fleet = make_fleet(stock_sshd, stock_sshd.workdir, 1)
    host = dataclasses.replace(fleet.hosts[0], port=port)
    transport = SSHTransport(fleet.options)
    try:
        waiter = asyncio.create_task(transport.connect(host))
        await wait_until(connected.is_set, what="the client to connect to the silent server")
        assert not waiter.done()
        await transport.close()
        with pytest.raises(TransportError, match="closed while connecting"):
            await waiter
    finally:
        server.close()
