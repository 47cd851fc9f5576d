"""The notifier: the engine's events, after the journal, to every ``notify:`` hook.

Where it sits: on the engine's bus (:meth:`~console.core.bus.EventBus.listen`), which
publishes an event only once the journal has it, so a hook never announces what the
journal does not hold. The listener runs on the engine's loop and only names the
event, folds the rollout's facts and enqueues; each hook has a thread of its own and a
bounded queue (the oldest notification is dropped when a hook falls behind, and the
count is journaled with the next delivery). An attempt is bounded by the hook's
timeout, a failed one retried ``retries`` times with backoff. Nothing waits for a
hook: no batch, no gate, no rollback, and the outcome and exit code are decided
without it.

Every delivery and failure is a ``NotifyDelivery`` event: emitted through the engine
while the rollout runs (journaled, then shown in the timeline), and appended to the
closed journal for the last ones (``finished`` is delivered after the end). When the
run is over, the engine waits (``Engine.after_run``) at most :data:`DRAIN_LIMIT`
seconds for the queues to empty; what is still queued then is journaled as not sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from console.core import events as ev
from console.core.secrets import SECRET_ENV, Redactor
from console.engine.emitter import redact_event
from console.notify import deliver, payload
from console.notify.names import Namer, hook_label
from console.notify.reporter import EngineReports
from console.spec.model import HookSpec, webhook_url

if TYPE_CHECKING:
    from console.engine import Engine

log = logging.getLogger(__name__)

QUEUE_SIZE = 100  # notifications waiting per hook; past it the oldest is dropped
BACKOFF_FIRST = 0.5  # seconds before the first retry, doubled each time
BACKOFF_MAX = 8.0
DRAIN_LIMIT = 60.0  # seconds the end of a run waits, at most, for the last deliveries


@dataclass(frozen=True, slots=True)
class _Item:
    name: str
    event: ev.Event
    facts: payload.Facts


def backoff(retry: int) -> float:
    """Seconds before retry ``retry`` (1-based)."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (retry - 1))


class _Worker:
    """One hook's queue and thread."""

    def __init__(
        self, hook: HookSpec, send: Callable[[_Item], deliver.Attempt], report: Callable[..., None]
    ) -> None:
        self.hook = hook
        self.label = hook_label(hook)
        self._send = send
        self._report = report
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._closing = False
        self._abandon = threading.Event()
        self._busy = False
        self.thread = threading.Thread(target=self._run, name=f"rolldeck-notify:{self.label}")
        self.thread.daemon = True  # never keeps the process alive: DRAIN_LIMIT bounds it

    def offer(self, item: _Item) -> None:
        with self._cond:
            if self._closing:
                return
            if len(self._queue) >= QUEUE_SIZE:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(item)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()

    def abandon(self) -> tuple[list[_Item], int]:
        """Stop retrying; what is still queued (not sent) and the drop count."""
        self._abandon.set()
        with self._cond:
            left, self._queue = list(self._queue), deque()
            dropped, self._dropped = self._dropped, 0
        return left, dropped

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                dropped, self._dropped = self._dropped, 0
            try:
                attempt, tries = self._deliver(item)
            except Exception as exc:  # a bug here must not kill the hook's thread
                log.exception("notify %s", self.label)
                attempt, tries = deliver.Attempt(False, "error", repr(exc)), 1
            self._report(self.label, item.name, attempt, tries, dropped)

    def _deliver(self, item: _Item) -> tuple[deliver.Attempt, int]:
        tries = 0
        while True:
            tries += 1
            attempt = self._send(item)
            if attempt.ok or not attempt.retry or tries > self.hook.retries:
                return attempt, tries
            if self._abandon.wait(backoff(tries)):
                return attempt, tries


class Notifier:
    """Delivers one rollout's notifications (see the module doc). ``report`` gets each
    ``NotifyDelivery`` (from a hook's thread); :func:`attach_notifier` wires it to an
    engine."""

    def __init__(
        self,
        hooks: tuple[HookSpec, ...],
        *,
        redactor: Redactor,
        cwd: str,
        environment: str = "",
        journal: str = "",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.redactor = redactor
        self.cwd = cwd
        self._environ = dict(os.environ if environ is None else environ)
        for name in SECRET_ENV:  # rolldeck's own secrets never reach a hook
            self._environ.pop(name, None)
        self._namer = Namer()
        self._facts = payload.FactsFolder(environment=environment, journal=journal)
        self._workers = [_Worker(h, self._sender(h), self._reported) for h in hooks]
        self._wanted = frozenset(n for h in hooks for n in h.on)
        self.on_report: Callable[[ev.NotifyDelivery], None] | None = None
        self.delivered: list[ev.NotifyDelivery] = []  # every report, in order (tests, show)
        self._lock = threading.Lock()
        self._started = False

    # -- on the engine's loop ----------------------------------------------------------

    def seed(self, facts: payload.Facts) -> None:
        """What is known before the first event (a resumed rollout has no start)."""
        self._facts.facts = facts

    def start(self) -> None:
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.thread.start()

    def listen(self, event: ev.Event) -> None:
        """The bus listener: name, fold, enqueue. Never blocks."""
        self._facts.fold(event)
        names = self._namer.names(event)
        if not names or self._wanted.isdisjoint(names):
            return
        facts = self._facts.facts
        for name in names:
            item = _Item(name, event, facts)
            for worker in self._workers:
                if name in worker.hook.on:
                    worker.offer(item)

    async def drain(self, limit: float = DRAIN_LIMIT) -> list[ev.NotifyDelivery]:
        """After the run: wait (off the loop) up to ``limit`` seconds for the queues to
        empty; return a not-sent report for each notification still queued then."""
        for worker in self._workers:
            worker.close()
        deadline = time.monotonic() + limit

        def join() -> None:
            for worker in self._workers:
                if worker.thread.is_alive():
                    worker.thread.join(max(0.0, deadline - time.monotonic()))

        await asyncio.to_thread(join)
        left: list[ev.NotifyDelivery] = []
        for worker in self._workers:
            items, dropped = worker.abandon()
            busy = worker.thread.is_alive()
            if not items and not busy and not dropped:
                continue
            what = ", ".join(i.name for i in items) or "the last one"
            left.append(
                ev.NotifyDelivery(
                    hook=worker.label,
                    event=items[0].name if items else "*",
                    ok=False,
                    status="not sent",
                    detail=f"the rollout is over and {limit:g}s passed: {what} "
                    f"{'not sent' if items else 'still in flight'}",
                    dropped=dropped,
                )
            )
        return [self._masked(e) for e in left]

    # -- on a hook's thread --------------------------------------------------------------

    def _sender(self, hook: HookSpec) -> Callable[[_Item], deliver.Attempt]:
        if hook.webhook is not None:
            try:
                url = webhook_url(hook, self._environ)
            except KeyError as exc:
                missing = exc.args[0]

                def unset(item: _Item) -> deliver.Attempt:
                    return deliver.Attempt(False, "error", f"${{{missing}}} is not set", False)

                return unset

            def post(item: _Item) -> deliver.Attempt:
                if hook.format == "slack":
                    data = payload.slack(item.name, item.event, item.facts)
                else:
                    data = payload.body(item.name, item.event, item.facts)
                text = self.redactor.redact(json.dumps(data, default=str))
                return deliver.post(url, text.encode(), hook.timeout)

            return post
        assert hook.run is not None
        command = hook.run

        def run(item: _Item) -> deliver.Attempt:
            data = payload.body(item.name, item.event, item.facts)
            text = self.redactor.redact(json.dumps(data, default=str))
            env = {**self._environ, **payload.environment(item.name, item.facts)}
            env = {k: self.redactor.redact(v) for k, v in env.items()}
            return deliver.run_command(command, text.encode(), env, self.cwd, hook.timeout)

        return run

    def _reported(
        self, label: str, name: str, attempt: deliver.Attempt, tries: int, dropped: int
    ) -> None:
        event = self._masked(
            ev.NotifyDelivery(
                hook=label,
                event=name,
                ok=attempt.ok,
                attempts=tries,
                status=attempt.status,
                detail=attempt.detail,
                dropped=dropped,
            )
        )
        with self._lock:
            self.delivered.append(event)
        if self.on_report is not None:
            self.on_report(event)

    def _masked(self, event: ev.NotifyDelivery) -> ev.NotifyDelivery:
        masked = redact_event(event, self.redactor) if self.redactor else event
        assert isinstance(masked, ev.NotifyDelivery)
        return masked


def attach_notifier(
    engine: Engine, hooks: tuple[HookSpec, ...], *, redactor: Redactor, journal: str = ""
) -> Notifier:
    """A notifier on ``engine``'s bus: reports are emitted through the engine while it
    runs (journal, then timeline) and appended to the closed journal after its end."""
    spec = engine.spec
    notifier = Notifier(
        hooks,
        redactor=redactor,
        cwd=str(Path(spec.path).resolve().parent) if spec.path else os.getcwd(),
        environment=spec.environment or "",
        journal=journal,
    )
    # A resumed rollout starts without RolloutStarted: its facts come from the engine.
    notifier.seed(
        payload.Facts(
            rollout_id=engine.rollout_id,
            service=spec.service,
            version=spec.version,
            operator=engine.operator,
            environment=spec.environment or "",
            journal=journal,
        )
    )
    reports = EngineReports(engine, journal)

    def listen(event: ev.Event) -> None:
        if reports.loop is None:
            if not reports.bind():  # published outside a loop: reports cannot come back
                return
            notifier.start()
        notifier.listen(event)

    async def after() -> None:
        left: list[ev.NotifyDelivery] = []
        try:
            if reports.loop is not None:
                left = await notifier.drain()
        finally:
            await reports.close(left)

    notifier.on_report = reports.report
    engine.bus.listen(listen)
    engine.after_run.append(after)
    return notifier
