"""ONE event describer and ONE glyph table for every front end.

Headless output, ``attach --headless``, ``history``/``show`` and the console's
timeline all say an event in the words :func:`describe` gives, so an operator moving
between them reads one sentence for one fact. A front end adds only its own time
format (the stamp it puts before a line) and its colours (from :attr:`Description.severity`,
or the host state's). Which events a front end lists is its own choice; how an event
reads is not.

A glyph means one thing everywhere: :data:`GLYPHS` maps each meaning to its glyph, and
the host, rollout and outcome tables are drawn from it, so ``↺`` is *rolling back* in
every table and nothing else is.

An instant inside the words (a gate's deadline) is kept as a value (:class:`At`) that
the front end formats; every front end uses :func:`format_instant`, the one zone
convention: local time with its UTC offset (``14:08:07+01:00``), so the deadline reads
on the same clock as the local stamps beside it and is still unambiguous in a journal
read elsewhere.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from console.core import events as ev
from console.core.events import HostState, Outcome, RolloutState
from console.core.text import printable, shorten

HOSTS_SHOWN = 60  # characters of a batch's host list in a one-line description
COMMAND_SHOWN = 80  # characters of a rendered command
DETAIL_SHOWN = 200  # characters of a free-text detail (one line)
# The reason a rollout finished is shown whole (front ends wrap it): a refusal ends
# with the command to run next. Bounded all the same: an engine error's text is not.
FINAL_REASON_SHOWN = 4000


class Severity(enum.StrEnum):
    """How much an event needs the operator; front ends pick colours from it."""

    INFO = "info"
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


# -- the glyph table: one meaning, one glyph ----------------------------------------------

GLYPHS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # host states (and the rollout states and outcomes that mean the same)
        "pending": "·",
        "preflight": "?",
        "running": "▶",
        "verifying": "◔",
        "healthy": "✔",
        "failed": "✖",
        "skipped": "↷",
        "frozen": "❄",
        "interrupted": "■",
        "rolling back": "↺",
        "rolled back": "↩",
        "rollback failed": "‼",
        # rollout states and outcomes
        "paused": "⏸",
        "waiting": "⧗",
        "aborted": "⊘",
        "done": "◇",
        "succeeded": "◆",
        # events that are not a state
        "rollout started": "◈",
        "batch started": "▸",
        "batch done": "▣",
        "gate passed": "⏵",
        "plan changed": "≡",
        "alert": "⚠",
        "operator command": "☞",
        "canary analysis": "∑",
        "notice": "i",
        "step": "»",
        "output": "│",
        "health": "♥",
        "vitals": "%",
        "error rate": "~",
        "version": "#",
        "drill scorecard": "⚑",
        "notification": "✉",
        "traffic": "⇄",
    }
)

HOST_WORDS: Final[Mapping[HostState, str]] = MappingProxyType(
    {
        HostState.PENDING: "pending",
        HostState.PREFLIGHT: "preflight",
        HostState.RUNNING: "running",
        HostState.VERIFYING: "verifying",
        HostState.HEALTHY: "healthy",
        HostState.FAILED: "failed",
        HostState.SKIPPED: "skipped",
        HostState.FROZEN: "frozen",
        HostState.INTERRUPTED: "interrupted",
        HostState.ROLLING_BACK: "rolling back",
        HostState.ROLLED_BACK: "rolled back",
        HostState.ROLLBACK_FAILED: "rollback failed",
    }
)
# The same words cut to fit a narrow state column (at most 10 characters); failures
# in capitals, so they stand out without colour.
HOST_SHORT_WORDS: Final[Mapping[HostState, str]] = MappingProxyType(
    {
        **HOST_WORDS,
        HostState.FAILED: "FAILED",
        HostState.INTERRUPTED: "interrupt",
        HostState.ROLLING_BACK: "rolling bk",
        HostState.ROLLED_BACK: "rolled bk",
        HostState.ROLLBACK_FAILED: "RB FAILED",
    }
)
ROLLOUT_WORDS: Final[Mapping[RolloutState, str]] = MappingProxyType(
    {
        RolloutState.PREFLIGHT: "preflight",
        RolloutState.RUNNING: "running",
        RolloutState.PAUSED: "paused",
        RolloutState.FROZEN: "frozen",
        RolloutState.WAITING: "waiting",
        RolloutState.ROLLING_BACK: "rolling back",
        RolloutState.ABORTED: "aborted",
        RolloutState.DONE: "done",
    }
)
OUTCOME_WORDS: Final[Mapping[Outcome, str]] = MappingProxyType(
    {
        Outcome.SUCCEEDED: "succeeded",
        Outcome.FAILED: "failed",
        Outcome.ROLLED_BACK: "rolled back",
        Outcome.ABORTED: "aborted",
        Outcome.PAUSED: "paused",
    }
)

HOST_GLYPHS: Final[Mapping[HostState, str]] = MappingProxyType(
    {s: GLYPHS[w] for s, w in HOST_WORDS.items()}
)
ROLLOUT_GLYPHS: Final[Mapping[RolloutState, str]] = MappingProxyType(
    {s: GLYPHS[w] for s, w in ROLLOUT_WORDS.items()}
)
OUTCOME_GLYPHS: Final[Mapping[Outcome, str]] = MappingProxyType(
    {o: GLYPHS[w] for o, w in OUTCOME_WORDS.items()}
)

HOST_SEVERITY: Final[Mapping[HostState, Severity]] = MappingProxyType(
    {
        HostState.PENDING: Severity.INFO,
        HostState.PREFLIGHT: Severity.INFO,
        HostState.RUNNING: Severity.INFO,
        HostState.VERIFYING: Severity.INFO,
        HostState.HEALTHY: Severity.OK,
        HostState.FAILED: Severity.CRITICAL,
        HostState.SKIPPED: Severity.WARNING,
        HostState.FROZEN: Severity.WARNING,
        HostState.INTERRUPTED: Severity.CRITICAL,
        HostState.ROLLING_BACK: Severity.WARNING,
        HostState.ROLLED_BACK: Severity.WARNING,
        HostState.ROLLBACK_FAILED: Severity.CRITICAL,
    }
)
ROLLOUT_SEVERITY: Final[Mapping[RolloutState, Severity]] = MappingProxyType(
    {
        RolloutState.PREFLIGHT: Severity.INFO,
        RolloutState.RUNNING: Severity.INFO,
        RolloutState.PAUSED: Severity.WARNING,
        RolloutState.FROZEN: Severity.WARNING,
        RolloutState.WAITING: Severity.INFO,
        RolloutState.ROLLING_BACK: Severity.WARNING,
        RolloutState.ABORTED: Severity.CRITICAL,
        RolloutState.DONE: Severity.INFO,
    }
)
OUTCOME_SEVERITY: Final[Mapping[Outcome, Severity]] = MappingProxyType(
    {
        Outcome.SUCCEEDED: Severity.OK,
        Outcome.FAILED: Severity.CRITICAL,
        Outcome.ROLLED_BACK: Severity.WARNING,
        Outcome.ABORTED: Severity.CRITICAL,
        Outcome.PAUSED: Severity.WARNING,
    }
)


# -- times ----------------------------------------------------------------------------------


def format_instant(ts: float, *, date: bool = False) -> str:
    """The one zone convention for an instant in words: local time with its UTC
    offset, ``14:08:07+01:00`` (``2026-12-02 14:08:07+01:00`` with ``date``)."""
    local = time.localtime(ts)
    offset = local.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    shown = time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", local)
    return f"{shown}{sign}{hours:02d}:{minutes:02d}"


@dataclass(frozen=True, slots=True)
class At:
    """An instant inside the words, left for the front end to format."""

    ts: float


Part = str | At


@dataclass(frozen=True, slots=True)
class Description:
    """What an event says: its words, how much it matters, which host, its glyph.

    ``chatty`` marks the events that come by the hundred (samples, output lines, steps
    that went fine): listed only by a front end that shows everything.
    """

    parts: tuple[Part, ...]
    severity: Severity
    glyph: str
    host: str | None = None
    chatty: bool = False

    def text(self, instant: Callable[[float], str] = format_instant) -> str:
        """The words, with each instant formatted by ``instant``."""
        return "".join(p if isinstance(p, str) else instant(p.ts) for p in self.parts)

    @property
    def times(self) -> tuple[float, ...]:
        """The instants the words name, as values (for JSON)."""
        return tuple(p.ts for p in self.parts if isinstance(p, At))

    def __str__(self) -> str:
        return self.text()


def _d(
    text: str | tuple[Part, ...],
    severity: Severity,
    meaning: str,
    host: str | None = None,
) -> Description:
    parts = (text,) if isinstance(text, str) else text
    # The one choke point for every front end's words: hosts, versions, output and
    # details come from outside, so terminal escapes in them are shown, never sent.
    parts = tuple(printable(p) if isinstance(p, str) else p for p in parts)
    return Description(parts, severity, GLYPHS[meaning], host)


_LEVELS = frozenset(s.value for s in Severity)

# The events that come by the hundred: front ends that list only what matters skip
# them, before any words are built (headless plain mode sees every event).
CHATTY_EVENTS = (
    ev.VersionRead,
    ev.StepStarted,
    ev.StepOutput,
    ev.HealthSample,
    ev.VitalsSample,
    ev.LogLines,
    ev.ErrorRateSample,
    ev.AnalysisSample,
)


def is_chatty(event: ev.Event) -> bool:
    """One of the events that come by the hundred (a step that finished ok too)."""
    return isinstance(event, CHATTY_EVENTS) or (
        isinstance(event, ev.StepFinished) and event.status == "ok"
    )


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _why(reason: str, limit: int = DETAIL_SHOWN) -> str:
    return f": {shorten(reason, limit, squash=True)}" if reason else ""


def _hosts(hosts: Iterable[str]) -> str:
    return shorten(", ".join(hosts), HOSTS_SHOWN)


def format_rate(rate: float | None, unit: str = "ratio") -> str:
    """An error rate: ``1.2%``, ``25%`` (a ratio) or ``3.0/m`` (lines per minute)."""
    if rate is None:
        return "-"
    if unit == "per_min":
        return f"{rate:.1f}/m"
    pct = rate * 100
    return f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def format_metric(value: float | None, unit: str = "") -> str:
    """An analysis metric's value as its bound was written: ``5.00%`` (a ratio),
    ``272ms``/``1.25s`` (seconds) or ``0.0123``; ``no data`` for None."""
    if value is None:
        return "no data"
    if unit == "ratio":
        pct = value * 100.0
        return f"{pct:.2f}%" if abs(pct) < 1.0 else f"{pct:.1f}%"
    if unit == "seconds":
        return f"{value * 1000:.0f}ms" if abs(value) < 1.0 else f"{value:.3g}s"
    return f"{value:.4g}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _args(args: Mapping[str, Any]) -> str:
    """Command arguments: the host bare (``skip web-04``), the rest as ``key=value``."""
    out = [str(v) if k == "host" else f"{k}={v}" for k, v in args.items()]
    return (" " + " ".join(out)) if out else ""


# -- the describer ---------------------------------------------------------------------------


def describe(event: ev.Event) -> Description:
    """The words, severity, glyph and host of ``event`` (``chatty`` per :func:`is_chatty`)."""
    words = _words(event)
    return dataclasses.replace(words, chatty=True) if is_chatty(event) else words


def _words(event: ev.Event) -> Description:
    """The one description of ``event``; every kind in :mod:`console.core.events` has one."""
    match event:
        case ev.RolloutStarted():
            n, b = len(event.hosts), len(event.batches)
            return _d(
                f"rollout {event.service} {event.version} started by {event.operator}: "
                f"{_plural(n, 'host')} in {_plural(b, 'batch', 'batches')}",
                Severity.INFO,
                "rollout started",
            )
        case ev.RolloutStateChanged():
            word = ROLLOUT_WORDS[event.state]
            # "paused by alice: why" already says the state: not "paused: paused by ..."
            said = event.reason.startswith(f"{word} ")
            return _d(
                f"rollout {shorten(event.reason, DETAIL_SHOWN, squash=True)}"
                if said
                else f"rollout {word}{_why(event.reason)}",
                ROLLOUT_SEVERITY[event.state],
                word,
            )
        case ev.RolloutFinished():
            word = OUTCOME_WORDS[event.outcome]
            return _d(
                f"rollout finished: {word} (exit {event.exit_code})"
                f"{_why(event.reason, FINAL_REASON_SHOWN)}",
                OUTCOME_SEVERITY[event.outcome],
                word,
            )
        case ev.PreflightResult():
            return _preflight(event)
        case ev.PlanChanged():
            sizes = shorten(", ".join(str(len(b)) for b in event.batches), HOSTS_SHOWN)
            n = len(event.batches)
            return _d(
                f"plan changed: {_plural(n, 'batch', 'batches')} ({sizes}){_why(event.reason)}",
                Severity.INFO,
                "plan changed",
            )
        case ev.BatchStarted():
            kind = "rollback batch" if event.rollback else "batch"
            return _d(
                f"{kind} {event.index + 1}/{event.total} started: "
                f"{_plural(len(event.hosts), 'host')} ({_hosts(event.hosts)})",
                Severity.WARNING if event.rollback else Severity.INFO,
                "batch started",
            )
        case ev.BatchFinished():
            kind = "rollback batch" if event.rollback else "batch"
            bad = f" ({_hosts(event.failed)})" if event.failed else ""
            return _d(
                f"{kind} {event.index + 1} done: {len(event.succeeded)} ok, "
                f"{len(event.failed)} failed{bad}",
                Severity.CRITICAL if event.failed else Severity.OK,
                "batch done",
            )
        case ev.GateWaiting():
            return _gate(event)
        case ev.GatePassed():
            by = event.by
            who = f"by {by.split(':', 1)[1]}" if by.startswith("operator:") else f"({by})"
            if by.startswith("approval:"):
                who = f"approved by {by.split(':', 1)[1]}"
            return _d(
                f"gate after batch {event.after_batch + 1} passed {who}",
                Severity.INFO,
                "gate passed",
            )
        case ev.HostStateChanged():
            detail = _why(event.detail)
            return _d(
                f"{event.host} {HOST_WORDS[event.state]}{detail}",
                HOST_SEVERITY[event.state],
                HOST_WORDS[event.state],
                event.host,
            )
        case ev.VersionRead():
            return _d(
                f"{event.host} {event.role} version {event.version or 'unknown'}",
                Severity.INFO,
                "version",
                event.host,
            )
        case ev.StepStarted():
            kind = "rollback step" if event.rollback else "step"
            command = shorten(event.command, COMMAND_SHOWN, squash=True)
            return _d(
                f"{event.host} {kind} {event.step} started: {command}",
                Severity.INFO,
                "step",
                event.host,
            )
        case ev.StepOutput():
            last = shorten(event.lines[-1], DETAIL_SHOWN, squash=True) if event.lines else ""
            return _d(
                f"{event.host} step {event.step}: {_plural(len(event.lines), 'line')}"
                f"{' | ' + last if last else ''}",
                Severity.INFO,
                "output",
                event.host,
            )
        case ev.StepFinished():
            return _step_finished(event)
        case ev.HealthSample():
            return _health(event)
        case ev.VitalsSample():
            figures = [
                f"load {event.load1:.2f}" if event.load1 is not None else "load -",
                f"mem {event.mem_used_pct:.0f}%" if event.mem_used_pct is not None else "mem -",
                f"disk {event.disk_used_pct:.0f}%" if event.disk_used_pct is not None else "disk -",
            ]
            return _d(
                f"{event.host} {', '.join(figures)}",
                Severity.INFO,
                "vitals",
                event.host,
            )
        case ev.LogLines():
            errors = f", {_plural(event.errors, 'error')}" if event.errors else ""
            return _d(
                f"{event.host} {_plural(len(event.lines), 'log line')}{errors}",
                Severity.WARNING if event.errors else Severity.INFO,
                "output",
                event.host,
            )
        case ev.ErrorRateSample():
            host = None if event.scope.startswith("cohort:") else event.scope
            requests = f" of {event.requests:g} requests" if event.requests is not None else ""
            return _d(
                f"{event.scope} error rate {format_rate(event.rate, event.unit)} "
                f"({event.errors:g} errors{requests} in {event.window:g}s)",
                Severity.INFO,
                "error rate",
                host,
            )
        case ev.AnalysisSample():
            severity = {"pass": Severity.INFO, "fail": Severity.CRITICAL}.get(
                event.verdict, Severity.WARNING
            )
            base = format_metric(event.baseline_value, event.unit)
            return _d(
                f"analysis {event.metric}: new {format_metric(event.new_value, event.unit)} "
                f"({_plural(event.new_hosts, 'host')}) vs baseline {base} "
                f"({_plural(event.baseline_hosts, 'host')}): {event.verdict.replace('_', ' ')}",
                severity,
                "canary analysis",
            )
        case ev.Alert():
            action = f" -> {event.action}" if event.action else ""
            return _d(
                f"ALERT [{event.level}] {event.rule}: "
                f"{shorten(event.message, DETAIL_SHOWN, squash=True)}{action}",
                Severity(event.level) if event.level in _LEVELS else Severity.WARNING,
                "alert",
                event.host,
            )
        case ev.CanaryAnalysis():
            p = f", p={event.p_value:.3g}" if event.p_value is not None else ""
            severity = {"pass": Severity.OK, "fail": Severity.CRITICAL}.get(
                event.verdict, Severity.WARNING
            )
            return _d(
                f"canary analysis: {event.verdict} ({event.test}{p})", severity, "canary analysis"
            )
        case ev.OperatorCommand():
            return _command(event)
        case ev.TrafficChanged():
            sessions = "" if event.sessions is None else f", {_plural(event.sessions, 'session')}"
            severity = Severity.WARNING if event.failed or event.admin == "maint" else Severity.INFO
            return _d(
                f"{event.host} traffic {event.admin} ({event.backend}/{event.server}{sessions})"
                f"{_why(event.detail)}",
                Severity.OK if event.admin == "ready" and not event.failed else severity,
                "traffic",
                event.host,
            )
        case ev.TrafficShifted():
            return _d(shift_text(event), _shift_severity(event), "traffic")
        case ev.Notice():
            where = f"{event.host}: " if event.host else ""
            return _d(
                f"{where}{shorten(event.message, DETAIL_SHOWN, squash=True)}",
                Severity.INFO,
                "notice",
                event.host,
            )
        case ev.GateAnswer():
            return _gate_answer(event)
        case ev.NotifyDelivery():
            return _notify(event)
        case ev.DrillScorecard():
            return _d(
                f"drill {event.scenario} (seed {event.seed}, {event.policy}): "
                f"{OUTCOME_WORDS[event.outcome]} (exit {event.exit_code}), "
                f"alert after {_seconds(event.time_to_alert)}, "
                f"action after {_seconds(event.time_to_act)}, "
                f"blast radius {_plural(len(event.blast_radius), 'host')}, "
                f"rollback {event.rollback.replace('_', ' ')}",
                OUTCOME_SEVERITY[event.outcome],
                "drill scorecard",
            )
    return _d(event.kind.replace("_", " "), Severity.INFO, "notice")


def _preflight(event: ev.PreflightResult) -> Description:
    version = f"version {event.version}" if event.version else "version unknown"
    if event.ok and event.reachable:
        return _d(f"{event.host} preflight ok, {version}", Severity.OK, "preflight", event.host)
    if event.ok:  # unreachable, and the spec allows it: the host is skipped
        return _d(
            f"{event.host} preflight: unreachable, allowed{_why(event.error)}",
            Severity.WARNING,
            "skipped",
            event.host,
        )
    why = event.error or ("unreachable" if not event.reachable else "a check failed")
    if not event.reachable and "unreachable" not in why:
        why = f"unreachable: {why}"
    return _d(
        f"{event.host} preflight failed ({version}): {shorten(why, DETAIL_SHOWN, squash=True)}",
        Severity.CRITICAL,
        "failed",
        event.host,
    )


def _gate(event: ev.GateWaiting) -> Description:
    n = event.after_batch + 1
    what = {"manual": f"manual gate after batch {n}", "bake": f"baking after batch {n}"}.get(
        event.gate, f"{event.gate} gate after batch {n}"
    )
    parts: tuple[Part, ...] = (what,)
    if event.until is not None:
        parts += (" until ", At(event.until))
        if event.on_timeout:
            parts += (f", then {event.on_timeout}",)
    severity = Severity.WARNING if event.gate == "manual" else Severity.INFO
    return _d(parts, severity, "waiting")


def _gate_answer(event: ev.GateAnswer) -> Description:
    n = event.after_batch + 1
    code = f"exit {event.exit_code}" if event.exit_code is not None else "no exit code"
    said = {"go": "go", "not_yet": "not yet", "no": "NO"}.get(event.answer, event.answer)
    parts: tuple[Part, ...] = (
        f"{event.gate} gate after batch {n}, poll {event.poll}: {said} ({code})"
        f"{_why(event.output)}",
    )
    if event.next_at is not None:
        parts += (", asking again at ", At(event.next_at))
    severity = {"go": Severity.OK, "not_yet": Severity.INFO}.get(event.answer, Severity.CRITICAL)
    return _d(parts, severity, "waiting")


def _notify(event: ev.NotifyDelivery) -> Description:
    tries = f" after {_plural(event.attempts, 'attempt')}" if event.attempts > 1 else ""
    dropped = ""
    if event.dropped:
        dropped = f" ({_plural(event.dropped, 'notification')} dropped before it)"
    if event.ok:
        text = f"notified {event.hook} of {event.event}: {event.status}{tries}{dropped}"
    else:
        text = (
            f"notification {event.event} to {event.hook} {event.status or 'failed'}{tries}"
            f"{_why(event.detail)}{dropped}"
        )
    return _d(text, Severity.INFO if event.ok else Severity.WARNING, "notification")


def _step_finished(event: ev.StepFinished) -> Description:
    kind = "rollback step" if event.rollback else "step"
    code = f" (exit {event.exit_code})" if event.exit_code is not None else ""
    tail = (
        f" | {shorten(event.output_tail[-1], DETAIL_SHOWN, squash=True)}"
        if event.output_tail and event.status != "ok"
        else ""
    )
    severity = {"ok": Severity.OK, "cancelled": Severity.WARNING}.get(
        event.status, Severity.CRITICAL
    )
    return _d(
        f"{event.host} {kind} {event.step} {event.status}{code}{tail}",
        severity,
        "step" if event.status == "ok" else "failed",
        event.host,
    )


def _health(event: ev.HealthSample) -> Description:
    status = event.status or ("passing" if event.ok else "failing")
    row = f", {event.consecutive} in a row" if event.consecutive > 1 else ""
    detail = _why(event.detail)
    severity = Severity.OK if event.ok else Severity.WARNING
    if event.status == "flapping":
        severity = Severity.WARNING
    return _d(f"{event.host} health {status}{row}{detail}", severity, "health", event.host)


def _command(event: ev.OperatorCommand) -> Description:
    why = f" ({shorten(event.reason, DETAIL_SHOWN, squash=True)})" if event.reason else ""
    detail = _why(event.detail)
    verdict = "" if event.accepted else " REFUSED"
    return _d(
        f"{event.command}{_args(event.args)} by {event.operator}{why}{verdict}{detail}",
        Severity.INFO if event.accepted else Severity.WARNING,
        "operator command",
        event.args.get("host") if isinstance(event.args.get("host"), str) else None,
    )


__all__ = [
    "GLYPHS",
    "HOST_GLYPHS",
    "HOST_SEVERITY",
    "HOST_SHORT_WORDS",
    "HOST_WORDS",
    "OUTCOME_GLYPHS",
    "OUTCOME_SEVERITY",
    "OUTCOME_WORDS",
    "ROLLOUT_GLYPHS",
    "ROLLOUT_SEVERITY",
    "ROLLOUT_WORDS",
    "At",
    "Description",
    "Severity",
    "describe",
    "format_instant",
    "format_rate",
]


def shift_text(event: ev.TrafficShifted) -> str:
    """A whole-backend move in words (timeline, show, headless)."""
    backend = event.backend
    if event.move == "pools":
        sizes = ", ".join(f"{p} {_plural(len(h), 'host')}" for p, h in event.pools.items())
        said = f"pools on {backend}: {event.live} live, {event.idle} idle ({sizes})"
    elif event.move == "weights":
        asked = f"{event.share:g}%" if event.share is not None else "?"
        got = f" (weights give {event.achieved:.2f}%)" if event.achieved is not None else ""
        step = f"step {event.step + 1}: " if event.step is not None else ""
        said = f"{step}canary gets {asked} of {backend}'s traffic{got}"
    elif event.move == "before":
        said = (
            f"{backend}: {_plural(len(event.original), 'server')}' weights before the rollout read"
        )
    elif event.move == "restore":
        said = f"{backend}: every server back to its weight before the rollout"
    elif event.move == "switch":
        said = f"{backend}: traffic switched to {event.live}; {event.idle} idle"
    elif event.move == "switch_back":
        said = f"{backend}: traffic switched back to {event.live}; {event.idle} idle"
    else:
        said = f"{backend}: {event.move}"
    if event.phase == "start":
        said = f"{said} (starting)"
    return f"{said}{_why(event.detail)}"


def _shift_severity(event: ev.TrafficShifted) -> Severity:
    if event.move == "switch_back":
        return Severity.WARNING
    return Severity.OK if event.phase == "done" else Severity.INFO
