"""One line of words per timeline event: what happened, to what, and who did it."""

from __future__ import annotations

from console.core import events as ev
from screens.format import HOST_STATE_STYLE, format_rate


def describe(event: ev.Event) -> tuple[str, str, str]:
    """``(symbol, text, theme variable)`` for a timeline event."""
    match event:
        case ev.RolloutStarted():
            return (
                "◆",
                f"rollout {event.service} {event.version} started by {event.operator}",
                "primary",
            )
        case ev.RolloutStateChanged():
            why = f": {event.reason}" if event.reason else ""
            return "◇", f"rollout {event.state.value.replace('_', ' ')}{why}", "batch-active"
        case ev.RolloutFinished():
            why = f": {event.reason}" if event.reason else ""
            var = "host-healthy" if event.outcome.value == "succeeded" else "host-failed"
            return "◆", f"finished: {event.outcome.value.replace('_', ' ')}{why}", var
        case ev.BatchStarted():
            kind = "rollback batch" if event.rollback else "batch"
            n = len(event.hosts)
            return (
                "▶",
                f"{kind} {event.index + 1}/{event.total} started ({n} host{'s' * (n != 1)})",
                "batch-active",
            )
        case ev.BatchFinished():
            kind = "rollback batch" if event.rollback else "batch"
            var = "host-failed" if event.failed else "host-healthy"
            return (
                "■",
                f"{kind} {event.index + 1} done: {len(event.succeeded)} ok,"
                f" {len(event.failed)} failed",
                var,
            )
        case ev.GateWaiting():
            if event.gate == "manual":
                return (
                    "⏸",
                    f"manual gate after batch {event.after_batch + 1}: press c",
                    "batch-active",
                )
            return "⧗", f"baking after batch {event.after_batch + 1}", "batch-active"
        case ev.GatePassed():
            return "⏵", f"gate after batch {event.after_batch + 1} passed ({event.by})", "muted"
        case ev.HostStateChanged():
            symbol, word, var = HOST_STATE_STYLE[event.state]
            detail = f": {event.detail}" if event.detail else ""
            return symbol, f"{event.host} {word.lower()}{detail}", var
        case ev.PreflightResult():
            why = event.error or ("unreachable" if not event.reachable else "preflight failed")
            return "✖", f"{event.host} preflight: {why}", "host-failed"
        case ev.Alert():
            var = "host-failed" if event.level == "critical" else "batch-active"
            act = f" -> {event.action}" if event.action else ""
            return "⚠", f"{event.rule}: {event.message}{act}", var
        case ev.OperatorCommand():
            target = f" {event.args['host']}" if "host" in event.args else ""
            why = f" ({event.reason})" if event.reason else ""
            refused = "" if event.accepted else f" REFUSED: {event.detail}"
            return "☞", f"{event.operator}: {event.command}{target}{why}{refused}", "accent"
        case ev.CanaryAnalysis():
            p = f" p={event.p_value:.3g}" if event.p_value is not None else ""
            var = {"pass": "host-healthy", "fail": "host-failed"}.get(event.verdict, "batch-active")
            return "∑", f"canary {event.verdict} ({event.test}{p})", var
        case ev.PlanChanged():
            why = f": {event.reason}" if event.reason else ""
            return "≡", f"plan changed, {len(event.batches)} batches{why}", "muted"
        case ev.Notice():
            host = f"{event.host}: " if event.host else ""
            return "i", f"{host}{event.message}", "muted"
        case ev.ErrorRateSample():
            return "~", f"{event.scope} {format_rate(event.rate, event.unit)}", "muted"
    return "·", event.kind, "muted"
