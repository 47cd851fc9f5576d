"""Host-key checking, connection failures and ssh_config, against a real OpenSSH sshd."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import stat
from collections.abc import Callable
from pathlib import Path

import asyncssh
import psutil
import pytest

from console.transport.base import HostKeyError, HostUnreachable, TransportOptions
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import SSHFleet, free_port, write_keypair

pytestmark = pytest.mark.sshd


def server_fingerprint(fleet: SSHFleet) -> str:
    key = asyncssh.read_public_key(str(fleet.server.host_key) + ".pub")
    return key.get_fingerprint()


def with_known_hosts(fleet: SSHFleet, path: Path, **changes: object) -> tuple[Host, SSHTransport]:
    host = dataclasses.replace(fleet.hosts[0], known_hosts=str(path))
    options = dataclasses.replace(fleet.options, known_hosts=None, **changes)
    return host, SSHTransport(options)


async def test_unknown_host_key_is_refused(sshd_fleet: Callable[..., SSHFleet], tmp_path) -> None:
    fleet = sshd_fleet(1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host, transport = with_known_hosts(fleet, empty)
    with pytest.raises(HostKeyError) as refused:
        await transport.connect(host)
    message = str(refused.value)
    assert message.startswith("web-01: unknown host key")
    assert str(empty) in message
    assert server_fingerprint(fleet) in message
    assert f"[127.0.0.1]:{fleet.server.port}" in message
    assert transport.open_connections == 0
    assert empty.read_text() == ""
    await transport.close()


async def test_missing_known_hosts_file_means_unknown(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    host, transport = with_known_hosts(fleet, tmp_path / "absent")
    with pytest.raises(HostKeyError, match="unknown host key"):
        await transport.connect(host)
    assert not (tmp_path / "absent").exists()
    await transport.close()


async def test_accept_new_writes_the_key_and_records_it(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(2)
    target = tmp_path / "ssh" / "known_hosts"  # neither the file nor its directory exist
    host, transport = with_known_hosts(fleet, target, accept_new_host_keys=True)
    conn = await transport.connect(host)
    assert (await conn.run("echo in", timeout=10)).stdout_tail == ("in",)
    await transport.close()
    fingerprint = server_fingerprint(fleet)
    assert transport.accepted_keys == [("web-01", f"ssh-ed25519 {fingerprint}")]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == fleet.server.known_hosts_line()
    # The written file is now trusted without accept_new, for every host at that address.
    strict = SSHTransport(dataclasses.replace(fleet.options, known_hosts=str(target)))
    other = dataclasses.replace(fleet.hosts[1], known_hosts=None)
    assert (await (await strict.connect(other)).run("true", timeout=10)).ok
    assert strict.accepted_keys == []
    await strict.close()


async def test_accept_new_on_many_hosts_appends_the_key_once(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(6)
    target = tmp_path / "known_hosts"
    options = dataclasses.replace(fleet.options, known_hosts=str(target), accept_new_host_keys=True)
    transport = SSHTransport(options)
    hosts = [dataclasses.replace(h, known_hosts=None) for h in fleet.hosts]
    await asyncio.gather(*(transport.connect(h) for h in hosts))
    await transport.close()
    assert target.read_text() == fleet.server.known_hosts_line()
    assert {name for name, _ in transport.accepted_keys} <= {h.name for h in hosts}
    assert transport.accepted_keys


async def test_changed_host_key_is_refused_even_with_accept_new(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    impostor = write_keypair(tmp_path / "old_host_key")
    recorded = tmp_path / "known_hosts"
    public = impostor.export_public_key().decode().split()
    recorded.write_text(f"[127.0.0.1]:{fleet.server.port} {public[0]} {public[1]}\n")
    before = recorded.read_text()
    host, transport = with_known_hosts(fleet, recorded, accept_new_host_keys=True)
    with pytest.raises(HostKeyError) as refused:
        await transport.connect(host)
    message = str(refused.value)
    assert "HOST KEY CHANGED" in message
    assert server_fingerprint(fleet) in message
    assert impostor.get_fingerprint() in message
    assert str(recorded) in message
    assert recorded.read_text() == before
    assert transport.accepted_keys == []
    await transport.close()


async def test_closed_port_is_unreachable(sshd_fleet) -> None:
    fleet = sshd_fleet(1)
    host = dataclasses.replace(fleet.hosts[0], port=free_port())
    transport = SSHTransport(fleet.options)
    with pytest.raises(HostUnreachable, match="connection refused"):
        await transport.connect(host)
    assert transport.open_connections == 0
    await transport.close()


async def test_wrong_client_key_is_unreachable_not_retried(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    stranger = tmp_path / "stranger"
    write_keypair(stranger)
    host = dataclasses.replace(fleet.hosts[0], key=str(stranger))
    transport = SSHTransport(dataclasses.replace(fleet.options, client_keys=None))
    with pytest.raises(HostUnreachable, match="authentication failed"):
        await transport.connect(host)
    assert transport.handshakes == 1
    await transport.close()


async def test_silent_server_times_out(sshd_fleet) -> None:
    fleet = sshd_fleet(1)

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the SSH banner

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    host = dataclasses.replace(fleet.hosts[0], port=port)
    transport = SSHTransport(dataclasses.replace(fleet.options, connect_timeout=0.5))
    try:
        with pytest.raises(HostUnreachable, match=r"no answer from .* for 0.5 s while connecting"):
            await transport.connect(host)
    finally:
        await transport.close()
        server.close()


async def test_unresolvable_name_is_unreachable(sshd_fleet) -> None:
    fleet = sshd_fleet(1)
    host = dataclasses.replace(fleet.hosts[0], address="no-such-host.invalid")
    transport = SSHTransport(fleet.options)
    with pytest.raises(HostUnreachable, match=r"cannot resolve 'no-such-host\.invalid'"):
        await transport.connect(host)
    await transport.close()


def write_config(path: Path, fleet: SSHFleet, known_hosts: Path, alias: str = "box") -> Path:
    path.write_text(
        f"Host {alias}\n"
        f"  HostName 127.0.0.1\n"
        f"  Port {fleet.server.port}\n"
        f"  User {getpass.getuser()}\n"
        f"  IdentityFile {fleet.server.client_key}\n"
        f"  UserKnownHostsFile {known_hosts}\n"
    )
    return path


async def test_ssh_config_alias_user_port_identity_and_known_hosts(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    config = write_config(tmp_path / "config", fleet, fleet.server.known_hosts)
    host = Host(name="aliased", address="box")  # everything else comes from the config
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)]))
    conn = await transport.connect(host)
    assert (await conn.run("echo via-config", timeout=10)).stdout_tail == ("via-config",)
    await transport.close()


async def test_ssh_config_known_hosts_is_checked_strictly(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = write_config(tmp_path / "config", fleet, empty)
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)]))
    with pytest.raises(HostKeyError, match="unknown host key") as refused:
        await transport.connect(Host(name="aliased", address="box"))
    assert str(empty) in str(refused.value)
    await transport.close()


async def test_known_hosts_none_in_ssh_config_does_not_disable_checking(
    sshd_fleet, tmp_path, monkeypatch
) -> None:
    fleet = sshd_fleet(1)
    monkeypatch.setenv("HOME", str(tmp_path))  # the fallback ~/.ssh/known_hosts: absent
    config = tmp_path / "config"
    write_config(config, fleet, fleet.server.known_hosts)
    config.write_text(config.read_text().replace(str(fleet.server.known_hosts), "none"))
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)]))
    with pytest.raises(HostKeyError, match="unknown host key"):
        await transport.connect(Host(name="aliased", address="box"))
    await transport.close()


async def test_proxyjump_from_ssh_config(sshd_fleet, tmp_path) -> None:
    """The target is reached through a jump host (the same sshd, as a bastion)."""
    fleet = sshd_fleet(1)
    config = write_config(tmp_path / "config", fleet, fleet.server.known_hosts, alias="bastion")
    with config.open("a") as out:
        out.write(
            f"Host inner\n"
            f"  HostName 127.0.0.1\n"
            f"  Port {fleet.server.port}\n"
            f"  User {getpass.getuser()}\n"
            f"  IdentityFile {fleet.server.client_key}\n"
            f"  ProxyJump bastion\n"
        )
    options = TransportOptions(ssh_config=[str(config)], known_hosts=str(fleet.server.known_hosts))
    transport = SSHTransport(options)
    conn = await transport.connect(Host(name="behind", address="inner"))
    result = await conn.run("echo $SSH_CLIENT", timeout=10)
    assert result.ok
    address, source_port, _ = result.stdout_tail[0].split()
    # The inner session's client is the bastion's sshd, not a socket of this process.
    ours = {c.laddr.port for c in psutil.Process().net_connections(kind="tcp") if c.laddr}
    assert address == "127.0.0.1"
    assert int(source_port) not in ours
    await transport.close()


async def test_hosts_behind_one_bastion_share_one_connection_to_it(
    sshd_fleet, sshd_factory, tmp_path
) -> None:
    """12 hosts behind one ProxyJump bastion: one TCP connection and one login at the
    bastion, one forwarded channel per host. The bastion allows 2 sessions per
    connection (MaxSessions 2): forwarded channels are not sessions."""
    fleet = sshd_fleet(1)
    bastion = sshd_factory(max_sessions=2, client_key=fleet.server.client_key)
    known = tmp_path / "known_hosts"
    known.write_text(fleet.server.known_hosts_line() + bastion.known_hosts_line())
    config = tmp_path / "config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n"
        f"  User {getpass.getuser()}\n  IdentityFile {fleet.server.client_key}\n"
        f"  UserKnownHostsFile {known}\n"
        f"Host inner\n  HostName 127.0.0.1\n  Port {fleet.server.port}\n"
        f"  User {getpass.getuser()}\n  IdentityFile {fleet.server.client_key}\n"
        f"  ProxyJump bastion\n"
    )
    options = TransportOptions(ssh_config=[str(config)], known_hosts=str(known))
    # an earlier test's connection to the session's sshd may still be closing
    before = {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == fleet.server.port
    }
    transport = SSHTransport(options)
    try:
        hosts = [Host(name=f"behind-{i:02d}", address="inner") for i in range(12)]
        conns = await asyncio.gather(*(transport.connect(h) for h in hosts))
        results = await asyncio.gather(*(c.run("echo $SSH_CLIENT", timeout=10) for c in conns))
        assert all(r.ok for r in results)
        mine = psutil.Process().net_connections(kind="tcp")
        to_bastion = [c for c in mine if c.raddr and c.raddr.port == bastion.port]
        to_target = [
            c
            for c in mine
            if c.raddr and c.raddr.port == fleet.server.port and c.laddr.port not in before
        ]
        assert len(to_bastion) == 1 and to_target == []
        assert transport.jump_connections == 1
        # The bastion dropped: the next host behind it reopens it.
        jump = await transport._jump_for(hosts[0])
        assert jump is not None
        jump.close()
        await jump.wait_closed()
        later = await transport.connect(Host(name="behind-late", address="inner"))
        assert (await later.run("echo again", timeout=10)).ok
        assert transport.jump_connections == 2
    finally:
        await transport.close()
    left = [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == bastion.port and c.status == "ESTABLISHED"
    ]
    assert left == []


async def test_unreachable_bastion_fails_the_host_clearly(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(1)
    config = tmp_path / "config"
    config.write_text(
        f"Host inner\n  HostName 127.0.0.1\n  Port {fleet.server.port}\n"
        f"  ProxyJump nobody@127.0.0.1:{free_port()}\n"
    )
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], connect_timeout=5))
    try:
        with pytest.raises(HostUnreachable, match=r"cannot reach jump host nobody@127\.0\.0\.1"):
            await transport.connect(Host(name="behind", address="inner"))
    finally:
        await transport.close()


@pytest.fixture
def ssh_agent(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private ssh-agent: (socket path, a function that adds a key to it)."""
    import shutil
    import subprocess
    import time

    if not (shutil.which("ssh-agent") and shutil.which("ssh-add")):
        pytest.skip("ssh-agent is not installed")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    for _ in range(250):
        if sock.exists():
            break
        time.sleep(0.02)

    def add(key: Path) -> None:
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env=env)

    yield sock, add
    agent.terminate()
    agent.wait()


async def test_the_ssh_agent_supplies_the_key(sshd_fleet, tmp_path, monkeypatch, ssh_agent) -> None:
    """No key anywhere in the inventory or options: the agent (SSH_AUTH_SOCK) has it."""
    fleet = sshd_fleet(1)
    sock, add = ssh_agent
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
    monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
    options = dataclasses.replace(fleet.options, client_keys=None)
    host = dataclasses.replace(fleet.hosts[0], key=None)
    empty_agent = SSHTransport(options)
    with pytest.raises(HostUnreachable, match="authentication failed"):
        await empty_agent.connect(host)
    await empty_agent.close()
    add(fleet.server.client_key)
    transport = SSHTransport(options)
    conn = await transport.connect(host)
    assert (await conn.run("echo agent", timeout=10)).stdout_tail == ("agent",)
    await transport.close()
