"""The transport contract (console/transport/base.py), one set of tests for all three.

Each test runs against the fake (in memory), the local transport (subprocesses) and
SSHTransport (a real OpenSSH sshd on loopback), so the fake the engine's tests rely
on cannot drift from the transports production uses. A test names each command
twice: the shell command the real transports run, and the :class:`Reply` the fake is
scripted with for it (what that shell command does). The assertions are shared.

"Is the process gone?" means: no living process carries the command's marker (the
sshd is local), or, for the fake, no record of the command is still running.

The SSH case skips when OpenSSH's sshd is not installed, and fails under
``REQUIRE_SSHD=1`` (tests/fixtures/sshd.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from console.transport.base import (
    Connection,
    HostKeyError,
    HostUnreachable,
    Session,
    Transport,
    TransportError,
    TransportOptions,
)
from console.transport.fake import FakeTransport, Reply
from console.transport.local import LocalTransport
from console.transport.output import MAX_LINE
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import SSHFleet, free_port, living_processes, unique_sleep

TAIL = 3  # every rig keeps three lines of each stream
RUN = 30.0  # the timeout of a command that is meant to finish: generous, under load
GONE_WITHIN = 15.0  # a safety cap on waiting for a condition, never a measured time


@dataclass
class Rig:
    """One transport under test, two reachable hosts, and how to script and inspect it."""

    kind: str
    transport: Transport
    hosts: list[Host]
    unreachable: Host | None  # None: this transport has no host that can be down
    unknown_key: Host | None  # a host whose key is not trusted; None: no host keys
    fake: FakeTransport | None = None
    handshakes: Callable[[], int] | None = None  # connections actually opened

    def cmd(self, command: str, reply: Reply) -> str:
        """``command`` for the real transports; the fake answers it with ``reply``."""
        if self.fake is not None:
            self.fake.on("^" + re.escape(command) + "$", reply)
        return command

    def alive(self, marker: str) -> bool:
        """Whether a process of a command carrying ``marker`` still runs."""
        if self.fake is not None:
            return any(r.status == "running" and marker in r.command for r in self.fake.records)
        return bool(living_processes(marker))


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (polled), failing after a generous cap."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GONE_WITHIN
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


async def gone(rig: Rig, marker: str) -> None:
    await until(lambda: not rig.alive(marker), f"{marker!r} still running")


@pytest.fixture(params=["fake", "local", pytest.param("ssh", marks=pytest.mark.sshd)])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    kind: str = request.param
    options = TransportOptions(tail_lines=TAIL)
    made: Rig
    if kind == "fake":
        fake = FakeTransport(options)
        hosts = [Host(name=f"web-0{i}", address=f"10.0.0.{i}") for i in (1, 2)]
        down = Host(name="web-09", address="10.0.0.9")
        fake.unreachable(down.name, "connection refused")
        stranger = Host(name="web-08", address="10.0.0.8")
        fake.bad_host_key(stranger.name)
        made = Rig(
            kind, fake, hosts, down, stranger, fake=fake, handshakes=lambda: fake.connects("web-01")
        )
    elif kind == "local":
        hosts = [
            Host(name="localhost", address="127.0.0.1"),
            Host(name="local-2", address="127.0.0.1", vars={"rolldeck_connection": "local"}),
        ]
        made = Rig(kind, LocalTransport(options), hosts, None, None)
    else:
        fleet: SSHFleet = request.getfixturevalue("sshd_fleet")(2)
        ssh = SSHTransport(dataclasses.replace(fleet.options, tail_lines=TAIL))
        # Nothing listens on a fresh free port: connection refused.
        down = dataclasses.replace(fleet.hosts[0], name="web-09", port=free_port())
        empty = request.getfixturevalue("tmp_path") / "known_hosts.empty"
        empty.write_text("")
        stranger = dataclasses.replace(fleet.hosts[0], name="web-08", known_hosts=str(empty))
        made = Rig(kind, ssh, fleet.hosts, down, stranger, handshakes=lambda: ssh.handshakes)
    try:
        yield made
    finally:
        await made.transport.close()


# -- results -------------------------------------------------------------------------


async def test_declares_every_capability(rig: Rig) -> None:
    """The protocols name every capability; each implementation has them all."""
    assert isinstance(rig.transport, Transport)
    conn = await rig.transport.connect(rig.hosts[0])
    assert isinstance(conn, Connection)
    assert isinstance(conn.chains_commands, bool)
    assert list(rig.transport.accepted_keys) == []
    shell = conn.persistent_shell()
    assert shell is None or isinstance(shell, Session)
    if shell is not None:
        await shell.close()


async def test_exit_codes_give_ok_and_failed(rig: Rig) -> None:
    conn = await rig.transport.connect(rig.hosts[0])
    ok = await conn.run(rig.cmd("echo fine; exit 0", Reply(lines=["fine"])), timeout=RUN)
    assert (ok.status, ok.ok, ok.exit_code, ok.signal) == ("ok", True, 0, None)
    assert ok.first_line == "fine"
    bad = await conn.run(rig.cmd("exit 7", Reply(exit_code=7)), timeout=RUN)
    assert (bad.status, bad.ok, bad.exit_code, bad.signal) == ("failed", False, 7, None)
    assert bad.stdout_tail == () and bad.stderr_tail == () and bad.duration >= 0


async def test_death_by_signal_is_a_failure_without_exit_code(rig: Rig) -> None:
    conn = await rig.transport.connect(rig.hosts[0])
    result = await conn.run(rig.cmd("kill -KILL $$", Reply(signal="KILL")), timeout=RUN)
    assert (result.status, result.exit_code, result.signal) == ("failed", None, "KILL")


async def test_lines_reach_on_line_in_order_and_tails_keep_the_last(rig: Rig) -> None:
    seen: list[tuple[str, str]] = []
    command = rig.cmd(
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf 'last'; exit 2",
        Reply(
            exit_code=2,
            lines=[f"out{i}" for i in range(1, 6)] + ["last"],
            stderr=[f"err{i}" for i in range(1, 6)],
        ),
    )
    conn = await rig.transport.connect(rig.hosts[0])
    result = await conn.run(command, timeout=RUN, on_line=lambda s, line: seen.append((s, line)))
    # Each stream in order; the two streams are not ordered with each other.
    assert [line for s, line in seen if s == "stdout"] == [f"out{i}" for i in range(1, 6)] + [
        "last"
    ]
    assert [line for s, line in seen if s == "stderr"] == [f"err{i}" for i in range(1, 6)]
    assert result.stdout_tail == ("out4", "out5", "last")
    assert result.stderr_tail == ("err3", "err4", "err5")
    assert (result.status, result.exit_code) == ("failed", 2)


async def test_long_lines_arrive_in_pieces(rig: Rig) -> None:
    size = MAX_LINE * 2 + 10
    command = rig.cmd(f"head -c {size} /dev/zero | tr '\\0' x; echo", Reply(lines=["x" * size]))
    conn = await rig.transport.connect(rig.hosts[0])
    result = await conn.run(command, timeout=RUN)
    assert [len(line) for line in result.stdout_tail] == [MAX_LINE, MAX_LINE, 10]


# -- stopping --------------------------------------------------------------------------


async def test_timeout_stops_the_process(rig: Rig) -> None:
    sleep = unique_sleep()
    conn = await rig.transport.connect(rig.hosts[0])
    await conn.run(rig.cmd("true", Reply()), timeout=RUN)  # connected: the timeout is the command's
    command = rig.cmd(f"echo started; {sleep}", Reply(lines=["started"], hang=True))
    result = await conn.run(command, timeout=1.5)
    assert (result.status, result.exit_code, result.ok) == ("timeout", None, False)
    assert result.stdout_tail in ((), ("started",))  # what arrived before the deadline
    assert result.signal in ("TERM", "KILL")
    await gone(rig, sleep)
    again = await conn.run(rig.cmd("echo usable", Reply(lines=["usable"])), timeout=RUN)
    assert again.stdout_tail == ("usable",)


async def test_cancellation_stops_the_process_and_propagates(rig: Rig) -> None:
    sleep = unique_sleep()
    started = asyncio.Event()
    conn = await rig.transport.connect(rig.hosts[0])
    command = rig.cmd(f"echo started; {sleep}", Reply(lines=["started"], hang=True))
    task = asyncio.create_task(
        conn.run(command, timeout=300, on_line=lambda s, line: started.set())
    )
    async with asyncio.timeout(GONE_WITHIN):
        await started.wait()  # streamed while the command runs
    assert not task.done()
    await until(lambda: rig.alive(sleep), f"{sleep!r} never seen running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await gone(rig, sleep)


async def test_an_on_line_error_stops_the_process_and_propagates(rig: Rig) -> None:
    sleep = unique_sleep()
    conn = await rig.transport.connect(rig.hosts[0])

    def explode(stream: str, line: str) -> None:
        raise RuntimeError(f"callback failed on {line}")

    command = rig.cmd(f"echo boom; {sleep}", Reply(lines=["boom"], hang=True))
    with pytest.raises(RuntimeError, match="callback failed on boom"):
        await conn.run(command, timeout=300, on_line=explode)
    await gone(rig, sleep)


async def test_stream_follows_stdout_and_closing_it_stops_the_process(rig: Rig) -> None:
    conn = await rig.transport.connect(rig.hosts[0])
    ended = rig.cmd("echo a; echo hidden >&2; echo b", Reply(lines=["a", "b"], stderr=["hidden"]))
    assert [line async for line in conn.stream(ended)] == ["a", "b"]

    sleep = unique_sleep()
    command = rig.cmd(f"echo one; echo two; {sleep}", Reply(lines=["one", "two"], hang=True))
    follower = conn.stream(command)
    got: list[str] = []
    async with asyncio.timeout(GONE_WITHIN):
        async for line in follower:
            got.append(line)
            if len(got) == 2:
                break
    assert got == ["one", "two"]
    await until(lambda: rig.alive(sleep), f"{sleep!r} never seen running")
    await follower.aclose()
    await gone(rig, sleep)


# -- connections -----------------------------------------------------------------------


async def test_commands_share_one_connection(rig: Rig) -> None:
    host = rig.hosts[0]
    conn = await rig.transport.connect(host)
    first = await conn.run(rig.cmd("echo one", Reply(lines=["one"])), timeout=RUN)
    assert await rig.transport.connect(host) is conn
    both = await asyncio.gather(
        conn.run(rig.cmd("echo two", Reply(lines=["two"])), timeout=RUN),
        conn.run(rig.cmd("echo three", Reply(lines=["three"])), timeout=RUN),
    )
    assert [r.first_line for r in (first, *both)] == ["one", "two", "three"]
    assert rig.transport.open_connections == 1
    if rig.handshakes is not None:
        assert rig.handshakes() == 1


async def test_open_connections_counts_and_close_closes(rig: Rig) -> None:
    transport = rig.transport
    assert transport.open_connections == 0
    first = await transport.connect(rig.hosts[0])
    second = await transport.connect(rig.hosts[1])
    assert transport.open_connections == 2
    await first.close()
    assert transport.open_connections == 1
    with pytest.raises(HostUnreachable):
        await first.run(rig.cmd("echo late", Reply(lines=["late"])), timeout=RUN)
    reopened = await transport.connect(rig.hosts[0])
    assert reopened is not first and transport.open_connections == 2
    assert (await reopened.run(rig.cmd("echo back", Reply(lines=["back"])), timeout=RUN)).ok

    await transport.close()
    assert transport.open_connections == 0
    with pytest.raises(HostUnreachable):
        await second.run(rig.cmd("echo after", Reply(lines=["after"])), timeout=RUN)
    with pytest.raises(TransportError):
        await transport.connect(rig.hosts[1])


async def test_close_host_closes_that_host_only(rig: Rig) -> None:
    first = await rig.transport.connect(rig.hosts[0])
    second = await rig.transport.connect(rig.hosts[1])
    await rig.transport.close_host(rig.hosts[0].name)
    assert rig.transport.open_connections == 1
    with pytest.raises(HostUnreachable):
        await first.run(rig.cmd("echo gone", Reply(lines=["gone"])), timeout=RUN)
    assert (await second.run(rig.cmd("echo here", Reply(lines=["here"])), timeout=RUN)).ok


async def test_an_unreachable_host_raises_transport_error(rig: Rig) -> None:
    if rig.unreachable is None:
        pytest.skip(f"the {rig.kind} transport has no host that can be down")
    with pytest.raises(TransportError) as caught:
        await rig.transport.connect(rig.unreachable)
    assert isinstance(caught.value, HostUnreachable)
    assert caught.value.host == rig.unreachable.name
    assert rig.transport.open_connections == 0


async def test_an_untrusted_host_key_raises_host_key_error(rig: Rig) -> None:
    if rig.unknown_key is None:
        pytest.skip(f"the {rig.kind} transport has no host keys")
    with pytest.raises(HostKeyError) as caught:
        await rig.transport.connect(rig.unknown_key)
    assert caught.value.host == rig.unknown_key.name
    assert rig.transport.open_connections == 0
    assert list(rig.transport.accepted_keys) == []  # never accepted silently


# -- the persistent shell --------------------------------------------------------------


async def shell_of(rig: Rig) -> tuple[Connection, Session]:
    conn = await rig.transport.connect(rig.hosts[0])
    shell = conn.persistent_shell()
    if shell is None:
        pytest.skip(f"the {rig.kind} transport keeps no shell open (persistent_shell() is None)")
    return conn, shell


async def test_persistent_shell_keeps_the_run_contract(rig: Rig) -> None:
    _, shell = await shell_of(rig)
    try:
        seen: list[tuple[str, str]] = []
        result = await shell.run(
            "echo a; echo b >&2; (exit 5)",
            timeout=RUN,
            on_line=lambda s, line: seen.append((s, line)),
        )
        assert (result.status, result.exit_code) == ("failed", 5)
        assert sorted(seen) == [("stderr", "b"), ("stdout", "a")]
        assert (await shell.run("echo ok", timeout=RUN)).stdout_tail == ("ok",)

        sleep = unique_sleep()
        timed_out = await shell.run(f"echo started; {sleep}", timeout=1.5)
        assert (timed_out.status, timed_out.exit_code) == ("timeout", None)
        await gone(rig, sleep)
        assert (await shell.run("echo next", timeout=RUN)).stdout_tail == ("next",)
    finally:
        await shell.close()


# -- socket requests (Connection.exchange: HAProxy's runtime API) ----------------------


async def test_exchange_sends_a_request_to_a_socket_and_reads_to_the_close(
    rig: Rig, tmp_path: Path
) -> None:
    """A unix socket and a TCP port this machine serves (every real rig's hosts are on
    it): the whole answer comes back, a missing socket is a TransportError that leaves
    the connection usable, a silent one is bounded; the fake forwards nothing."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if line != b"hold\n":
            writer.write(b"got " + line * 3)
            await writer.drain()
        else:
            await reader.read()  # answers nothing until the client goes away
        writer.close()

    sock = str(tmp_path / "api.sock")
    unix = await asyncio.start_unix_server(echo, sock)
    tcp = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    conn = await rig.transport.connect(rig.hosts[0])
    try:
        if rig.fake is not None:
            with pytest.raises(TransportError, match="forwards no sockets"):
                await conn.exchange(sock, b"x\n", timeout=RUN)
            return
        assert await conn.exchange(sock, b"show\n", timeout=RUN) == b"got show\nshow\nshow\n"
        assert await conn.exchange(f"127.0.0.1:{port}", b"a\n", timeout=RUN) == b"got a\na\na\n"
        with pytest.raises(TransportError, match="cannot reach"):
            await conn.exchange(sock + ".missing", b"x\n", timeout=RUN)
        with pytest.raises(TransportError, match="did not answer within"):
            await conn.exchange(sock, b"hold\n", timeout=0.3)
        assert (await conn.run("echo still", timeout=RUN)).first_line == "still"
    finally:
        unix.close()
        tcp.close()
