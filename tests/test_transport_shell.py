"""The persistent probe shell (console.transport.ssh_shell) against a real OpenSSH sshd
and the simulated fleet: framing, exit codes, stdin isolation, and that a timeout or
cancellation really stops the remote command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from console.transport.base import TransportOptions
from console.transport.ssh import SSHConnection, SSHTransport
from console.transport.ssh_shell import PersistentShell
from inventory.loader import load_inventory
from tests.fixtures.simfleet import FleetFactory
from tests.fixtures.sshd import SSHFleet, living_processes, unique_sleep
from tests.waiting import wait_until


@pytest.fixture
async def sshd_shell(
    sshd_fleet: Callable[..., SSHFleet],
) -> AsyncIterator[tuple[SSHConnection, PersistentShell]]:
    fleet = sshd_fleet(1)
    transport = SSHTransport(fleet.options)
    conn = await transport.connect(fleet.hosts[0])
    shell = PersistentShell(conn)
    try:
        yield conn, shell
    finally:
        await shell.close()
        await transport.close()


async def until_gone(marker: str) -> list[psutil.Process]:
    """Until no process carries ``marker`` (the stop reaps its own children, but a
    container's init may be slow with orphans); fails naming the survivors."""
    await wait_until(
        lambda: not living_processes(marker),
        what=f"{marker!r} to be gone",
        interval=0.05,
    )
    return []


@pytest.mark.sshd
async def test_many_commands_one_shell_with_exit_codes_and_streams(sshd_shell) -> None:
    _, shell = sshd_shell
    seen: list[tuple[str, str]] = []
    r = await shell.run(
        "echo one; echo two >&2; printf 'no newline'; false",
        timeout=10,
        on_line=lambda s, line: seen.append((s, line)),
    )
    assert (r.status, r.exit_code) == ("failed", 1)
    assert r.stdout_tail == ("one", "no newline")
    assert r.stderr_tail == ("two",)
    assert sorted(seen) == [("stderr", "two"), ("stdout", "no newline"), ("stdout", "one")]
    for i in range(20):
        r = await shell.run(f"echo {i}; (exit {i % 3})", timeout=10)
        assert r.stdout_tail == (str(i),)
        assert r.exit_code == i % 3
    assert shell.started == 1  # every command above ran in one shell


@pytest.mark.sshd
async def test_a_command_reading_stdin_cannot_swallow_the_next(sshd_shell) -> None:
    _, shell = sshd_shell
    r = await shell.run("cat; echo after-cat", timeout=10)
    assert r.ok and r.stdout_tail == ("after-cat",)  # cat read /dev/null, not the script
    r = await shell.run("echo still-here", timeout=10)
    assert r.stdout_tail == ("still-here",) and shell.started == 1


@pytest.mark.sshd
async def test_shell_state_and_quotes_survive(sshd_shell) -> None:
    _, shell = sshd_shell
    r = await shell.run("printf '%s\\n' 'a \"b\" $HOME' \"c'd\"", timeout=10)
    assert r.stdout_tail == ('a "b" $HOME', "c'd")
    r = await shell.run("exit 4", timeout=10)  # a poll runs in a subshell: only it ends
    assert (r.status, r.exit_code) == ("failed", 4)
    r = await shell.run("echo alive", timeout=10)
    assert r.ok and r.stdout_tail == ("alive",) and shell.started == 1


@pytest.mark.sshd
async def test_one_poll_cannot_change_the_next(sshd_shell) -> None:
    """`cd`, variables, `set -e` and redirections stay in their own poll, as they
    would with one exec per poll."""
    _, shell = sshd_shell
    home = (await shell.run("pwd", timeout=10)).stdout_tail
    await shell.run("cd /tmp; X=leaked; set -e; exec >/dev/null", timeout=10)
    r = await shell.run('pwd; echo "x=$X"; false; echo after-false', timeout=10)
    assert r.stdout_tail == (*home, "x=", "after-false")


@pytest.mark.sshd
async def test_marker_is_found_after_a_long_unterminated_line(sshd_shell) -> None:
    """Output longer than the line splitter's piece (16 KiB) without a newline: the
    end marker starts a line of its own, so it is never cut in two."""
    _, shell = sshd_shell
    for size in (16383, 16384, 16385, 40000):
        r = await shell.run(f"head -c {size} /dev/zero | tr '\\0' x", timeout=10)
        assert r.ok, (size, r)
        assert sum(len(line) for line in r.stdout_tail) == size
    r = await shell.run("printf 'a\\n\\n'", timeout=10)
    assert r.stdout_tail == ("a", "")  # an output's own empty last line is kept


@pytest.mark.sshd
async def test_a_failing_line_callback_fails_the_command_not_the_next(sshd_shell) -> None:
    _, shell = sshd_shell

    def boom(stream: str, line: str) -> None:
        raise ValueError("callback bug")

    with pytest.raises(ValueError, match="callback bug"):
        await shell.run("echo x", timeout=10, on_line=boom)
    r = await shell.run("echo fine", timeout=10)
    assert r.ok and r.stdout_tail == ("fine",)


@pytest.mark.sshd
async def test_closing_an_idle_shell_needs_no_kill(sshd_shell) -> None:
    conn, shell = sshd_shell
    assert (await shell.run("true", timeout=10)).ok
    stops: list[object] = []
    real = conn.stop_session

    async def spy(running):  # type: ignore[no-untyped-def]
        stops.append(running.finished)
        return await real(running)

    conn.stop_session = spy  # type: ignore[method-assign]
    await shell.close()
    assert stops == [True]  # it ended by itself on EOF: nothing left to kill


@pytest.mark.sshd
async def test_timeout_kills_the_remote_command_and_a_new_shell_follows(sshd_shell) -> None:
    _, shell = sshd_shell
    sleep = unique_sleep()
    assert (await shell.run("true", timeout=10)).ok  # the shell is open: the 1 s is the command's
    r = await shell.run(f"echo started; {sleep}", timeout=1.0)
    assert r.status == "timeout" and r.stdout_tail == ("started",)
    assert await until_gone(sleep) == []
    r = await shell.run("echo next", timeout=10)
    assert r.ok and r.stdout_tail == ("next",) and shell.started == 2


@pytest.mark.sshd
async def test_cancellation_kills_the_remote_command(sshd_shell) -> None:
    _, shell = sshd_shell
    sleep = unique_sleep()
    task = asyncio.create_task(shell.run(sleep, timeout=60))
    await wait_until(lambda: living_processes(sleep), what=f"{sleep!r} to start", interval=0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await until_gone(sleep) == []


@pytest.mark.sshd
async def test_busy_shell_runs_a_second_command_on_its_own_channel(
    sshd_shell, tmp_path: Path
) -> None:
    """The slow command holds the shell until the test lets it go; the quick one,
    issued meanwhile, runs on an exec channel of its own and finishes first."""
    conn, shell = sshd_shell
    execs: list[str] = []
    real = conn.run

    async def spy(command, **kwargs):  # type: ignore[no-untyped-def]
        execs.append(command)
        return await real(command, **kwargs)

    conn.run = spy  # type: ignore[method-assign]
    flag = tmp_path / "release"
    started = asyncio.Event()
    hold = f"echo started; while [ ! -e {flag} ]; do sleep 0.02; done; echo slow"
    slow = asyncio.create_task(shell.run(hold, timeout=30, on_line=lambda s, x: started.set()))
    try:
        await wait_until(started.is_set, what="the slow command to run in the shell")
        quick = await shell.run("echo quick", timeout=10)
        assert quick.stdout_tail == ("quick",)
        assert not slow.done()  # the quick one did not wait for the shell
        assert execs == ["echo quick"]  # its own channel
    finally:
        flag.touch()
    assert (await slow).stdout_tail == ("started", "slow")
    assert shell.started == 1 and execs == ["echo quick"]


@pytest.mark.sshd
async def test_output_that_looks_like_a_marker_is_just_output(sshd_shell) -> None:
    _, shell = sshd_shell
    r = await shell.run("printf '\\036rolldeck-end-000000000000 0\\n'; echo x", timeout=10)
    assert r.ok and r.stdout_tail == ("\x1erolldeck-end-000000000000 0", "x")


async def test_simulated_fleet_shell(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=2, time_scale=0.1)
    host = load_inventory(str(fleet.inventory_path)).hosts["web-01"]
    transport = SSHTransport(TransportOptions(ssh_config=[], connect_timeout=5))
    try:
        conn = await transport.connect(host)
        shell = PersistentShell(conn)
        r = await shell.run("svc version; echo oops >&2; false", timeout=10)
        assert (r.status, r.exit_code) == ("failed", 1)
        assert r.stderr_tail == ("oops",) and len(r.stdout_tail) == 1
        for _ in range(5):
            r = await shell.run("svc health", timeout=10)
            assert r.exit_code in (0, 1)
        r = await shell.run("sleep 30", timeout=0.5)
        assert r.status == "timeout"
        r = await shell.run("cat /proc/loadavg", timeout=10)
        assert r.ok and shell.started == 2
        await shell.close()
    finally:
        await transport.close()


async def test_host_without_a_shell_gets_one_command_per_poll(
    sim_fleet_factory: FleetFactory,
) -> None:
    """`rolldeck_shell: none`: no chained polls, no shell kept open."""
    import dataclasses

    from console.signals.health import ErrorRateAnalyzer
    from console.signals.monitor import HostMonitor
    from console.spec import load_spec

    fleet = await sim_fleet_factory(n=1, time_scale=0.1)
    host = load_inventory(str(fleet.inventory_path)).hosts["web-01"]
    spec = load_spec(fleet.spec_path)
    transport = SSHTransport(TransportOptions(ssh_config=[], connect_timeout=5))
    try:
        plain = await transport.connect(host)
        assert plain.chains_commands and plain.persistent_shell() is not None
        await transport.close_host(host.name)
        bare = dataclasses.replace(host, vars={**host.vars, "rolldeck_shell": "none"})
        conn = await transport.connect(bare)
        assert not conn.chains_commands and conn.persistent_shell() is None
        assert spec.error_rate is not None
        monitor = HostMonitor(
            bare.name,
            conn,
            spec,
            lambda e: None,
            ErrorRateAnalyzer(spec.error_rate, has_metrics=spec.metrics is not None),
            lambda h, d: None,
        )
        assert not monitor.chain and monitor._shell is None
    finally:
        await transport.close()


def test_rolldeck_shell_is_validated() -> None:
    from console.core.errors import InputError
    from console.transport.remote_kill import shell_kind
    from inventory.model import Host

    assert shell_kind(Host(name="a", address="a")) == "sh"
    assert shell_kind(Host(name="a", address="a", vars={"rolldeck_shell": "none"})) == "none"
    with pytest.raises(InputError, match="rolldeck_shell must be one of sh, none"):
        shell_kind(Host(name="a", address="a", vars={"rolldeck_shell": "bash"}))


async def test_ssh_connections_probe_an_idle_peer_within_a_minute(
    sim_fleet_factory: FleetFactory,
) -> None:
    """No SSH keepalive timer (its per-packet cost): the kernel's TCP keepalive, tuned."""
    import socket

    fleet = await sim_fleet_factory(n=1)
    host = load_inventory(str(fleet.inventory_path)).hosts["web-01"]
    transport = SSHTransport(TransportOptions(ssh_config=[], connect_timeout=5))
    try:
        conn = await transport.connect(host)
        sock = conn._raw.get_extra_info("socket")  # type: ignore[union-attr]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    finally:
        await transport.close()
