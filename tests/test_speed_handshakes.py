"""Handshakes paced per endpoint (issue 13), against two real stock OpenSSH sshds.

OpenSSH's ``MaxStartups`` is per sshd, so the transport limits concurrent handshakes
per endpoint dialled (``max_handshakes``) and, for the client's own CPU, in all
(``max_handshakes_total``). The transport counts the handshakes it has in flight per
endpoint (``peak_handshakes``, ``peak_handshakes_total``); each sshd's log says how
many logins it accepted, so the hosts really went to two servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
from collections.abc import Callable
from pathlib import Path

import pytest

from console.transport.base import TransportOptions
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import DEFAULT_STARTUPS, SSHDServer, make_fleet

pytestmark = pytest.mark.sshd

PER_HOST = 16  # hosts behind each sshd


@pytest.fixture(scope="module")
def two_stock_sshds(sshd_factory: Callable[..., SSHDServer]) -> tuple[SSHDServer, SSHDServer]:
    """Two sshds with OpenSSH's default MaxStartups 10:30:100: two endpoints."""
    return sshd_factory(max_startups=DEFAULT_STARTUPS), sshd_factory(max_startups=DEFAULT_STARTUPS)


def _hosts(
    servers: tuple[SSHDServer, SSHDServer], tmp_path: Path
) -> tuple[list[Host], TransportOptions]:
    a = make_fleet(servers[0], tmp_path / "a", PER_HOST, prefix="a-")
    b = make_fleet(servers[1], tmp_path / "b", PER_HOST, prefix="b-")
    # One known_hosts for both servers (each fleet wrote its own).
    known = tmp_path / "known_hosts"
    known.write_text(servers[0].known_hosts_line() + servers[1].known_hosts_line())
    known.chmod(0o600)
    keys = [str(servers[0].client_key), str(servers[1].client_key)]
    options = dataclasses.replace(a.options, known_hosts=str(known), client_keys=keys)
    hosts = [dataclasses.replace(h, known_hosts=str(known)) for h in (*a.hosts, *b.hosts)]
    return hosts, options


async def _connect_all(transport: SSHTransport, hosts: list[Host]) -> None:
    async def one(host: Host) -> None:
        conn = await transport.connect(host)
        result = await conn.run("echo up", timeout=30)
        assert result.stdout_tail == ("up",), result

    await asyncio.gather(*(one(h) for h in hosts))


def _accepted(server: SSHDServer) -> int:
    return server.log.read_text(errors="replace").count("Accepted publickey")


async def test_handshakes_are_paced_per_endpoint_not_globally(two_stock_sshds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hosts, options = _hosts(two_stock_sshds, tmp_path)
    before = [_accepted(s) for s in two_stock_sshds]
    opts = dataclasses.replace(options, max_handshakes=3, max_handshakes_total=64)
    transport = SSHTransport(opts)
    try:
        await _connect_all(transport, hosts)
        assert transport.open_connections == 2 * PER_HOST
    finally:
        await transport.close()
    peaks = transport.peak_handshakes
    assert sorted(port for _, _, port in peaks) == sorted(s.port for s in two_stock_sshds)
    # Never more than 3 at once on either sshd...
    assert all(1 <= peak <= 3 for peak in peaks.values()), peaks
    # ...but both at once: a global cap of 3 would never have had more than 3 in flight.
    assert transport.peak_handshakes_total > 3, peaks
    assert transport.handshakes_in_flight == {}
    # Each sshd really logged in its own hosts (not one server answering for both).
    after = [_accepted(s) for s in two_stock_sshds]
    assert [x - y for x, y in zip(after, before, strict=True)] == [PER_HOST, PER_HOST]


async def test_the_global_bound_holds_across_endpoints(two_stock_sshds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hosts, options = _hosts(two_stock_sshds, tmp_path)
    opts = dataclasses.replace(options, max_handshakes=10, max_handshakes_total=4)
    transport = SSHTransport(opts)
    try:
        await _connect_all(transport, hosts)
        assert transport.open_connections == 2 * PER_HOST
    finally:
        await transport.close()
    assert transport.peak_handshakes_total <= 4, transport.peak_handshakes
    assert all(peak <= 4 for peak in transport.peak_handshakes.values())


async def test_names_of_one_sshd_share_its_limit(two_stock_sshds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Hosts on the same address and port are one endpoint whatever their names: the
    stock sshd's MaxStartups is never exceeded, so no handshake is dropped."""
    hosts, options = _hosts(two_stock_sshds, tmp_path)
    same = [h for h in hosts if h.port == two_stock_sshds[0].port]
    opts = dataclasses.replace(options, max_handshakes=5, handshake_retries=6)
    transport = SSHTransport(opts)
    try:
        await _connect_all(transport, same)
    finally:
        await transport.close()
    assert list(transport.peak_handshakes.values()) == [transport.peak_handshakes_total]
    assert transport.peak_handshakes_total <= 5


async def test_behind_a_shared_jump_the_target_and_the_hop_are_the_endpoints(
    sshd_fleet, sshd_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Behind a ProxyJump bastion the target's sshd takes each key exchange (the
    bastion relays it over its one connection): the target, as the bastion reaches it,
    is the paced endpoint; the bastion's own endpoint takes the one hop handshake."""
    fleet = sshd_fleet(1)
    bastion = sshd_factory(client_key=fleet.server.client_key)
    known = tmp_path / "known_hosts"
    known.write_text(fleet.server.known_hosts_line() + bastion.known_hosts_line())
    user = getpass.getuser()
    config = tmp_path / "config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n"
        f"  User {user}\n  IdentityFile {fleet.server.client_key}\n"
        f"  UserKnownHostsFile {known}\n"
        f"Host inner\n  HostName 127.0.0.1\n  Port {fleet.server.port}\n"
        f"  User {user}\n  IdentityFile {fleet.server.client_key}\n"
        f"  ProxyJump bastion\n"
    )
    options = TransportOptions(ssh_config=[str(config)], known_hosts=str(known), max_handshakes=2)
    transport = SSHTransport(options)
    try:
        hosts = [Host(name=f"behind-{i:02d}", address="inner") for i in range(8)]
        await _connect_all(transport, hosts)
    finally:
        await transport.close()
    assert set(transport.peak_handshakes) == {
        ("", "bastion", 22),  # the hop as written in ProxyJump (its alias)
        ("bastion", "127.0.0.1", fleet.server.port),  # the target, through the bastion
    }
    assert transport.peak_handshakes[("", "bastion", 22)] == 1  # one shared connection
    assert 1 <= transport.peak_handshakes[("bastion", "127.0.0.1", fleet.server.port)] <= 2
