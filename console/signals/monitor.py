"""Per-host signal loops: vitals, followed logs, metrics and the post-deploy health watch.

One :class:`HostMonitor` per targeted host, over the host's open connection, for the
whole rollout. Its loops run side by side in a TaskGroup and never take each other
down: a signal that fails is reported once (an ``Alert`` of level ``warning``, rule
``signal.<name>``), backs off and retries, and is silent again once it recovers.

Built to be cheap at 1,000 hosts: polls are jittered per host so they do not arrive
in waves, log lines are coalesced into one ``LogLines`` event per host per
``log_flush`` seconds (a timer armed by the first line of a batch, so idle hosts cost
nothing), the error regex is compiled once, and every buffer is a bounded deque.

Over a connection whose commands run in a shell (SSH: ``chains_commands``), the
health, vitals and metrics polls due at the same tick run as one command (an exec
channel costs about a millisecond of CPU on each side, the bulk of the console's
work at 1,000 hosts); each part keeps its own timeout, exit status and outcome. An
overload guard watches how late the scheduler's timers fire (``loop_lag``): past
``STARVED_LAG`` it stretches the intervals, and a health probe that timed out then
is probed again at once before it counts as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from console.core.errors import InputError
from console.core.events import Alert, Event, HealthSample, LogLines, VitalsSample
from console.signals.health import (
    VITALS_COMMAND,
    ErrorRateAnalyzer,
    HealthTracker,
    Vitals,
    parse_vitals,
)
from console.signals.metrics import MetricsParseError, line_filter, parse_selector, read_counters
from console.signals.polls import vitals_of
from console.signals.probe import health_verdict, one_line, probe_error, probe_health
from console.spec import HealthSpec, RolloutSpec, VitalsSpec
from console.transport.base import Connection, LineCallback, RunResult, TransportError
from console.transport.output import OutputSink

log = logging.getLogger(__name__)

ERROR_LINES_KEPT = 200  # matching log lines kept per host for display
LOG_BATCH_MAX = 500  # lines per LogLines event; beyond, the oldest of a burst are dropped
LOG_LINE_MAX = 2000  # characters of one log line kept (matched in full)
VITALS_LINES_MAX = 200
METRICS_LINES_MAX = 50_000  # a metrics page larger than this is cut (and reported)
MAX_BACKOFF = 60.0
WARN_AFTER = 2  # consecutive failed polls before a warning: one is normal during a restart
STARVED_LAG = 0.25  # seconds of event-loop lag from which the console counts as starved
LAG_SMOOTHING = 0.3  # weight of the newest timer's lateness in loop_lag
MAX_STRETCH = 3.0  # an overloaded console polls at most this many times less often
TAIL_LINES = 20  # output lines kept per chained part (a RunResult's tails)
_ORDER = ("vitals", "metrics", "health")  # in a chained command: health last, exact exit code
# What a part may not contain to be chained with `cmd && echo M || echo M; next`: a
# comment or newline would swallow or split the chain, a trailing `&` break its syntax.
_UNCHAINABLE = re.compile(r"[#\n]|&\s*$")


def _chainable(command: str) -> bool:
    return not _UNCHAINABLE.search(command) and not command.rstrip().endswith(";")


def _marker_status(text: str) -> int | None:
    """The exit status in a part's marker line: ``ok`` is 0, ``failed 3`` is 3, and
    ``failed $?`` (a shell without ``$?``) is unknown."""
    if text == "ok":
        return 0
    code = text.removeprefix("failed").strip()
    return int(code) if code.isdigit() and int(code) > 0 else None


class Runner(Protocol):
    """Runs a command as :meth:`Connection.run` does (a connection, a persistent shell)."""

    async def run(
        self, command: str, *, timeout: float, on_line: LineCallback | None = None
    ) -> RunResult: ...

    async def close(self) -> None: ...


class _SampleFailed(Exception):
    """A poll that ran but gave nothing usable; the message is the operator's warning."""


@dataclass(slots=True)
class _Part:
    """One polled signal's command, its line collector and what to make of its result.

    ``finish`` raises :class:`_SampleFailed` (or anything) for a poll that failed.
    """

    signal: str
    command: str
    timeout: float
    collect: LineCallback
    finish: Callable[[RunResult], None]
    fail: Callable[[Exception], None] | None = None  # the command could not run


@dataclass(slots=True)
class _Due:
    """A polled signal's schedule on the chained path."""

    every: float
    due: float  # when it runs: ``ideal`` snapped to a tick of the most frequent signal
    ideal: float  # when it would run alone: intervals are kept from here, so snapping
    # to ticks never makes a signal run more often than asked, on average
    busy: bool = False  # in a command now: never two polls of one signal at once
    failures: int = 0

    @classmethod
    def at(cls, every: float, due: float) -> _Due:
        return cls(every, due, due)


def _how(result: RunResult) -> str:
    """``failed (exit 7)``; the exit code is unknown for a chained part on a shell
    without ``$?`` (the simulated fleet's)."""
    if result.exit_code is None:
        return result.status if result.signal is None else f"{result.status} ({result.signal})"
    return f"{result.status} (exit {result.exit_code})"


class HostMonitor:
    """Watches one host's signals and feeds the shared :class:`ErrorRateAnalyzer`.

    ``emit`` receives ``VitalsSample``, ``LogLines``, ``HealthSample`` and warning
    ``Alert`` events. ``on_unhealthy(host, detail)`` is called once per episode when a
    watched host fails health (``fail_after`` consecutive failures); the episode ends
    when the host is healthy again for ``health.healthy_after`` consecutive probes.
    What runs is :mod:`console.signals.polls`' answer, the one ``rolldeck check``
    prints: vitals are the spec's (its default ``VITALS_COMMAND`` every 5 s when the
    spec has no ``vitals`` key, then only with ``console=True``), none with ``vitals:
    false`` or ``vitals=False``;
    metrics and logs only when the spec has them.
    """

    def __init__(
        self,
        host: str,
        conn: Connection,
        spec: RolloutSpec,
        emit: Callable[[Event], None],
        analyzer: ErrorRateAnalyzer,
        on_unhealthy: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        fail_after: int = 1,
        log_flush: float = 0.1,
        log_retry: float = 0.5,
        vitals: bool = True,
        console: bool = True,
        chain: bool | None = None,
        persist: bool = True,
    ) -> None:
        self.host = host
        self.conn = conn
        self.spec = spec
        self.emit = emit
        self.analyzer = analyzer
        self.on_unhealthy = on_unhealthy
        self.clock = clock
        self.fail_after = max(1, fail_after)
        self.log_flush = log_flush
        self.log_retry = log_retry
        # ``console``: a console shows this rollout (the default vitals need one).
        self.vitals_spec: VitalsSpec | None = vitals_of(spec, enabled=vitals, console=console)
        self._rng = random.Random(host)  # stable jitter per host
        # Chaining the polls due together into one remote command needs a shell that
        # runs `a && b || c; d` (a POSIX sh, or the simulated fleet's): the connection
        # says whether it has one. None: ask the connection.
        self.chain = conn.chains_commands if chain is None else chain
        self._marker = f"@@rolldeck-{secrets.token_hex(4)}:"
        # Chained polls run in a shell kept open on the connection when it offers one
        # (console.transport.ssh_shell): no channel to open and close per poll.
        self._shell: Runner | None = conn.persistent_shell() if self.chain and persist else None
        self._wake = asyncio.Event()  # the chained scheduler: something changed
        self.loop_lag = 0.0  # seconds; the overload guard's measure, from timer wakes
        self._recheck = False  # re-probe health at once (a starved timeout)
        self._rechecked = False  # the last probe was such a re-check

        self._pattern: re.Pattern[str] | None = None
        if spec.logs is not None and spec.logs.error_pattern:
            try:
                self._pattern = re.compile(spec.logs.error_pattern)
            except re.error as e:
                raise InputError(f"bad regex: {e}", field="logs.error_pattern") from None
        if spec.metrics is not None:
            self._requests = parse_selector(spec.metrics.requests, field="metrics.requests")
            self._errors = parse_selector(spec.metrics.errors, field="metrics.errors")
            self._keep_metric_line = line_filter((self._requests, self._errors))

        # Health watch.
        self.tracker: HealthTracker | None = None
        self._watching = asyncio.Event()
        self._watch_gen = 0
        self._episode = False
        self._last_health: tuple[bool, str] | None = None  # journal only the changes

        # Logs: the batch being coalesced, and what is kept for display.
        self.error_lines: deque[str] = deque(maxlen=ERROR_LINES_KEPT)
        self._pending: deque[str] = deque(maxlen=LOG_BATCH_MAX)
        self._pending_lines = 0
        self._pending_errors = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self.lines_total = 0
        self.error_lines_total = 0

        self.vitals: Vitals | None = None
        self._failing: set[str] = set()  # signals in a failure episode (warned once)

    # -- control -------------------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watching.is_set()

    def watch_health(self, on: bool) -> None:
        """Start (with a fresh history) or stop the post-deploy health watch."""
        if on == self._watching.is_set() or self.spec.health is None:
            return
        self._watch_gen += 1
        if on:
            self.tracker = HealthTracker(self.spec.health, self.clock)
            self._episode = False
            self._last_health = None
            self._watching.set()
        else:
            self._watching.clear()
        self._wake.set()

    def set_health(self, health: HealthSpec | None) -> None:
        """Judge with this (rendered) health check from now on, with a fresh history.

        The engine calls this when the host starts rolling back: a version-aware check
        must then judge the version the host goes back to, not the rollout's target.
        The monitor runs commands verbatim, so the engine renders them. None: no check.
        """
        watching = self.watching
        self.watch_health(False)
        self.spec = dataclasses.replace(self.spec, health=health)
        if watching:
            self.watch_health(True)

    async def run(self) -> None:
        """Run every configured signal loop until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                if self.chain:
                    tg.create_task(self._chained_polls())
                    if self.spec.logs is not None:
                        tg.create_task(self._follow_logs())
                    return
                if self.vitals_spec is not None:
                    vs = self.vitals_spec
                    tg.create_task(self._poll("vitals", vs.every, self._sample_vitals))
                if self.spec.metrics is not None:
                    ms = self.spec.metrics
                    tg.create_task(self._poll("metrics", ms.every, self._sample_metrics))
                if self.spec.logs is not None:
                    tg.create_task(self._follow_logs())
                if self.spec.health is not None:
                    tg.create_task(self._watch_loop())
                else:  # nothing may be configured: still run until cancelled
                    tg.create_task(asyncio.Event().wait())
        finally:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            if self._shell is not None:
                await self._shell.close()

    # -- reporting -----------------------------------------------------------------

    def _warn(self, signal: str, message: str) -> None:
        """Report a failing signal once per failure episode."""
        if signal in self._failing:
            return
        self._failing.add(signal)
        log.warning("%s: %s", self.host, message)
        self.emit(Alert(level="warning", rule=f"signal.{signal}", message=message, host=self.host))

    def _recovered(self, signal: str) -> None:
        self._failing.discard(signal)

    # -- polling -------------------------------------------------------------------

    async def _poll(self, signal: str, every: float, sample: Callable[[], Awaitable[None]]) -> None:
        """Call ``sample`` every ``every`` seconds (start-to-start, never overlapping),
        backing off exponentially while it fails, and warning once ``WARN_AFTER``
        consecutive polls failed. Nothing but cancellation escapes."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self._rng.uniform(0.0, every))
        failures = 0
        while True:
            started = loop.time()
            failure: str | None = None
            try:
                await sample()
            except _SampleFailed as e:
                failure = str(e)
            except TransportError as e:
                failure = f"{signal}: unreachable: {e.message}"
            except Exception as e:
                log.debug("%s: %s sample raised", self.host, signal, exc_info=True)
                failure = one_line(f"{signal}: {type(e).__name__}: {e}")
            if failure is None:
                failures = 0
                self._recovered(signal)
                delay = every - (loop.time() - started)
            else:
                failures += 1
                if failures >= WARN_AFTER:
                    self._warn(signal, failure)
                else:
                    log.debug("%s: %s", self.host, failure)
                delay = min(max(MAX_BACKOFF, every), every * 2 ** min(failures, 10))
                delay *= self._rng.uniform(0.8, 1.0)
            await asyncio.sleep(max(0.0, delay))

    async def _sample_vitals(self) -> None:
        await self._sample(self._vitals_part())

    async def _sample_metrics(self) -> None:
        await self._sample(self._metrics_part())

    async def _sample(self, part: _Part) -> None:
        result = await self.conn.run(part.command, timeout=part.timeout, on_line=part.collect)
        part.finish(result)

    def _vitals_part(self) -> _Part:
        assert self.vitals_spec is not None
        command = self.vitals_spec.run or VITALS_COMMAND
        lines: deque[str] = deque(maxlen=VITALS_LINES_MAX)

        def collect(stream: str, line: str) -> None:
            if stream == "stdout":
                lines.append(line)

        def finish(result: RunResult) -> None:
            if not lines and result.stdout_tail:
                lines.extend(result.stdout_tail)
            vitals = parse_vitals(lines)
            if vitals.empty:
                why = f"{_how(result)}" if not result.ok else "no values"
                raise _SampleFailed(one_line(f"vitals: nothing readable from {command!r}: {why}"))
            self.vitals = vitals
            self.emit(
                VitalsSample(
                    host=self.host,
                    load1=vitals.load1,
                    mem_used_pct=vitals.mem_used_pct,
                    disk_used_pct=vitals.disk_used_pct,
                )
            )

        return _Part("vitals", command, self.vitals_spec.timeout, collect, finish)

    def _metrics_part(self) -> _Part:
        ms = self.spec.metrics
        assert ms is not None
        lines: list[str] = []
        cut = False
        keep = self._keep_metric_line

        def collect(stream: str, line: str) -> None:
            nonlocal cut
            if stream != "stdout" or not keep(line):
                return
            if len(lines) < METRICS_LINES_MAX:
                lines.append(line)
            else:
                cut = True

        def finish(result: RunResult) -> None:
            if not result.ok:
                detail = result.first_line
                raise _SampleFailed(
                    one_line(
                        f"metrics: {ms.run!r} {_how(result)}" + (f": {detail}" if detail else "")
                    )
                )
            if cut:
                self._warn("metrics.size", f"metrics: output cut at {METRICS_LINES_MAX} lines")
            try:
                reading = read_counters("\n".join(lines) + "\n", self._requests, self._errors)
            except MetricsParseError as e:
                raise _SampleFailed(one_line(f"metrics: {e}")) from None
            missing = [
                sel.text
                for sel, value in (
                    (self._requests, reading.requests),
                    (self._errors, reading.errors),
                )
                if value is None
            ]
            if missing:
                self._warn(
                    "metrics.missing",
                    f"metrics: no series matches {' or '.join(missing)} in the output of "
                    f"{ms.run!r}",
                )
                return  # a spec problem, warned at once; the command works: keep polling
            self._recovered("metrics.missing")
            assert reading.requests is not None and reading.errors is not None
            self.analyzer.observe_counters(
                self.host, reading.requests, reading.errors, self.clock()
            )

        return _Part("metrics", command=ms.run, timeout=ms.timeout, collect=collect, finish=finish)

    # -- chained polls ---------------------------------------------------------------

    async def _chained_polls(self) -> None:
        """Health, vitals and metrics polls with the ones due together in one command.

        An exec channel costs about a millisecond of CPU on each side, and at 1,000
        hosts the polls, not their output, are most of the console's work. The most
        frequent active signal sets the ticks; each other signal's next poll is
        snapped to the nearest tick, so a host runs one command per tick. Semantics
        per signal are those of the separate loops: own timeout, backoff, warnings,
        and the health watch's generations.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        sched: dict[str, _Due] = {}
        if self.vitals_spec is not None:
            every = self.vitals_spec.every
            sched["vitals"] = _Due.at(every, now + self._rng.uniform(0.0, every))
        if self.spec.metrics is not None:
            sched["metrics"] = _Due.at(self.spec.metrics.every, 0.0)
            self._reschedule(
                sched, "metrics", now + self._rng.uniform(0.0, self.spec.metrics.every)
            )
        health_gen = -1
        async with asyncio.TaskGroup() as tg:
            while True:
                self._wake.clear()
                now = loop.time()
                hs = self.spec.health
                if hs is not None and self._watching.is_set():
                    if health_gen != self._watch_gen:
                        # A batch's hosts turn healthy together: without a random offset
                        # their probes would stay in lockstep.
                        health_gen = self._watch_gen
                        busy = "health" in sched and sched["health"].busy
                        pace = hs.watch_interval  # the watch's own pace, not gating's
                        sched["health"] = _Due.at(pace, now + self._rng.uniform(0, pace))
                        sched["health"].busy = busy
                elif "health" in sched and not sched["health"].busy:
                    del sched["health"]
                    health_gen = -1
                idle = [d.due for d in sched.values() if not d.busy]
                if idle and min(idle) <= now + 0.01:
                    due = [name for name, d in sched.items() if not d.busy and d.due <= now + 0.05]
                    parts = [self._part(name, sched) for name in _ORDER if name in due]
                    for part in parts:
                        sched[part.signal].busy = True
                    tg.create_task(self._run_parts(parts))
                    continue
                target = min(idle) if idle else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if target is None else target - now):
                        await self._wake.wait()
                if target is not None and not self._wake.is_set():
                    self._observe_lag(loop.time() - target)

    def _observe_lag(self, late: float) -> None:
        """Fold in how late a timer fired: the event loop's lag, smoothed so that
        one stall does not stretch the polls."""
        self.loop_lag += LAG_SMOOTHING * (max(0.0, late) - self.loop_lag)

    def _stretch(self, every: float) -> float:
        """How much longer than ``every`` the next poll waits: with the loop lagging,
        fewer polls finish on time than are started, so poll less rather than let
        probes time out."""
        if self.loop_lag < STARVED_LAG:
            return 1.0
        return min(MAX_STRETCH, 1.0 + self.loop_lag / every)

    def _reschedule(self, sched: dict[str, _Due], name: str, due: float) -> None:
        """Set ``name``'s next poll, snapped to the nearest tick of the most frequent
        signal (the first of equals), so that it rides in that signal's command."""
        entry = sched[name]
        base = min(sched.values(), key=lambda d: d.every)
        entry.ideal = due
        if base is not entry:
            now = asyncio.get_running_loop().time()
            due = base.due + round((due - base.due) / base.every) * base.every
            if due <= now:
                due += math.ceil((now - due) / base.every + 1e-9) * base.every
        entry.due = due

    def _part(self, name: str, sched: dict[str, _Due]) -> _Part:
        """The signal's part, wrapped to report its outcome to the scheduler."""
        loop = asyncio.get_running_loop()
        entry = sched[name]
        part_gen = self._watch_gen
        if name == "health":
            part = self._health_part(part_gen)
        else:
            part = self._vitals_part() if name == "vitals" else self._metrics_part()
        started = entry.ideal
        finish = part.finish

        def done(result: RunResult) -> None:
            failure: str | None = None
            try:
                finish(result)
            except _SampleFailed as e:
                failure = str(e)
            except Exception as e:
                log.debug("%s: %s sample raised", self.host, name, exc_info=True)
                failure = one_line(f"{name}: {type(e).__name__}: {e}")
            self._chained_outcome(sched, name, failure, started, loop.time())

        def failed(exc: Exception) -> None:
            if name == "health":
                self._health_result(part_gen, False, probe_error(self.host, exc))
                failure = None  # judged, not backed off: the watch keeps its pace
            elif isinstance(exc, TransportError):
                failure = f"{name}: unreachable: {exc.message}"
            else:
                log.debug("%s: %s sample raised", self.host, name, exc_info=exc)
                failure = one_line(f"{name}: {type(exc).__name__}: {exc}")
            self._chained_outcome(sched, name, failure, started, loop.time())

        part.finish = done
        part.fail = failed
        return part

    def _chained_outcome(
        self, sched: dict[str, _Due], name: str, failure: str | None, due: float, now: float
    ) -> None:
        entry = sched.get(name)
        if entry is None:
            return
        entry.busy = False
        self._wake.set()
        if failure is None:
            entry.failures = 0
            if name != "health":
                self._recovered(name)
            every = entry.every * self._stretch(entry.every)
            nxt = due + every
            if nxt <= now:  # late (a slow command, a starved loop): no catching up
                nxt = now + every
            if name == "health" and self._recheck:
                self._recheck = False
                nxt = now  # a timeout while the console was starved: probe again now
        else:
            entry.failures += 1
            if entry.failures >= WARN_AFTER:
                self._warn(name, failure)
            else:
                log.debug("%s: %s", self.host, failure)
            delay = min(max(MAX_BACKOFF, entry.every), entry.every * 2 ** min(entry.failures, 10))
            nxt = now + delay * self._rng.uniform(0.8, 1.0)
        if name == "health":
            entry.due = entry.ideal = nxt
        else:
            self._reschedule(sched, name, nxt)

    def _health_part(self, gen: int) -> _Part:
        hs = self.spec.health
        assert hs is not None

        def finish(result: RunResult) -> None:
            if result.status == "timeout" and self.loop_lag >= STARVED_LAG and not self._rechecked:
                # The console, not the host, may be why the answer came late: not a
                # failure until a re-check (at once) times out too.
                log.debug(
                    "%s: health timed out with the event loop %.1fs late", self.host, self.loop_lag
                )
                self._rechecked = self._recheck = True
                return
            self._rechecked = False
            self._health_result(gen, *health_verdict(result, hs))

        return _Part("health", hs.run, hs.timeout, lambda stream, line: None, finish)

    def _health_result(self, gen: int, ok: bool, detail: str) -> None:
        if gen == self._watch_gen and self.tracker is not None:
            try:
                self._judge(ok, detail)
            except Exception:
                log.exception("%s: health watch callback failed", self.host)

    async def _run_parts(self, parts: list[_Part]) -> None:
        """Run ``parts`` chained, each to an outcome: the ones after a part that timed
        out or ended the shell run again in a command of their own."""
        while parts:
            group = [parts[0]]
            if _chainable(parts[0].command):
                for part in parts[1:]:
                    if not _chainable(part.command):
                        break
                    group.append(part)
            finished = await self._run_chain(group)
            parts = parts[finished:]

    async def _run_chain(self, parts: list[_Part]) -> int:
        """Run ``parts`` as one command; returns how many got their outcome.

        Every part but the last is followed by a marker line carrying its status
        (``$?`` where the shell has it); the last part's result is the command's own,
        exit code and signal included. Each part's timeout counts from the end of the
        one before: on expiry the command is stopped (the transport kills it) and that
        part has timed out.
        """
        loop = asyncio.get_running_loop()
        if len(parts) == 1:
            part = parts[0]
            try:
                result = await self._run_command(
                    part.command, timeout=part.timeout, on_line=part.collect
                )
            except Exception as e:
                self._fail_parts(parts, e)
            else:
                part.finish(result)
            return 1
        marker = self._marker
        command = "; ".join(
            f'{p.command} && echo {marker}ok || echo "{marker}failed $?"' for p in parts[:-1]
        )
        command += f"; {parts[-1].command}"
        sinks = [OutputSink(TAIL_LINES, p.collect) for p in parts]
        index = 0
        part_started = loop.time()

        def on_line(stream: str, line: str) -> None:
            nonlocal index, part_started
            if index < len(parts) - 1 and stream == "stdout" and line.startswith(marker):
                code = _marker_status(line[len(marker) :])
                status = "ok" if code == 0 else "failed"
                now = loop.time()
                result = sinks[index].result(status, code, now - part_started)
                index += 1
                part_started = now
                parts[index - 1].finish(result)
            else:
                sinks[index].emit(stream, line)

        total = sum(p.timeout for p in parts) + 1.0  # the parts' own deadlines come first
        task = asyncio.create_task(self._run_command(command, timeout=total, on_line=on_line))
        try:
            while not task.done():
                remaining = part_started + parts[index].timeout - loop.time()
                if remaining <= 0:
                    task.cancel()
                    await asyncio.wait({task})
                    took = loop.time() - part_started
                    parts[index].finish(sinks[index].result("timeout", None, took))
                    return index + 1
                await asyncio.wait({task}, timeout=remaining)
                if not task.done():
                    self._observe_lag(loop.time() - part_started - parts[index].timeout)
        finally:
            if not task.done():  # we were cancelled: the transport stops the command
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():
            raise asyncio.CancelledError
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, Exception):
                raise exc
            self._fail_parts(parts[index:], exc)
            return len(parts)
        whole = task.result()
        last = sinks[index].result(
            whole.status, whole.exit_code, loop.time() - part_started, whole.signal
        )
        parts[index].finish(last)
        return index + 1

    async def _run_command(
        self, command: str, *, timeout: float, on_line: LineCallback | None
    ) -> RunResult:
        runner = self._shell or self.conn
        return await runner.run(command, timeout=timeout, on_line=on_line)

    async def probe(self, health: HealthSpec) -> tuple[bool, str]:
        """One health probe for the engine's gating, run where the watch runs it: in
        this monitor's shell when it has one (no exec channel of its own; the shell it
        opens then serves the post-deploy watch), else over the connection. Same
        contract as :func:`console.signals.probe.probe_health`: only cancellation
        raises. A probe while the shell is busy runs on an exec of its own."""
        try:
            result = await self._run_command(health.run, timeout=health.timeout, on_line=None)
        except Exception as e:
            return False, probe_error(self.host, e)
        return health_verdict(result, health)

    def _fail_parts(self, parts: list[_Part], exc: Exception) -> None:
        """Parts whose command could not run: each fails as its own loop would."""
        for part in parts:
            assert part.fail is not None
            part.fail(exc)

    # -- logs ----------------------------------------------------------------------

    async def _follow_logs(self) -> None:
        """Follow the log command; restart it (with backoff) whenever it ends."""
        logs = self.spec.logs
        assert logs is not None
        failures = 0
        while True:
            self.analyzer.observe_log(self.host, 0, 0, self.clock())
            seen_before = self.lines_total
            reason = "the log command ended"
            stream = self.conn.stream(logs.run)
            try:
                async for line in stream:
                    self._on_log_line(line)
            except TransportError as e:
                reason = f"unreachable: {e.message}"
            except Exception as e:
                log.debug("%s: log stream raised", self.host, exc_info=True)
                reason = f"{type(e).__name__}: {e}"
            finally:
                await _aclose(stream)
                self._flush()
            if self.lines_total > seen_before:
                failures = 0
                self._recovered("logs")
            failures += 1
            self._warn("logs", one_line(f"logs: {reason}; following again"))
            delay = min(MAX_BACKOFF, self.log_retry * 2 ** min(failures - 1, 10))
            await asyncio.sleep(delay * self._rng.uniform(0.8, 1.0))

    def _on_log_line(self, line: str) -> None:
        # Hot path: one call per line of every host.
        self.lines_total += 1
        self._pending_lines += 1
        pattern = self._pattern
        error = pattern is not None and pattern.search(line) is not None
        if len(line) > LOG_LINE_MAX:
            line = line[: LOG_LINE_MAX - 1] + "…"
        self._pending.append(line)
        if error:
            self._pending_errors += 1
            self.error_lines_total += 1
            self.error_lines.append(line)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.log_flush, self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending_lines:
            return
        lines, errors = self._pending_lines, self._pending_errors
        batch = tuple(self._pending)
        self._pending.clear()
        self._pending_lines = self._pending_errors = 0
        self.analyzer.observe_log(self.host, lines, errors, self.clock())
        self.emit(LogLines(host=self.host, lines=batch, errors=errors))

    # -- health watch --------------------------------------------------------------

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_gen = -1
        while True:
            await self._watching.wait()
            hs = self.spec.health  # read each time: set_health may replace it
            if hs is None:
                self._watching.clear()
                continue
            gen = self._watch_gen
            if gen != last_gen:
                # A batch's hosts turn healthy together: without a random offset their
                # probes would stay in lockstep, 1,000 channels opened at once.
                last_gen = gen
                await asyncio.sleep(self._rng.uniform(0.0, hs.watch_interval))
                if gen != self._watch_gen:
                    continue
            started = loop.time()
            ok, detail = await probe_health(self.conn, hs)
            if gen == self._watch_gen and self.tracker is not None:
                try:
                    self._judge(ok, detail)
                except Exception:
                    log.exception("%s: health watch callback failed", self.host)
            await asyncio.sleep(max(0.0, hs.watch_interval - (loop.time() - started)))

    def _judge(self, ok: bool, detail: str) -> None:
        tracker, hs = self.tracker, self.spec.health
        assert tracker is not None and hs is not None
        status = tracker.record(ok, self.clock())
        changed = (ok, status) != self._last_health
        self._last_health = (ok, status)
        self.emit(
            HealthSample(
                host=self.host,
                ok=ok,
                detail=detail,
                consecutive=tracker.consecutive,
                status=status,
                changed=changed,
            )
        )
        if not ok and not self._episode and tracker.consecutive_failed >= self.fail_after:
            self._episode = True
            why = detail if status != "flapping" else f"flapping: {detail}"
            self.on_unhealthy(self.host, why)
        elif ok and status == "healthy" and tracker.consecutive_ok >= hs.healthy_after:
            self._episode = False


async def _aclose(stream: AsyncGenerator[str, None]) -> None:
    """Close a stream so the transport stops the remote process."""
    try:
        await stream.aclose()
    except Exception:
        log.debug("closing a log stream raised", exc_info=True)
