"""The engine against the embedded simulated fleet: its generated inventory and spec,
over real SSH, with monitors; versions read back over SSH afterwards."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from console.cli import main
from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.plan import make_plan
from console.simfleet import SimFleet
from console.spec import load_spec
from console.transport import TransportOptions, make_transport
from inventory import load_inventory, select
from tests.fixtures.simfleet import FleetFactory, sim_connect


def engine_on(fleet: SimFleet, **kw: object) -> Engine:
    spec = load_spec(fleet.spec_path)
    inv = load_inventory(spec.inventory or fleet.inventory_path)
    hosts = select(inv, spec.targets)
    plan = make_plan([h.name for h in hosts], spec.batches, order=spec.order, seed=spec.seed)
    return Engine(
        spec,
        hosts,
        plan,
        make_transport(TransportOptions(ssh_config=[])),
        journal=None,
        operator="tester",
        exit_when_paused=True,
        **kw,  # type: ignore[arg-type]
    )


async def drive(engine: Engine, timeout: float = 60.0) -> list[Event]:
    seen: list[Event] = []
    sub = engine.bus.subscribe()

    async def consume() -> None:
        async for batch in sub.batches():
            seen.extend(batch)

    async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        await engine.run()
    return seen


async def version_over_ssh(fleet: SimFleet, host: str) -> str:
    async with sim_connect(fleet, host) as conn:
        result = await conn.run("svc version", check=True)
    return str(result.stdout).strip()


async def test_healthy_fleet_rollout_succeeds(sim_fleet: SimFleet) -> None:
    engine = engine_on(sim_fleet)
    events = await drive(engine)
    assert engine.outcome == Outcome.SUCCEEDED, events[-1]
    target = engine.spec.version
    for name in sim_fleet.hosts:
        assert engine.recs[name].state == HostState.HEALTHY
        assert await version_over_ssh(sim_fleet, name) == target
        assert engine.recs[name].previous_version not in (None, target)
    kinds = {type(e) for e in events}
    assert ev.VitalsSample in kinds  # the monitors ran beside the rollout
    assert not [a for a in events if isinstance(a, ev.Alert) and a.level == "critical"]


async def test_cli_run_on_the_simulated_fleet(
    sim_fleet: SimFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "run",
        str(sim_fleet.spec_path),
        "--headless",
        "--json",
        "--state-dir",
        str(tmp_path / "state"),
        "--operator",
        "ci-bot",
    ]
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()][1:]  # after the header
    assert rows[0]["kind"] == "rollout_started" and rows[0]["operator"] == "ci-bot"
    assert rows[-1]["outcome"] == "succeeded"
    assert "journal: " in err
    from console.store.journal import read_header

    journal = Path(err.split("journal: ", 1)[1].split()[0])
    head = read_header(journal)
    assert (head["who"], head["service"]) == ("ci-bot", rows[0]["service"])
    assert head["spec_hash"] == rows[0]["spec_hash"] and head["pid"] > 0
    version = load_spec(sim_fleet.spec_path).version
    for name in sim_fleet.hosts:
        assert await version_over_ssh(sim_fleet, name) == version


async def test_host_dying_mid_rollout_fails_only_that_host(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=4, scenario="healthy")
    engine = engine_on(fleet)
    victim = list(fleet.hosts)[1]
    killed: list[str] = []

    async def kill_when_moving() -> None:
        sub = engine.bus.subscribe()
        async for batch in sub.batches():
            for e in batch:
                if isinstance(e, ev.StepStarted) and e.host == victim and not killed:
                    killed.append(victim)
                    await fleet.kill_host(victim)
                    return

    before = {name: await version_over_ssh(fleet, name) for name in fleet.hosts}
    task = asyncio.create_task(kill_when_moving())
    await drive(engine)
    await task
    assert engine.recs[victim].state == HostState.FAILED
    assert engine.outcome == Outcome.PAUSED  # max_failures 0, on_failure pause
    untouched = [n for n, r in engine.recs.items() if r.state == HostState.PENDING]
    assert untouched
    for name in untouched:
        assert await version_over_ssh(fleet, name) == before[name]


@pytest.mark.slow
async def test_bad_canary_is_rolled_back_before_the_second_batch(
    sim_fleet_factory: FleetFactory,
) -> None:
    fleet = await sim_fleet_factory(n=8, scenario="bad-canary", time_scale=0.2)
    engine = engine_on(fleet)
    events = await drive(engine, timeout=90)
    alerts = [e for e in events if isinstance(e, ev.Alert) and e.rule.startswith("error_rate")]
    assert alerts, [e for e in events if isinstance(e, ev.Alert)]
    assert alerts[0].action == "rollback" and alerts[0].numbers
    assert engine.outcome == Outcome.ROLLED_BACK
    started = [e for e in events if isinstance(e, ev.BatchStarted) and not e.rollback]
    assert len(started) == 1  # the second batch never started
    canary = started[0].hosts[0]
    assert await version_over_ssh(fleet, canary) == engine.recs[canary].previous_version
