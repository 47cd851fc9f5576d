"""Which documented notification names (``spec.model.NOTIFY_EVENTS``) an engine event
stands for, and how a hook is named where it is shown. The one place that mapping
lives: the spec checks names against the list, the notifier asks here."""

from __future__ import annotations

from console.core import events as ev
from console.core.events import HostState, Outcome, RolloutState
from console.core.secrets import mask_url
from console.spec.model import HookSpec

_HALTED = (RolloutState.PAUSED, RolloutState.FROZEN)
_OUTCOME_NAMES = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.FAILED: "failed",
    Outcome.ROLLED_BACK: "rolled_back",
    Outcome.ABORTED: "aborted",
}


class Namer:
    """Names per event; remembers the last phase, so ``paused``, ``resumed`` and
    ``rolling_back`` fire on a change, not on every re-announcement."""

    def __init__(self) -> None:
        self.phase: RolloutState | None = None

    def names(self, event: ev.Event) -> tuple[str, ...]:
        match event:
            case ev.RolloutStarted():
                return ("started",)
            case ev.BatchStarted() if not event.rollback:
                return ("batch_started",)
            case ev.BatchFinished() if not event.rollback:
                return ("batch_finished",)
            case ev.GateWaiting():
                return ("gate_waiting",)
            case ev.GatePassed():
                return ("gate_passed",)
            case ev.GateAnswer():
                return ("gate_answer",)
            case ev.Alert():
                return ("alert",)
            case ev.HostStateChanged() if event.state == HostState.FAILED:
                return ("host_failed",)
            case ev.RolloutStateChanged():
                before, self.phase = self.phase, event.state
                if event.state == before:
                    return ()
                if event.state in _HALTED and before not in _HALTED:
                    return ("paused",)
                if event.state == RolloutState.ROLLING_BACK:
                    return ("rolling_back",)
                if before in _HALTED and event.state in (
                    RolloutState.RUNNING,
                    RolloutState.WAITING,
                ):
                    return ("resumed",)
            case ev.RolloutFinished():
                named = _OUTCOME_NAMES.get(event.outcome)
                return (named, "finished") if named else ("finished",)
        return ()


def names_of(event: ev.Event) -> tuple[str, ...]:
    """The names of one event on its own (no phase history: a phase change counts)."""
    return Namer().names(event)


def hook_label(hook: HookSpec) -> str:
    """How a hook is named in the journal, ``check`` and the timeline: a webhook's
    URL with its path (the token) masked."""
    if hook.webhook is not None:
        return f"webhook {mask_url(hook.webhook)}"
    return f"run {hook.run}"
