"""The decision audit: summaries and timelines of past rollouts, from their journals.

Everything here is a fold of the journal through :class:`console.core.state.RolloutView`,
the same reducer the console draws from, so the counts an audit shows for a moment
are the counts the operator saw on screen at that moment.

Whether an unfinished rollout is still *running* is a question about this machine:
its attach socket answers, or a lock file names it with a live pid, or the journal
header's pid is alive here. Otherwise it is *interrupted* (the owner died).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from console.attach.protocol import SOCKET_SUFFIX, socket_alive
from console.core import events as ev
from console.core.describe import OUTCOME_WORDS, ROLLOUT_WORDS, describe, format_instant
from console.core.errors import InputError
from console.core.events import Event, HostState, Outcome, RolloutState
from console.core.state import RolloutView
from console.core.text import printable
from console.store.journal import JournalError, list_journals, read_lines
from console.store.lock import LockInfo, read_lock

RUNNING = "running"
INTERRUPTED = "interrupted"
_BAD = (HostState.FAILED, HostState.ROLLBACK_FAILED, HostState.INTERRUPTED)


@dataclass(slots=True)
class RolloutSummary:
    """One line of ``rolldeck history``."""

    rollout_id: str
    service: str
    version: str
    previous_versions: list[str]
    operator: str
    started: float | None
    finished: float | None
    outcome: str  # an Outcome value, or 'running' / 'interrupted'
    state: str  # the rollout state last journaled
    reason: str
    duration: float | None
    hosts: int
    hosts_changed: int
    failures: list[str]
    batch: int | None  # 1-based batch running or last run
    batches: int
    pid: int | None
    journal: str
    user: str = ""  # the Unix user who started it (journal header), "" in old journals

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TimelineEntry:
    """One moment of ``rolldeck show``: what happened, who, why, and the counts then."""

    ts: float
    offset: float  # seconds since the rollout started
    kind: str
    text: str  # console.core.describe's words, as headless and the console say them
    severity: str = "info"
    host: str | None = None
    operator: str | None = None
    reason: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # healthy/failed/pending/...
    state: str = ""
    user: str | None = None  # an operator command's Unix user, from the kernel

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Timeline:
    summary: RolloutSummary
    entries: list[TimelineEntry]
    stopped: dict[str, Any]  # outcome, reason, rules that fired (with numbers), decisions

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout": self.summary.to_json(),
            "timeline": [e.to_json() for e in self.entries],
            "stopped": self.stopped,
        }


# -- loading ------------------------------------------------------------------------


def load_events(path: Path) -> tuple[dict[str, Any], list[Event]]:
    """The journal's header and its events (unknown kinds skipped)."""
    lines = read_lines(path)
    if not lines or lines[0].get("kind") != "journal":
        raise JournalError(f"{path}: not a rolldeck journal")
    events = [ev.from_json(obj) for obj in lines[1:] if obj["kind"] in ev.EVENT_TYPES]
    return lines[0], events


def _alive(pid: int) -> bool:
    """A process with this pid exists on this machine (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def live_owners(state_dir: Path) -> dict[str, int]:
    """rollout id -> pid of every lock file on this machine whose pid is alive."""
    here = socket.gethostname()
    out: dict[str, int] = {}
    for path in state_dir.glob("lock-*.lock"):
        info: LockInfo | None = read_lock(path)
        if info is not None and info.host == here and _alive(info.pid):
            out[info.rollout_id] = info.pid
    return out


def is_running(
    state_dir: Path, rollout_id: str, header: dict[str, Any], owners: dict[str, int]
) -> tuple[bool, int | None]:
    """(running, pid) for an unfinished rollout."""
    if rollout_id in owners:
        return True, owners[rollout_id]
    pid = header.get("pid")
    if socket_alive(state_dir / f"{rollout_id}{SOCKET_SUFFIX}"):
        return True, pid if isinstance(pid, int) else None
    if isinstance(pid, int) and header.get("machine") == socket.gethostname():
        return _alive(pid), pid
    return False, pid if isinstance(pid, int) else None


def summarize(
    view: RolloutView,
    header: dict[str, Any],
    path: Path,
    *,
    running: bool = False,
    pid: int | None = None,
    ever_failed: set[str] | None = None,
    finish_reason: str | None = None,
) -> RolloutSummary:
    """``ever_failed``: hosts that failed at any point (a rolled-back host that had
    failed still counts as a failure of this rollout)."""
    if view.outcome is not None:
        outcome = view.outcome.value
    else:
        outcome = RUNNING if running else INTERRUPTED
    end = view.finished
    duration = (end - view.started) if (end and view.started) else None
    if duration is None and running and view.started:
        duration = time.time() - view.started
    return RolloutSummary(
        rollout_id=view.rollout_id or str(header.get("rollout_id") or path.stem),
        service=view.service,
        version=view.version,
        previous_versions=sorted(view.previous_versions()),
        operator=view.operator or str(header.get("who") or ""),
        user=str(header.get("user") or ""),
        started=view.started or header.get("created"),
        finished=end,
        outcome=outcome,
        state=view.state.value,
        reason=finish_reason if finish_reason is not None else view.state_reason,
        duration=duration,
        hosts=len(view.hosts),
        hosts_changed=len(view.changed_hosts()),
        failures=sorted(set(view.failed_hosts()) | (ever_failed or set())),
        batch=view.batch_index + 1 if view.batch_index is not None else None,
        batches=len(view.batches),
        pid=pid if isinstance(pid, int) else None,
        journal=str(path),
    )


def _ever_failed(events: Iterable[Event]) -> set[str]:
    return {e.host for e in events if isinstance(e, ev.HostStateChanged) and e.state in _BAD}


def _finish_reason(events: list[Event]) -> str | None:
    for e in reversed(events):
        if isinstance(e, ev.RolloutFinished):
            return e.reason
    return None


def summary_of(path: Path, owners: dict[str, int] | None = None) -> RolloutSummary:
    header, events = load_events(path)
    view = RolloutView()
    for e in events:
        view.apply(e)
    return _summary(view, header, path, events, owners or {})


def _summary(
    view: RolloutView,
    header: dict[str, Any],
    path: Path,
    events: list[Event],
    owners: dict[str, int],
) -> RolloutSummary:
    """The summary of a journal folded into ``view``; running or not, by ``owners``."""
    rid = view.rollout_id or str(header.get("rollout_id") or path.stem)
    running, pid = False, header.get("pid")
    if view.outcome is None:
        running, pid = is_running(path.parent, rid, header, owners)
    return summarize(
        view,
        header,
        path,
        running=running,
        pid=pid,
        ever_failed=_ever_failed(events),
        finish_reason=_finish_reason(events),
    )


def history(
    state_dir: Path, *, service: str | None = None, limit: int | None = None
) -> list[RolloutSummary]:
    """Past (and running) rollouts, newest first. Unreadable journals are skipped."""
    owners = live_owners(state_dir)
    out: list[RolloutSummary] = []
    for path in list_journals(state_dir):
        try:
            s = summary_of(path, owners)
        except (JournalError, KeyError, TypeError, ValueError):
            continue
        if service is not None and s.service != service:
            continue
        out.append(s)
    out.sort(key=lambda s: (s.started or 0.0, s.rollout_id), reverse=True)
    return out[:limit] if limit is not None else out


def resolve_id(state_dir: Path, prefix: str) -> Path:
    """The journal of the rollout whose id is ``prefix`` or uniquely starts with it."""
    paths = list_journals(state_dir)
    ids = {p.stem: p for p in paths}
    if prefix in ids:
        return ids[prefix]
    matches = sorted(i for i in ids if i.startswith(prefix))
    if not matches:
        raise InputError(f"no rollout {prefix!r} in {state_dir}", field="ID")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise InputError(f"{prefix!r} is ambiguous: {shown}", field="ID")
    return ids[matches[0]]


# -- the timeline ----------------------------------------------------------------------

COUNTED = (
    HostState.HEALTHY,
    HostState.FAILED,
    HostState.PENDING,
    HostState.RUNNING,
    HostState.VERIFYING,
    HostState.SKIPPED,
    HostState.ROLLED_BACK,
    HostState.ROLLBACK_FAILED,
    HostState.INTERRUPTED,
)


def _counts(view: RolloutView) -> dict[str, int]:
    counts = view.counts()
    out = {s.value: counts[s.value] for s in COUNTED if counts[s.value]}
    out.setdefault("healthy", 0)
    out.setdefault("failed", 0)
    out.setdefault("pending", 0)
    return out


def _decision_point(event: Event) -> bool:
    """Whether the audit lists ``event``: what changed the course, not the chatter."""
    match event:
        case ev.HostStateChanged():
            return event.state in _BAD
        case ev.PreflightResult():
            return not event.ok
        case (
            ev.RolloutStarted()
            | ev.RolloutStateChanged()
            | ev.BatchStarted()
            | ev.BatchFinished()
            | ev.GateWaiting()
            | ev.GatePassed()
            | ev.Alert()
            | ev.CanaryAnalysis()
            | ev.OperatorCommand()
            | ev.PlanChanged()
            | ev.Notice()
            | ev.TrafficChanged()  # a host taken out of production traffic, or back
            | ev.TrafficShifted()  # the backend re-weighted or switched between pools
            | ev.RolloutFinished()
        ):
            return True
    return False


def _entry(event: Event, view: RolloutView, start: float) -> TimelineEntry | None:
    if not _decision_point(event):
        return None
    said = describe(event)
    entry = TimelineEntry(
        ts=event.ts,
        offset=round(event.ts - start, 3) if start else 0.0,
        kind=event.kind,
        text=said.text(),
        severity=said.severity.value,
        host=said.host,
        counts=_counts(view),
        state=view.state.value,
    )
    match event:
        case ev.OperatorCommand():
            entry.operator = event.operator
            entry.user = event.user or None
            entry.reason = event.reason
            entry.numbers = {"accepted": event.accepted, **dict(event.args)}
        case ev.Alert():
            entry.numbers = dict(event.numbers)
            entry.reason = event.rule
        case ev.CanaryAnalysis():
            entry.numbers = {"p_value": event.p_value, **dict(event.numbers)}
        case ev.RolloutStarted():
            entry.operator = event.operator
        case ev.RolloutStateChanged() | ev.PlanChanged() | ev.RolloutFinished():
            entry.reason = event.reason or None
        case ev.GatePassed():
            if event.by.startswith("operator:"):
                entry.operator = event.by.split(":", 1)[1]
        case ev.GateWaiting():  # the deadline as a value: the words carry it formatted
            entry.numbers = {"until": event.until, "on_timeout": event.on_timeout}
        case ev.BatchStarted():  # the words shorten a long host list; the audit keeps it
            entry.numbers = {"hosts": list(event.hosts)}
        case ev.BatchFinished():
            entry.numbers = {"succeeded": list(event.succeeded), "failed": list(event.failed)}
    return entry


STOPPING_COMMANDS = frozenset({"pause", "freeze", "abort", "rollback"})


def timeline(path: Path, owners: dict[str, int] | None = None) -> Timeline:
    """Every batch, gate, alert and decision of one rollout, with the counts at each."""
    header, events = load_events(path)
    view = RolloutView()
    entries: list[TimelineEntry] = []
    start = 0.0
    for e in events:
        view.apply(e)  # the state *after* the event: what the console showed then
        if isinstance(e, ev.RolloutStarted):
            start = e.ts
        entry = _entry(e, view, start)
        if entry is not None:
            entries.append(entry)
    summary = _summary(view, header, path, events, owners or live_owners(path.parent))
    return Timeline(summary, entries, _why_stopped(events, summary))


def _why_stopped(events: Iterable[Event], summary: RolloutSummary) -> dict[str, Any]:
    fired: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    reason = summary.reason
    for e in events:
        if isinstance(e, ev.Alert) and e.action:
            fired.append(
                {
                    "rule": e.rule,
                    "message": e.message,
                    "numbers": dict(e.numbers),
                    "action": e.action,
                    "host": e.host,
                    "ts": e.ts,
                }
            )
        elif isinstance(e, ev.OperatorCommand) and e.accepted and e.command in STOPPING_COMMANDS:
            decisions.append(
                {
                    "command": e.command,
                    "operator": e.operator,
                    "user": e.user,
                    "reason": e.reason,
                    "ts": e.ts,
                }
            )
        elif isinstance(e, ev.RolloutFinished):
            reason = e.reason
    return {"outcome": summary.outcome, "reason": reason, "rules": fired, "decisions": decisions}


# -- rendering ---------------------------------------------------------------------------


def fmt_time(ts: float | None) -> str:
    """A date and time in the one zone convention (local, with its UTC offset)."""
    if not ts:
        return "-"
    return format_instant(ts, date=True)


def outcome_words(outcome: str) -> str:
    """An outcome in the describer's words; 'running' and 'interrupted' as they are."""
    try:
        return OUTCOME_WORDS[Outcome(outcome)]
    except ValueError:
        return outcome


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def who(operator: str, user: str | None) -> str:
    """The operator's label beside the Unix user the kernel named: ``alice (unix
    bob)``; the label alone for journals written before the user was recorded."""
    return f"{operator} (unix {user})" if user else operator


def versions(s: RolloutSummary) -> str:
    before = ",".join(s.previous_versions) or "?"
    return f"{before} -> {s.version}"


def render_history(rows: list[RolloutSummary]) -> str:
    if not rows:
        return "no rollouts"
    head = ("ID", "SERVICE", "VERSIONS", "WHO", "STARTED", "OUTCOME", "TOOK", "CHANGED", "FAILED")
    table: list[tuple[str, ...]] = [head]
    for s in rows:
        table.append(
            (
                s.rollout_id,
                s.service,
                versions(s),
                who(s.operator, s.user),
                fmt_time(s.started),
                outcome_words(s.outcome),
                fmt_duration(s.duration),
                f"{s.hosts_changed}/{s.hosts}",
                str(len(s.failures)) + (f" ({', '.join(s.failures[:3])})" if s.failures else ""),
            )
        )
    return _columns(table)


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    rows = [tuple(printable(c) for c in r) for r in rows]  # journaled text is from outside
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _fmt_counts(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items())


def render_timeline(t: Timeline) -> str:
    s = t.summary
    out = [
        f"rollout {s.rollout_id}: {s.service} {versions(s)}",
        f"  by {who(s.operator, s.user)}, started {fmt_time(s.started)}, "
        f"took {fmt_duration(s.duration)}",
        f"  outcome: {outcome_words(s.outcome)}; {s.hosts_changed} of {s.hosts} hosts changed; "
        f"failed: {', '.join(s.failures) or 'none'}",
        "",
    ]
    for e in t.entries:
        out.append(f"+{fmt_duration(e.offset):>7}  {e.text}")
        extra = []
        if e.user:
            extra.append(f"who: {who(e.operator or '', e.user)}")
        if e.numbers and e.kind in ("alert", "canary_analysis"):
            extra.append("numbers: " + json.dumps(e.numbers, sort_keys=True, default=str))
        extra.append(f"[{ROLLOUT_WORDS[RolloutState(e.state)]}] {_fmt_counts(e.counts)}")
        out.extend(f"{'':10}{x}" for x in extra)
    stopped = t.stopped
    out.append("")
    out.append(f"why it stopped: {outcome_words(stopped['outcome'])}: {stopped['reason'] or '-'}")
    for rule in stopped["rules"]:
        nums = json.dumps(rule["numbers"], sort_keys=True, default=str)
        out.append(f"  rule {rule['rule']} fired -> {rule['action']}: {rule['message']} {nums}")
    if stopped["decisions"]:
        out.append("  operator decisions (pause, freeze, abort, rollback):")
    for d in stopped["decisions"]:
        why = f" ({d['reason']})" if d["reason"] else ""
        by = who(d["operator"], d.get("user"))
        out.append(f"    {d['command']} by {by}{why} at {fmt_time(d['ts'])}")
    # Each line one line: names, reasons and messages are from outside (no escapes).
    return "\n".join(printable(line) for line in out)


__all__ = [
    "RolloutSummary",
    "Timeline",
    "TimelineEntry",
    "history",
    "live_owners",
    "render_history",
    "render_timeline",
    "resolve_id",
    "socket_alive",
    "summary_of",
    "timeline",
]
