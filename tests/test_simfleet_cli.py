"""`rolldeck sim-fleet` as a process, start_fleet_process, and the files it writes
read back by the project's own loaders."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from console.core.errors import RolldeckError
from console.simfleet import SimFleet, start_fleet_process
from console.simfleet.process import FleetStartError, _read_line
from console.spec import load_spec
from inventory import load_inventory
from tests.fixtures.simfleet import FleetFactory

READY = re.compile(
    r"^sim-fleet ready: 4 hosts on 127\.0\.0\.1 ports (\d+)-(\d+), scenario demo, seed 5, "
    r"inventory (\S+)/inventory\.yaml, spec (\S+)/rollout\.yaml$"
)


def test_cli_prints_one_ready_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    d = tmp_path / "f"
    argv = [sys.executable, "-m", "console", "sim-fleet", "--hosts", "4", "--dir", str(d)]
    argv += ["--scenario", "demo", "--seed", "5", "--log-rate", "2"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = _read_line(proc, 30)
        m = READY.match(line)
        assert m, line
        assert Path(m.group(3)) == d.resolve()
        for name in ("inventory.yaml", "rollout.yaml", "known_hosts", "id_ed25519", "fleet.json"):
            assert (d / name).is_file(), name
        assert len((d / "known_hosts").read_text().splitlines()) == 4
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == b""  # exactly one line on stdout, already read
    assert b"Traceback" not in err


def test_cli_bad_scenario_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("versions:\n  new: {error_rate: lots}\n")
    argv = [sys.executable, "-m", "console", "sim-fleet", "--dir", str(tmp_path / "f")]
    r = subprocess.run([*argv, "--scenario", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"rolldeck: {bad}:2: versions.new.error_rate: expected a percentage such as 15%, not 'lots'"
    ]
    r = subprocess.run([*argv, "--scenario", "nope"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no such scenario" in r.stderr and "Traceback" not in r.stderr


async def test_start_fleet_process_serves_over_ssh(tmp_path: Path) -> None:
    d = tmp_path / "child"
    fleet = await asyncio.to_thread(start_fleet_process, 3, d, scenario="healthy", time_scale=0.05)
    try:
        assert fleet.ready_line.startswith("sim-fleet ready: 3 hosts")
        assert list(fleet.hosts) == ["web-01", "api-01", "worker-01"]
        async with asyncssh.connect(
            "127.0.0.1",
            fleet.hosts["worker-01"],
            username="deploy",
            client_keys=[str(d / "id_ed25519")],
            known_hosts=str(d / "known_hosts"),
            config=[],
            agent_path=None,
        ) as conn:
            assert (await conn.run("svc install 2.4.1")).exit_status == 0
            assert (await conn.run("hostname")).stdout == "worker-01\n"
        # the fleet in the child process, driven through its control user
        states = await fleet.host_states()
        assert list(states) == ["web-01", "api-01", "worker-01"]
        assert states["worker-01"].installed == ("2.4.0", "2.4.1")
        assert states["web-01"].installed == ("2.4.0",) and states["web-01"].reachable
        await fleet.kill_host("web-01")  # goes through another host
        assert not (await fleet.host_states("web-01"))["web-01"].reachable
        with pytest.raises(OSError):
            await asyncssh.connect("127.0.0.1", fleet.hosts["web-01"], config=[], agent_path=None)
        await fleet.revive_host("web-01")
        await fleet.set_disk_full("api-01")
        states = await fleet.host_states()
        assert states["web-01"].reachable and states["api-01"].disk_full
        with pytest.raises(RolldeckError, match="no such host: db-01"):
            await fleet.control("kill db-01")
    finally:
        code = fleet.stop()
    assert code == 0
    assert fleet.stop() == 0  # idempotent


def test_start_fleet_process_reports_a_failed_start(tmp_path: Path) -> None:
    with pytest.raises(FleetStartError, match="no such scenario"):
        start_fleet_process(2, tmp_path / "x", scenario="no-such-scenario")


@pytest.mark.parametrize("scenario", ["healthy", "bad-canary", "demo"])
async def test_rollout_yaml_loads_with_the_spec_loader(
    sim_fleet_factory: FleetFactory, scenario: str
) -> None:
    fleet: SimFleet = await sim_fleet_factory(n=6, scenario=scenario)
    spec = load_spec(str(fleet.spec_path))
    assert spec.version == "2.4.1" and spec.service == "checkout-api"
    assert [s.name for s in spec.steps] == ["drain", "install", "activate", "restart", "undrain"]
    assert spec.current_version == "svc version"
    assert spec.health is not None and spec.health.run == "svc health"
    assert spec.metrics is not None and spec.metrics.errors == 'http_requests_total{code=~"5.."}'
    assert len(spec.rollback.steps) == 2
    assert spec.on_failure == ("rollback" if scenario == "bad-canary" else "pause")


async def test_inventory_yaml_loads_with_the_inventory_loader(sim_fleet: SimFleet) -> None:
    inv = load_inventory(str(sim_fleet.inventory_path))
    assert list(inv.hosts) == list(sim_fleet.hosts)
    web = inv.hosts["web-01"]
    assert (web.address, web.port, web.user) == ("127.0.0.1", sim_fleet.hosts["web-01"], "deploy")
    assert web.vars["rolldeck_kill"] == "signal"
    assert web.key == str(sim_fleet.client_key_path)  # resolved against the inventory's dir
    assert web.known_hosts == str(sim_fleet.known_hosts_path)
    assert set(inv.groups["eu"]) == {
        "web-01",
        "api-01",
        "worker-01",
        "web-02",
        "api-02",
        "worker-02",
    }
    assert set(inv.groups["web"]) == {"web-01", "web-02"}


def test_cli_unwritable_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = [sys.executable, "-m", "console", "sim-fleet", "--dir", str(blocker / "sub")]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"rolldeck: {blocker / 'sub'}: --dir: cannot write there: Not a directory"
    ]
