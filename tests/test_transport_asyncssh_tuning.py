"""The asyncssh packet-logging patch: free when off, and packet logging still works on."""

from __future__ import annotations

import logging

import asyncssh
import asyncssh.packet
import pytest
from asyncssh.packet import SSHPacketLogger

import console.transport.ssh  # noqa: F401  (applies the patch, as the transport does)
from console.transport.asyncssh_tuning import skip_unlogged_packets
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
