"""The engine's own SSH transport against the simulated fleet, hosts read from the
fleet's inventory: the path every demo and drill takes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from console.simfleet import SimFleet, parse_scenario
from tests.fixtures.simfleet import FleetFactory
from tests.waiting import wait_until

transport_ssh = pytest.importorskip("console.transport.ssh")
base = pytest.importorskip("console.transport.base")
loader = pytest.importorskip("inventory.loader")


@contextlib.asynccontextmanager
async def transport() -> AsyncIterator[object]:
    t = transport_ssh.SSHTransport(base.TransportOptions(ssh_config=[], connect_timeout=5))
    try:
        yield t
    finally:
        await t.close()


def hosts(fleet: SimFleet) -> dict[str, object]:
    return loader.load_inventory(str(fleet.inventory_path)).hosts


async def test_run_states_through_the_transport(sim_fleet: SimFleet) -> None:
    inv = hosts(sim_fleet)
    async with transport() as t:
        conn = await t.connect(inv["web-01"])
        lines: list[tuple[str, str]] = []
        r = await conn.run(
            "svc install '2.4.1'", timeout=10, on_line=lambda s, x: lines.append((s, x))
        )
        assert r.status == "ok" and r.exit_code == 0
        assert ("stdout", "fetching checkout-api 2.4.1") in lines
        r = await conn.run("svc activate 9.9.9", timeout=10)
        assert (r.status, r.exit_code) == ("failed", 1)
        assert "not installed" in r.first_line
        r = await conn.run("nosuchtool --now", timeout=10)
        assert (r.status, r.exit_code) == ("failed", 127)
        assert (await conn.run("svc version", timeout=10)).first_line == "2.4.0"


async def test_timeout_stops_a_hung_install(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(
        n=1, scenario=parse_scenario("versions: {new: {install_hangs: true}}")
    )
    async with transport() as t:
        conn = await t.connect(hosts(fleet)["web-01"])
        # The install hangs, so any timeout ends it; 1 s lets the channel open first (a
        # timeout while it opens stops nothing and reports no signal), on a busy machine too.
        r = await conn.run("svc install 2.4.1", timeout=1.0)
        assert r.status == "timeout" and r.signal == "TERM"
        sim = fleet.sim_host("web-01")  # the remote install really stopped:
        await wait_until(lambda: sim.installing == 0, what="the hung install to stop")
        assert (await conn.run("svc health", timeout=5)).ok  # and the connection lives on


async def test_stream_follows_logs_and_closing_stops_it(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=1, log_rate=100)
    sim = fleet.sim_host("web-01")
    async with transport() as t:
        conn = await t.connect(hosts(fleet)["web-01"])
        stream = conn.stream("svc logs --follow")
        got = [await asyncio.wait_for(anext(stream), 5) for _ in range(5)]
        assert all("checkout-api[" in line for line in got)
        assert sim.followers
        await stream.aclose()
        await wait_until(lambda: not sim.followers, what="the log follower to stop")


async def test_unreachable_host_raises_host_unreachable(sim_fleet: SimFleet) -> None:
    inv = hosts(sim_fleet)
    async with transport() as t:
        conn = await t.connect(inv["api-01"])
        started = asyncio.Event()
        run = asyncio.create_task(
            conn.run("echo started; sleep 30", timeout=20, on_line=lambda s, x: started.set())
        )
        await wait_until(started.is_set, what="the command to start")  # it is running...
        assert not run.done()
        await sim_fleet.kill_host("api-01")  # ...when its host goes
        with pytest.raises(base.HostUnreachable):
            await asyncio.wait_for(run, 10)
        with pytest.raises(base.HostUnreachable):
            await t.connect(inv["api-01"])
