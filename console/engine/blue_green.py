"""Blue-green: deploy the idle pool, switch the backend's traffic to it, and roll back
by switching back (no deploy: seconds).

``strategy: blue-green`` with ``blue: GROUP`` and ``green: GROUP``: the targets are the
hosts of both groups, planned pool by pool (console/runtime/rollout.py). Which pool is
live is read from HAProxy at the start, never assumed (console/traffic/pools.py: every
server of one pool ready with a weight, none of the other's), and journaled
(``TrafficShifted`` move ``pools``, with every server's weight: what a switch gives
back). The live pool's hosts are set aside (SKIPPED: not changed); the idle pool is
deployed in its batches, health gated as any host, and never put in traffic while it
changes (a host of it found serving fails before its first step); no gate runs between
those batches (no traffic reaches them: a bake would judge nothing).

The switch is one journaled move: ``switch`` (start), the idle servers set ready at
their weights first, then the live servers drained (never a moment with no server),
``switch`` (done). Then the ``between_batches`` gate, once, bakes it (the
analysis and error-rate alerts act by ``on_failure`` meanwhile). Success leaves the old
pool drained, on the old version: the next rollout's idle pool, and the instant way
back. A rollback is ``switch_back``: the old pool ready, the new one drained, nothing
deployed or reverted; it ends ROLLED_BACK with the new pool idle on the new version.
An abort leaves traffic where it is and says where. A crash is resumed from the
journal's last move, re-applied from HAProxy's word (idempotent): a switch cut in half
is finished, a switch back cut in half is finished.
"""

from __future__ import annotations

from console.core import events as ev
from console.core.events import HostState, Outcome
from console.engine.control import HostRecord
from console.engine.hostwork import HostFailure, TrafficSwitch
from console.engine.rolling import roll_batches
from console.engine.strategy import StrategyContext, Verdict, aborted
from console.engine.traffic import Moves, Traffic, refusal
from console.spec import RolloutSpec
from console.traffic.haproxy import HAProxyError
from console.traffic.pools import PoolError, live_pool, split_pools

__all__ = ["BlueGreen"]


class BlueGreen:
    name = "blue-green"

    def __init__(self, spec: RolloutSpec) -> None:
        assert spec.blue is not None and spec.green is not None
        self.spec = spec
        self.traffic: Traffic | None = None
        self.pools: dict[str, list[str]] = {}
        self.live = ""  # the pool live at the start (the old version's)
        self.idle = ""  # the pool deployed, live after the switch
        self.original: dict[str, int] = {}  # server -> weight at the start
        self.servers: dict[str, str] = {}  # host -> its server (both pools)
        self.switched = False  # the switch started (a rollback must switch back)

    def bind(self, traffic: Traffic | None) -> TrafficSwitch | None:
        self.traffic = traffic
        if traffic is None:
            return None
        traffic.ready_when_done = lambda rec: False  # the idle pool waits for the switch
        return _IdleSwitch(traffic)

    # -- the forward rollout ---------------------------------------------------------

    async def run(self, ctx: StrategyContext) -> Verdict:
        if (refused := await self._pools(ctx)) is not None:
            return refused
        ctx.set_aside(self.pools[self.live], f"live pool {self.live}: not changed")
        last = ctx.view.shift
        if last is not None and last.move == "switch":  # resumed past the switch start
            return await self._switch_and_bake(ctx)
        # no gate between the idle pool's batches: no traffic reaches them to judge
        if stop := await roll_batches(ctx, ctx.start_batch, None, gates=False):
            return stop
        deployed = [n for n in self.pools[self.idle] if ctx.recs[n].state == HostState.HEALTHY]
        if len(deployed) < len(self.pools[self.idle]):
            left = len(self.pools[self.idle]) - len(deployed)
            return Outcome.FAILED, (
                f"{left} hosts of pool {self.idle} are not healthy on {ctx.spec.version}: "
                f"traffic stays on {self.live}"
            )
        return await self._switch_and_bake(ctx)

    async def _switch_and_bake(self, ctx: StrategyContext) -> Verdict:
        await ctx.wait_unpaused()
        if stop := await ctx.stop_check():
            return stop
        if failed := await self._move(ctx, "switch", to=self.idle, away=self.live):
            return failed
        await ctx.run_gate(max(len(ctx.batches) - 1, 0))  # the bake after the switch
        if stop := await ctx.stop_check():
            return stop
        await ctx.wait_unpaused()
        if stop := await ctx.stop_check():
            return stop
        hosts = ctx.view.hosts  # the live pool's hosts are not resumed rollouts' records
        olds = sorted(
            {v for n in self.pools[self.live] if (h := hosts.get(n)) and (v := h.version)}
        )
        on = f" on {', '.join(olds)}" if olds else ""
        return Outcome.SUCCEEDED, (
            f"pool {self.idle} live on {ctx.spec.version} ({len(self.pools[self.idle])} hosts); "
            f"pool {self.live} idle{on}"
        )

    async def _pools(self, ctx: StrategyContext) -> Verdict | None:
        """Which pool is live: the journal's word when resumed, else HAProxy's (once:
        a resumed rollout may roll back before it runs)."""
        assert self.traffic is not None and self.spec.blue and self.spec.green
        if self.live:
            return None
        view = ctx.view
        if view.start_live:  # resumed: the pools as found at the first start (the live
            # pool's hosts, set aside, are not the resumed rollout's hosts any more)
            self.live, self.idle = view.start_live, view.start_idle
            self.pools = {p: list(h) for p, h in view.pools.items()}
            self.servers = dict(view.pool_servers)
            self.original = dict(view.original_weights)
            self.switched = view.switched
            return None
        try:
            self.pools = split_pools(
                ((r.name, r.host.groups) for r in ctx.recs.values()),
                self.spec.blue,
                self.spec.green,
            )
        except PoolError as exc:
            return Outcome.FAILED, str(exc)
        try:
            states = await self.traffic.servers()
            self.servers = {n: self.traffic.server_of(r) for n, r in ctx.recs.items()}
            self.live, self.idle = live_pool(self.pools, self.servers, states)
        except PoolError as exc:
            return Outcome.FAILED, f"load balancer: {exc}"
        except (HAProxyError, HostFailure) as exc:
            return Outcome.FAILED, refusal(exc)
        self.original = {s: st.weight for s, st in states.items()}
        ctx.emit(
            ev.TrafficShifted(
                move="pools",
                backend=self.traffic.lb.backend,
                live=self.live,
                idle=self.idle,
                pools=self.pools,
                servers=self.servers,
                original=self.original,
                detail=f"{self.idle} will be deployed, then take the traffic",
            )
        )
        for name in self.pools[self.live]:  # where the traffic is (the idle pool's hosts
            # say theirs as their journey holds them out of it)
            self.traffic.said(name, states[self.servers[name]], "live at the start")
        return None

    async def _move(self, ctx: StrategyContext, move: str, *, to: str, away: str) -> Verdict | None:
        """Traffic from pool ``away`` to pool ``to``: journaled before and after; the
        new pool readied at its weights first, then the old one drained."""
        assert self.traffic is not None
        self.switched = True
        hosts = {server: name for name, server in self.servers.items()}
        ready: Moves = {  # at its weight before the rollout (1 for a pool idle at 0)
            self.servers[n]: ("ready", self.original.get(self.servers[n]) or 1)
            for n in self.pools[to]
        }
        drain: Moves = {self.servers[n]: ("drain", None) for n in self.pools[away]}
        shift = ev.TrafficShifted(move=move, backend=self.traffic.lb.backend, live=to, idle=away)
        groups = [
            (ready, f"{move}: pool {to} takes the traffic"),
            (drain, f"{move}: pool {away} idle"),
        ]
        try:
            await self.traffic.shift(shift, groups, hosts, timed=True)
        except (HAProxyError, HostFailure) as exc:
            return Outcome.FAILED, f"{refusal(exc)} (during the {move}; resume finishes it)"
        return None

    # -- the way back ----------------------------------------------------------------

    async def roll_back(self, ctx: StrategyContext) -> Verdict:
        """The switch back: the old pool live again, the new one idle (no deploy)."""
        if (refused := await self._pools(ctx)) is not None:
            return refused
        ctx.begin_rollback()
        version = ctx.spec.version
        if not self.switched:
            ctx.announce(f"traffic never left pool {self.live}: nothing to switch back")
            return Outcome.ROLLED_BACK, (
                f"traffic never left pool {self.live}; pool {self.idle} left idle "
                f"(not serving) on {version}"
            )
        ctx.announce(f"switching traffic back to pool {self.live}")
        started = ctx.clock.monotonic()
        if failed := await self._move(ctx, "switch_back", to=self.live, away=self.idle):
            return failed
        if stop := aborted(ctx.control):
            return stop
        took = ctx.clock.monotonic() - started
        return Outcome.ROLLED_BACK, (
            f"traffic switched back to pool {self.live} in {took:.1f}s; pool {self.idle} "
            f"left idle on {version}"
        )


class _IdleSwitch:
    """The idle pool's hosts change out of traffic and stay there until the switch."""

    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic

    async def drain(self, rec: HostRecord) -> None:
        await self.traffic.hold(rec, "idle pool: out of traffic while it changes")

    async def ready(self, rec: HostRecord) -> None:
        return None  # healthy, and kept idle until the whole pool switches

    def kept_out(self, rec: HostRecord, why: str) -> None:
        return None  # it never had traffic
