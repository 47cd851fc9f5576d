"""SSHTransport against a real OpenSSH sshd: output, exit codes, stopping remote work."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from console.transport.output import MAX_LINE
from console.transport.ssh import SSHConnection, SSHTransport
from tests.fixtures.sshd import SSHFleet, living_processes, unique_sleep
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd


@pytest.fixture
async def fleet_conn(
    sshd_fleet: Callable[..., SSHFleet],
) -> AsyncIterator[tuple[SSHFleet, SSHTransport, SSHConnection]]:
    fleet = sshd_fleet(2)
    transport = SSHTransport(fleet.options)
    conn = await transport.connect(fleet.hosts[0])
    yield fleet, transport, conn
    await transport.close()


async def wait_for_processes(marker: str, count: int = 1) -> list[psutil.Process]:
    """Until ``count`` processes carry ``marker`` (the command has started)."""
    found: list[psutil.Process] = []

    def started() -> bool:
        nonlocal found
        found = living_processes(marker)
        return len(found) >= count

    await wait_until(started, what=f"{count} {marker!r} processes to start", interval=0.025)
    return found


async def test_run_returns_output_tails_and_exit_code(fleet_conn) -> None:
    _, _, conn = fleet_conn
    seen: list[tuple[str, str]] = []
    result = await conn.run(
        "echo one; echo two >&2; printf 'no newline'; exit 7",
        timeout=10,
        on_line=lambda stream, line: seen.append((stream, line)),
    )
    assert result.status == "failed"
    assert result.exit_code == 7
    assert result.stdout_tail == ("one", "no newline")
    assert result.stderr_tail == ("two",)
    assert sorted(seen) == [("stderr", "two"), ("stdout", "no newline"), ("stdout", "one")]
    ok = await conn.run("true", timeout=10)
    assert ok.ok and ok.exit_code == 0 and ok.signal is None


async def test_lines_arrive_while_the_command_runs(fleet_conn, tmp_path: Path) -> None:
    """The command waits for a file the test creates only after seeing its first line."""
    _, _, conn = fleet_conn
    flag = tmp_path / "go"
    ready = asyncio.Event()

    def on_line(stream: str, line: str) -> None:
        if line == "ready":
            ready.set()

    command = f"echo ready; while [ ! -e {flag} ]; do sleep 0.02; done; echo done"
    task = asyncio.create_task(conn.run(command, timeout=20, on_line=on_line))
    await asyncio.wait_for(ready.wait(), 15)
    assert not task.done()
    flag.touch()
    result = await task
    assert result.status == "ok"
    assert result.stdout_tail == ("ready", "done")


async def test_tails_are_bounded_and_long_lines_split(sshd_fleet) -> None:
    fleet = sshd_fleet(1)
    fleet.options.tail_lines = 5
    transport = SSHTransport(fleet.options)
    try:
        conn = await transport.connect(fleet.hosts[0])
        seen: list[str] = []
        result = await conn.run(
            "seq 1 500", timeout=10, on_line=lambda stream, line: seen.append(line)
        )
        assert seen == [str(i) for i in range(1, 501)]
        assert result.stdout_tail == ("496", "497", "498", "499", "500")
        long = await conn.run(f"head -c {MAX_LINE * 3 + 10} /dev/zero | tr '\\0' x", timeout=10)
        assert [len(line) for line in long.stdout_tail] == [MAX_LINE] * 3 + [10]
    finally:
        await transport.close()


async def test_stdin_is_closed_and_home_is_the_fleets(fleet_conn) -> None:
    fleet, _, conn = fleet_conn
    result = await conn.run("cat; echo $HOME", timeout=10)
    assert result.status == "ok"
    assert result.stdout_tail == (str(fleet.server.workdir / "home"),)


async def test_timeout_kills_the_whole_remote_tree(fleet_conn) -> None:
    _, _, conn = fleet_conn
    sleep = unique_sleep()
    result = await conn.run(f"echo started; {sleep} & {sleep} & sh -c '{sleep}'", timeout=1.5)
    assert result.status == "timeout"
    assert result.exit_code is None
    assert result.stdout_tail == ("started",)
    assert result.signal == "TERM"
    assert living_processes(sleep) == []
    again = await conn.run("echo still usable", timeout=10)
    assert again.stdout_tail == ("still usable",)


@pytest.mark.slow
async def test_timeout_escalates_to_kill_when_term_is_ignored(fleet_conn) -> None:
    _, _, conn = fleet_conn
    sleep = unique_sleep()
    result = await conn.run(f"trap '' TERM; {sleep}; echo survived", timeout=1)
    assert result.status == "timeout"
    assert result.signal == "KILL"
    assert living_processes(sleep) == []


async def test_cancellation_stops_the_remote_command(fleet_conn) -> None:
    _, _, conn = fleet_conn
    sleep = unique_sleep()
    task = asyncio.create_task(conn.run(f"{sleep} & {sleep}", timeout=120))
    await wait_for_processes(sleep, 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert living_processes(sleep) == []


async def test_closing_a_stream_stops_the_follower(fleet_conn, tmp_path: Path) -> None:
    _, _, conn = fleet_conn
    log = tmp_path / "service.log"
    log.write_text("line 1\nline 2\n")
    follower = conn.stream(f"tail -n +1 -F {log}")
    lines = [await anext(follower), await anext(follower)]
    assert lines == ["line 1", "line 2"]
    with log.open("a") as out:
        out.write("line 3\n")
    assert await anext(follower) == "line 3"
    assert living_processes(str(log))
    await follower.aclose()
    assert living_processes(str(log)) == []


async def test_cancelling_a_stream_consumer_stops_the_follower(fleet_conn, tmp_path) -> None:
    _, _, conn = fleet_conn
    log = tmp_path / "other.log"
    log.write_text("")

    async def consume() -> None:
        async for _line in conn.stream(f"tail -F {log}"):
            pass

    task = asyncio.create_task(consume())
    await wait_for_processes(str(log))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert living_processes(str(log)) == []


async def test_stream_of_a_finished_command_ends(fleet_conn) -> None:
    _, _, conn = fleet_conn
    assert [line async for line in conn.stream("printf 'a\\nb\\nc'")] == ["a", "b", "c"]


def _established_to(port: int) -> set[int]:
    """Local ports of this process's open TCP connections to ``port``."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"
    }


async def test_many_commands_share_one_connection_per_host(sshd_fleet) -> None:
    fleet = sshd_fleet(3)
    # an earlier test's connection to the session's sshd may still be closing
    before = _established_to(fleet.server.port)
    transport = SSHTransport(fleet.options)
    try:
        conns = await asyncio.gather(*(transport.connect(h) for h in fleet.hosts * 4))
        assert len({id(c) for c in conns}) == 3
        results = await asyncio.gather(
            *(c.run(f"echo {i}", timeout=20) for i, c in enumerate(conns * 5))
        )
        assert all(r.ok for r in results)
        assert transport.handshakes == 3
        assert transport.open_connections == 3
        assert len(_established_to(fleet.server.port) - before) == 3
        await conns[0].close()
        assert transport.open_connections == 2
        reopened = await transport.connect(fleet.hosts[0])
        assert reopened is not conns[0]
        assert transport.handshakes == 4
    finally:
        await transport.close()
    assert transport.open_connections == 0


async def test_concurrent_commands_beyond_max_sessions_queue(sshd_factory) -> None:
    """The server allows 4 channels; 12 concurrent commands still all complete."""
    from tests.fixtures.sshd import make_fleet

    server = sshd_factory(max_sessions=4)
    fleet = make_fleet(server, server.workdir, 1)
    fleet.options.extra["max_sessions"] = 4
    transport = SSHTransport(fleet.options)
    try:
        conn = await transport.connect(fleet.hosts[0])
        results = await asyncio.gather(
            *(conn.run(f"sleep 0.1; echo {i}", timeout=30) for i in range(12))
        )
        assert [r.stdout_tail for r in results] == [(str(i),) for i in range(12)]
    finally:
        await transport.close()


async def test_connection_lost_mid_command_is_unreachable(sshd_factory) -> None:
    from console.transport.base import HostUnreachable
    from tests.fixtures.sshd import make_fleet

    server = sshd_factory()
    fleet = make_fleet(server, server.workdir, 1)
    transport = SSHTransport(fleet.options)
    try:
        conn = await transport.connect(fleet.hosts[0])
        sleep = unique_sleep()
        task = asyncio.create_task(conn.run(f"echo up; {sleep}", timeout=60))
        procs = await wait_for_processes(sleep)
        # Kill this connection's sshd session process: the TCP connection drops.
        session = next(p for p in procs[0].parents() if p.name() == "sshd")
        session.kill()
        with pytest.raises(HostUnreachable):
            await asyncio.wait_for(task, 30)
        assert transport.open_connections == 0
        assert conn.state == "lost"
        with pytest.raises(HostUnreachable, match="the connection was lost"):
            await conn.run("true", timeout=5)
        # Reconnecting is explicit (the engine decides to retry the host): same object.
        assert await transport.connect(fleet.hosts[0]) is conn
        assert (await conn.run("echo again", timeout=10)).stdout_tail == ("again",)
    finally:
        await transport.close()
        for proc in living_processes(sleep):
            proc.kill()


async def test_a_closed_connection_refuses_commands_as_unreachable(sshd_fleet) -> None:
    from console.transport.base import HostUnreachable

    fleet = sshd_fleet(1)
    transport = SSHTransport(fleet.options)
    try:
        conn = await transport.connect(fleet.hosts[0])
        await transport.close_host("web-01")
        assert conn.closed
        with pytest.raises(HostUnreachable, match="cannot start a command"):
            await conn.run("true", timeout=5)
    finally:
        await transport.close()


async def test_a_failing_line_callback_surfaces_and_stops_the_command(fleet_conn) -> None:
    _, _, conn = fleet_conn
    sleep = unique_sleep()

    def explode(stream: str, line: str) -> None:
        raise RuntimeError(f"consumer bug on {line!r}")

    with pytest.raises(RuntimeError, match="consumer bug on 'go'"):
        await conn.run(f"echo go; {sleep}", timeout=30, on_line=explode)
    assert living_processes(sleep) == []


@pytest.mark.slow
async def test_a_second_cancel_does_not_cut_the_kill_short(fleet_conn) -> None:
    """TERM is ignored, so the stop lasts the grace period; a second cancel meanwhile
    still returns only once the KILL is done."""
    _, _, conn = fleet_conn
    sleep = unique_sleep()
    task = asyncio.create_task(conn.run(f"trap '' TERM; {sleep}", timeout=120))
    group = os.getpgid((await wait_for_processes(sleep))[0].pid)  # the command's group
    task.cancel()
    # the stop is under way: its kill script (TERM, then the 2 s grace) runs on the host
    await wait_for_processes(f"P={group}; ")
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert living_processes(sleep) == []


async def test_cancelling_at_any_moment_of_the_start_leaves_nothing_running(fleet_conn) -> None:
    """Whether the cancel lands before the channel opens, between the exec request and
    the reply, or after the command started, nothing may survive it."""
    _, _, conn = fleet_conn
    for delay in (0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.05):
        sleep = unique_sleep()
        task = asyncio.create_task(conn.run(f"{sleep} & {sleep}", timeout=60))
        await asyncio.sleep(delay)  # the scenario: a cancel landing at some moment of the start
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert living_processes(sleep) == [], f"survived a cancel after {delay}s"


@pytest.mark.slow
async def test_many_stops_at_once_on_one_host_all_complete(fleet_conn) -> None:
    """Nine commands ignoring TERM time out together (an abort on a busy host): every
    one is killed, none waits behind another's grace period."""
    _, _, conn = fleet_conn
    sleep = unique_sleep()
    results = await asyncio.gather(
        *(conn.run(f"trap '' TERM; {sleep}", timeout=1) for _ in range(9))
    )
    assert [r.signal for r in results] == ["KILL"] * 9  # None would mean a stop gave up
    assert living_processes(sleep) == []


@pytest.mark.slow
async def test_signal_mode_on_openssh_never_claims_a_stop_it_did_not_make(sshd_fleet) -> None:
    """OpenSSH 9.2 refuses the SSH signal request ("session signalling requires
    privilege separation"), which is why ``pgroup`` is the default. Whatever the sshd
    version, a reported signal must mean the command really ended."""
    fleet = sshd_fleet(1)
    host = dataclasses.replace(fleet.hosts[0], vars={"rolldeck_kill": "signal"})
    transport = SSHTransport(fleet.options)
    sleep = unique_sleep()
    try:
        conn = await transport.connect(host)
        result = await conn.run(sleep, timeout=0.5)
        assert result.status == "timeout"
        if result.signal is not None:  # a stop claimed: the command is gone
            assert living_processes(sleep) == []
        else:  # none claimed: the command runs on (on a busy machine, it may still be starting)
            await wait_until(lambda: living_processes(sleep), what=f"{sleep!r} to run on")
    finally:
        await transport.close()
        for proc in living_processes(sleep):
            proc.kill()
