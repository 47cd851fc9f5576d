"""Opening many connections: handshake cap and retry, shared handshakes, connection cap."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from console.transport.base import HostUnreachable
from console.transport.ssh import SSHTransport
from tests.fixtures.sshd import DEFAULT_STARTUPS, SSHDServer, SSHFleet, make_fleet

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


async def test_connection_cap_waits_for_a_free_slot(sshd_fleet) -> None:
    fleet = sshd_fleet(3)
    transport = SSHTransport(dataclasses.replace(fleet.options, max_connections=2))
    try:
        first, _second = await asyncio.gather(*(transport.connect(h) for h in fleet.hosts[:2]))
        third = asyncio.create_task(transport.connect(fleet.hosts[2]))
        done, _ = await asyncio.wait([third], timeout=0.5)
        assert not done, "a third connection opened past max_connections=2"
        assert transport.open_connections == 2
        await first.close()
        conn = await asyncio.wait_for(third, 10)
        assert (await conn.run("true", timeout=10)).ok
        assert transport.open_connections == 2
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
