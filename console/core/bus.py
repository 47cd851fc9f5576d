"""Fan-out of engine events to consumers, bounded.

The engine publishes each event once (after the journal has it, for durable events);
each consumer holds a :class:`Subscription` and drains it in batches at its own pace
(the Textual console once per frame, the headless runner as lines arrive).

Bounded memory: when a subscription holds ``maxsize`` events, further *ephemeral*
events (log lines, live output, vitals) are dropped and counted; durable events are
kept up to ``hard_limit``, past which the subscription is marked ``overflowed`` and
closed: that consumer is not draining at all and must re-sync from the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

from console.core.events import Event

log = logging.getLogger(__name__)
Listener = Callable[[Event], None]


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int, hard_limit: int) -> None:
        self._bus = bus
        self._buf: deque[Event] = deque()
        self._maxsize = maxsize
        self._hard_limit = hard_limit
        self._ready = asyncio.Event()
        self.dropped = 0
        self.overflowed = False
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self.closed:
            return
        n = len(self._buf)
        if n >= self._maxsize and not event.durable:
            self.dropped += 1
            return
        if n >= self._hard_limit:
            self.overflowed = True
            self.close()
            return
        self._buf.append(event)
        self._ready.set()

    def pending(self) -> int:
        return len(self._buf)

    def drain(self, max_items: int | None = None) -> list[Event]:
        """Everything pending (or the first ``max_items``), oldest first."""
        buf = self._buf
        if max_items is None or max_items >= len(buf):
            out = list(buf)
            buf.clear()
        else:
            out = [buf.popleft() for _ in range(max_items)]
        if not buf:
            self._ready.clear()
        return out

    async def wait(self) -> None:
        """Until at least one event is pending, or the subscription is closed."""
        while not self._buf and not self.closed:
            await self._ready.wait()

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Yield drained batches until closed and empty."""
        while True:
            await self.wait()
            batch = self.drain()
            if batch:
                yield batch
            elif self.closed:
                return

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._bus._subs.discard(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._listeners: tuple[Listener, ...] = ()

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` with every event as it is published, in order, on the
        publisher's loop: it must only look and enqueue (console/notify hands events
        to its own threads this way). An exception in it is logged, never raised."""
        self._listeners = (*self._listeners, listener)

    def subscribe(self, maxsize: int = 20_000, hard_limit: int = 200_000) -> Subscription:
        sub = Subscription(self, maxsize, hard_limit)
        self._subs.add(sub)
        return sub

    def publish(self, event: Event) -> None:
        for sub in tuple(self._subs):
            sub._offer(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the rollout's events
                log.exception("event listener %r", listener)

    def close(self) -> None:
        """End every subscription (they still drain what they hold)."""
        for sub in tuple(self._subs):
            sub.close()
