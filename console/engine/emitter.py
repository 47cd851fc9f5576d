"""Where every engine event goes: journal first, then the read model and the bus.

With a journal, events are handed to its group-commit writer and published only once
they are fsync'd (``Journal.on_commit``); without one they are published at once.
Either way the order events are emitted in is the order everyone sees them in.

Live step output is coalesced: lines land in a bounded per-host buffer and a ticker
emits one ``StepOutput`` per host and stream about ten times a second, so a chatty
command never produces one event per line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from console.core.bus import EventBus
from console.core.events import Event, StepOutput
from console.core.state import RolloutView
from console.store.journal import Journal

OUTPUT_TICK = 0.1  # seconds between live-output flushes
OUTPUT_BUFFER = 500  # lines per host and stream between two flushes (older ones dropped)


class Emitter:
    def __init__(self, bus: EventBus, view: RolloutView, journal: Journal | None) -> None:
        self.bus = bus
        self.view = view
        self.journal = journal
        self._held: list[Event] | None = []  # until the first event (RolloutStarted)
        self._closed = False
        self._output: dict[tuple[str, str], tuple[str, deque[str]]] = {}
        self._redact: Callable[[str], str] = lambda s: s
        if journal is not None:
            journal.on_commit = self._publish

    def set_redactor(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def open(self, first: Event) -> None:
        """Emit ``first`` and then whatever was emitted before the rollout started."""
        held, self._held = self._held or [], None
        self.emit(first)
        for event in held:
            self.emit(event)

    def emit(self, event: Event) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._held.append(event)
        elif self.journal is not None:
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
        self.emit(
            StepOutput(
                host=key[0],
                step=step,
                stream=key[1],
                lines=tuple(self._redact(line) for line in lines),
            )
        )

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
            self._publish(self._held)
            self._held = None
        if self.journal is not None:
            await self.journal.close()
        self._closed = True
