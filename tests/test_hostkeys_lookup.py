"""Host keys as OpenSSH finds them: user and global known_hosts files, UserKnownHostsFile
and GlobalKnownHostsFile from a test ssh config (the machine's /etc is never touched),
HashKnownHosts on first use; each verdict checked against OpenSSH's own ``ssh`` on the
same files, against a real sshd on loopback."""

from __future__ import annotations

import asyncio
import getpass
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

import asyncssh
import pytest

from console.transport.base import HostKeyError, TransportOptions
from console.transport.knownhosts import (
    DEFAULT_GLOBAL_FILES,
    files_from_config,
    hash_known_hosts,
    host_names,
)
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import SSHD, SSHDServer, free_port, write_keypair
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.sshd


def need(tool: str) -> str:
    """OpenSSH's client tools are the reference here: skip without them (fail in CI)."""
    found = shutil.which(tool)
    if found:
        return found
    reason = f"OpenSSH client tool {tool!r} not installed (apt-get install openssh-client)"
    if os.environ.get("REQUIRE_SSHD") == "1":
        pytest.fail(f"REQUIRE_SSHD=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def config_for(
    tmp_path: Path,
    server: SSHDServer,
    *,
    user_files: str | None = None,
    global_files: str | None = None,
    extra: str = "",
    alias: str = "box",
) -> Path:
    lines = [
        f"Host {alias}",
        "  HostName 127.0.0.1",
        f"  Port {server.port}",
        f"  User {getpass.getuser()}",
        f"  IdentityFile {server.client_key}",
        "  IdentitiesOnly yes",
    ]
    if user_files is not None:
        lines.append(f"  UserKnownHostsFile {user_files}")
    if global_files is not None:
        lines.append(f"  GlobalKnownHostsFile {global_files}")
    path = tmp_path / "ssh_config"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


async def openssh_connects(config: Path, alias: str = "box") -> bool:
    """What OpenSSH itself decides with the same config and files (strict, no prompt)."""
    ssh = need("ssh")
    strict = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    done = await run_tool(
        [ssh, "-F", str(config), *strict, "-o", "ConnectTimeout=20", alias, "true"]
    )
    return done.returncode == 0


async def run_tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, check=False
    )


async def rolldeck_connects(config: Path, alias: str = "box", **options: object) -> bool:
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], **options))  # type: ignore[arg-type]
    try:
        conn = await transport.connect(Host(name="target", address=alias))
        return (await conn.run("true", timeout=20)).ok
    except HostKeyError:
        return False
    finally:
        await transport.close()


def other_key_line(server: SSHDServer, tmp_path: Path) -> str:
    impostor = write_keypair(tmp_path / "impostor_key")
    public = impostor.export_public_key().decode().split()
    return f"[127.0.0.1]:{server.port} {public[0]} {public[1]}\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own: the defaults ~/.ssh/known_hosts{,2} are empty here."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(path))
    return path


async def test_key_only_in_the_global_file_connects(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    user = tmp_path / "user_known_hosts"
    user.write_text("")
    global_file = tmp_path / "global_known_hosts"
    global_file.write_text(sshd_server.known_hosts_line())
    config = config_for(tmp_path, sshd_server, user_files=str(user), global_files=str(global_file))
    assert await openssh_connects(config)
    assert await rolldeck_connects(config)
    assert user.read_text() == ""


async def test_global_file_from_config_without_user_file_setting(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    """No UserKnownHostsFile: the defaults (~/.ssh/known_hosts, ~/.ssh/known_hosts2,
    both absent here), then the GlobalKnownHostsFile of the config."""
    global_file = tmp_path / "global_known_hosts"
    global_file.write_text(sshd_server.known_hosts_line())
    config = config_for(tmp_path, sshd_server, global_files=str(global_file))
    assert await rolldeck_connects(config)


async def test_unknown_key_is_refused_naming_every_file(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    user_a, user_b = tmp_path / "user_a", tmp_path / "user_b"
    user_a.write_text("")
    global_a, global_b = tmp_path / "global_a", tmp_path / "global_b"  # global_b absent
    global_a.write_text("")
    config = config_for(
        tmp_path,
        sshd_server,
        user_files=f"{user_a} {user_b}",
        global_files=f"{global_a} {global_b}",
    )
    assert not await openssh_connects(config)
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)]))
    with pytest.raises(HostKeyError, match="unknown host key") as refused:
        await transport.connect(Host(name="target", address="box"))
    await transport.close()
    message = str(refused.value)
    for path in (user_a, global_a):
        assert str(path) in message
    assert f"{user_b} (absent)" in message
    assert f"{global_b} (absent)" in message
    assert f"[127.0.0.1]:{sshd_server.port}" in message


async def test_refusal_with_defaults_names_the_four_default_files(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    config = config_for(tmp_path, sshd_server)
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], accept_new_host_keys=False))
    with pytest.raises(HostKeyError) as refused:
        await transport.connect(Host(name="target", address="box"))
    await transport.close()
    message = str(refused.value)
    for path in (home / ".ssh/known_hosts", home / ".ssh/known_hosts2", *DEFAULT_GLOBAL_FILES):
        assert str(path) in message


async def test_two_user_files_key_in_the_second_with_tokens(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    """UserKnownHostsFile with two files, the second named with %n, %h and %p, which
    OpenSSH expands and asyncssh does not."""
    first = tmp_path / "first"
    first.write_text("")
    second = tmp_path / f"kh-box-127.0.0.1-{sshd_server.port}"
    second.write_text(sshd_server.known_hosts_line())
    config = config_for(
        tmp_path, sshd_server, user_files=f"{first} {tmp_path}/kh-%n-%h-%p", global_files="none"
    )
    assert await openssh_connects(config)
    assert await rolldeck_connects(config)


async def test_hash_known_hosts_first_use_writes_a_hashed_entry_openssh_finds(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    ssh_keygen = need("ssh-keygen")
    user = tmp_path / "ssh" / "known_hosts"  # absent: created 0600 on first use
    spare = tmp_path / "known_hosts_spare"
    global_file = tmp_path / "global_known_hosts"
    global_file.write_text("# managed by the organisation\n")
    config = config_for(
        tmp_path,
        sshd_server,
        user_files=f"{user} {spare}",
        global_files=str(global_file),
        extra="Host *\n  HashKnownHosts yes\n",
    )
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], accept_new_host_keys=True))
    conn = await transport.connect(Host(name="target", address="box"))
    assert (await conn.run("true", timeout=20)).ok
    await transport.close()
    assert [name for name, _ in transport.accepted_keys] == ["target"]
    written = user.read_text().splitlines()
    assert len(written) == 1 and written[0].startswith("|1|")
    assert f"{sshd_server.port}" not in written[0].split()[0]  # the name is not readable
    assert user.stat().st_mode & 0o777 == 0o600
    assert not spare.exists()  # only the first user file is written
    assert global_file.read_text() == "# managed by the organisation\n"  # read-only
    lookup = f"[127.0.0.1]:{sshd_server.port}"
    found = await run_tool([ssh_keygen, "-F", lookup, "-f", str(user)])
    assert found.returncode == 0, found.stderr
    assert "found" in found.stdout and written[0] in found.stdout
    # OpenSSH trusts it, and so does a second rolldeck run without --accept-new-host-keys.
    assert await openssh_connects(config)
    assert await rolldeck_connects(config)
    assert user.read_text().splitlines() == written


async def test_first_use_without_hash_known_hosts_writes_a_plain_entry(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    user = tmp_path / "known_hosts"
    config = config_for(
        tmp_path, sshd_server, user_files=str(user), extra="Host *\n  HashKnownHosts no\n"
    )
    assert await rolldeck_connects(config, accept_new_host_keys=True)
    assert user.read_text() == sshd_server.known_hosts_line()


async def test_first_use_with_user_file_none_records_nothing(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    global_file = tmp_path / "global_known_hosts"
    global_file.write_text("")
    config = config_for(tmp_path, sshd_server, user_files="none", global_files=str(global_file))
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], accept_new_host_keys=True))
    with pytest.raises(HostKeyError, match="UserKnownHostsFile is none") as refused:
        await transport.connect(Host(name="target", address="box"))
    await transport.close()
    assert str(global_file) in str(refused.value)
    assert global_file.read_text() == ""
    assert transport.accepted_keys == []


@pytest.mark.parametrize("wrong_in", ["global", "user"])
async def test_wrong_key_in_one_file_right_key_in_the_other_as_openssh(
    sshd_server: SSHDServer, tmp_path: Path, home: Path, wrong_in: str
) -> None:
    wrong = other_key_line(sshd_server, tmp_path)
    right = sshd_server.known_hosts_line()
    user, global_file = tmp_path / "user_known_hosts", tmp_path / "global_known_hosts"
    user.write_text(right if wrong_in == "global" else wrong)
    global_file.write_text(wrong if wrong_in == "global" else right)
    config = config_for(tmp_path, sshd_server, user_files=str(user), global_files=str(global_file))
    expected = await openssh_connects(config)
    assert await rolldeck_connects(config) == expected
    assert expected  # OpenSSH 9.x: a matching key in any file is enough


async def test_wrong_key_only_in_the_global_file_is_a_changed_key(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    user, global_file = tmp_path / "user_known_hosts", tmp_path / "global_known_hosts"
    user.write_text("")
    global_file.write_text(other_key_line(sshd_server, tmp_path))
    config = config_for(tmp_path, sshd_server, user_files=str(user), global_files=str(global_file))
    assert not await openssh_connects(config)
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)], accept_new_host_keys=True))
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED") as refused:
        await transport.connect(Host(name="target", address="box"))
    await transport.close()
    assert f"{global_file} records ssh-ed25519" in str(refused.value)
    assert user.read_text() == ""  # a changed key is never written, even on first use


async def test_revoked_in_the_global_file_refuses_a_key_the_user_file_trusts(
    sshd_server: SSHDServer, tmp_path: Path, home: Path
) -> None:
    user, global_file = tmp_path / "user_known_hosts", tmp_path / "global_known_hosts"
    user.write_text(sshd_server.known_hosts_line())
    global_file.write_text("@revoked " + sshd_server.known_hosts_line())
    config = config_for(tmp_path, sshd_server, user_files=str(user), global_files=str(global_file))
    assert not await openssh_connects(config)
    assert not await rolldeck_connects(config)


async def test_jump_host_key_is_looked_up_in_its_own_global_file(
    sshd_server: SSHDServer, sshd_factory, tmp_path: Path, home: Path
) -> None:
    """ProxyJump: the bastion's key is only in the GlobalKnownHostsFile of its own Host
    block; the target's only in its own user file. A bastion known nowhere is refused
    with the files named."""
    bastion = sshd_factory(client_key=sshd_server.client_key)
    bastion_global = tmp_path / "bastion_global"
    target_user = tmp_path / "target_user"
    target_user.write_text(sshd_server.known_hosts_line())
    empty = tmp_path / "empty"
    empty.write_text("")
    me = getpass.getuser()

    def write(bastion_files: str) -> Path:
        config = tmp_path / "jump_config"
        config.write_text(
            f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n  User {me}\n"
            f"  IdentityFile {sshd_server.client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {empty}\n  GlobalKnownHostsFile {bastion_files}\n"
            f"Host inner\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n  User {me}\n"
            f"  IdentityFile {sshd_server.client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {target_user}\n  GlobalKnownHostsFile none\n"
            f"  ProxyJump bastion\n"
        )
        return config

    bastion_global.write_text(bastion.known_hosts_line())
    config = write(str(bastion_global))
    assert await openssh_connects(config, "inner")
    assert await rolldeck_connects(config, "inner")
    config = write(str(empty))
    assert not await openssh_connects(config, "inner")
    transport = SSHTransport(TransportOptions(ssh_config=[str(config)]))
    with pytest.raises(HostKeyError, match="jump host bastion: host key refused") as refused:
        await transport.connect(Host(name="target", address="inner"))
    await transport.close()
    assert f"looked in {empty}" in str(refused.value)


# -- the config, read as OpenSSH reads it (`ssh -G` is the reference) -------------------

CONFIG = """\
Host plain
  HostName 10.0.0.7
  Port 2200
Host hashed
  HashKnownHosts yes
  UserKnownHostsFile %d/kh/%h-%p-%r "{tmp}/with space/%n" {tmp}/%u-%i-%%
  GlobalKnownHostsFile {tmp}/global1 {tmp}/global2
Match originalhost matched user deployer
  HashKnownHosts yes
Host !nothash *hash*
  HashKnownHosts=yes
Host included
  Include {tmp}/extra.conf
Host *
  HashKnownHosts no
  User deployer
"""


@pytest.mark.parametrize("alias", ["plain", "hashed", "matched", "washing", "nothash", "included"])
async def test_files_and_hash_known_hosts_agree_with_ssh_dash_g(tmp_path: Path, alias: str) -> None:
    ssh = need("ssh")
    if os.environ.get("HOME") != pwd.getpwuid(os.getuid()).pw_dir:
        pytest.skip("HOME differs from the passwd home: %d and ~ would legitimately differ")
    (tmp_path / "extra.conf").write_text("HashKnownHosts yes\n")
    config = tmp_path / "config"
    config.write_text(CONFIG.format(tmp=tmp_path))
    dumped = (await run_tool([ssh, "-G", "-F", str(config), alias])).stdout
    said = dict(line.split(" ", 1) for line in dumped.splitlines() if " " in line)
    resolved = await asyncssh.SSHClientConnectionOptions.construct(
        config=[str(config)], host=alias, client_keys=None
    )
    names = host_names(resolved.config, alias, getpass.getuser())
    files = files_from_config(resolved.config, names)
    assert " ".join(files.user) == said["userknownhostsfile"]
    assert " ".join(files.system) == said["globalknownhostsfile"]
    assert hash_known_hosts([str(config)], names) == (said["hashknownhosts"] == "yes")


async def test_bad_hash_known_hosts_value_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n  User op\n  HashKnownHosts maybe\n")
    resolved = await asyncssh.SSHClientConnectionOptions.construct(
        config=[str(config)], host="box", client_keys=None
    )
    names = host_names(resolved.config, "box", getpass.getuser())
    with pytest.raises(ValueError, match=rf"{config}:3: HashKnownHosts"):
        hash_known_hosts([str(config)], names)


@pytest.fixture
def cert_sshd(sshd_factory, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An sshd presenting a host certificate (principal 127.0.0.1) signed by a test CA:
    (server, the CA's public key line, the certificate's port)."""
    ssh_keygen = need("ssh-keygen")
    server = sshd_factory()
    ca = tmp_path / "host_ca"
    write_keypair(ca)
    public = str(server.host_key) + ".pub"
    signed = subprocess.run(
        [ssh_keygen, "-q", "-s", str(ca), "-I", "test-host", "-h", "-n", "127.0.0.1", public],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert signed.returncode == 0, signed.stderr
    port = free_port()
    text = (server.workdir / "sshd_config").read_text()
    text = text.replace(f"ListenAddress 127.0.0.1:{server.port}", f"ListenAddress 127.0.0.1:{port}")
    config = tmp_path / "sshd_cert_config"
    config.write_text(text + f"HostCertificate {server.host_key}-cert.pub\n")
    process = subprocess.Popen(
        [SSHD, "-D", "-f", str(config), "-E", str(tmp_path / "sshd_cert.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until_sync(
            lambda: listening() or process.poll() is not None,
            timeout=20,
            what="the certificate sshd listening",
        )
        assert process.poll() is None, (tmp_path / "sshd_cert.log").read_text()
        ca_public = Path(str(ca) + ".pub").read_text().split()
        yield server, f"{ca_public[0]} {ca_public[1]}", port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("pattern", ["[127.0.0.1]:{port}", "[127.0.0.*]:*", "other.example"])
async def test_cert_authority_in_the_global_file_as_openssh(
    cert_sshd, tmp_path: Path, home: Path, pattern: str
) -> None:
    server, ca_line, port = cert_sshd
    user, global_file = tmp_path / "user_known_hosts", tmp_path / "global_known_hosts"
    user.write_text("")
    global_file.write_text(f"@cert-authority {pattern.format(port=port)} {ca_line}\n")
    config = config_for(tmp_path, server, user_files=str(user), global_files=str(global_file))
    config.write_text(config.read_text().replace(f"Port {server.port}", f"Port {port}"))
    expected = await openssh_connects(config)
    assert await rolldeck_connects(config) == expected
    assert expected == (pattern != "other.example")
