"""Fault injection and the fleet's SSH front door: unreachable hosts, full disks,
strict host keys, public-key-only auth, seeded runs."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import asyncssh
import pytest

from console.simfleet import SimFleet, parse_scenario
from tests.fixtures.simfleet import FleetFactory, sim_connect
from tests.waiting import wait_until


async def _refused(fleet: SimFleet, host: str) -> bool:
    try:
        async with sim_connect(fleet, host, connect_timeout=5):
            return False
    except OSError:
        return True


async def test_killed_host_drops_connections_and_refuses_new_ones(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "api-01") as conn:
        proc = await conn.create_process("sleep 300")
        await sim_fleet.kill_host("api-01")
        await asyncio.wait_for(conn.wait_closed(), 5)  # the open connection was cut
        assert proc.exit_status is None
    assert await _refused(sim_fleet, "api-01")
    assert not sim_fleet.host_state("api-01").reachable
    async with sim_connect(sim_fleet, "web-01") as other:  # the rest of the fleet is fine
        assert (await other.run("true")).exit_status == 0

    await sim_fleet.revive_host("api-01")  # same port, same key: strict checking passes
    async with sim_connect(sim_fleet, "api-01") as conn:
        assert (await conn.run("svc version")).stdout == "2.4.0\n"


async def test_host_dies_during_the_new_versions_install(sim_fleet_factory: FleetFactory) -> None:
    # x0.5: the host dies 250 ms into the install, which would print "unpacking" at
    # 360 ms (seed 1); at x0.05 the two were 11 ms apart, a race on a busy machine.
    fleet = await sim_fleet_factory(n=6, scenario="host-dies-mid-batch", time_scale=0.5)
    async with sim_connect(fleet, "api-02") as conn:
        assert (await conn.run("svc install 2.4.0")).exit_status == 0  # not a new version...
        assert (await conn.run("svc drain")).exit_status == 0
    async with sim_connect(fleet, "api-02") as conn:
        r = await asyncio.wait_for(conn.run("svc install 2.4.1"), 10)  # ...this one is
        await asyncio.wait_for(conn.wait_closed(), 5)  # the connection was cut mid-install
        assert (r.exit_status, r.exit_signal) == (None, None)
        assert r.stdout == "fetching checkout-api 2.4.1\n"
    assert await _refused(fleet, "api-02")
    assert fleet.host_state("api-02").installed == ("2.4.0",)
    async with sim_connect(fleet, "web-01") as conn:  # other hosts install fine
        assert (await conn.run("svc install 2.4.1")).exit_status == 0


async def test_unreachable_after_a_time_and_recovery(sim_fleet_factory: FleetFactory) -> None:
    # x0.05: web-01 goes at 1.5 s for 1 s, worker-01 is down from the start for 1 s.
    # Wide windows: each check below has to land inside one, on a busy machine too.
    scenario = parse_scenario(
        "hosts:\n  - match: web-01\n    unreachable: {after: 30s, recover_after: 20s}\n"
        "  - match: api-01\n    unreachable: true\n"
        "  - match: worker-01\n    unreachable: {recover_after: 20s}\n"
    )
    fleet = await sim_fleet_factory(n=3, scenario=scenario)
    assert await _refused(fleet, "worker-01")  # down from the start (a refused TCP connect)
    assert await _refused(fleet, "api-01")
    async with sim_connect(fleet, "web-01") as conn:
        assert (await conn.run("true")).exit_status == 0
    await wait_until(
        lambda: not fleet.host_state("web-01").reachable, what="web-01 to become unreachable"
    )
    assert await _refused(fleet, "web-01")
    await wait_until(
        lambda: fleet.host_state("web-01").reachable and fleet.host_state("worker-01").reachable,
        what="web-01 and worker-01 to recover",
    )
    for name in ("web-01", "worker-01"):
        async with sim_connect(fleet, name) as conn:
            assert (await conn.run("true")).exit_status == 0
    assert await _refused(fleet, "api-01")  # no recover_after: down for good


async def test_full_disk_shows_in_vitals_and_fails_install(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=6, scenario="demo")
    async with sim_connect(fleet, "worker-02") as conn:
        df = (await conn.run("svc vitals")).stdout.splitlines()[-1].split()
        assert df[3:5] == ["0", "100%"]
        r = await conn.run("svc install 2.4.1")
        assert r.exit_status == 1
        assert "No space left on device" in r.stderr
    async with sim_connect(fleet, "worker-01") as conn:
        assert (await conn.run("svc install 2.4.1")).exit_status == 0
        assert not (await conn.run("df")).stdout.endswith("100% /\n")
    fleet.set_disk_full("worker-01")
    async with sim_connect(fleet, "worker-01") as conn:
        assert (await conn.run("svc install 2.5.0")).exit_status == 1


async def test_flapping_health_over_ssh(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=6, scenario="flapping-health", time_scale=0.02)
    async with sim_connect(fleet, "worker-01") as conn:
        for cmd in ("svc install 2.4.1", "svc activate 2.4.1", "svc restart"):
            await conn.run(cmd, check=True)
        seen: set[str] = set()

        async def both_seen() -> bool:  # flips every 60 ms at this scale
            r = await conn.run("svc health")
            if r.exit_status == 0:
                seen.add("ok")
            elif "/healthz timed out" in r.stdout:  # the flap, not the warm-up
                seen.add("flapped")
            return seen == {"ok", "flapped"}

        await wait_until(both_seen, what="worker-01's health to both pass and fail")


async def test_strict_host_keys_and_public_key_auth(sim_fleet: SimFleet, tmp_path: Path) -> None:
    kh = sim_fleet.known_hosts_path.read_text().splitlines()
    assert len(kh) == 6 and len({line.split()[2] for line in kh}) == 6  # a key per host
    assert all(re.match(r"^\[127\.0\.0\.1\]:\d+ ssh-ed25519 \S+$", line) for line in kh)

    # web-01's known_hosts entry given api-01's key: the connection must be refused
    ports = sim_fleet.hosts
    swapped = tmp_path / "swapped"
    web_key = next(x for x in kh if f":{ports['web-01']} " in x).split()[2]
    api_key = next(x for x in kh if f":{ports['api-01']} " in x).split()[2]
    swapped.write_text(f"[127.0.0.1]:{ports['web-01']} ssh-ed25519 {api_key}\n")
    assert web_key != api_key
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with sim_connect(sim_fleet, "web-01", known_hosts=str(swapped)):
            pass

    with pytest.raises(asyncssh.PermissionDenied):  # another user
        async with sim_connect(sim_fleet, "web-01", username="root"):
            pass
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):  # another key
        async with sim_connect(sim_fleet, "web-01", client_keys=[stranger]):
            pass
    with pytest.raises(asyncssh.PermissionDenied):  # no password login at all
        async with sim_connect(sim_fleet, "web-01", client_keys=[], password="deploy"):
            pass


async def test_files_and_modes(sim_fleet: SimFleet) -> None:
    d = sim_fleet.directory
    for private in ("id_ed25519", "sim_host_keys"):
        assert (d / private).stat().st_mode & 0o777 == 0o600
    inv = sim_fleet.inventory_path.read_text()
    assert "defaults: {user: deploy, key: ./id_ed25519, known_hosts: ./known_hosts}" in inv
    for name, port in sim_fleet.hosts.items():
        assert (
            f"  {name}: {{address: 127.0.0.1, port: {port}, vars: {{rolldeck_kill: signal," in inv
        )
    assert "  eu: {children: [eu-west, eu-central]}" in inv
    spec = sim_fleet.spec_path.read_text()
    assert "inventory: inventory.yaml" in spec and 'run: "svc install {version}"' in spec


async def test_restarted_fleet_keeps_keys_and_ports(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    where = tmp_path / "again"
    first = await sim_fleet_factory(n=3, directory=where)
    ports, known = first.hosts, first.known_hosts_path.read_text()
    await first.stop()
    second = await sim_fleet_factory(n=4, directory=where)
    assert {k: v for k, v in second.hosts.items() if k in ports} == ports
    assert second.known_hosts_path.read_text().startswith(known)
    async with sim_connect(second, "web-01") as conn:
        assert (await conn.run("true")).exit_status == 0


async def test_same_seed_same_install_times_over_ssh(sim_fleet_factory: FleetFactory) -> None:
    async def install_times(seed: int) -> list[str]:
        fleet = await sim_fleet_factory(n=2, seed=seed, time_scale=0.02)
        out = []
        async with sim_connect(fleet, "api-01") as conn:
            for version in ("2.4.1", "2.4.2", "2.4.3"):
                r = await conn.run(f"svc install {version}", check=True)
                out.append(r.stdout.splitlines()[-1])
        await fleet.stop()
        return out

    a, b, c = await install_times(3), await install_times(3), await install_times(4)
    assert a == b and a != c


async def test_control_user_drives_the_fleet(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "web-01", username="simctl") as ctl:
        lines = (await ctl.run("state", check=True)).stdout.splitlines()
        states = [json.loads(line) for line in lines]
        assert [s["name"] for s in states] == list(sim_fleet.hosts)
        assert states[0]["active"] == "2.4.0" and states[0]["port"] == sim_fleet.hosts["web-01"]
        assert (await ctl.run("kill api-01 worker-01")).exit_status == 0
        assert await _refused(sim_fleet, "api-01") and await _refused(sim_fleet, "worker-01")
        assert (await ctl.run("revive api-01")).exit_status == 0
        assert (await ctl.run("disk-full web-02 on")).exit_status == 0
        assert sim_fleet.host_state("web-02").disk_full
        r = await ctl.run("kill db-01")
        assert r.exit_status == 1 and "no such host: db-01" in r.stderr
        assert (await ctl.run("svc version")).exit_status == 2  # not a host shell
    async with sim_connect(sim_fleet, "api-01") as conn:
        assert (await conn.run("true")).exit_status == 0
        assert (await conn.run("state")).exit_status == 127  # the deploy user has no simctl
