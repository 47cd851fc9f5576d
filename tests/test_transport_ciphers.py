"""The cipher rolldeck offers first (issue 13): AES-GCM on a CPU with AES instructions,
the user's ``Ciphers`` line when the ssh config has one. The integration half asks a
real OpenSSH sshd, logging at DEBUG1, which cipher it agreed to."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import asyncssh.encryption
import pytest

from console.transport.ciphers import has_aes_instructions, preferred_ciphers
from console.transport.ssh import SSHTransport
from tests.fixtures.sshd import SSHDServer, make_fleet

X86 = "processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2 sha_ni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
NO_AES = "processor\t: 0\nflags\t\t: fpu vme sse2 avx2 aesx\nmodel name\t: aes-less box\n"


def test_aes_instructions_are_read_from_the_cpu_flags() -> None:
    assert has_aes_instructions(X86)
    assert has_aes_instructions(ARM)
    assert not has_aes_instructions(NO_AES)  # "aesx" and a model name are not the flag
    assert not has_aes_instructions("")
    assert has_aes_instructions(None)  # no /proc/cpuinfo: macOS and BSD machines


def test_the_order_is_asyncssh_set_with_gcm_first() -> None:
    order = preferred_ciphers()
    default = [a.decode() for a in asyncssh.encryption.get_default_encryption_algs()]
    if order is None:  # this machine's CPU has no AES instructions: asyncssh's order
        pytest.skip("no AES instructions on this CPU: the default order is kept")
    assert sorted(order) == sorted(default)  # nothing added, nothing dropped
    assert order[0] == "aes128-gcm@openssh.com"
    assert order[1] == "aes256-gcm@openssh.com"


def _agreed(server: SSHDServer, since: int) -> list[str]:
    text = server.log.read_text(errors="replace")[since:]
    return re.findall(r"kex: client->server cipher: (\S+)", text)


@pytest.mark.sshd
@pytest.mark.parametrize(
    ("config_line", "expected"),
    [
        ("", "aes128-gcm@openssh.com"),
        ("Ciphers chacha20-poly1305@openssh.com\n", "chacha20-poly1305@openssh.com"),
        ("Host elsewhere\n  Ciphers aes256-ctr\n", "aes128-gcm@openssh.com"),
    ],
)
async def test_the_server_agrees_to_our_order_or_the_users_config(
    sshd_factory: Callable[..., SSHDServer], tmp_path: Path, config_line: str, expected: str
) -> None:
    if preferred_ciphers() is None and not config_line.startswith("Ciphers"):
        pytest.skip("no AES instructions on this CPU: asyncssh's own order applies")
    server = sshd_factory(log_level="DEBUG1")
    fleet = make_fleet(server, tmp_path, 1)
    config = tmp_path / "ssh_config"
    config.write_text(config_line)
    transport = SSHTransport(dataclasses.replace(fleet.options, ssh_config=[str(config)]))
    since = len(server.log.read_text(errors="replace"))
    try:
        conn = await transport.connect(fleet.hosts[0])
        result = await conn.run("echo up", timeout=30)
        assert result.stdout_tail == ("up",), result
    finally:
        await transport.close()
    assert _agreed(server, since) == [expected]
