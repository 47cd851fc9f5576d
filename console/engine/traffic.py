"""Each host out of the load balancer while it changes: drain, deploy, gate, ready.

With a ``load_balancer:`` section, :class:`~console.engine.hostwork.HostWork` calls
:class:`Traffic` around a host's journey (deploy and rollback alike): before the first
step its HAProxy server is set to ``drain`` and the host waits until the server's
current sessions are down to ``drain.wait_sessions`` (past ``drain.timeout`` the host
fails, naming the count); once its health gating passed, the server is set ``ready``
and only then is the host counted done. A host that fails after its drain is left
drained, never sent traffic while broken, and the timeline says so. Every move is a
durable :class:`~console.core.events.TrafficChanged`, journaled before it is shown.

The runtime API (console/traffic/haproxy.py) is reached through the SSH connection of
the load balancer's inventory host, which the transport opens and keeps like any
other. Every request is bounded; ``set server`` is idempotent, so a retry, a resumed
rollout or an operator's own change in between is harmless.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from console.core import events as ev
from console.core.clock import SYSTEM, Clock
from console.core.events import HostState
from console.core.text import shorten
from console.engine.control import HostRecord
from console.engine.hostwork import HostFailure
from console.spec import RolloutSpec
from console.spec.balancer import LoadBalancerSpec
from console.templating import TemplateError, build_context, render
from console.traffic.haproxy import HAProxy, HAProxyError, ServerState, check_name
from console.transport.base import Transport, TransportError
from inventory.model import Host

Moves = Mapping[str, tuple[str | None, int | None]]  # server -> (state, weight); None: as is
APPLY_PARALLEL = 8  # runtime API requests in flight at once for a whole-backend move
DRAIN_POLL = 0.2  # seconds between two reads of a draining server's sessions
DETAIL_MAX = 200
DONE = (HostState.HEALTHY, HostState.ROLLED_BACK)  # hosts a resumed rollout leaves be


class Traffic:
    """One rollout's load balancer moves, one host at a time (many hosts at once)."""

    def __init__(
        self,
        spec: RolloutSpec,
        balancer: Host,
        transport: Transport,
        emit: Callable[[ev.Event], None],
        clock: Clock = SYSTEM,
    ) -> None:
        if spec.load_balancer is None:
            raise ValueError("the spec has no load_balancer section")
        self.spec = spec
        self.lb: LoadBalancerSpec = spec.load_balancer
        self.balancer = balancer
        self.transport = transport
        self.emit = emit
        self.clock = clock
        self.drained: set[str] = set()  # hosts this rollout set to drain, not yet ready
        # A resumed rollout readies a done host it had drained (reconcile), unless the
        # strategy keeps that host out of traffic (blue-green's idle pool).
        self.ready_when_done: Callable[[HostRecord], bool] = lambda rec: True

    def server_of(self, rec: HostRecord) -> str:
        """The host's HAProxy server name (``load_balancer.server``, rendered raw)."""
        context = build_context(self.spec, rec.host, rec.previous_version)
        try:
            return check_name(render(self.lb.server, context, raw=True), "server")
        except TemplateError as exc:
            raise HostFailure(_short(f"load_balancer.server: {exc}")) from exc
        except HAProxyError as exc:
            raise HostFailure(_short(f"load_balancer.server: {exc}")) from exc

    async def api(self) -> HAProxy:
        try:
            conn = await self.transport.connect(self.balancer)
        except TransportError as exc:
            raise HostFailure(
                _short(f"load balancer {self.balancer.name} unreachable: {exc.message}")
            ) from exc
        return HAProxy(conn, self.lb.target)

    async def servers(self) -> dict[str, ServerState]:
        """Every server of the backend as HAProxy says now (HAProxyError; HostFailure
        when the load balancer host cannot be reached)."""
        return await (await self.api()).servers(self.lb.backend)

    async def drain(self, rec: HostRecord) -> None:
        """Set the host's server to drain and wait for its sessions to end; HostFailure
        when HAProxy refuses or the sessions outlast ``drain.timeout``."""
        server = self.server_of(rec)
        backend = self.lb.backend
        try:
            api = await self.api()
            await api.set_state(backend, server, "drain")
            self.drained.add(rec.name)
            now = await api.server(backend, server)
            self.said(rec.name, now, "draining before its steps")
            started = self.clock.monotonic()
            deadline = started + self.lb.drain_timeout
            while now.sessions > self.lb.wait_sessions:
                if self.clock.monotonic() >= deadline:
                    raise HostFailure(
                        f"drain: {now.sessions} sessions still on {backend}/{server} after "
                        f"{self.lb.drain_timeout:g}s (drain.wait_sessions is "
                        f"{self.lb.wait_sessions})"
                    )
                await self.clock.sleep(DRAIN_POLL)
                now = await api.server(backend, server)
            waited = self.clock.monotonic() - started
            self.said(rec.name, now, f"drained in {waited:.1f}s")
        except HAProxyError as exc:
            raise HostFailure(_short(f"load balancer: {exc}")) from exc

    async def ready(
        self, rec: HostRecord, weight: int | None = None, detail: str = "healthy: back in traffic"
    ) -> None:
        """Back in traffic: set the host's server ready, at ``weight`` first when given
        (a canary held at 0 until its share is set); HostFailure when refused."""
        server = self.server_of(rec)
        try:
            api = await self.api()
            if weight is not None:
                await api.set_weight(self.lb.backend, server, weight)
            await api.set_state(self.lb.backend, server, "ready")
            self.drained.discard(rec.name)
            now = await api.server(self.lb.backend, server)
        except HAProxyError as exc:
            raise HostFailure(_short(f"load balancer: {exc}")) from exc
        self.said(rec.name, now, detail)

    async def hold(self, rec: HostRecord, detail: str) -> None:
        """Leave the host out of traffic (blue-green's idle pool): HostFailure when its
        server would get requests (ready with a weight), else journal what it is."""
        server = self.server_of(rec)
        try:
            now = await (await self.api()).server(self.lb.backend, server)
        except HAProxyError as exc:
            raise HostFailure(_short(f"load balancer: {exc}")) from exc
        if now.admin == "ready" and now.weight > 0:
            raise HostFailure(
                _short(
                    f"{self.lb.backend}/{server} is in traffic (ready, weight {now.weight}): "
                    "an idle pool's host must not serve while it changes"
                )
            )
        self.said(rec.name, now, detail)

    def kept_out(self, rec: HostRecord, why: str) -> None:
        """The host failed after its drain: say that its server stays drained."""
        if rec.name not in self.drained:
            return  # never drained by us: its traffic was not touched
        try:
            server = self.server_of(rec)
        except HostFailure:
            return
        self.emit(
            ev.TrafficChanged(
                host=rec.name,
                backend=self.lb.backend,
                server=server,
                admin="drain",
                detail=_short(f"kept drained: {why}"),
                failed=True,
            )
        )

    async def start(
        self, recs: Sequence[HostRecord], journaled: Mapping[str, str] | None
    ) -> str | None:
        """Before the first move (after the preflight): the backend is reachable and has
        a server for every targeted host, else the reason to refuse the rollout (nothing
        changed yet). ``journaled`` (a resumed rollout: host -> its last traffic state
        journaled): reconcile with what HAProxy holds (:meth:`reconcile`)."""
        lb = self.lb
        try:
            api = await self.api()
            servers = await api.servers(lb.backend)
            names = {rec.name: self.server_of(rec) for rec in recs}
        except (HAProxyError, HostFailure) as exc:
            return _short(refusal(exc))
        missing = [f"{h} ({s})" for h, s in names.items() if s not in servers]
        if missing:
            return _short(
                f"load balancer: backend {lb.backend} on {lb.host} has no server for "
                f"{len(missing)} hosts: {', '.join(missing)}"
            )
        states = Counter(servers[s].admin for s in names.values())
        said = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        self.emit(ev.Notice(message=f"load balancer: backend {lb.backend} on {lb.host}: {said}"))
        if journaled is not None:
            await self.reconcile(api, servers, recs, journaled)
        return None

    async def reconcile(
        self,
        api: HAProxy,
        servers: Mapping[str, ServerState],
        recs: Iterable[HostRecord],
        journaled: Mapping[str, str],
    ) -> None:
        """A resumed rollout: HAProxy's word against the journal's (``journaled``: host
        -> the last traffic state journaled). A host done (healthy, rolled back) that
        this rollout drained and HAProxy still holds drained (the crash came between
        its gating and its ready) is set ready; any other disagreement is journaled as
        found; the hosts left to deploy are drained again by their own journey."""
        for rec in recs:
            was = journaled.get(rec.name, "")
            try:
                now = servers.get(self.server_of(rec))
            except HostFailure:
                continue
            if now is None or not was:
                continue  # never moved by this rollout: not ours to change
            if was == "drain":
                self.drained.add(rec.name)
            done = rec.state in DONE and self.ready_when_done(rec)
            if done and now.admin == "drain" and was == "drain":
                try:
                    await api.set_state(self.lb.backend, now.name, "ready")
                    now = await api.server(self.lb.backend, now.name)
                except HAProxyError as exc:
                    self.emit(ev.Notice(message=_short(f"load balancer: {exc}"), host=rec.name))
                    continue
                self.drained.discard(rec.name)
                self.said(rec.name, now, f"resumed: {rec.state.value}, back in traffic")
            elif now.admin != was:
                self.said(
                    rec.name, now, f"resumed: HAProxy holds {now.admin}, the journal said {was}"
                )

    async def shift(
        self,
        event: ev.TrafficShifted,
        groups: Sequence[tuple[Moves, str]],
        hosts: Mapping[str, str],
        *,
        timed: bool = False,
    ) -> None:
        """A whole-backend move (a canary's weights, a blue-green switch): ``event`` is
        journaled with phase ``start`` before the first server is set, each group of
        server moves is applied in order (:meth:`apply`, with its detail), then the
        same event is journaled ``done`` (``timed``: its detail says how long HAProxy
        took). HAProxyError or HostFailure leave the move half done, journaled as
        started: ``resume`` finishes it."""
        self.emit(dataclasses.replace(event, phase="start", ts=time.time()))
        started = self.clock.monotonic()
        found: dict[str, ServerState] | None = None  # one group's read-back, the next's start
        for moves, detail in groups:
            found = await self.apply(moves, hosts, detail, before=found)
        done = dataclasses.replace(event, phase="done", ts=time.time())
        if timed:
            done = dataclasses.replace(done, detail=f"in {self.clock.monotonic() - started:.1f}s")
        self.emit(done)

    async def apply(
        self,
        moves: Moves,
        hosts: Mapping[str, str],
        detail: str,
        *,
        before: Mapping[str, ServerState] | None = None,
    ) -> dict[str, ServerState]:
        """Set many servers of the backend at once (server -> (state or None, weight or
        None); weights before states, so a server readied comes up at its weight) and
        read them back; every host (``hosts``: server -> host name) whose server
        changed is journaled. Idempotent: a server already so is not touched.
        HAProxyError (or HostFailure: unreachable) when HAProxy refuses."""
        api = await self.api()
        backend = self.lb.backend
        if before is None:  # (else: what the move before this one read back)
            before = await api.servers(backend)
        gate = asyncio.Semaphore(APPLY_PARALLEL)

        async def one(server: str, state: str | None, weight: int | None) -> None:
            was = before.get(server)
            async with gate:
                if weight is not None and (was is None or was.weight != weight):
                    await api.set_weight(backend, server, weight)
                if state is not None and (was is None or was.admin != state):
                    await api.set_state(backend, server, state)

        async with asyncio.TaskGroup() as tg:
            for server, (state, weight) in moves.items():
                tg.create_task(one(server, state, weight))
        after = await api.servers(backend)
        for server, host in hosts.items():
            was, now = before.get(server), after.get(server)
            if now is None or (
                was is not None and (was.admin, was.weight) == (now.admin, now.weight)
            ):
                continue
            if now.admin == "ready":
                self.drained.discard(host)
            self.said(host, now, detail)
        return after

    def said(self, host: str, now: ServerState, detail: str) -> None:
        """Journal a host's server as HAProxy reports it (``TrafficChanged``)."""
        self.emit(
            ev.TrafficChanged(
                host=host,
                backend=self.lb.backend,
                server=now.name,
                admin=now.admin,
                sessions=now.sessions,
                detail=detail,
                weight=now.weight,
            )
        )


def refusal(exc: HAProxyError | HostFailure) -> str:
    """A load-balancer operation that failed, in a verdict's words."""
    return exc.detail if isinstance(exc, HostFailure) else f"load balancer: {exc}"


def _short(text: str) -> str:
    return shorten(text, DETAIL_MAX, squash=True)
