"""LocalTransport (subprocesses for localhost hosts) and make_transport's routing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from console.transport import RoutingTransport, is_local, make_transport
from console.transport.base import TransportOptions
from console.transport.local import LocalConnection, LocalTransport
from console.transport.ssh import SSHConnection
from inventory.model import Host
from tests.fixtures.sshd import living_processes, unique_sleep
from tests.waiting import wait_until

LOCALHOST = Host(name="localhost", address="localhost")


@pytest.fixture
async def local_conn():
    transport = LocalTransport(TransportOptions(tail_lines=3))
    conn = await transport.connect(LOCALHOST)
    yield conn
    await transport.close()


async def wait_started(marker: str, count: int = 1) -> None:
    await wait_until(
        lambda: len(living_processes(marker)) >= count,
        what=f"{count} {marker!r} processes to start",
        interval=0.025,
    )


async def test_run_output_tails_and_exit_code(local_conn: LocalConnection) -> None:
    seen: list[tuple[str, str]] = []
    result = await local_conn.run(
        "seq 1 5; echo oops >&2; exit 4", timeout=10, on_line=lambda s, line: seen.append((s, line))
    )
    assert result.status == "failed" and result.exit_code == 4
    assert result.stdout_tail == ("3", "4", "5")
    assert result.stderr_tail == ("oops",)
    assert [line for stream, line in seen if stream == "stdout"] == ["1", "2", "3", "4", "5"]
    assert (await local_conn.run("true", timeout=10)).ok


async def test_lines_arrive_while_the_command_runs(local_conn, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    ready = asyncio.Event()
    command = f"echo ready; while [ ! -e {flag} ]; do sleep 0.02; done; echo done"
    task = asyncio.create_task(
        local_conn.run(command, timeout=20, on_line=lambda s, line: ready.set())
    )
    await asyncio.wait_for(ready.wait(), 15)
    assert not task.done()
    flag.touch()
    assert (await task).stdout_tail == ("ready", "done")


async def test_timeout_kills_the_process_group(local_conn) -> None:
    sleep = unique_sleep()
    result = await local_conn.run(f"{sleep} & {sleep} & sh -c '{sleep}'", timeout=1)
    assert result.status == "timeout" and result.signal == "TERM"
    assert living_processes(sleep) == []


@pytest.mark.slow
async def test_timeout_escalates_to_kill(local_conn) -> None:
    sleep = unique_sleep()
    result = await local_conn.run(f"trap '' TERM; {sleep}", timeout=0.5)
    assert result.status == "timeout" and result.signal == "KILL"
    assert living_processes(sleep) == []


async def test_cancellation_kills_the_process_group(local_conn) -> None:
    sleep = unique_sleep()
    task = asyncio.create_task(local_conn.run(f"{sleep} & {sleep}", timeout=60))
    await wait_started(sleep, 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert living_processes(sleep) == []


async def test_killed_by_a_signal_is_failed_with_the_signal(local_conn) -> None:
    result = await local_conn.run("kill -USR1 $$", timeout=10)
    assert result.status == "failed" and result.exit_code is None and result.signal == "USR1"


async def test_closing_a_stream_stops_it(local_conn, tmp_path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    follower = local_conn.stream(f"tail -n +1 -F {log}")
    assert [await anext(follower), await anext(follower)] == ["a", "b"]
    assert living_processes(str(log))
    await follower.aclose()
    assert living_processes(str(log)) == []


async def test_stream_of_a_short_command_ends(local_conn) -> None:
    assert [line async for line in local_conn.stream("printf 'x\\ny'")] == ["x", "y"]


@pytest.mark.parametrize(
    ("host", "local"),
    [
        (LOCALHOST, True),
        (Host(name="localhost", address="127.0.0.1"), True),
        (Host(name="localhost", address="127.0.0.1", port=2222), False),
        (Host(name="db", address="127.0.0.1", vars={"rolldeck_connection": "local"}), True),
        (Host(name="db", address="10.0.0.5", vars={"ansible_connection": "local"}), True),
        (Host(name="localhost", address="localhost", vars={"rolldeck_connection": "ssh"}), False),
        (Host(name="web-01", address="127.0.0.1"), False),
    ],
)
def test_is_local(host: Host, local: bool) -> None:
    assert is_local(host) is local


@pytest.mark.sshd
async def test_make_transport_routes_local_and_ssh_hosts(sshd_fleet) -> None:
    fleet = sshd_fleet(1)
    transport = make_transport(fleet.options)
    assert isinstance(transport, RoutingTransport)
    try:
        local = await transport.connect(LOCALHOST)
        remote = await transport.connect(fleet.hosts[0])
        assert isinstance(local, LocalConnection) and isinstance(remote, SSHConnection)
        assert transport.open_connections == 2
        results = await asyncio.gather(
            local.run("echo here", timeout=10), remote.run("echo there", timeout=10)
        )
        assert [r.stdout_tail for r in results] == [("here",), ("there",)]
        await transport.close_host("web-01")
        assert transport.open_connections == 1
        assert transport.accepted_keys == []
    finally:
        await transport.close()
    assert transport.open_connections == 0


async def test_cancelling_at_any_moment_of_the_spawn_leaves_nothing_running(local_conn) -> None:
    for delay in (0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.05):
        sleep = unique_sleep()
        task = asyncio.create_task(local_conn.run(f"{sleep} & {sleep}", timeout=60))
        await asyncio.sleep(delay)  # the scenario: a cancel landing at some moment of the spawn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert living_processes(sleep) == [], f"survived a cancel after {delay}s"
