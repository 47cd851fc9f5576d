"""Full headless rollouts (``rolldeck run --headless``) against the simulated fleet,
one per built-in scenario: the outcome's exit code, then every host's final state
read back over SSH."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from console.core.errors import EXIT_OK, EXIT_PAUSED, EXIT_ROLLED_BACK
from console.simfleet import SimFleet, builtin_names, load_scenario
from tests.fixtures.simfleet import FleetFactory, sim_connect

pytest.importorskip("console.subcommands.run")

OLD, NEW = "2.4.0", "2.4.1"
HOSTS = ["web-01", "api-01", "worker-01", "web-02", "api-02", "worker-02"]  # batches 1|2|3


async def rollout(fleet: SimFleet, state_dir: Path) -> tuple[int, list[dict[str, object]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "console",
        "run",
        str(fleet.spec_path),
        "--headless",
        "--json",
        "--state-dir",
        str(state_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert b"Traceback" not in err, err.decode()
    return proc.returncode, events


async def final_states(fleet: SimFleet) -> dict[str, dict[str, str] | None]:
    """``svc status`` of every host over SSH; None for a host that refuses connections."""

    async def status(name: str) -> dict[str, str] | None:
        try:
            async with sim_connect(fleet, name, connect_timeout=5) as conn:
                out = (await conn.run("svc status", check=True)).stdout
        except OSError:
            return None
        return dict(line.split(" ", 1) for line in out.splitlines())

    return {name: await status(name) for name in fleet.hosts}


def on(state: dict[str, str] | None, version: str) -> bool:
    return state is not None and state["active"] == state["running"] == version


EXPECTED = {
    "healthy": EXIT_OK,
    "slow-rollout": EXIT_OK,
    # the generated spec judges errors over SSH only: latency needs the prometheus
    # analysis (tests/test_analysis_prometheus.py catches it there)
    "slow-canary": EXIT_OK,
    "bad-canary": EXIT_ROLLED_BACK,
    "demo": EXIT_PAUSED,
    "host-dies-mid-batch": EXIT_PAUSED,
    "hung-install": EXIT_PAUSED,
    "flapping-health": EXIT_PAUSED,
}
BAD_HOST = {
    "demo": "worker-02",
    "host-dies-mid-batch": "api-02",
    "hung-install": "web-02",
    "flapping-health": "worker-01",
}


async def check_scenario(make: FleetFactory, where: Path, scenario: str) -> None:
    fleet = await make(n=6, scenario=scenario, time_scale=0.05, directory=where / "fleet")
    assert list(fleet.hosts) == HOSTS
    code, events = await rollout(fleet, where / "state")
    assert code == EXPECTED[scenario], [e for e in events if e.get("type") == "Alert"]
    states = await final_states(fleet)
    reachable = {name: s for name, s in states.items() if s is not None}
    for name, s in reachable.items():  # every host ends on a known version, fully switched
        assert s["active"] in (OLD, NEW), (name, s)
        assert s["active"] == fleet.host_state(name).active

    if scenario in ("healthy", "slow-rollout", "slow-canary"):
        assert all(on(s, NEW) and s["drained"] == "no" for s in states.values()), states
        return
    if scenario == "bad-canary":
        assert all(on(s, OLD) for s in states.values()), states  # the canary went back
        assert NEW in states["web-01"]["installed"].split()  # type: ignore[index]
        return
    bad = BAD_HOST[scenario]
    assert on(states["web-01"], NEW)  # the canary passed
    if scenario == "host-dies-mid-batch":
        assert states[bad] is None  # still unreachable
    elif scenario == "flapping-health":
        assert on(states[bad], NEW)  # deployed, then failed its health gate
    else:
        assert on(states[bad], OLD) and NEW not in states[bad]["installed"]  # type: ignore[index]
        assert fleet.sim_host(bad).installing == 0  # a hung install was really stopped
    for name, s in reachable.items():  # pause lets moving hosts finish: none half-deployed
        if name != bad:
            assert on(s, OLD) or on(s, NEW), (name, s)


@pytest.mark.slow
async def test_rollout_outcome_per_scenario(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    """The built-ins side by side (each rollout mostly waits on timers); those behind a
    load balancer run as drills (tests/test_drill_blue_green.py)."""
    assert sorted(EXPECTED) == [
        n for n in builtin_names() if load_scenario(n).load_balancer is None
    ]
    slots = asyncio.Semaphore(4)  # concurrent, but not so many that timeouts fire on load

    async def one(name: str) -> None:
        async with slots:
            await check_scenario(sim_fleet_factory, tmp_path / name, name)

    results = await asyncio.gather(*(one(name) for name in EXPECTED), return_exceptions=True)
    failures = {
        name: f"{type(r).__name__}: {r}"
        for name, r in zip(EXPECTED, results, strict=True)
        if isinstance(r, BaseException)
    }
    assert not failures, failures
