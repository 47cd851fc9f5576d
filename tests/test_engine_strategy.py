"""The strategy seam: the rolling rollout runs through the Strategy protocol, and a
strategy defined here, outside the engine, plugs in with ``Engine(strategy=...)``:
no engine edit, and pause, abort and rollback (operator's or on_failure's) still work
under it."""

from __future__ import annotations

from typing import Any

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.engine import RollingStrategy, Strategy, StrategyContext, Verdict
from console.engine.hostwork import TrafficSwitch
from console.engine.strategy import roll_back_hosts, succeeded
from console.engine.traffic import Traffic
from tests.test_engine_commands import later, step_started, when
from tests.test_engine_helpers import Run, make_engine, run_engine, spec_from

NAMES = ("h01", "h02", "h03", "h04", "h05")


class AllAtOnce:
    """Every host in one batch, then the spec's gate; rolls back in one group. Only
    the public strategy API: what a new strategy module would look like."""

    name = "all-at-once"

    def bind(self, traffic: Traffic | None) -> TrafficSwitch | None:
        return traffic  # each host drained while it changes, when there is a balancer

    async def run(self, ctx: StrategyContext) -> Verdict:
        ctx.replan("100%", "all at once")
        await ctx.run_batch(0)
        if stop := await ctx.stop_check():
            return stop
        await ctx.wait_unpaused()
        if stop := await ctx.stop_check():
            return stop
        await ctx.run_gate(0)
        if stop := await ctx.stop_check():
            return stop
        return succeeded(ctx)

    async def roll_back(self, ctx: StrategyContext) -> Verdict:
        return await roll_back_hosts(ctx, lambda targets: [tuple(r.name for r in targets)])


class Careless(AllAtOnce):
    """Deploys and declares success without a single stop check."""

    async def run(self, ctx: StrategyContext) -> Verdict:
        ctx.replan("100%", "all at once")
        await ctx.run_batch(0)
        return succeeded(ctx)


class Moves:
    """A context that records the moves a strategy makes, passing them on."""

    def __init__(self, ctx: StrategyContext, log: list[str]) -> None:
        self._ctx, self._log = ctx, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    async def run_batch(self, index: int) -> None:
        self._log.append(f"batch {index}")
        await self._ctx.run_batch(index)

    async def run_gate(self, after: int) -> None:
        self._log.append(f"gate {after}")
        await self._ctx.run_gate(after)


class Recorded:
    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.moves: list[str] = []
        self.name = inner.name

    def bind(self, traffic: Traffic | None) -> TrafficSwitch | None:
        return self.inner.bind(traffic)

    async def run(self, ctx: StrategyContext) -> Verdict:
        return await self.inner.run(Moves(ctx, self.moves))  # type: ignore[arg-type]

    async def roll_back(self, ctx: StrategyContext) -> Verdict:
        self.moves.append("roll back")
        return await self.inner.roll_back(ctx)


def on_gate(action):
    return when(lambda e: isinstance(e, ev.GateWaiting), action)


def forward_batches(run: Run) -> list[ev.BatchStarted]:
    return [e for e in run.kinds(ev.BatchStarted) if not e.rollback]


# -- rolling, through the protocol ----------------------------------------------------


def test_rolling_is_the_default() -> None:
    run = make_engine(spec_from(), 3)
    assert isinstance(run.engine.strategy, RollingStrategy)
    assert run.engine.strategy.name == "rolling"


async def test_rolling_moves_batch_gate_batch() -> None:
    """Plan [1, 2, 2] on five hosts: each batch, the gate after every batch but the
    last, and the verdict, exactly as the engine's loop did before the seam."""
    rolling = Recorded(RollingStrategy())
    run = make_engine(spec_from(), 5, strategy=rolling)
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    assert rolling.moves == ["batch 0", "gate 0", "batch 1", "gate 1", "batch 2"]
    assert [e.hosts for e in run.kinds(ev.BatchStarted)] == [
        ("h01",),
        ("h02", "h03"),
        ("h04", "h05"),
    ]
    assert [e.after_batch for e in run.kinds(ev.GatePassed)] == [0, 1]
    finished = run.kinds(ev.RolloutFinished)[-1]
    assert finished.reason == "5 hosts on 2.0"


async def test_rolling_rollback_through_the_protocol() -> None:
    """A rollback asked at the second gate: the strategy's roll_back runs, newest
    batch first."""
    rolling = Recorded(RollingStrategy())
    run = make_engine(spec_from("between_batches: {gate: manual}\n"), 5, strategy=rolling)

    def react(event: Event, r: Run) -> None:
        if isinstance(event, ev.GateWaiting):
            if event.after_batch == 0:
                r.engine.continue_()
            else:
                r.engine.rollback(reason="bad numbers")

    await run_engine(run, react)
    assert run.outcome == Outcome.ROLLED_BACK
    assert rolling.moves == ["batch 0", "gate 0", "batch 1", "gate 1", "roll back"]
    back = [e.hosts for e in run.kinds(ev.BatchStarted) if e.rollback]
    assert back == [("h02", "h03"), ("h01",)]
    assert {n: run.final(n) for n in NAMES} == {
        "h01": HostState.ROLLED_BACK,
        "h02": HostState.ROLLED_BACK,
        "h03": HostState.ROLLED_BACK,
        "h04": HostState.PENDING,
        "h05": HostState.PENDING,
    }


# -- a strategy from outside the engine ---------------------------------------------


async def test_a_new_strategy_plugs_in() -> None:
    """All five hosts in one batch (in flight together), then a manual gate."""
    spec = spec_from("between_batches: {gate: manual}\n")
    run = make_engine(spec, 5, strategy=AllAtOnce())
    run.fake.on(r"^install", delay=0.05)
    await run_engine(run, on_gate(lambda r: r.engine.continue_(operator="alice")))
    assert run.outcome == Outcome.SUCCEEDED
    assert [e.batches for e in run.kinds(ev.PlanChanged)] == [(NAMES,)]
    assert [e.hosts for e in forward_batches(run)] == [NAMES]
    events = list(enumerate(run.events))
    last_install = max(
        i for i, e in events if isinstance(e, ev.StepStarted) and e.step == "install"
    )
    first_healthy = min(
        i for i, e in events if isinstance(e, ev.HostStateChanged) and e.state == HostState.HEALTHY
    )
    assert last_install < first_healthy  # one batch: every host started before any ended
    assert [(e.after_batch, e.by) for e in run.kinds(ev.GatePassed)] == [(0, "operator:alice")]
    assert all(run.final(n) == HostState.HEALTHY for n in NAMES)
    assert run.kinds(ev.RolloutFinished)[-1].reason == "5 hosts on 2.0"


class IdleHalf(AllAtOnce):
    """Blue-green's first move: deploy one pool only, the other stays as it is."""

    async def run(self, ctx: StrategyContext) -> Verdict:
        ctx.replan("100%", "the idle pool", hosts=NAMES[:2])
        await ctx.run_batch(0)
        if stop := await ctx.stop_check():
            return stop
        return succeeded(ctx)


async def test_a_strategy_deploys_a_subset() -> None:
    run = make_engine(spec_from(), 5, strategy=IdleHalf())
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    assert [e.hosts for e in forward_batches(run)] == [NAMES[:2]]
    assert [run.final(n) for n in NAMES] == [HostState.HEALTHY] * 2 + [HostState.PENDING] * 3
    assert not any(run.deploy_commands(n) for n in NAMES[2:])
    assert run.kinds(ev.RolloutFinished)[-1].reason == "2 hosts on 2.0"


async def test_pause_under_a_new_strategy_headless() -> None:
    """Paused in its one batch: moving hosts finish, the rest never start, PAUSED."""
    spec = spec_from("max_parallel: 2\n")
    run = make_engine(spec, 5, strategy=AllAtOnce(), exit_when_paused=True)
    run.fake.on(r"^install", delay=0.1)
    await run_engine(run, when(step_started("h01", "install"), lambda r: r.engine.pause()))
    assert run.outcome == Outcome.PAUSED
    assert [run.final(n) for n in NAMES] == [HostState.HEALTHY] * 2 + [HostState.PENDING] * 3
    assert not any(run.deploy_commands(n) for n in NAMES[2:])
    assert not run.kinds(ev.GateWaiting)


async def test_pause_then_resume_under_a_new_strategy() -> None:
    spec = spec_from("max_parallel: 2\n")
    run = make_engine(spec, 5, strategy=AllAtOnce())
    run.fake.on(r"^install", delay=0.05)
    seen: dict[str, list[str]] = {}

    def act(r: Run) -> None:
        r.engine.pause(operator="alice")

        def check_and_resume() -> None:
            seen["while_paused"] = [n for n in NAMES[2:] if r.deploy_commands(n)]
            r.engine.resume(operator="alice")

        later(0.3, check_and_resume)

    await run_engine(run, when(step_started("h01", "install"), act))
    assert seen["while_paused"] == []
    assert run.outcome == Outcome.SUCCEEDED
    assert all(run.final(n) == HostState.HEALTHY for n in NAMES)


async def test_abort_under_a_new_strategy() -> None:
    run = make_engine(spec_from(), 5, strategy=AllAtOnce())
    run.fake.on(r"^install", delay=5.0)
    await run_engine(run, when(step_started("h01", "install"), lambda r: r.engine.abort()))
    assert run.outcome == Outcome.ABORTED
    assert not run.kinds(ev.GateWaiting)
    assert all(run.final(n) != HostState.HEALTHY for n in NAMES)


async def test_operator_rollback_under_a_new_strategy() -> None:
    """Rolled back at the gate, by the strategy's own order: one group of five."""
    spec = spec_from("between_batches: {gate: manual}\n")
    run = make_engine(spec, 5, strategy=AllAtOnce())
    await run_engine(run, on_gate(lambda r: r.engine.rollback(reason="no")))
    assert run.outcome == Outcome.ROLLED_BACK
    assert [e.hosts for e in run.kinds(ev.BatchStarted) if e.rollback] == [NAMES]
    assert all(run.final(n) == HostState.ROLLED_BACK for n in NAMES)
    assert all("activate 1.0" in run.commands(n) for n in NAMES)


async def test_on_failure_rollback_under_a_new_strategy() -> None:
    """A host fails over the budget: on_failure rolls back, the gate never opens."""
    spec = spec_from("on_failure: rollback\n")
    run = make_engine(spec, 5, strategy=AllAtOnce())
    run.fake.on(r"^install", exit_code=1, hosts=["h03"])
    await run_engine(run)
    assert run.outcome == Outcome.ROLLED_BACK
    assert not run.kinds(ev.GateWaiting)
    assert [a.rule for a in run.kinds(ev.Alert)] == ["max_failures"]
    assert all(run.final(n) == HostState.ROLLED_BACK for n in NAMES)


async def test_a_strategy_cannot_outrun_a_rollback() -> None:
    """A strategy that never checks: the engine still honours a rollback requested
    during its last move instead of reporting success."""
    run = make_engine(spec_from(), 5, strategy=Careless())
    run.fake.on(r"^install", delay=0.05)
    await run_engine(run, when(step_started("h01", "install"), lambda r: r.engine.rollback()))
    assert run.outcome == Outcome.ROLLED_BACK
    assert all(run.final(n) == HostState.ROLLED_BACK for n in NAMES)
