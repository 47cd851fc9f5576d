"""The rollout's own metrics as a Prometheus text file (``metrics_out: DIR`` or
``--metrics-textfile DIR``), for node_exporter's textfile collector.

Like the hooks, it reads the engine's events after the journal (a bus listener that
only folds, O(1) per event, on the engine's loop) and writes on a thread of its own:
at each batch's end, at each phase change and at the end, atomically (prometheus_client's
``write_to_textfile``: a temporary file renamed over ``rolldeck_<service>[_<env>].prom``).
Only the newest picture waits to be written (one slot), so a slow disk never queues.
A failed write never stops the rollout: it is journaled as a ``Notice`` once per
failure episode (the first failure, then the write that works again).

Figures (labels ``service``, ``environment``, ``outcome``; ``outcome`` is ``running``
until the end): the duration, progression time (the duration minus time paused or
frozen and time waiting at a manual, command or approval gate: a bake is progression),
time paused, time at gates, hosts by state, rollbacks and their duration, alerts by
rule, the exit code and the start and end times.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from console.core import events as ev
from console.core.errors import InputError
from console.core.events import RolloutState
from console.notify.reporter import EngineReports
from console.store.journal import read_journal

if TYPE_CHECKING:
    from console.engine import Engine

log = logging.getLogger(__name__)

_HALTED = (RolloutState.PAUSED, RolloutState.FROZEN)
_ASKING_GATES = ("manual", "command", "approval")  # waiting on people or systems
WRITE_LIMIT = 10.0  # seconds the end of a run waits, at most, for the last write


def file_name(service: str, environment: str) -> str:
    """``rolldeck_<service>[_<environment>].prom``, safe characters only."""
    stem = "_".join(p for p in (service, environment) if p)
    return "rolldeck_" + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:100] + ".prom"


@dataclass(slots=True)
class RolloutTimes:
    """Time folded from the journaled events (their ``ts``): phases, gates, rollback."""

    service: str = ""
    environment: str = ""
    started: float | None = None
    finished: float | None = None
    outcome: str = "running"
    exit_code: int | None = None
    paused: float = 0.0
    gated: float = 0.0  # at a manual, command or approval gate, not paused
    rollback_started: float | None = None
    rollback_ended: float | None = None
    rollbacks: int = 0
    hosts: dict[str, str] = field(default_factory=dict)  # name -> HostState value
    alerts: Counter[str] = field(default_factory=Counter)
    last_ts: float = 0.0
    _phase: RolloutState | None = None
    _since: float = 0.0
    _gate: str | None = None

    def fold(self, event: ev.Event) -> None:
        self.last_ts = max(self.last_ts, event.ts)
        match event:
            case ev.RolloutStarted():
                self.started = self._since = event.ts
                self.service = event.service
                self.environment = str(event.settings.get("environment") or "")
                self.hosts = dict.fromkeys(event.hosts, "pending")
            case ev.RolloutStateChanged():
                self._close(event.ts)
                if event.state == RolloutState.ROLLING_BACK and self.rollback_started is None:
                    self.rollback_started = event.ts
                    self.rollbacks += 1
                self._phase = event.state
            case ev.GateWaiting():
                self._gate = event.gate
            case ev.GatePassed():
                self._gate = None
            case ev.HostStateChanged():
                self.hosts[event.host] = event.state.value
            case ev.BatchFinished() if event.rollback:
                self.rollback_ended = event.ts
            case ev.Alert():
                self.alerts[event.rule] += 1
            case ev.RolloutFinished():
                self._close(event.ts)
                self._phase = RolloutState.DONE
                self.finished = event.ts
                self.outcome = event.outcome.value
                self.exit_code = event.exit_code
                if self.rollback_started is not None and self.rollback_ended is None:
                    self.rollback_ended = event.ts

    def resumed(self) -> None:
        """The events folded so far were a journal read back (``rolldeck resume``): the
        run goes on, and the time from its last journaled event until the next one
        (the console was gone, or the rollout ended paused) counts as paused."""
        if self.started is None:
            return
        self._close(self.last_ts)
        self._phase = RolloutState.PAUSED
        self.finished, self.outcome, self.exit_code = None, "running", None

    def _close(self, ts: float) -> None:
        """Account the phase that ends at ``ts``."""
        span = max(0.0, ts - self._since)
        if self._phase in _HALTED:
            self.paused += span
        elif self._phase == RolloutState.WAITING and self._gate in _ASKING_GATES:
            self.gated += span
        self._since = ts

    def duration(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, (self.finished if self.finished is not None else now) - self.started)

    def registry(self, now: float) -> CollectorRegistry:
        """The figures as of ``now`` (the open phase counted up to it)."""
        paused, gated = self.paused, self.gated
        if self.finished is None:
            span = max(0.0, now - self._since)
            if self._phase in _HALTED:
                paused += span
            elif self._phase == RolloutState.WAITING and self._gate in _ASKING_GATES:
                gated += span
        reg = CollectorRegistry()
        base = ("service", "environment", "outcome")
        values = (self.service, self.environment, self.outcome)

        def gauge(name: str, doc: str, value: float) -> None:
            Gauge(name, doc, base, registry=reg).labels(*values).set(value)

        duration = self.duration(now)
        gauge("rolldeck_rollout_duration_seconds", "Wall time of the rollout", duration)
        gauge(
            "rolldeck_rollout_progress_seconds",
            "Duration minus time paused or frozen and time at manual, command or approval gates",
            max(0.0, duration - paused - gated),
        )
        gauge("rolldeck_rollout_paused_seconds", "Time paused or frozen", paused)
        gauge("rolldeck_rollout_gate_wait_seconds", "Time at manual/command/approval gates", gated)
        gauge("rolldeck_rollout_rollbacks", "Rollbacks started (0 or 1)", self.rollbacks)
        rb = 0.0
        if self.rollback_started is not None:
            rb = (self.rollback_ended or now) - self.rollback_started
        gauge("rolldeck_rollout_rollback_duration_seconds", "Time spent rolling back", rb)
        gauge(
            "rolldeck_rollout_start_time_seconds",
            "Unix time the rollout started",
            self.started or 0,
        )
        if self.finished is not None:
            gauge("rolldeck_rollout_end_time_seconds", "Unix time the rollout ended", self.finished)
        if self.exit_code is not None:
            gauge("rolldeck_rollout_exit_code", "The exit code of the rollout", self.exit_code)
        hosts = Gauge("rolldeck_rollout_hosts", "Hosts by state", (*base, "state"), registry=reg)
        for state, n in sorted(Counter(self.hosts.values()).items()):
            hosts.labels(*values, state).set(n)
        alerts = Gauge("rolldeck_rollout_alerts", "Alerts by rule", (*base, "rule"), registry=reg)
        for rule, n in sorted(self.alerts.items()):
            alerts.labels(*values, rule).set(n)
        return reg


class MetricsFile:
    """Folds events and writes the text file on its own thread (see the module doc).

    A failed write (a full disk, a directory where the file should be) never stops
    the rollout; it is told once per failure episode through ``on_notice`` (the first
    failure, then the first write that works again), which attach_metrics_file
    journals as a ``Notice``."""

    def __init__(self, directory: str, on_notice: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self.times = RolloutTimes()
        self.path: str | None = None
        self.writes = 0
        self.failures = 0  # failed writes in all
        self.error: str | None = None  # the current episode's first error; None: writing
        self.on_notice = on_notice
        self._failed_now = 0  # failed writes in the current episode
        self._slot: CollectorRegistry | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="rolldeck-metrics", daemon=True)
        self._thread.start()

    def listen(self, event: ev.Event) -> None:
        self.times.fold(event)
        if isinstance(event, ev.BatchFinished | ev.RolloutStateChanged | ev.RolloutFinished):
            self.snapshot()

    def snapshot(self) -> None:
        t = self.times
        if t.started is None:
            return
        if self.path is None:
            self.path = os.path.join(self.directory, file_name(t.service, t.environment))
        reg = t.registry(time.time())
        with self._cond:
            self._slot = reg
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._closing:
                    self._cond.wait()
                reg, self._slot = self._slot, None
                if reg is None:
                    return
            assert self.path is not None
            try:
                write_to_textfile(self.path, reg)
            except Exception as exc:  # a full disk must not stop the rollout
                self._failed(exc)
            else:
                self._written()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self._failed_now += 1
        log.warning("metrics textfile %s: %s", self.path, exc)
        if self.error is None:  # a new episode: told once
            self.error = f"{type(exc).__name__}: {exc}"
            self._tell(
                f"metrics textfile {self.path}: cannot write ({self.error}); the rollout "
                "goes on and writes it again at the next batch"
            )

    def _written(self) -> None:
        self.writes += 1
        if self.error is not None:  # the episode is over
            failed, self.error, self._failed_now = self._failed_now, None, 0
            self._tell(f"metrics textfile {self.path}: written again after {failed} failed")

    def _tell(self, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(message)

    def close(self, limit: float = WRITE_LIMIT) -> None:
        """Write the last picture, then stop the thread (blocking, bounded)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(limit)


def attach_metrics_file(engine: Engine, directory: str) -> MetricsFile:
    """Write ``engine``'s rollout metrics under ``directory`` (created if missing)."""
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise InputError(f"metrics directory {directory}: {why}", field="metrics_out") from None
    reports = EngineReports(engine, str(engine.journal.path) if engine.journal else "")
    metrics = MetricsFile(directory, lambda text: reports.report(ev.Notice(message=text)))
    if engine.journal is not None and engine.view.started is not None:
        # A resumed rollout: no RolloutStarted comes; its past is in the journal.
        for event in read_journal(engine.journal.path):
            metrics.times.fold(event)
        metrics.times.resumed()

    def listen(event: ev.Event) -> None:
        reports.bind()
        metrics.listen(event)

    async def after() -> None:
        try:
            await asyncio.to_thread(metrics.close)
        finally:
            await reports.close()

    engine.bus.listen(listen)
    engine.after_run.append(after)
    return metrics
