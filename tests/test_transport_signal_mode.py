"""``rolldeck_kill: signal``: stopping commands on servers without a shell.

A minimal asyncssh server stands in for such a server (the simulated fleet is one): it
runs ``sleep`` and ``echo`` only, honours the SSH ``signal`` request, and records what
it received, so the test sees exactly what the transport sent.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from console.transport.base import TransportOptions
from console.transport.ssh import SSHTransport
from inventory.model import Host


@dataclass
class Recorded:
    signals: list[str] = field(default_factory=list)
    closed: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)


class _Server(asyncssh.SSHServer):
    """No authentication; every session is a :class:`_Session`."""

    def __init__(self, recorded: Recorded, stubborn: bool) -> None:
        self._recorded = recorded
        self._stubborn = stubborn

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> _Session:
        return _Session(self._recorded, self._stubborn)


class _Session(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """``sleep N`` until signalled (``stubborn`` ignores TERM); ``echo X``."""

    def __init__(self, recorded: Recorded, stubborn: bool) -> None:
        self._recorded = recorded
        self._stubborn = stubborn
        self._command = ""

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:  # type: ignore[type-arg]
        self._chan = chan

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def session_started(self) -> None:
        if self._command.startswith("echo "):
            self._chan.write(self._command[5:] + "\n")
            self._chan.exit(0)
        else:
            self._recorded.started.set()

    def signal_received(self, signal: str) -> None:
        self._recorded.signals.append(signal)
        if signal == "KILL" or not self._stubborn:
            self._chan.exit_with_signal(signal)

    def connection_lost(self, exc: Exception | None) -> None:
        self._recorded.closed += 1


@pytest.fixture
async def shell_less_server(
    tmp_path: Path, request
) -> AsyncIterator[tuple[Host, SSHTransport, Recorded]]:
    stubborn = getattr(request, "param", False)
    recorded = Recorded()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        lambda: _Server(recorded, stubborn), "127.0.0.1", 0, server_host_keys=[host_key]
    )
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    public = host_key.export_public_key().decode().split()
    known.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    host = Host(
        name="sim-01",
        address="127.0.0.1",
        port=port,
        user=getpass.getuser(),
        vars={"rolldeck_kill": "signal"},
    )
    transport = SSHTransport(TransportOptions(known_hosts=str(known), ssh_config=[]))
    yield host, transport, recorded
    await transport.close()
    server.close()
    await server.wait_closed()


async def test_plain_commands_run_verbatim(shell_less_server) -> None:
    host, transport, _ = shell_less_server
    result = await (await transport.connect(host)).run("echo hello", timeout=5)
    assert result.ok and result.stdout_tail == ("hello",)


async def test_timeout_sends_term_and_closes_the_channel(shell_less_server) -> None:
    host, transport, recorded = shell_less_server
    result = await (await transport.connect(host)).run("sleep 100", timeout=0.3)
    assert result.status == "timeout" and result.signal == "TERM"
    assert recorded.signals == ["TERM"]
    for _ in range(100):  # the server sees our close reply a moment after we return
        if recorded.closed:
            break
        await asyncio.sleep(0.01)
    assert recorded.closed == 1


async def test_cancellation_sends_term(shell_less_server) -> None:
    host, transport, recorded = shell_less_server
    conn = await transport.connect(host)
    task = asyncio.create_task(conn.run("sleep 100", timeout=60))
    await asyncio.wait_for(recorded.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorded.signals == ["TERM"]


@pytest.mark.slow
@pytest.mark.parametrize("shell_less_server", [True], indirect=True)
async def test_a_command_ignoring_term_gets_kill_then_close(shell_less_server) -> None:
    host, transport, recorded = shell_less_server
    result = await (await transport.connect(host)).run("sleep 100", timeout=0.3)
    assert result.status == "timeout" and result.signal == "KILL"
    assert recorded.signals == ["TERM", "KILL"]
    assert recorded.closed == 1


async def test_closing_a_stream_signals_it(shell_less_server) -> None:
    host, transport, recorded = shell_less_server
    follower = (await transport.connect(host)).stream("sleep 100")
    reader = asyncio.create_task(anext(follower))
    await asyncio.wait_for(recorded.started.wait(), 5)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert recorded.signals == ["TERM"]
