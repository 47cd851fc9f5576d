"""What happens on one host: read its version, run the steps, gate on health.

Used by the engine for the forward rollout (:meth:`HostWork.deploy`) and for rollback
(:meth:`HostWork.rollback`). Each remote command runs under its step's timeout; the
transport stops the remote process on timeout and on cancellation (abort), and the
host's record says exactly where it was when that happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from console.core import events as ev
from console.core.events import HostState
from console.engine.control import Control, HostRecord
from console.engine.emitter import Emitter
from console.spec import HealthSpec, RolloutSpec, Step
from console.templating import TemplateError, build_context, render
from console.transport.base import Connection, RunResult, Transport, TransportError
from inventory.model import Host

Probe = Callable[[Connection, HealthSpec], Awaitable[tuple[bool, str]]]
VERSION_TIMEOUT = 30.0
DETAIL_MAX = 200


def signals_spec(spec: RolloutSpec, host: Host) -> RolloutSpec:
    """The spec with this host's health, logs, metrics and vitals commands rendered:
    what a monitor (which runs commands verbatim) needs. Raises TemplateError."""
    context = build_context(spec, host, None)

    def fill(part: Any) -> Any:
        if part is None or getattr(part, "run", None) is None:
            return part
        return dataclasses.replace(part, run=render(part.run, context))

    return dataclasses.replace(
        spec,
        health=fill(spec.health),
        logs=fill(spec.logs),
        metrics=fill(spec.metrics),
        vitals=fill(spec.vitals),
    )


class HostFailure(Exception):
    """A host failed; ``detail`` is what the operator sees."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def _why(result: RunResult, what: str) -> str:
    if result.status == "timeout":
        return f"timeout in {what}"
    first = result.first_line
    code = result.exit_code if result.exit_code is not None else result.signal
    return _short(f"exit {code} in {what}" + (f": {first}" if first else ""))


class HostWork:
    def __init__(
        self,
        spec: RolloutSpec,
        transport: Transport,
        emitter: Emitter,
        control: Control,
        probe: Probe,
        redact: Callable[[str], str],
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.emitter = emitter
        self.control = control
        self.probe = probe
        self.redact = redact
        self.exit_when_frozen = False  # headless: frozen hosts end their task
        # Called with a host that just passed health gating (monitor hand-off).
        self.on_healthy: Callable[[HostRecord], None] = lambda rec: None

    # -- helpers ------------------------------------------------------------------

    def set_state(
        self, rec: HostRecord, state: HostState, step: str | None = None, detail: str = ""
    ) -> None:
        rec.state = state
        if step is not None:
            rec.step = step
        rec.detail = detail = self.redact(detail)  # details quote command output
        self.emitter.emit(
            ev.HostStateChanged(host=rec.name, state=state, step=rec.step, detail=detail)
        )

    def render(self, rec: HostRecord, template: str, *, raw: bool = False) -> str:
        context = build_context(self.spec, rec.host, rec.previous_version)
        return render(template, context, raw=raw)

    async def connect(self, rec: HostRecord) -> Connection:
        try:
            return await self.transport.connect(rec.host)
        except TransportError as exc:
            raise HostFailure(_short(f"unreachable: {exc.message}")) from exc

    async def read_version(self, rec: HostRecord, conn: Connection, role: str) -> str | None:
        """Run ``current_version`` and journal it; None when the spec has no such command."""
        if not self.spec.current_version:
            self.emitter.emit(ev.VersionRead(host=rec.name, version=None, role=role))
            return None
        try:
            command = self.render(rec, self.spec.current_version)
            result = await conn.run(command, timeout=VERSION_TIMEOUT)
        except TemplateError as exc:
            raise HostFailure(_short(f"current_version: {exc}")) from exc
        except TransportError as exc:
            raise HostFailure(_short(f"unreachable: {exc.message}")) from exc
        if not result.ok or not result.first_line:
            raise HostFailure(
                _why(result, "current_version")
                if not result.ok
                else "current_version printed nothing"
            )
        version = self.redact(result.first_line)
        self.emitter.emit(ev.VersionRead(host=rec.name, version=version, role=role))
        return version

    async def run_step(
        self, rec: HostRecord, conn: Connection, step: Step, *, rollback: bool = False
    ) -> RunResult:
        """Run one step, streaming its output; raise HostFailure unless it exits 0."""
        try:
            command = self.render(rec, step.run, raw=step.raw)
        except TemplateError as exc:
            raise HostFailure(_short(f"{step.name}: {exc}")) from exc
        rec.in_step = step.name
        if not rollback:
            rec.changed = True
        self.emitter.emit(
            ev.StepStarted(
                host=rec.name, step=step.name, command=self.redact(command), rollback=rollback
            )
        )
        journal = self.emitter.journal
        if step.once and journal is not None:
            # A once step's start must be on disk before it can run: a resume then
            # knows it may have run, and never runs it twice.
            await journal.flush()
        started = time.monotonic()
        emitter = self.emitter

        def on_line(stream: str, line: str) -> None:
            emitter.line(rec.name, step.name, stream, line)

        status, code, tail = "error", None, ()
        try:
            result = await conn.run(command, timeout=step.timeout, on_line=on_line)
            status, code = result.status, result.exit_code
            tail = (*result.stdout_tail, *result.stderr_tail)
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except TransportError as exc:
            raise HostFailure(_short(f"unreachable during {step.name}: {exc.message}")) from exc
        finally:
            if status != "cancelled":  # a cancelled step stays recorded for _interrupted
                rec.in_step = None
            emitter.flush_output(rec.name)
            emitter.emit(
                ev.StepFinished(
                    host=rec.name,
                    step=step.name,
                    status=status,
                    exit_code=code,
                    duration=time.monotonic() - started,
                    output_tail=tuple(self.redact(line) for line in tail),
                    rollback=rollback,
                )
            )
        if not result.ok:
            raise HostFailure(_why(result, step.name))
        return result

    async def hold_if_frozen(self, rec: HostRecord, *, rollback: bool) -> bool:
        """Wait out a freeze between steps. False: stop here (abort or rollback came)."""
        c = self.control
        if not c.frozen:
            return True
        moving = HostState.ROLLING_BACK if rollback else HostState.RUNNING
        where = f"frozen after {rec.step}" if rec.step else "frozen before its first step"
        self.set_state(rec, HostState.FROZEN, detail=where)
        if self.exit_when_frozen:
            return False  # headless: the run stops here; the host stays FROZEN
        rec.frozen_waiting = True
        try:
            await c.wait_for(
                lambda: (
                    not c.frozen
                    or c.aborted
                    or (c.rollback_requested and not rollback)
                    or self.exit_when_frozen
                )
            )
        finally:
            rec.frozen_waiting = False
        if c.aborted or (c.rollback_requested and not rollback) or self.exit_when_frozen:
            return False
        self.set_state(rec, moving, detail="resumed")
        return True

    async def gate_health(self, rec: HostRecord, conn: Connection) -> str:
        """``healthy_after`` consecutive passes before ``deadline``; the first probe runs
        at once. Returns the last detail; raises HostFailure when the deadline passes."""
        health = self.spec.health
        if health is None:
            return "no health check in the spec"
        try:
            rendered = dataclasses.replace(health, run=self.render(rec, health.run))
        except TemplateError as exc:
            raise HostFailure(_short(f"health: {exc}")) from exc
        rec.gating = True
        cancelled = False
        try:
            deadline = time.monotonic() + health.deadline
            passes = fails = 0
            while True:
                ok, detail = await self.probe(conn, rendered)
                passes, fails = (passes + 1, 0) if ok else (0, fails + 1)
                self.emitter.emit(
                    ev.HealthSample(
                        host=rec.name,
                        ok=ok,
                        detail=self.redact(detail),
                        consecutive=passes if ok else fails,
                    )
                )
                if passes >= health.healthy_after:
                    return detail
                left = deadline - time.monotonic()
                if left < health.every:
                    raise HostFailure(
                        _short(
                            f"health gating: {passes}/{health.healthy_after} passes in a row "
                            f"before the {health.deadline:g}s deadline; last: {detail}"
                        )
                    )
                await asyncio.sleep(health.every)
        except asyncio.CancelledError:
            cancelled = True  # stays recorded for _interrupted
            raise
        finally:
            if not cancelled:
                rec.gating = False

    # -- the two journeys ---------------------------------------------------------

    async def deploy(self, rec: HostRecord) -> bool | None:
        """True: healthy. False: failed (state FAILED set). None: stopped between steps
        by a freeze that ended in abort or rollback."""
        rec.attempts += 1
        rec.retry = False
        self.set_state(rec, HostState.RUNNING, detail="retry" if rec.attempts > 1 else "")
        try:
            conn = await self.connect(rec)
            if not rec.previous_read:
                rec.previous_version = await self.read_version(rec, conn, "previous")
                rec.previous_read = True
            for step in self.spec.steps:
                if step.once and step.name in rec.once_done:
                    continue  # ran once already (a retry, or a resumed rollout)
                if not await self.hold_if_frozen(rec, rollback=False):
                    return None
                rec.step = step.name
                await self.run_step(rec, conn, step)
                if step.once:
                    rec.once_done.add(step.name)
            self.set_state(rec, HostState.VERIFYING, detail="health gating")
            detail = await self.gate_health(rec, conn)
            if self.spec.current_version:
                await self.read_version(rec, conn, "new")
        except HostFailure as exc:
            self.set_state(rec, HostState.FAILED, detail=exc.detail)
            return False
        except asyncio.CancelledError:
            self._interrupted(rec)
            raise
        self.set_state(rec, HostState.HEALTHY, detail=self.redact(detail))
        self.on_healthy(rec)
        return True

    async def rollback(self, rec: HostRecord) -> bool | None:
        """Back to the recorded previous version: True rolled back, False failed,
        None stopped by abort while frozen."""
        self.set_state(rec, HostState.ROLLING_BACK, detail=f"to {rec.previous_version}")
        try:
            conn = await self.connect(rec)
            for step in self.spec.rollback.steps:
                if not await self.hold_if_frozen(rec, rollback=True):
                    return None
                rec.step = step.name
                await self.run_step(rec, conn, step, rollback=True)
            await self.gate_health(rec, conn)
            if self.spec.current_version and rec.previous_version is not None:
                now = await self.read_version(rec, conn, "current")
                if now != rec.previous_version:
                    raise HostFailure(
                        f"version after rollback is {now}, expected {rec.previous_version}"
                    )
        except HostFailure as exc:
            self.set_state(rec, HostState.ROLLBACK_FAILED, detail=exc.detail)
            return False
        except asyncio.CancelledError:
            self._interrupted(rec)
            raise
        self.set_state(rec, HostState.ROLLED_BACK, detail=f"on {rec.previous_version}")
        return True

    def _interrupted(self, rec: HostRecord) -> None:
        if rec.in_step:
            where = f"aborted during {rec.in_step}"
        elif rec.gating:
            where = "aborted during health gating"
        elif rec.step:
            where = f"aborted after {rec.step}"
        else:
            where = "aborted before its first step"
        self.set_state(rec, HostState.INTERRUPTED, step=rec.in_step or rec.step, detail=where)
