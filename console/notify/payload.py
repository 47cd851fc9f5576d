"""What a hook is sent: the facts of the rollout so far (folded from the events as the
bus hands them over) and one notification's JSON body, Slack text and ``ROLLDECK_*``
environment. Everything here comes from events the emitter already redacted; the
notifier masks the finished text once more with the rollout's redactor."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from console.core import events as ev
from console.core.describe import describe, format_instant
from console.core.events import HostState

# Host states that mean the host was touched (its version may have changed).
_CHANGED = frozenset(
    {
        HostState.RUNNING,
        HostState.VERIFYING,
        HostState.ROLLING_BACK,
    }
)


@dataclass(frozen=True, slots=True)
class Facts:
    """The rollout as a hook sees it when one event is queued (a frozen snapshot)."""

    rollout_id: str = ""
    service: str = ""
    version: str = ""
    operator: str = ""
    environment: str = ""
    journal: str = ""
    previous_versions: tuple[str, ...] = ()
    batch: int = 0  # 1-based, the last batch started (0: none yet)
    batches: int = 0
    hosts_changed: int = 0
    outcome: str = ""
    exit_code: int | None = None


@dataclass(slots=True)
class FactsFolder:
    """Folds events into :class:`Facts`; O(1) per event (it runs on the engine's loop)."""

    environment: str = ""
    journal: str = ""
    facts: Facts = field(default_factory=Facts)
    _previous: dict[str, None] = field(default_factory=dict)
    _changed: set[str] = field(default_factory=set)

    def fold(self, event: ev.Event) -> None:
        f = self.facts
        match event:
            case ev.RolloutStarted():
                env = str(event.settings.get("environment") or self.environment or "")
                self.facts = dataclasses.replace(
                    f,
                    rollout_id=event.rollout_id,
                    service=event.service,
                    version=event.version,
                    operator=event.operator,
                    environment=env,
                    journal=self.journal,
                    batches=len(event.batches),
                )
            case ev.VersionRead() if event.role == "previous" and event.version:
                if event.version not in self._previous:
                    self._previous[event.version] = None
                    self.facts = dataclasses.replace(f, previous_versions=tuple(self._previous))
            case ev.HostStateChanged() if event.state in _CHANGED:
                if event.host not in self._changed:
                    self._changed.add(event.host)
                    self.facts = dataclasses.replace(f, hosts_changed=len(self._changed))
            case ev.BatchStarted() if not event.rollback:
                self.facts = dataclasses.replace(f, batch=event.index + 1, batches=event.total)
            case ev.PlanChanged():
                self.facts = dataclasses.replace(f, batches=len(event.batches))
            case ev.RolloutFinished():
                self.facts = dataclasses.replace(
                    f, outcome=event.outcome.value, exit_code=event.exit_code
                )


def _detail(event: ev.Event) -> dict[str, Any]:
    """The event's own figures, without the bulky parts (the spec text, every host)."""
    if isinstance(event, ev.RolloutStarted):
        return {
            "hosts": len(event.hosts),
            "batches": [len(b) for b in event.batches],
            "spec_hash": event.spec_hash,
        }
    data = ev.to_json(event)
    data.pop("kind", None)
    data.pop("ts", None)
    return data


def body(name: str, event: ev.Event, facts: Facts) -> dict[str, Any]:
    """The JSON a ``run`` hook reads on stdin and a webhook receives (``format: json``)."""
    return {
        "event": name,
        "kind": event.kind,
        "ts": event.ts,
        "text": text(name, event, facts),
        "rollout_id": facts.rollout_id,
        "service": facts.service,
        "version": facts.version,
        "previous_versions": list(facts.previous_versions),
        "environment": facts.environment or None,
        "operator": facts.operator,
        "batch": facts.batch,
        "batches": facts.batches,
        "hosts_changed": facts.hosts_changed,
        "outcome": facts.outcome or None,
        "exit_code": facts.exit_code,
        "journal": facts.journal or None,
        "detail": _detail(event),
    }


def text(name: str, event: ev.Event, facts: Facts) -> str:
    """One line for people: which rollout, then the event in the timeline's words."""
    where = f" ({facts.environment})" if facts.environment else ""
    said = describe(event).text(lambda ts: format_instant(ts))
    return f"rolldeck {facts.service} {facts.version}{where} [{name}]: {said}"


def slack(name: str, event: ev.Event, facts: Facts) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body (also read by Mattermost, Rocket.Chat)."""
    return {"text": text(name, event, facts)}


def environment(name: str, facts: Facts) -> dict[str, str]:
    """The ``ROLLDECK_*`` variables a ``run`` hook gets beside the JSON on stdin."""
    return {
        "ROLLDECK_EVENT": name,
        "ROLLDECK_SERVICE": facts.service,
        "ROLLDECK_VERSION": facts.version,
        "ROLLDECK_PREVIOUS_VERSIONS": " ".join(facts.previous_versions),
        "ROLLDECK_ROLLOUT_ID": facts.rollout_id,
        "ROLLDECK_OPERATOR": facts.operator,
        "ROLLDECK_ENVIRONMENT": facts.environment,
        "ROLLDECK_BATCH": str(facts.batch),
        "ROLLDECK_BATCHES": str(facts.batches),
        "ROLLDECK_OUTCOME": facts.outcome,
        "ROLLDECK_EXIT_CODE": "" if facts.exit_code is None else str(facts.exit_code),
        "ROLLDECK_HOSTS_CHANGED": str(facts.hosts_changed),
        "ROLLDECK_JOURNAL": facts.journal,
    }
