"""The rolling rollout: the plan's batches one after another, the spec's gate between.

The default :class:`~console.engine.strategy.Strategy`. Between every two moves it
waits while paused (neither the next batch nor a gate's bake clock starts until the
operator resumes: the header must say PAUSED, not WAITING) and asks ``stop_check``.
A resumed rollout starts at ``ctx.start_batch``, first passing the gate it stopped
before (``ctx.gate_first``). Its rollback runs the changed hosts' rollback steps,
newest batch first (or in the spec's ``rollback.batches``).
"""

from __future__ import annotations

from console.engine.control import HostRecord
from console.engine.hostwork import TrafficSwitch
from console.engine.strategy import StrategyContext, Verdict, roll_back_hosts, succeeded
from console.engine.traffic import Traffic
from console.plan import make_plan
from console.spec import RolloutSpec


class RollingStrategy:
    name = "rolling"

    def bind(self, traffic: Traffic | None) -> TrafficSwitch | None:
        return traffic  # each host drained while it changes, ready once healthy

    async def run(self, ctx: StrategyContext) -> Verdict:
        stop = await roll_batches(ctx, ctx.start_batch, ctx.gate_first)
        return stop or succeeded(ctx)

    async def roll_back(self, ctx: StrategyContext) -> Verdict:
        spec = ctx.spec
        return await roll_back_hosts(ctx, lambda targets: rollback_groups(spec, targets))


async def roll_batches(
    ctx: StrategyContext, start: int, gate_first: int | None, *, gates: bool = True
) -> Verdict | None:
    """The plan's batches from ``start``, one after another, the spec's gate between
    them (``gates``), first passing ``gate_first`` (resumed before a gate it never
    passed): a stop verdict, or None once every batch ran. Rolling is this; the
    weighted canary rolls its other batches this way after the promotion, blue-green
    its idle pool (no gates: no traffic to judge)."""
    i = start
    while i < len(ctx.batches):  # operators may re-cut the plan as it runs
        await ctx.wait_unpaused()
        if stop := await ctx.stop_check():
            return stop
        if gate_first is not None:  # resumed before a gate it never passed
            gate, gate_first = gate_first, None
            await ctx.run_gate(gate)
            continue  # paused or stopped at the gate: back to the checks above
        await ctx.run_batch(i)
        if stop := await ctx.stop_check():
            return stop
        await ctx.wait_unpaused()
        if stop := await ctx.stop_check():
            return stop
        if gates and i + 1 < len(ctx.batches):
            await ctx.run_gate(i)
        if stop := await ctx.stop_check():
            return stop
        i += 1
    return None


def rollback_groups(spec: RolloutSpec, targets: list[HostRecord]) -> list[tuple[str, ...]]:
    """Newest batch first (plan order within one), grouped as the hosts were deployed,
    or re-cut into the spec's ``rollback.batches``."""
    ordered = sorted(targets, key=lambda r: (-(r.batch if r.batch is not None else -1), r.order))
    if not ordered:
        return []
    if spec.rollback.batches:
        names = [r.name for r in ordered]
        return [tuple(b) for b in make_plan(names, list(spec.rollback.batches)).batches]
    groups: dict[int, list[str]] = {}
    for r in ordered:
        groups.setdefault(r.batch if r.batch is not None else -1, []).append(r.name)
    return [tuple(g) for g in groups.values()]
