"""Where every engine event goes: redacted, then journal first, then the read model
and the bus.

The emitter is the one place secrets are masked: every text field of every event
(details, commands, output and log lines, alert messages, versions, strings nested in
tuples and dicts) passes through the rollout's :class:`~console.core.secrets.Redactor`
in :meth:`Emitter.emit`, so the journal, the bus, ``--json``, attached consoles and
``show`` all see the same masked text, and no producer has to remember to redact.

With a journal, events are handed to its group-commit writer and published only once
they are fsync'd (``Journal.on_commit``); without one they are published at once.
Either way the order events are emitted in is the order everyone sees them in.

Live step output is coalesced: lines land in a bounded per-host buffer and a ticker
emits one ``StepOutput`` per host and stream about ten times a second, so a chatty
command never produces one event per line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

from console.core.bus import EventBus
from console.core.events import Event, StepOutput
from console.core.secrets import Redactor
from console.core.state import RolloutView
from console.store.journal import Journal

OUTPUT_TICK = 0.1  # seconds between live-output flushes
OUTPUT_BUFFER = 500  # lines per host and stream between two flushes (older ones dropped)

# Fields that name what the operator wrote (hosts, steps, batches) or the engine's own
# vocabulary, never text from a host: every consumer keys by them, so masking a name
# that happens to contain a secret would split one host into two. A mapping under one
# of these names (``RolloutStarted.hosts``: name -> host info) is data: its values are
# redacted. Dict keys are names everywhere and never redacted.
NAME_FIELDS = frozenset(
    {
        "host",
        "hosts",
        "step",
        "scope",
        "stream",
        "status",
        "level",
        "role",
        "rule",
        "unit",
        "gate",
        "by",
        "rollout_id",
        "spec_hash",
        "batches",
        "succeeded",
        "failed",
    }
)

Redact = Callable[[str], str]
_TEXT_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def _may_hold_text(hint: Any) -> bool:
    """Whether a value of this annotation can contain a str (an enum's is vocabulary)."""
    if hint is str or hint is Any:
        return True
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum) or hint in (int, float, bool, type(None)):
            return False
        return issubclass(hint, str) or not issubclass(hint, (int, float))
    args = typing.get_args(hint)
    if args:
        return any(_may_hold_text(a) for a in args if a is not Ellipsis)
    return True  # unknown: look at it


def _is_mapping(hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(origin, dict)


def text_fields(cls: type[Event]) -> tuple[str, ...]:
    """The fields of ``cls`` that can hold text to redact; computed once per class."""
    found = _TEXT_FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if _may_hold_text(hints[f.name])
            and (f.name not in NAME_FIELDS or _is_mapping(hints[f.name]))
        )
        _TEXT_FIELDS[cls] = found
    return found


def _redact_value(value: Any, redact: Redact) -> Any:
    """``value`` with every string in it redacted; the same object when nothing was.

    A sequence of strings (log lines, output) is first checked as one joined text:
    any line's match is a match of the join, so the common case of no secret costs
    one scan instead of one per line.
    """
    if type(value) is str:
        return redact(value)
    if isinstance(value, tuple | list):
        if not value:
            return value
        if all(type(v) is str for v in value):
            joined = "\n".join(value)
            if redact(joined) is joined:
                return value
        items = [_redact_value(v, redact) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        changed = {k: _redact_value(v, redact) for k, v in value.items()}
        if all(changed[k] is v for k, v in value.items()):
            return value
        return changed
    return value


def redact_event(event: Event, redactor: Redactor) -> Event:
    """``event`` with every text field redacted; the same object when nothing matched."""
    changes: dict[str, Any] = {}
    redact = redactor.redact
    for name in text_fields(type(event)):
        value = getattr(event, name)
        masked = _redact_value(value, redact)
        if masked is not value:
            changes[name] = masked
    return dataclasses.replace(event, **changes) if changes else event


class Emitter:
    def __init__(
        self,
        bus: EventBus,
        view: RolloutView,
        journal: Journal | None,
        redactor: Redactor | None = None,
    ) -> None:
        self.bus = bus
        self.view = view
        self.journal = journal
        self._held: list[Event] | None = []  # until the first event (RolloutStarted)
        self._closed = False
        self._output: dict[tuple[str, str], tuple[str, deque[str]]] = {}
        self.redactor = redactor or Redactor()
        if journal is not None:
            journal.on_commit = self._publish

    def set_redactor(self, redactor: Redactor) -> None:
        """The rollout's secrets, masked in every event emitted from now on."""
        self.redactor = redactor

    def open(self, first: Event) -> None:
        """Emit ``first`` and then whatever was emitted before the rollout started."""
        held, self._held = self._held or [], None
        self.emit(first)
        for event in held:
            self.emit(event)

    def emit(self, event: Event) -> None:
        """Redact ``event``, then journal it or publish it (held until the first event,
        and redacted when released: the redactor may be set after an early notice)."""
        if self._closed:
            return
        if self._held is not None:
            self._held.append(event)
            return
        if self.redactor:  # no secrets: no work (1,000 hosts streaming logs)
            event = redact_event(event, self.redactor)
        if self.journal is not None:
            self.journal.append(event)
        else:
            self._publish([event])

    def _publish(self, batch: list[Event]) -> None:
        for event in batch:
            self.view.apply(event)
            self.bus.publish(event)

    # -- live step output -----------------------------------------------------------

    def line(self, host: str, step: str, stream: str, line: str) -> None:
        key = (host, stream)
        entry = self._output.get(key)
        if entry is None or entry[0] != step:
            if entry is not None:
                self._flush_key(key)
            entry = self._output[key] = (step, deque(maxlen=OUTPUT_BUFFER))
        entry[1].append(line)

    def flush_output(self, host: str) -> None:
        for stream in ("stdout", "stderr"):
            self._flush_key((host, stream))

    def _flush_key(self, key: tuple[str, str]) -> None:
        entry = self._output.pop(key, None)
        if entry is None or not entry[1]:
            return
        step, lines = entry
        self.emit(StepOutput(host=key[0], step=step, stream=key[1], lines=tuple(lines)))

    async def tick_output(self) -> None:
        """Runs until cancelled: flush buffered output every OUTPUT_TICK seconds."""
        while True:
            await asyncio.sleep(OUTPUT_TICK)
            for key in list(self._output):
                self._flush_key(key)

    async def close(self) -> None:
        """Flush output and the journal; nothing is emitted afterwards."""
        for key in list(self._output):
            self._flush_key(key)
        if self._held:
            held, self._held = self._held, None
            self._publish([redact_event(e, self.redactor) for e in held])
        if self.journal is not None:
            await self.journal.close()
        self._closed = True
