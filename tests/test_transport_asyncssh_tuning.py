"""The asyncssh patches: packet logging free when off (and still working on); the empty
ignore packet sent only under a cipher that needs it."""

from __future__ import annotations

import logging

import asyncssh
import asyncssh.constants
import asyncssh.encryption
import asyncssh.packet
import pytest
from asyncssh.packet import SSHPacketLogger

import console.transport.ssh  # noqa: F401  (applies the patch, as the transport does)
from console.transport.asyncssh_tuning import (
    needs_ignore_packets,
    skip_needless_ignore_packets,
    skip_unlogged_packets,
)
from tests.fixtures.simfleet import FleetFactory, sim_connect


def test_patch_is_in_place_and_idempotent() -> None:
    patched = SSHPacketLogger._log_packet
    assert skip_unlogged_packets() is True
    assert SSHPacketLogger._log_packet is patched  # not wrapped twice


async def test_packets_are_logged_only_at_debug_level_3(
    sim_fleet_factory: FleetFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = await sim_fleet_factory(n=1)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    formatted = []  # asyncssh's per-packet message building, which the patch skips
    real_plural = asyncssh.packet.plural
    monkeypatch.setattr(
        asyncssh.packet, "plural", lambda *a: formatted.append(a) or real_plural(*a)
    )

    async def packet_records() -> int:
        caplog.clear()
        async with sim_connect(fleet, "web-01") as conn:
            assert (await conn.run("echo hi")).stdout == "hi\n"
        return sum("packet" in getattr(r, "__dict__", {}) for r in caplog.records)

    try:
        asyncssh.set_debug_level(1)
        assert await packet_records() == 0
        assert formatted == []  # not even built
        asyncssh.set_debug_level(3)
        assert await packet_records() > 5  # kex, auth, channel open, data, close...
        assert formatted
    finally:
        asyncssh.set_debug_level(1)


def test_ignore_packets_only_where_the_cipher_needs_them() -> None:
    for aead_or_ctr in (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes256-ctr",
    ):
        assert not needs_ignore_packets(aead_or_ctr), aead_or_ctr
    for other in ("aes128-cbc", "3des-cbc", "blowfish-cbc", "arcfour", "", None):
        assert needs_ignore_packets(other), other
    assert skip_needless_ignore_packets() is True  # in place (the transport applied it)
    assert skip_needless_ignore_packets() is True  # and not wrapped twice


class _OpenServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no authentication: this server only answers `echo`


async def _echo(process: asyncssh.SSHServerProcess[str]) -> None:
    process.stdout.write(process.command or "")
    process.exit(0)


@pytest.mark.parametrize(
    ("cipher", "ignores"),
    [
        ("aes128-gcm@openssh.com", False),
        ("chacha20-poly1305@openssh.com", False),
        ("aes128-ctr", False),
        ("aes128-cbc", True),  # the countermeasure's case: every packet still gets one
    ],
)
async def test_a_client_sends_ignore_packets_only_under_cbc(
    cipher: str, ignores: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real asyncssh server (every cipher allowed) and a client pinned to ``cipher``:
    the client's packets as asyncssh writes them, counted where it logs each one."""
    sent: list[int] = []
    real = SSHPacketLogger.log_sent_packet

    def spy(self: SSHPacketLogger, pkttype: int, *args: object, **kwargs: object) -> None:
        if isinstance(self, (asyncssh.SSHClientConnection, asyncssh.SSHClientChannel)):
            sent.append(pkttype)
        real(self, pkttype, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SSHPacketLogger, "log_sent_packet", spy)
    every = [alg.decode() for alg in asyncssh.encryption.get_encryption_algs()]
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        server_factory=_OpenServer,
        process_factory=_echo,
        encryption_algs=every,
    )
    try:
        port = server.sockets[0].getsockname()[1]
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username="u",
            known_hosts=None,  # a throwaway key made just above
            agent_path=None,
            config=[],
            client_keys=None,
            encryption_algs=[cipher],
        ) as conn:
            assert conn.get_extra_info("send_cipher") == cipher
            for word in ("one", "two"):
                assert (await conn.run(f"{word}\n")).stdout == f"{word}\n"
    finally:
        server.close()
        await server.wait_closed()
    after_kex = sent[sent.index(asyncssh.constants.MSG_NEWKEYS) + 1 :]
    # asyncssh's countermeasure precedes each packet past the key exchange's own types
    others = [t for t in after_kex if t > asyncssh.constants.MSG_KEX_LAST]
    assert len(others) >= 7  # auth; for each command: channel open, exec request, close
    count = after_kex.count(asyncssh.constants.MSG_IGNORE)
    assert count == (len(others) if ignores else 0), (cipher, after_kex)
