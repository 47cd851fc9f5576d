"""What happens on one host: read its version, run the steps, gate on health.

Used by the engine for the forward rollout (:meth:`HostWork.deploy`) and for rollback
(:meth:`HostWork.rollback`). Each remote command runs under its step's timeout; the
transport stops the remote process on timeout and on cancellation (abort), and the
host's record says exactly where it was when that happened.

Templates name the version the host should run *now*: ``{version}`` is the rollout's
target while deploying and the host's previous version while rolling back (so a
version-aware health check judges what the host goes back to); ``{new_version}`` is
always the target. Events carry raw text: the emitter masks secrets in all of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from console.become import Become, become_for, command_for, refusal
from console.core import events as ev
from console.core.clock import SYSTEM, Clock
from console.core.errors import InputError
from console.core.events import HostState
from console.core.text import shorten
from console.engine.control import Control, HostRecord
from console.engine.emitter import Emitter
from console.engine.leases import LeaseError, LeaseRefused, Leases
from console.signals.probe import Probe as Probe  # the engine takes one
from console.spec import HealthSpec, RolloutSpec, Step
from console.templating import TemplateError, build_context, render
from console.transport.base import (
    Connection,
    HostUnresponsive,
    LineCallback,
    RunResult,
    Transport,
    TransportError,
)
from inventory.model import Host


@runtime_checkable
class BecomeRunner(Protocol):
    """A connection that runs a command through sudo itself (SSH: the password on
    stdin, the stop through sudo); others get the wrapped command (sudo -n only)."""

    async def run_become(
        self,
        command: str,
        become: Become,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
    ) -> RunResult: ...


class TrafficSwitch(Protocol):
    """The load balancer around a host's journey (console/engine/traffic.py): drain
    before its steps and ready once healthy (both raise HostFailure), and a word when a
    failed host stays drained."""

    async def drain(self, rec: HostRecord) -> None: ...
    async def ready(self, rec: HostRecord) -> None: ...
    def kept_out(self, rec: HostRecord, why: str) -> None: ...


VERSION_TIMEOUT = 30.0
DETAIL_MAX = 200


def signals_spec(
    spec: RolloutSpec,
    host: Host,
    previous_version: str | None = None,
    *,
    rollback: bool = False,
) -> RolloutSpec:
    """The spec with this host's health, logs, metrics and vitals commands rendered:
    what a monitor (which runs commands verbatim) needs; with ``rollback``, for a host
    going back to ``previous_version``. Raises TemplateError."""
    context = build_context(spec, host, previous_version, rollback=rollback)

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
    return shorten(text, DETAIL_MAX, squash=True)


def why(result: RunResult, what: str) -> str:
    """One line on how a command failed, for a host's detail and preflight's checks."""
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
        clock: Clock = SYSTEM,
    ) -> None:
        self.spec = spec
        self.clock = clock  # health gating's deadline and pace
        self.transport = transport
        self.emitter = emitter
        self.control = control
        self.probe = probe
        self.exit_when_frozen = False  # headless: frozen hosts end their task
        # Called with a host that just passed health gating (monitor hand-off).
        self.on_healthy: Callable[[HostRecord], None] = lambda rec: None
        self.leases: Leases | None = None  # the host's lease, taken before its first step
        self.traffic: TrafficSwitch | None = None  # load_balancer: drained while it changes

    # -- helpers ------------------------------------------------------------------

    def set_state(
        self, rec: HostRecord, state: HostState, step: str | None = None, detail: str = ""
    ) -> None:
        rec.state = state
        if step is not None:
            rec.step = step
        # The event is masked by the emitter; the record is read directly (engine.recs,
        # summaries), so it keeps the masked text too.
        rec.detail = self.emitter.redactor.redact(detail)
        self.emitter.emit(
            ev.HostStateChanged(host=rec.name, state=state, step=rec.step, detail=detail)
        )

    def render(
        self, rec: HostRecord, template: str, *, raw: bool = False, rollback: bool = False
    ) -> str:
        """Fill ``template`` for ``rec``; rolling back, ``{version}`` is its previous one."""
        context = build_context(self.spec, rec.host, rec.previous_version, rollback=rollback)
        return render(template, context, raw=raw)

    def health_for(self, rec: HostRecord, *, rollback: bool) -> HealthSpec | None:
        """The health check rendered for ``rec`` (the monitor's watch of a host going
        back judges its previous version with this); None when there is no check or it
        cannot be filled (the rollback's own gating then fails and says why)."""
        health = self.spec.health
        if health is None:
            return None
        try:
            run = self.render(rec, health.run, rollback=rollback)
        except TemplateError:
            return None
        return dataclasses.replace(health, run=run)

    def become(self, rec: HostRecord, step: Step | None) -> Become | None:
        """How ``step`` (None: the version read) runs on ``rec``'s host (become.py)."""
        try:
            return become_for(self.spec, rec.host, step)
        except InputError as exc:  # TemplateError too: become_password not filled
            what = step.name if step is not None else "current_version"
            raise HostFailure(f"become for {what}: {exc.message}") from exc

    async def remote(
        self,
        rec: HostRecord,
        conn: Connection,
        command: str,
        become: Become | None,
        *,
        timeout: float,
        on_line: LineCallback | None = None,
    ) -> RunResult:
        """Run ``command`` on ``conn``, as the login user or under ``become``."""
        return await run_as(conn, rec.name, command, become, timeout=timeout, on_line=on_line)

    def refused(
        self, rec: HostRecord, result: RunResult, become: Become | None, what: str
    ) -> str | None:
        """The host's detail when sudo, not the command, refused ``what``."""
        return sudo_refusal(rec.host, result, become, what)

    async def connect(self, rec: HostRecord) -> Connection:
        try:
            return await self.transport.connect(rec.host)
        except TransportError as exc:
            raise HostFailure(_short(f"unreachable: {exc.message}")) from exc

    async def take_lease(self, rec: HostRecord, conn: Connection) -> None:
        """The host's lease before anything changes on it (HostFailure when held)."""
        if self.leases is None:
            return
        try:
            await self.leases.acquire(rec.host, conn)
        except LeaseRefused as exc:
            raise HostFailure(_short(exc.detail)) from exc
        except LeaseError as exc:
            raise HostFailure(_short(f"lease: {exc}")) from exc
        except TransportError as exc:
            raise HostFailure(_short(f"unreachable: {exc.message}")) from exc

    async def release_lease(self, rec: HostRecord) -> None:
        if self.leases is not None:
            await self.leases.release(rec.host)

    async def previous_version(self, rec: HostRecord, conn: Connection) -> str | None:
        """The host's version before its first step, journaled: the one the preflight
        read while taking the host's lease when that lease has been held since (no
        other rolldeck can have changed the host: no exec), else read now. A host
        without a lease (``rolldeck_lease: none``) is read again: nothing kept another
        tool from changing it since the preflight."""
        seen = None if self.leases is None else self.leases.version_under_lease(rec.host)
        if seen is None or not self.spec.current_version:
            return await self.read_version(rec, conn, "previous")
        self.emitter.emit(ev.VersionRead(host=rec.name, version=seen, role="previous"))
        return seen

    async def read_version(
        self, rec: HostRecord, conn: Connection, role: str, *, release: bool = False
    ) -> str | None:
        """Run ``current_version`` and journal it; None when the spec has no such command.
        ``release``: the host's lease is released in the same exec, just before the read,
        when the host allows (a ``shell`` lease, the read as the login user; leases.py);
        else the caller releases it."""
        if not self.spec.current_version:
            self.emitter.emit(ev.VersionRead(host=rec.name, version=None, role=role))
            return None
        become = self.become(rec, None)
        try:
            command = self.render(rec, self.spec.current_version)
            result = None
            if release and become is None and self.leases is not None:
                result = await self.leases.release_then(rec.host, conn, command, VERSION_TIMEOUT)
            if result is None:
                result = await self.remote(rec, conn, command, become, timeout=VERSION_TIMEOUT)
        except TemplateError as exc:
            raise HostFailure(_short(f"current_version: {exc}")) from exc
        except LeaseError as exc:  # the folded exec's output could not be split
            raise HostFailure(_short(f"the {role} version read: {exc}")) from exc
        except HostUnresponsive as exc:  # a frozen host: what was awaited, for how long
            raise HostFailure(_short(f"{exc.message} for the {role} version read")) from exc
        except TransportError as exc:
            raise HostFailure(_short(f"unreachable: {exc.message}")) from exc
        if not result.ok or not result.first_line:
            refused = self.refused(rec, result, become, f"the {role} version read")
            raise HostFailure(
                refused or why(result, "current_version")
                if not result.ok
                else "current_version printed nothing"
            )
        version = result.first_line
        self.emitter.emit(ev.VersionRead(host=rec.name, version=version, role=role))
        return version

    async def run_step(
        self, rec: HostRecord, conn: Connection, step: Step, *, rollback: bool = False
    ) -> RunResult:
        """Run one step, streaming its output; raise HostFailure unless it exits 0."""
        try:
            command = self.render(rec, step.run, raw=step.raw, rollback=rollback)
        except TemplateError as exc:
            raise HostFailure(_short(f"{step.name}: {exc}")) from exc
        become = self.become(rec, step)
        rec.in_step = step.name
        if not rollback:
            rec.changed = True
        self.emitter.emit(
            ev.StepStarted(host=rec.name, step=step.name, command=command, rollback=rollback)
        )
        journal = self.emitter.journal
        if step.once and journal is not None:
            # A once step's start must be on disk before it can run: a resume then
            # knows it may have run, and never runs it twice.
            await journal.flush()
        started = self.clock.monotonic()
        emitter = self.emitter

        def on_line(stream: str, line: str) -> None:
            emitter.line(rec.name, step.name, stream, line)

        status: str = "error"
        code: int | None = None
        tail: tuple[str, ...] = ()
        try:
            result = await self.remote(
                rec, conn, command, become, timeout=step.timeout, on_line=on_line
            )
            status, code = result.status, result.exit_code
            tail = (*result.stdout_tail, *result.stderr_tail)
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except HostUnresponsive as exc:  # a frozen host: what was awaited, for how long
            raise HostFailure(_short(f"{exc.message} for step {step.name}")) from exc
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
                    duration=self.clock.monotonic() - started,
                    output_tail=tail,
                    rollback=rollback,
                )
            )
        if not result.ok:
            refused = self.refused(rec, result, become, f"step {step.name}")
            raise HostFailure(refused or why(result, step.name))
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

    async def gate_health(
        self, rec: HostRecord, conn: Connection, *, rollback: bool = False
    ) -> str:
        """``healthy_after`` consecutive passes before ``deadline``; the first probe runs
        at once. Returns the last detail; raises HostFailure when the deadline passes.
        During rollback the check judges the version the host went back to."""
        health = self.spec.health
        if health is None:
            return "no health check in the spec"
        try:
            run = self.render(rec, health.run, rollback=rollback)
            rendered = dataclasses.replace(health, run=run)
        except TemplateError as exc:
            raise HostFailure(_short(f"health: {exc}")) from exc
        rec.gating = True
        cancelled = False
        try:
            deadline = self.clock.monotonic() + health.deadline
            passes = fails = 0
            while True:
                ok, detail = await self.probe(conn, rendered)
                passes, fails = (passes + 1, 0) if ok else (0, fails + 1)
                self.emitter.emit(
                    ev.HealthSample(
                        host=rec.name,
                        ok=ok,
                        detail=detail,
                        consecutive=passes if ok else fails,
                    )
                )
                if passes >= health.healthy_after:
                    return detail
                left = deadline - self.clock.monotonic()
                if left < health.every:
                    raise HostFailure(
                        _short(
                            f"health gating: {passes}/{health.healthy_after} passes in a row "
                            f"before the {health.deadline:g}s deadline; last: {detail}"
                        )
                    )
                await self.clock.sleep(health.every)
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
            await self.take_lease(rec, conn)
            if not rec.previous_read:
                rec.previous_version = await self.previous_version(rec, conn)
                rec.previous_read = True
            if self.traffic is not None:
                await self.traffic.drain(rec)
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
            if self.traffic is not None:  # ready while the lease is still held
                await self.traffic.ready(rec)
            if self.spec.current_version:  # the lease's release rides on it (leases.py)
                await self.read_version(rec, conn, "new", release=True)
        except HostFailure as exc:
            self.set_state(rec, HostState.FAILED, detail=exc.detail)
            if self.traffic is not None:
                self.traffic.kept_out(rec, exc.detail)
            await self.release_lease(rec)
            return False
        except asyncio.CancelledError:
            self._interrupted(rec)
            if self.traffic is not None:  # half changed: kept out of traffic
                self.traffic.kept_out(rec, rec.detail)
            raise
        self.set_state(rec, HostState.HEALTHY, detail=detail)
        self.on_healthy(rec)
        await self.release_lease(rec)
        return True

    async def rollback(self, rec: HostRecord) -> bool | None:
        """Back to the recorded previous version: True rolled back, False failed,
        None stopped by abort while frozen."""
        self.set_state(rec, HostState.ROLLING_BACK, detail=f"to {rec.previous_version}")
        try:
            conn = await self.connect(rec)
            await self.take_lease(rec, conn)
            if self.traffic is not None:
                await self.traffic.drain(rec)
            for step in self.spec.rollback.steps:
                if not await self.hold_if_frozen(rec, rollback=True):
                    return None
                rec.step = step.name
                await self.run_step(rec, conn, step, rollback=True)
            await self.gate_health(rec, conn, rollback=True)
            if self.spec.current_version and rec.previous_version is not None:
                now = await self.read_version(rec, conn, "current")
                if now != rec.previous_version:
                    raise HostFailure(
                        f"version after rollback is {now}, expected {rec.previous_version}"
                    )
            if self.traffic is not None:
                await self.traffic.ready(rec)
        except HostFailure as exc:
            self.set_state(rec, HostState.ROLLBACK_FAILED, detail=exc.detail)
            if self.traffic is not None:
                self.traffic.kept_out(rec, exc.detail)
            await self.release_lease(rec)
            return False
        except asyncio.CancelledError:
            self._interrupted(rec)
            if self.traffic is not None:  # half changed: kept out of traffic
                self.traffic.kept_out(rec, rec.detail)
            raise
        self.set_state(rec, HostState.ROLLED_BACK, detail=f"on {rec.previous_version}")
        await self.release_lease(rec)
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


async def run_as(
    conn: Connection,
    name: str,
    command: str,
    become: Become | None,
    *,
    timeout: float,
    on_line: LineCallback | None = None,
) -> RunResult:
    """Run ``command`` on host ``name``'s ``conn``, as the login user or under
    ``become`` (preflight and a host's deploy share it: both run as the spec says)."""
    if become is None:
        return await conn.run(command, timeout=timeout, on_line=on_line)
    if isinstance(conn, BecomeRunner):
        return await conn.run_become(command, become, timeout=timeout, on_line=on_line)
    if become.password is not None:
        raise HostFailure(
            f"become with a password needs an SSH host; {name} is not one "
            "(use a NOPASSWD sudoers rule)"
        )
    wrapped = command_for(command, become, report_pid=False)
    return await conn.run(wrapped, timeout=timeout, on_line=on_line)


def sudo_refusal(host: Host, result: RunResult, become: Become | None, what: str) -> str | None:
    """The host's detail when sudo, not the command, refused ``what``."""
    if become is None or result.ok or result.status == "timeout":
        return None
    lines = (*result.stderr_tail, *result.stdout_tail)
    return refusal(lines, result.exit_code, host=host, become=become, what=what)
