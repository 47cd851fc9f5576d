"""What one frame's batch of events changed: the console's dirty set.

The app drains the bus once per tick, folds every event into its
:class:`~console.core.state.RolloutView`, and hands the screens one :class:`Changes`:
which host rows to re-diff, the new log lines in arrival order, the new timeline
entries, and whether the header or the error-rate chart must be redrawn. Widgets then
touch only what changed, once per frame, never once per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console.core import events as ev
from console.core.events import HostState

# Host transitions worth a timeline entry (the rest would drown it at 1,000 hosts).
TIMELINE_HOST_STATES = frozenset(
    {
        HostState.FAILED,
        HostState.ROLLBACK_FAILED,
        HostState.INTERRUPTED,
        HostState.SKIPPED,
        HostState.FROZEN,
    }
)

_HEADER_EVENTS = (
    ev.RolloutStarted,
    ev.RolloutStateChanged,
    ev.RolloutFinished,
    ev.BatchStarted,
    ev.BatchFinished,
    ev.GateWaiting,
    ev.GatePassed,
    ev.PlanChanged,
    ev.HostStateChanged,
    ev.VersionRead,
    ev.PreflightResult,
)


@dataclass(slots=True)
class Changes:
    hosts: set[str] = field(default_factory=set)
    log_lines: list[tuple[str, str]] = field(default_factory=list)  # (host, line)
    timeline: list[ev.Event] = field(default_factory=list)
    header: bool = False
    rates: bool = False
    plan: bool = False  # batches or the host set changed: rows may need adding
    traffic: bool = False  # a server moved: the traffic line is redrawn
    shift: bool = False  # the backend moved as a whole (pools, live pool): every row
    events: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.hosts
            or self.log_lines
            or self.timeline
            or self.header
            or self.rates
            or self.traffic
            or self.shift
        )


def in_timeline(event: ev.Event) -> bool:
    match event:
        case ev.HostStateChanged():
            return event.state in TIMELINE_HOST_STATES
        case ev.PreflightResult():
            return not (event.ok and event.reachable)
        case ev.TrafficChanged():  # a host kept out of traffic; the host table shows the rest
            return event.failed or event.admin == "maint"
        case ev.TrafficShifted():  # the whole backend: a switch, a canary's share
            return True
        case (
            ev.RolloutStarted()
            | ev.RolloutStateChanged()
            | ev.RolloutFinished()
            | ev.BatchStarted()
            | ev.BatchFinished()
            | ev.GateWaiting()
            | ev.GatePassed()
            | ev.Alert()
            | ev.OperatorCommand()
            | ev.Notice()
            | ev.CanaryAnalysis()
            | ev.PlanChanged()
        ):
            return True
    return False


def collect(events: list[ev.Event], log_cap: int = 2000) -> Changes:
    """Summarise a drained batch. Keeps at most ``log_cap`` newest log lines."""
    ch = Changes(events=len(events))
    logs = ch.log_lines
    for e in events:
        host = getattr(e, "host", None)
        if isinstance(e, ev.LogLines):
            ch.hosts.add(e.host)
            logs.extend((e.host, line) for line in e.lines)
            continue
        if isinstance(e, ev.AnalysisSample):
            ch.rates = True
            continue
        if isinstance(e, ev.ErrorRateSample):
            if e.scope.startswith("cohort:"):
                ch.rates = True
            else:
                ch.hosts.add(e.scope)
            continue
        if isinstance(host, str):
            ch.hosts.add(host)
        if isinstance(e, ev.TrafficChanged):
            ch.traffic = True
        elif isinstance(e, ev.TrafficShifted):
            ch.traffic = ch.shift = True
        if isinstance(e, _HEADER_EVENTS):
            ch.header = True
        if isinstance(e, ev.RolloutStarted | ev.PlanChanged):
            ch.plan = True
            if isinstance(e, ev.RolloutStarted):
                ch.hosts.update(e.hosts)
        if in_timeline(e):
            ch.timeline.append(e)
    if len(logs) > log_cap:
        del logs[: len(logs) - log_cap]
    return ch
