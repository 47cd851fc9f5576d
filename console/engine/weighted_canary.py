"""The canary by weight: ``strategy: canary`` with ``traffic: [5%, 25%, 100%]``.

The plan's first batch is the canary. Before anything changes, every server's weight
in the backend is journaled (``TrafficShifted`` move ``before``: what every way out
restores). The canary hosts are deployed as any host (drained, steps, health gating)
but readied at weight 0, so no request reaches them before their share is set. Then,
for each share below 100%, every server's weight is set so the canary servers get that
share of the backend (console/traffic/weights.py: the closest integer weights, the
others' proportions kept; the share achieved is journaled beside the one asked) and
the ``between_batches`` gate judges it (a bake with the analysis, a manual gate...).
100% is the promotion: every server back to its own weight, then the other batches
roll out as ``rolling`` does (each host drained while it changes).

Every way out restores the weights: success (the promotion), abort, a headless pause
(the resume re-applies the step it stopped at and judges it again), rollback (the
canary servers at weight 0 first, the others at their own weights, then the canary
hosts roll back: drained, reverted, gated and readied at their own weight). A crash
leaves the weights as they were; ``resume`` reads the last move from the journal and
re-applies it (idempotent: a server already so is not touched), from HAProxy's word.
"""

from __future__ import annotations

from console.core import events as ev
from console.core.events import HostState
from console.engine.control import HostRecord
from console.engine.hostwork import HostFailure, TrafficSwitch
from console.engine.rolling import RollingStrategy, roll_batches, rollback_groups
from console.engine.strategy import StrategyContext, Verdict, roll_back_hosts, succeeded
from console.engine.traffic import Moves, Traffic, refusal
from console.spec import RolloutSpec
from console.traffic.haproxy import HAProxyError
from console.traffic.weights import canary_weights

__all__ = ["WeightedCanary"]


class WeightedCanary:
    name = "canary"

    def __init__(self, spec: RolloutSpec) -> None:
        self.spec = spec
        self.shares = spec.traffic
        self.traffic: Traffic | None = None
        self.canary: frozenset[str] = frozenset()  # host names of the first batch
        self.original: dict[str, int] = {}  # server -> weight before the rollout
        self.shifted = False  # weights other than the originals are set
        self.step = 0  # the share being judged (its index in ``traffic``)
        self.promoted = False
        self.rolling_back = False
        self.loaded = False  # _load ran

    def bind(self, traffic: Traffic | None) -> TrafficSwitch | None:
        self.traffic = traffic
        return None if traffic is None else _CanarySwitch(self, traffic)

    # -- the forward rollout ---------------------------------------------------------

    async def run(self, ctx: StrategyContext) -> Verdict:
        if self.traffic is None:  # the spec loader refuses this; kept honest anyway
            return await RollingStrategy().run(ctx)
        if refused := await self._load(ctx):
            return refused
        last = ctx.view.shift
        if not self.promoted:
            if ctx.start_batch == 0:  # the canary deploys first (readied at weight 0)
                await ctx.wait_unpaused()
                if stop := await self._stop(ctx):
                    return stop
                await ctx.run_batch(0)
                if stop := await self._stop(ctx):
                    return stop
            healthy = [n for n in self.canary if ctx.recs[n].state == HostState.HEALTHY]
            if not healthy:
                return await self._finish(ctx, _no_canary(ctx, self.canary))
            first = last.step if last is not None and last.step is not None else 0
            for k in range(first, len(self.shares) - 1):
                self.step = k
                await ctx.wait_unpaused()
                if stop := await self._stop(ctx):
                    return stop
                if failed := await self._weigh(ctx, k, healthy):
                    return await self._finish(ctx, failed)
                await ctx.run_gate(0)
                if stop := await self._stop(ctx):
                    return stop
            await ctx.wait_unpaused()
            if stop := await self._stop(ctx):
                return stop
            if failed := await self._restore(ctx, promote=True):
                return failed
        return await self._rest(ctx)

    async def _rest(self, ctx: StrategyContext) -> Verdict:
        """After the promotion: the other batches, each host drained while it changes."""
        gate = ctx.gate_first if ctx.gate_first is not None and ctx.gate_first >= 1 else None
        stop = await roll_batches(ctx, max(ctx.start_batch, 1), gate)
        return stop or succeeded(ctx)

    async def _stop(self, ctx: StrategyContext) -> Verdict | None:
        """``stop_check``, with the weights restored on any way out but a rollback
        (which restores them itself, the canary at 0 first)."""
        stop = await ctx.stop_check()
        if stop is None or self.rolling_back:
            return stop
        return await self._finish(ctx, stop)

    async def _finish(self, ctx: StrategyContext, verdict: Verdict) -> Verdict:
        if self.shifted:
            failed = await self._restore(ctx, promote=False)
            if failed:
                return verdict[0], f"{verdict[1]}; {failed[1]}"
        return verdict

    async def _load(self, ctx: StrategyContext) -> Verdict | None:
        """Once, before the first move or the rollback (a resumed rollout may roll back
        before it runs): the canary, and every server's weight before the rollout (the
        journal's, or read now and journaled)."""
        if self.loaded:
            return None
        self.canary = frozenset(ctx.batches.hosts(0)) if len(ctx.batches) else frozenset()
        last = ctx.view.shift
        self.promoted = last is not None and last.move == "restore" and last.share == 100
        if ctx.view.original_weights:  # resumed: the weights before the first move
            self.original = dict(ctx.view.original_weights)
            self.shifted = last is not None and not (
                last.move == "restore" and last.phase == "done"
            )
            if last is not None and last.step is not None:
                self.step = last.step
        else:
            assert self.traffic is not None
            try:
                states = await self.traffic.servers()
                self.original = {name: s.weight for name, s in states.items()}
            except (HAProxyError, HostFailure) as exc:
                return _refused(exc)
            ctx.emit(
                ev.TrafficShifted(
                    move="before",
                    backend=self._backend,
                    original=self.original,
                    detail=f"canary {', '.join(sorted(self.canary))}; shares "
                    + ", ".join(f"{s:g}%" for s in self.shares),
                )
            )
        self.loaded = True
        return None

    # -- the moves -------------------------------------------------------------------

    @property
    def _backend(self) -> str:
        assert self.traffic is not None
        return self.traffic.lb.backend

    def _servers_of(self, ctx: StrategyContext, names: list[str]) -> dict[str, str]:
        """Server -> host name."""
        assert self.traffic is not None
        return {self.traffic.server_of(ctx.recs[n]): n for n in names}

    async def _weigh(self, ctx: StrategyContext, step: int, healthy: list[str]) -> Verdict | None:
        """Set the weights of share ``step``; a verdict when HAProxy refuses."""
        assert self.traffic is not None
        share = self.shares[step]
        canary = self._servers_of(ctx, healthy)
        try:
            now = await self.traffic.servers()
        except (HAProxyError, HostFailure) as exc:
            return _refused(exc)
        others = {  # the servers in traffic beside the canary (failed canaries are not)
            s: w
            for s, w in self.original.items()
            if s not in canary and s in now and now[s].admin == "ready"
        }
        shares = canary_weights(share, sorted(canary), others)
        hosts = self._servers_of(ctx, list(ctx.recs))
        self.shifted = True
        moves = {s: ("ready" if s in canary else None, w) for s, w in shares.weights.items()}
        shift = ev.TrafficShifted(
            move="weights",
            backend=self._backend,
            step=step,
            share=share,
            achieved=shares.achieved,
            weights=shares.weights,
        )
        try:
            await self.traffic.shift(shift, [(moves, f"canary {share:g}% of the backend")], hosts)
        except (HAProxyError, HostFailure) as exc:
            return _refused(exc)
        return None

    async def _restore(
        self, ctx: StrategyContext, *, promote: bool, canary_out: bool = False
    ) -> Verdict | None:
        """Every server back to its weight before the rollout (``canary_out``: the
        canary servers at 0, their rollback readies them at their own)."""
        assert self.traffic is not None
        canary = self._servers_of(ctx, sorted(self.canary))
        weights = dict(self.original)
        if canary_out:
            weights.update(dict.fromkeys(canary, 0))
        hosts = self._servers_of(ctx, list(ctx.recs))
        share = 100.0 if promote else None
        why = "promoted" if promote else ("rolling back" if canary_out else "the rollout stops")
        shift = ev.TrafficShifted(
            move="restore",
            backend=self._backend,
            step=self.step,
            share=share,
            weights=weights,
            detail=why,
        )
        moves: Moves = {s: (None, w) for s, w in weights.items()}
        try:
            await self.traffic.shift(shift, [(moves, f"weights restored: {why}")], hosts)
        except (HAProxyError, HostFailure) as exc:
            return _refused(exc)
        self.shifted = canary_out
        self.promoted = promote
        return None

    # -- the way back ----------------------------------------------------------------

    async def roll_back(self, ctx: StrategyContext) -> Verdict:
        self.rolling_back = True
        if self.traffic is not None and (refused := await self._load(ctx)):
            return refused
        if self.traffic is not None and self.original and (self.shifted or not self.promoted):
            failed = await self._restore(ctx, promote=False, canary_out=True)
            if failed:
                return failed
        spec = ctx.spec
        return await roll_back_hosts(ctx, lambda targets: rollback_groups(spec, targets))

    def ready_weight(self, rec: HostRecord, server: str) -> int | None:
        """The weight a host's server is readied at: 0 for a canary before its share
        is set, its own weight when going back, else as it is."""
        if self.rolling_back:
            return self.original.get(server)
        if rec.name in self.canary and not self.promoted:
            return 0
        return None


class _CanarySwitch:
    """The host journey's traffic moves, with the canary's weight held at 0."""

    def __init__(self, strategy: WeightedCanary, traffic: Traffic) -> None:
        self.strategy = strategy
        self.traffic = traffic

    async def drain(self, rec: HostRecord) -> None:
        await self.traffic.drain(rec)

    async def ready(self, rec: HostRecord) -> None:
        weight = self.strategy.ready_weight(rec, self.traffic.server_of(rec))
        detail = "healthy: back in traffic"
        if weight == 0:
            detail = "healthy: ready at weight 0 until the canary's share is set"
        await self.traffic.ready(rec, weight, detail)

    def kept_out(self, rec: HostRecord, why: str) -> None:
        self.traffic.kept_out(rec, why)


def _refused(exc: HAProxyError | HostFailure) -> Verdict:
    return ev.Outcome.FAILED, refusal(exc)


def _no_canary(ctx: StrategyContext, canary: frozenset[str]) -> Verdict:
    return ev.Outcome.FAILED, f"no canary host is healthy ({', '.join(sorted(canary))})"
