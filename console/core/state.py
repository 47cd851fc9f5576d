"""The read model: a rollout's current state folded from its events.

``RolloutView.apply(event)`` is a pure reducer. The headless runner, the Textual
console, an attached observer and ``rolldeck resume``/``show`` all build their picture
of a rollout the same way: by folding the event stream (live, or replayed from the
journal). Memory is bounded: per-host logs and the timeline are ring buffers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from console.core import events as ev
from console.core.events import HostState, Outcome, RolloutState

LOG_LINES_PER_HOST = 500
STEP_TAIL_LINES = 50
TIMELINE_EVENTS = 2000
HEALTH_HISTORY = 120
RATE_HISTORY = 120

FAILED_STATES = frozenset({HostState.FAILED, HostState.ROLLBACK_FAILED})
MOVING_STATES = frozenset({HostState.RUNNING, HostState.VERIFYING, HostState.ROLLING_BACK})


@dataclass(slots=True)
class StepRecord:
    name: str
    command: str
    started: float
    rollback: bool = False
    status: str = "running"
    exit_code: int | None = None
    duration: float | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=STEP_TAIL_LINES))


@dataclass(slots=True)
class HostView:
    name: str
    groups: tuple[str, ...] = ()
    address: str = ""
    batch: int | None = None
    state: HostState = HostState.PENDING
    step: str | None = None
    detail: str = ""
    previous_version: str | None = None
    version: str | None = None  # what the host runs, as far as we know
    health_ok: bool | None = None
    health_status: str = ""
    health_detail: str = ""
    health_history: deque[bool] = field(default_factory=lambda: deque(maxlen=HEALTH_HISTORY))
    error_rate: float | None = None
    error_rate_unit: str = "ratio"
    error_rate_history: deque[float] = field(default_factory=lambda: deque(maxlen=RATE_HISTORY))
    load1: float | None = None
    mem_used_pct: float | None = None
    disk_used_pct: float | None = None
    last_log: str = ""
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES_PER_HOST))
    steps: list[StepRecord] = field(default_factory=list)
    changed: bool = False  # a deploy step started on it: rollback must cover it
    state_since: float = 0.0
    traffic: str = ""  # its load balancer server: ready | drain | maint ("" unknown)
    traffic_kept: bool = False  # kept drained: the host failed
    weight: int | None = None  # its server's weight in HAProxy, when last read
    pool: str = ""  # blue-green: the pool (inventory group) it belongs to


@dataclass(slots=True)
class RolloutView:
    rollout_id: str = ""
    service: str = ""
    version: str = ""
    operator: str = ""
    environment: str = ""
    started: float | None = None
    finished: float | None = None
    state: RolloutState = RolloutState.PREFLIGHT
    state_reason: str = ""
    outcome: Outcome | None = None
    exit_code: int | None = None
    batches: list[tuple[str, ...]] = field(default_factory=list)
    batch_index: int | None = None  # the batch running or last run
    rolling_back: bool = False
    gate: ev.GateWaiting | None = None
    gate_answer: ev.GateAnswer | None = None  # a command gate's last answer
    hosts: dict[str, HostView] = field(default_factory=dict)
    cohort_rates: dict[str, deque[float]] = field(
        default_factory=lambda: {
            "cohort:new": deque(maxlen=RATE_HISTORY),
            "cohort:baseline": deque(maxlen=RATE_HISTORY),
        }
    )
    error_rate_unit: str = "ratio"
    traffic: bool = False  # a load balancer moved hosts (the console shows their state)
    # Whole-backend moves (canary weights, blue-green switch): the last one journaled,
    # the weights before the first (what a restore goes back to), and the pools.
    shift: ev.TrafficShifted | None = None
    original_weights: dict[str, int] = field(default_factory=dict)
    live_pool: str = ""  # blue-green: the pool with the traffic now
    idle_pool: str = ""
    start_live: str = ""  # blue-green: the pools as HAProxy had them at the start
    start_idle: str = ""
    pools: dict[str, list[str]] = field(default_factory=dict)  # pool -> its hosts
    pool_servers: dict[str, str] = field(default_factory=dict)  # host -> its server
    # analysis: (each metric's last judgement, new vs baseline, in first-seen order)
    analysis: dict[str, ev.AnalysisSample] = field(default_factory=dict)
    alerts: list[ev.Alert] = field(default_factory=list)
    timeline: deque[ev.Event] = field(default_factory=lambda: deque(maxlen=TIMELINE_EVENTS))
    settings: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # events applied
    version_changed: int = 0  # bumps when anything visible changed (cheap dirty check)

    # -- queries ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in HostState}
        for h in self.hosts.values():
            out[h.state.value] += 1
        return out

    def failed_hosts(self) -> list[str]:
        return [n for n, h in self.hosts.items() if h.state in FAILED_STATES]

    @property
    def has_pools(self) -> bool:
        """Blue-green: HAProxy said which pool is live (the pools are known)."""
        return bool(self.live_pool or self.idle_pool)

    @property
    def switched(self) -> bool:
        """Blue-green: the last whole-backend move is a switch or a switch back (started
        or done): a rollback has traffic to give back."""
        return self.shift is not None and self.shift.move in ("switch", "switch_back")

    def changed_hosts(self) -> list[str]:
        return [n for n, h in self.hosts.items() if h.changed]

    def previous_versions(self) -> set[str]:
        return {h.previous_version for h in self.hosts.values() if h.previous_version}

    def _host(self, name: str) -> HostView:
        h = self.hosts.get(name)
        if h is None:
            h = self.hosts[name] = HostView(name=name)
        return h

    def _parents_last(self) -> None:
        """Each host's groups with the parents after their children: a group that
        strictly contains another of the host's groups (`eu` over `eu-west`, by
        membership among this rollout's hosts) says less, and the inventory's name
        order would show it first. Otherwise the order is kept."""
        members: dict[str, set[str]] = {}
        for name, h in self.hosts.items():
            for g in h.groups:
                members.setdefault(g, set()).add(name)
        cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        for h in self.hosts.values():
            groups = h.groups
            if len(groups) < 2:
                continue
            ordered = cache.get(groups)
            if ordered is None:
                parents = {g for g in groups if any(members[g] > members[o] for o in groups)}
                ordered = tuple(g for g in groups if g not in parents) + tuple(
                    g for g in groups if g in parents
                )
                cache[groups] = ordered
            h.groups = ordered

    # -- reducer --------------------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        self.seq += 1
        self.version_changed += 1
        if event.durable and not isinstance(event, ev.HealthSample | ev.StepStarted):
            self.timeline.append(event)
        match event:
            case ev.RolloutStarted():
                self.rollout_id = event.rollout_id
                self.service = event.service
                self.version = event.version
                self.operator = event.operator
                self.started = event.ts
                self.settings = dict(event.settings)
                self.environment = str(event.settings.get("environment") or "")
                self.batches = [tuple(b) for b in event.batches]
                for name, info in event.hosts.items():
                    h = self._host(name)
                    h.groups = tuple(info.get("groups") or ())
                    h.address = str(info.get("address") or "")
                self._parents_last()
                self._number_batches()
            case ev.PlanChanged():
                self.batches = [tuple(b) for b in event.batches]
                self._number_batches()
            case ev.RolloutStateChanged():
                self.state = event.state
                self.state_reason = event.reason
                self.rolling_back = event.state == RolloutState.ROLLING_BACK or (
                    self.rolling_back and event.state not in (RolloutState.DONE,)
                )
                if event.state != RolloutState.WAITING:
                    self.gate = None
            case ev.RolloutFinished():
                self.outcome = event.outcome
                self.exit_code = event.exit_code
                self.finished = event.ts
                self.state = (
                    RolloutState.ABORTED
                    if event.outcome == Outcome.ABORTED
                    else (
                        RolloutState.PAUSED
                        if event.outcome == Outcome.PAUSED
                        else RolloutState.DONE
                    )
                )
                self.gate = None
            case ev.PreflightResult():
                h = self._host(event.host)
                if event.version is not None:
                    h.version = event.version
                if not event.ok:
                    h.detail = event.error
            case ev.BatchStarted():
                self.batch_index = event.index
                if event.rollback:
                    self.rolling_back = True
            case ev.GateWaiting():
                self.gate = event
                self.gate_answer = None
            case ev.GateAnswer():
                self.gate_answer = event
            case ev.GatePassed():
                self.gate = None
            case ev.HostStateChanged():
                h = self._host(event.host)
                h.state = event.state
                h.step = event.step
                h.detail = event.detail
                h.state_since = event.ts
            case ev.TrafficChanged():
                h = self._host(event.host)
                h.traffic = event.admin
                h.traffic_kept = event.failed
                if event.weight is not None:
                    h.weight = event.weight
                self.traffic = True
            case ev.TrafficShifted():
                self.shift = event
                self.traffic = True
                if event.original and not self.original_weights:
                    self.original_weights = dict(event.original)
                if event.live and (event.phase == "done" or event.move == "pools"):
                    self.live_pool, self.idle_pool = event.live, event.idle
                if event.move == "pools":
                    self.start_live, self.start_idle = event.live, event.idle
                    self.pools = {p: list(h) for p, h in event.pools.items()}
                    self.pool_servers = dict(event.servers)
                for pool, names in event.pools.items():
                    for name in names:
                        self._host(name).pool = pool
            case ev.VersionRead():
                h = self._host(event.host)
                if event.role == "previous":
                    h.previous_version = event.version
                h.version = event.version
            case ev.StepStarted():
                h = self._host(event.host)
                h.step = event.step
                if not event.rollback:
                    h.changed = True
                h.steps.append(StepRecord(event.step, event.command, event.ts, event.rollback))
            case ev.StepOutput():
                h = self._host(event.host)
                if h.steps and h.steps[-1].name == event.step:
                    h.steps[-1].output.extend(event.lines)
            case ev.StepFinished():
                h = self._host(event.host)
                rec = h.steps[-1] if h.steps and h.steps[-1].name == event.step else None
                if rec is None:
                    rec = StepRecord(event.step, "", event.ts - event.duration, event.rollback)
                    h.steps.append(rec)
                rec.status = event.status
                rec.exit_code = event.exit_code
                rec.duration = event.duration
                if not rec.output:
                    rec.output.extend(event.output_tail)
            case ev.HealthSample():
                h = self._host(event.host)
                h.health_ok = event.ok
                h.health_detail = event.detail
                h.health_status = event.status or ("healthy" if event.ok else "unhealthy")
                h.health_history.append(event.ok)
            case ev.VitalsSample():
                h = self._host(event.host)
                h.load1 = event.load1
                h.mem_used_pct = event.mem_used_pct
                h.disk_used_pct = event.disk_used_pct
            case ev.LogLines():
                h = self._host(event.host)
                h.log.extend(event.lines)
                if event.lines:
                    h.last_log = event.lines[-1]
            case ev.ErrorRateSample():
                if event.scope.startswith("cohort:"):
                    self.error_rate_unit = event.unit
                    if event.rate is not None:
                        self.cohort_rates.setdefault(event.scope, deque(maxlen=RATE_HISTORY))
                        self.cohort_rates[event.scope].append(event.rate)
                else:
                    h = self._host(event.scope)
                    h.error_rate = event.rate
                    h.error_rate_unit = event.unit
                    if event.rate is not None:
                        h.error_rate_history.append(event.rate)
            case ev.AnalysisSample():
                self.analysis[event.metric] = event
            case ev.Alert():
                self.alerts.append(event)
                del self.alerts[:-200]
            case _:
                pass

    def _number_batches(self) -> None:
        for i, batch in enumerate(self.batches):
            for name in batch:
                self._host(name).batch = i


def fold(events: list[ev.Event]) -> RolloutView:
    """Replay events into a fresh view."""
    view = RolloutView()
    for e in events:
        view.apply(e)
    return view
