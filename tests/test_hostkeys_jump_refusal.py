"""A ProxyJump bastion whose host key is refused is a host-key refusal of every host
behind it (HostKeyError), never "unreachable": ``--allow-unreachable`` skips a host
that is down, and must not treat an unverified bastion the same way. A bastion that
is down stays HostUnreachable. Real OpenSSH servers on loopback: a bastion and a
target behind it, with the user's ssh config as OpenSSH reads it."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from console.transport.base import HostKeyError, HostUnreachable, TransportOptions
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import SSHDServer, free_port

pytestmark = pytest.mark.sshd


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own: the default ~/.ssh/known_hosts files are empty."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(path))
    return path


def jump_config(tmp_path: Path, target: SSHDServer, bastion_port: int, bastion_known: Path) -> Path:
    """``inner`` behind ``bastion``; the target's key known, the bastion's only in
    ``bastion_known``."""
    target_known = tmp_path / "target_known"
    target_known.write_text(target.known_hosts_line())
    me = getpass.getuser()
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion_port}\n  User {me}\n"
        f"  IdentityFile {target.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {bastion_known}\n  GlobalKnownHostsFile none\n"
        f"Host inner\n  HostName 127.0.0.1\n  Port {target.port}\n  User {me}\n"
        f"  IdentityFile {target.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {target_known}\n  GlobalKnownHostsFile none\n"
        "  ProxyJump bastion\n"
    )
    return config


async def connect(config: Path, **options: object) -> None:
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], **options))  # type: ignore[arg-type]
    try:
        conn = await transport.connect(Host(name="target", address="inner"))
        assert (await conn.run("true", timeout=20)).ok
    finally:
        await transport.close()


async def test_refused_bastion_key_is_a_host_key_error(
    sshd_server: SSHDServer, sshd_factory, tmp_path: Path, home: Path
) -> None:
    bastion = sshd_factory(client_key=sshd_server.client_key)
    known = tmp_path / "bastion_known"
    known.write_text(bastion.known_hosts_line())
    config = jump_config(tmp_path, sshd_server, bastion.port, known)
    await connect(config)  # the bastion known: through it to the target

    known.write_text("")  # unknown bastion
    with pytest.raises(HostKeyError) as unknown:
        await connect(config)
    assert not isinstance(unknown.value, HostUnreachable)
    words = str(unknown.value)
    assert words.startswith("target: jump host bastion: host key refused"), words
    assert f"looked in {known}" in words, words

    impostor = tmp_path / "impostor"  # a changed bastion key: refused the same way
    line = bastion.known_hosts_line().split()
    other = sshd_server.known_hosts_line().split()
    impostor.write_text(f"{line[0]} {other[1]} {other[2]}\n")
    config = jump_config(tmp_path, sshd_server, bastion.port, impostor)
    with pytest.raises(HostKeyError, match="jump host bastion: host key refused"):
        await connect(config)


async def test_bastion_down_stays_unreachable(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    known = tmp_path / "bastion_known"
    known.write_text("")
    config = jump_config(tmp_path, sshd_server, free_port(), known)  # nothing listens
    with pytest.raises(HostUnreachable, match="cannot reach jump host bastion") as down:
        await connect(config, connect_timeout=20.0)
    assert not isinstance(down.value, HostKeyError)
