"""The rollout runner: preflight, batches of host tasks, the failure budget, commands.

One :class:`Engine` runs one rollout inside an ``asyncio.TaskGroup``: a batch is a
nested task group of host tasks (at most ``max_parallel`` at once), the monitors and
the error-rate evaluator run beside it, and everything stops with it. The shape of
the rollout (which batch next, gates between, when to stop, how a rollback runs) is
its :class:`~console.engine.strategy.Strategy` (``Engine(strategy=...)``, rolling by
default), which drives the engine through the moves of a
:class:`~console.engine.strategy.StrategyContext`. Operator commands
(:meth:`Engine.execute`) never block: they flip flags in
:class:`~console.engine.control.Control`, cancel tasks (abort) and wake whoever
waits; every one is journaled as an ``OperatorCommand``, refused ones with the reason.

The phase the header shows is never chosen here: every change is :meth:`Engine.announce`
of what :func:`console.engine.machine.derive` says for the flags now, checked against
the machine's legal transitions. Commands, gates and the preflight see the engine only
as a :class:`~console.engine.context.EngineContext`; a resumed rollout arrives as a
:class:`~console.engine.context.RestorePoint` (:meth:`Engine.restore`). Time (gate
deadlines, the bake, the error-rate loop) comes from the injected ``clock``.

Where the engine stops and how it ends:

* ``exit_when_paused`` (headless): once paused (or frozen) and no host is moving,
  ``run()`` returns ``Outcome.PAUSED``. Otherwise (the console) it waits for resume.
* abort: in-flight commands are cancelled (the transport stops the remote processes),
  each host keeps its state and step (INTERRUPTED where a step was cut); ``ABORTED``,
  or ``FAILED`` when it was ``on_failure: abort`` or an unanswered gate that fired it.
* rollback: no new host starts, moving hosts finish their steps and health gating,
  then the strategy rolls back (rolling: exactly the changed hosts run the rollback
  steps, newest batch first).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any

from console.core import events as ev
from console.core.bus import EventBus, Subscription
from console.core.clock import SYSTEM, Clock
from console.core.commands import Command
from console.core.events import HostState, Outcome, RolloutState
from console.core.secrets import mask_vars
from console.core.state import RolloutView
from console.engine import gates
from console.engine.batches import Batches
from console.engine.canary import CanaryJudge
from console.engine.commands import decide
from console.engine.context import RestorePoint
from console.engine.control import Budget, Control, HostRecord
from console.engine.emitter import Emitter
from console.engine.hostwork import HostWork, Probe, signals_spec
from console.engine.leases import LeaseOptions, Leases
from console.engine.machine import legal, on_failure_action
from console.engine.preflight import run_preflight
from console.engine.strategies import strategy_for
from console.engine.strategy import Strategy, Verdict, aborted
from console.engine.traffic import Traffic
from console.plan import Plan
from console.signals.health import ErrorRateAnalyzer, probe_health
from console.signals.polls import monitor_sample, sampled_monitors
from console.spec import ErrorRateSpec, HealthSpec, RolloutSpec
from console.store.journal import Journal
from console.templating import TemplateError, redactor_for
from console.transport.base import Connection, Transport
from inventory.model import Host

log = logging.getLogger(__name__)
POLICY = "policy"  # the operator name of commands the engine's rules issue


def new_rollout_id(service: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in service)[:40]
    return f"{safe}-{stamp}-{secrets.token_hex(2)}"


class Engine:
    def __init__(
        self,
        spec: RolloutSpec,
        hosts: list[Host],
        plan: Plan,
        transport: Transport,
        *,
        journal: Journal | None,
        operator: str,
        allow_unreachable: bool = False,
        rollout_id: str | None = None,
        exit_when_paused: bool = False,
        inventory_path: str = "",
        monitors: bool = True,
        probe: Probe = probe_health,
        resume: RestorePoint | None = None,
        clock: Clock = SYSTEM,
        strategy: Strategy | None = None,
        leases: LeaseOptions | None = None,
        watched: bool = True,
        balancer: Host | None = None,
    ) -> None:
        self.spec = spec
        self.plan = plan
        self.transport = transport
        self.journal = journal
        self.operator = operator
        self.allow_unreachable = allow_unreachable
        self.rollout_id = rollout_id or new_rollout_id(spec.service)
        self._exit_when_paused = exit_when_paused
        self.inventory_path = inventory_path
        self.preflight_hint = ""  # what a refused preflight suggests (set by the CLI)
        self.bus = EventBus()
        self.clock = clock
        self.strategy: Strategy = strategy or strategy_for(spec)
        # A resumed rollout starts from its journal's picture and appends to it.
        self._first_event: ev.Event | None = None  # resume: instead of RolloutStarted
        self.view = resume.view if resume is not None else RolloutView()
        self._start_batch = 0  # resume: the first batch with work left
        self._gate_first: int | None = None  # resume: a gate to pass before that batch
        self.control = Control(clock)
        self._phase: RolloutState | None = None  # the last one announced
        by_name = {h.name: h for h in hosts}
        missing = [n for n in plan.hosts if n not in by_name]
        if missing:
            raise ValueError(f"planned hosts missing from the host list: {missing}")
        self.recs = {n: HostRecord(by_name[n], i) for i, n in enumerate(plan.hosts)}
        self.budget = Budget(spec.max_failures.allowed(len(self.recs)))
        self.batches = Batches(plan.batches, len(self.recs))
        self._redactor = redactor_for(spec, hosts)
        self._emitter = Emitter(self.bus, self.view, journal)
        if journal is not None:
            journal.on_error = self._journal_failed
        self._emitter.set_redactor(self._redactor)  # masks every event (the one place)
        # The default probe runs in the host's monitor shell once there is one (no
        # exec of its own per probe: _shell_probe); another probe is used as given.
        gating = self._shell_probe if probe is probe_health else probe
        self._work = HostWork(
            spec, transport, self._emitter, self.control, gating, clock=self.control.clock
        )
        self._work.on_healthy = self._on_healthy
        self._work.exit_when_frozen = exit_when_paused
        # The fleet lock and host leases (console/engine/leases.py); None: not taken.
        self._leases: Leases | None = None
        if leases is not None:
            ordered = [self.recs[n].host for n in plan.hosts]
            self._leases = Leases(
                spec, ordered, leases, self.rollout_id, transport, self.emit, self._lease_lost
            )
        self._work.leases = self._leases
        self._traffic: Traffic | None = None
        if spec.load_balancer is not None:  # each host drained while it changes
            lb = balancer or by_name.get(spec.load_balancer.host)
            if lb is None:
                raise ValueError(f"load_balancer.host {spec.load_balancer.host} is not known")
            self._traffic = Traffic(spec, lb, transport, self.emit, self.control.clock)
        self._work.traffic = self.strategy.bind(self._traffic)
        self._use_monitors = monitors
        self._watched = watched  # a console shows it: the spec's default vitals polled
        self._work_conns: dict[str, Connection] = {}  # reachable hosts, from preflight
        self._monitors: dict[str, Any] = {}
        # Prometheus judges: monitors only on hosts in flight, the new cohort and this
        # stable sample of the rest (console/signals/polls.py); None: every host.
        self._sample: frozenset[str] | None = None
        self._background: list[asyncio.Task[Any]] | None = None  # monitors started later
        self._unmonitored: set[str] = set()  # hosts whose monitor could not be built
        self._analyzer = ErrorRateAnalyzer(
            spec.error_rate or ErrorRateSpec(), has_metrics=spec.metrics is not None
        )
        # Prometheus canary analysis (console/engine/canary.py); None: not asked for.
        self.canary: CanaryJudge | None = None
        if spec.analysis is not None and spec.analysis.prometheus_metrics:
            self.canary = CanaryJudge(self, spec.analysis)
        self._tg: asyncio.TaskGroup | None = None
        self._ran = False
        self._bus_closed = False
        self.finished = False
        self.outcome: Outcome | None = None
        # Awaited once the run is over and the journal closed (console/notify waits
        # there, bounded, for its last deliveries); an error in one is logged only.
        self.after_run: list[Callable[[], Awaitable[None]]] = []
        if resume is not None:
            self.restore(resume)

    # -- public API -----------------------------------------------------------------

    def attach(self) -> tuple[RolloutView, Subscription]:
        """A snapshot of the state so far and a subscription to everything after it."""
        sub = self.bus.subscribe()
        if self._bus_closed:
            sub.close()  # the rollout is over: the snapshot is all there is
        return copy.deepcopy(self.view), sub

    @property
    def exit_when_paused(self) -> bool:
        """Once paused and nothing moves, end ``run()`` with PAUSED (headless; the
        console sets it when the operator quits) instead of waiting for resume."""
        return self._exit_when_paused

    @exit_when_paused.setter
    def exit_when_paused(self, value: bool) -> None:
        self._exit_when_paused = value
        self._work.exit_when_frozen = value
        self.control.wake()  # whoever waits for resume re-checks

    def open_connections(self) -> int:
        return self.transport.open_connections

    def notice(self, message: str, host: str | None = None) -> None:
        """Journal a notice (lock broken, key accepted...); held until the start."""
        self._emitter.emit(ev.Notice(message=message, host=host))

    def pause(self, reason: str = "", operator: str | None = None) -> None:
        self._cmd("pause", reason, operator)

    def freeze(self, reason: str = "", operator: str | None = None) -> None:
        self._cmd("freeze", reason, operator)

    def resume(self, reason: str = "", operator: str | None = None) -> None:
        self._cmd("resume", reason, operator)

    def abort(self, reason: str = "", operator: str | None = None) -> None:
        self._cmd("abort", reason, operator)

    def rollback(self, reason: str = "", operator: str | None = None) -> None:
        self._cmd("rollback", reason, operator)

    def continue_(self, reason: str = "", operator: str | None = None) -> None:
        self._cmd("continue", reason, operator)

    def skip(self, host: str, reason: str = "", operator: str | None = None) -> None:
        self._cmd("skip", reason, operator, host=host)

    def retry(self, host: str, reason: str = "", operator: str | None = None) -> None:
        self._cmd("retry", reason, operator, host=host)

    def set_batch_size(
        self, size: int | str, reason: str = "", operator: str | None = None
    ) -> None:
        self._cmd("set_batch_size", reason, operator, size=size)

    def _cmd(self, name: str, reason: str, operator: str | None, **args: Any) -> None:
        self.execute(Command(name, operator or self.operator, reason, args))

    def execute(self, command: Command) -> None:
        """Apply a command now (never blocks); journaled, refused ones with why."""
        if self.finished:
            return
        accepted, detail, effect = decide(self, command)
        self.emit(
            ev.OperatorCommand(
                command=command.name,
                operator=command.operator,
                reason=command.reason,
                args=dict(command.args),
                accepted=accepted,
                detail=detail,
                user=command.user,
                uid=command.uid,
            )
        )
        if accepted and effect is not None:
            effect()
        self.control.wake()

    # -- running --------------------------------------------------------------------

    async def run(self) -> Outcome:
        """Run the rollout to its end; returns how it ended (see the module doc)."""
        if self._ran:
            raise RuntimeError("an Engine runs once")
        self._ran = True
        outcome, reason = Outcome.FAILED, "engine error"
        try:
            if self.journal is not None:
                self.journal.start()
            first = self._first_event or self._started_event()
            self._emitter.open(first)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                background = [tg.create_task(self._emitter.tick_output())]
                if self._leases is not None:
                    background.append(tg.create_task(self._leases.keep(), name="leases"))
                try:
                    outcome, reason = await self._main(background)
                finally:
                    for task in background:
                        task.cancel()
        except asyncio.CancelledError:
            outcome, reason = Outcome.ABORTED, "the rollout task was cancelled"
            self._finish(outcome, reason)
            raise
        except BaseException as exc:
            self._finish(Outcome.FAILED, f"engine error: {type(exc).__name__}: {exc}")
            raise
        else:
            self._finish(outcome, reason)
        finally:
            await self._shutdown()
        return outcome

    def _finish(self, outcome: Outcome, reason: str) -> None:
        if self.finished:
            return
        if not legal(self._phase, RolloutState.DONE):
            log.error("illegal phase transition %s -> done", self._phase)
        self._phase = RolloutState.DONE
        self.outcome = outcome
        counts: dict[str, int] = {}
        for rec in self.recs.values():
            counts[rec.state.value] = counts.get(rec.state.value, 0) + 1
        self.emit(
            ev.RolloutFinished(
                outcome=outcome,
                exit_code=ev.OUTCOME_EXIT_CODES[outcome],
                reason=reason,
                counts=counts,
            )
        )
        self.finished = True

    async def _shutdown(self) -> None:
        if self._leases is not None:  # before the connections close: they carry it
            try:
                await asyncio.shield(self._leases.release_all())
            except Exception as exc:
                self._emitter.emit(ev.Notice(message=f"releasing leases: {exc}"))
        try:
            await asyncio.shield(self.transport.close())
        except Exception as exc:  # closing must not hide the outcome
            self._emitter.emit(ev.Notice(message=f"closing connections: {exc}"))
        await asyncio.shield(self._emitter.close())
        self.bus.close()
        self._bus_closed = True
        for after in self.after_run:
            try:
                await after()
            except Exception:  # the outcome is decided and journaled: nothing changes it
                log.exception("after the run")

    async def _main(self, background: list[asyncio.Task[Any]]) -> Verdict:
        c = self.control
        self.announce(c.pause_reason if c.halted else "")
        refusal = await run_preflight(self)
        c.preflight = False
        if refusal:  # a resumed rollout stays resumable: it may have changed hosts
            return (Outcome.FAILED if self._first_event is None else Outcome.PAUSED), refusal
        if self._traffic is not None:  # the load balancer holds every host; resumed: agree
            resumed = self._first_event is not None
            journaled = {n: h.traffic for n, h in self.view.hosts.items() if h.traffic}
            lb = await self._traffic.start(list(self.recs.values()), journaled if resumed else None)
            if lb:
                return (Outcome.PAUSED if resumed else Outcome.FAILED), lb
        assert self._tg is not None
        self._start_monitors(self._tg, background)
        if self.canary is not None:
            background.append(self._tg.create_task(self.canary.run(), name="analysis"))
        if stop := await self.stop_check():
            return stop
        self.announce(c.pause_reason if c.halted else "")
        verdict = await self.strategy.run(self)
        if verdict[0] == Outcome.SUCCEEDED and (stop := await self.stop_check()):
            return stop  # a strategy's last move does not outrun an abort or a rollback
        return verdict

    # -- batches --------------------------------------------------------------------

    async def run_batch(self, index: int) -> None:
        names = self.batches.hosts(index)
        self.emit(ev.BatchStarted(index=index, total=len(self.batches), hosts=names))
        queue = deque(n for n in names if self.recs[n].state == HostState.PENDING)
        self.batches.start(index, queue)
        attempted: dict[str, None] = {}
        try:
            await self._dispatch(queue, self._deploy_task, attempted, rollback=False)
        finally:
            self.batches.end()
        recs = [self.recs[n] for n in attempted]
        ok = tuple(r.name for r in recs if r.state == HostState.HEALTHY)
        bad = tuple(r.name for r in recs if r.failed)
        self.emit(ev.BatchFinished(index=index, succeeded=ok, failed=bad))
        c = self.control
        if recs and len(bad) == len(recs) and not (c.stopping or c.paused):
            self.fire(
                "batch_all_failed",
                f"every host of batch {index + 1} failed ({len(bad)} of {len(recs)})",
                {"batch": index + 1, "failed": len(bad), "hosts": len(recs)},
            )

    async def _dispatch(
        self,
        queue: deque[str],
        worker: Callable[[HostRecord], Coroutine[Any, Any, None]],
        attempted: dict[str, None],
        *,
        rollback: bool,
    ) -> None:
        """Start hosts from ``queue`` while allowed, at most max_parallel at once."""
        c = self.control
        running: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            c.wake()

        async with asyncio.TaskGroup() as tg:
            while not c.aborted:
                may_start = not c.halted and (rollback or not c.rollback_requested)
                while queue and may_start and len(running) < self.spec.max_parallel:
                    rec = self.recs[queue.popleft()]
                    if not rollback and rec.state != HostState.PENDING:
                        continue  # skipped meanwhile
                    self._start_monitor(rec)  # sampling: an unsampled host gets one now
                    if not rollback:
                        rec.batch = self.batches.index
                        self._analyzer.set_cohort(rec.name, None)
                    self._watch(rec, False)
                    task = tg.create_task(worker(rec), name=f"host:{rec.name}")
                    rec.task = task
                    running.add(task)
                    task.add_done_callback(done)
                    attempted[rec.name] = None
                if not running:
                    if not queue:
                        break
                    stop_here = c.stopping and not rollback
                    if stop_here or self.exit_when_paused:
                        break
                await c.next_change()

    async def _deploy_task(self, rec: HostRecord) -> None:
        try:
            result = await self._work.deploy(rec)
        except Exception as exc:  # a bug on one host must not take the fleet down
            log.exception("deploying %s", rec.name)
            self._work.set_state(rec, HostState.FAILED, detail=f"internal error: {exc!r}")
            result = False
        if result is False:
            self._host_failed(rec)

    async def _rollback_task(self, rec: HostRecord) -> None:
        monitor = self._monitors.get(rec.name)
        if monitor is not None:  # its health watch now judges the version it goes back to
            monitor.set_health(self._work.health_for(rec, rollback=True))
        try:
            await self._work.rollback(rec)
        except Exception as exc:
            log.exception("rolling back %s", rec.name)
            self._work.set_state(rec, HostState.ROLLBACK_FAILED, detail=f"internal error: {exc!r}")

    def _host_failed(self, rec: HostRecord) -> None:
        rec.failed = True
        self._analyzer.set_cohort(rec.name, None)
        if self.budget.fail(rec.name):
            n = len(self.budget.failed)
            self.fire(
                "max_failures",
                f"{n} host{'' if n == 1 else 's'} failed, more than max_failures allows "
                f"({self.budget.allowed}): " + ", ".join(sorted(self.budget.failed)),
                {"failed": n, "allowed": self.budget.allowed, "targeted": len(self.recs)},
                host=rec.name,
            )

    def fire(
        self, rule: str, message: str, numbers: dict[str, Any], host: str | None = None
    ) -> None:
        """A rule tripped: alert, then apply on_failure as a journaled policy command."""
        action, note = on_failure_action(self.spec.on_failure, bool(self.spec.rollback.steps))
        message += note
        self.emit(
            ev.Alert(
                level="critical",
                rule=rule,
                message=message,
                host=host,
                numbers=numbers,
                action=action,
            )
        )
        self.policy(action, f"on_failure: {rule}")

    def _journal_failed(self, exc: Exception) -> None:
        self.emit(
            ev.Alert(
                level="critical",
                rule="journal",
                message=f"journal write failed ({exc}): events are no longer durable; pausing",
                action="pause",
            )
        )
        self.policy("pause", "journal write failed")

    def policy(self, action: str, reason: str) -> None:
        if action == "abort" and not self.control.aborted:
            self.control.abort_by_policy = True
        self.execute(Command(action, POLICY, reason))

    # -- monitors and the error-rate verdict --------------------------------------

    def _start_monitors(self, tg: asyncio.TaskGroup, background: list[asyncio.Task[Any]]) -> None:
        if not self._use_monitors:
            return
        self._background = background
        if sampled_monitors(self.spec):
            self._sample = monitor_sample(n for n in self.recs if n in self._work_conns)
            self.emit(ev.Notice(message=self._sampling_notice()))
        for rec in self.recs.values():
            if self._sample is None or rec.name in self._sample or self._touched(rec):
                self._start_monitor(rec)
        if self.spec.error_rate is not None and self._monitors:
            background.append(tg.create_task(self._analyze(), name="error-rate"))

    def _sampling_notice(self) -> str:
        assert self._sample is not None
        return (
            "Prometheus judges this rollout: per-host monitors run on the hosts in flight, "
            f"the new cohort and a sample of {len(self._sample)} of the "
            f"{len(self._work_conns)} reachable hosts (the others' vitals and logs are "
            "not polled until their batch starts them)"
        )

    @staticmethod
    def _touched(rec: HostRecord) -> bool:
        """A host the rollout has moved (a resumed one's deployed, failed or cut hosts)."""
        return rec.changed or rec.state != HostState.PENDING

    def _start_monitor(self, rec: HostRecord) -> None:
        """The host's monitor, once (from preflight on, or when its batch starts it
        under sampling): a host without one still probes, over an exec per probe."""
        if (
            self._background is None
            or self._tg is None
            or rec.name in self._monitors
            or rec.name in self._unmonitored
        ):
            return
        conn = self._work_conns.get(rec.name)
        if conn is None:
            return
        from console.signals.monitor import HostMonitor

        try:
            host_spec = signals_spec(self.spec, rec.host)
        except TemplateError as exc:
            self._unmonitored.add(rec.name)
            self.emit(ev.Notice(message=f"no monitoring: {exc}", host=rec.name))
            return
        monitor = HostMonitor(
            rec.name,
            conn,
            host_spec,
            self.emit,
            self._analyzer,
            self.host_unhealthy,
            console=self._watched,
        )
        self._monitors[rec.name] = monitor
        if rec.state == HostState.HEALTHY:  # a resumed rollout's deployed hosts
            self._on_healthy(rec)
        else:
            self._analyzer.set_cohort(rec.name, "baseline")
        task = self._tg.create_task(monitor.run(), name=f"monitor:{rec.name}")
        self._background.append(task)

    @property
    def monitored(self) -> frozenset[str]:
        """The hosts with a monitor now (sampling: in flight, new, the sample)."""
        return frozenset(self._monitors)

    def _watch(self, rec: HostRecord, on: bool) -> None:
        monitor = self._monitors.get(rec.name)
        if monitor is not None:
            monitor.watch_health(on)

    def _on_healthy(self, rec: HostRecord) -> None:
        self._analyzer.set_cohort(rec.name, "new")
        self._watch(rec, True)

    def host_unhealthy(self, host: str, detail: str) -> None:
        """Health failed after the host was healthy: that host has failed."""
        rec = self.recs.get(host)
        if rec is None or rec.state != HostState.HEALTHY or self.control.rolling_back:
            return
        self._watch(rec, False)
        self._work.set_state(rec, HostState.FAILED, detail=f"unhealthy after deploy: {detail}")
        self._host_failed(rec)

    async def _analyze(self) -> None:
        """Error-rate samples and the verdict, about once a second."""
        c = self.control
        while True:
            await self.clock.sleep(gates.ANALYZE_EVERY)
            if c.rolling_back or c.aborted:
                continue
            now = self._analyzer.clock()
            for sample in self._analyzer.samples(now):
                self.emit(sample)
            self.judge_error_rate(now)

    def judge_error_rate(self, now: float | None = None) -> bool:
        """Evaluate the analyzer; on an alert apply on_failure. True if it fired."""
        c = self.control
        if self.spec.error_rate is None or not self._monitors or c.stopping or c.paused:
            return False
        alert = self._analyzer.evaluate(now)
        if alert is None:
            return False
        self.fire(alert.rule, alert.message, dict(alert.numbers), host=alert.host)
        return True

    # -- rollback -------------------------------------------------------------------

    def set_aside(self, hosts: Collection[str], detail: str) -> None:
        removed = []
        for name in hosts:
            rec = self.recs.get(name)  # a resumed rollout has no record of those set aside
            if rec is None or rec.state != HostState.PENDING:
                continue
            self._work.set_state(rec, HostState.SKIPPED, detail=detail)
            if self.batches.remove(name):
                removed.append(name)
        if removed:
            self.emit(ev.PlanChanged(batches=self.batches.snapshot(), reason=detail))

    def begin_rollback(self) -> list[HostRecord]:
        c = self.control
        if not c.rolling_back:
            c.rolling_back = True
            c.paused = c.frozen = False
        for r in self.recs.values():  # stopped by a freeze before changing anything
            if r.state == HostState.FROZEN and not r.changed:
                self._work.set_state(r, HostState.PENDING, detail="not started (rollback)")
        return [r for r in self.recs.values() if r.changed and r.state != HostState.ROLLED_BACK]

    async def run_rollback_batch(self, index: int, total: int, hosts: Sequence[str]) -> int:
        group = tuple(hosts)
        self.emit(ev.BatchStarted(index=index, total=total, hosts=group, rollback=True))
        attempted: dict[str, None] = {}
        queue = deque(n for n in group if self.recs[n].state != HostState.ROLLED_BACK)
        await self._dispatch(queue, self._rollback_task, attempted, rollback=True)
        recs = [self.recs[n] for n in attempted]
        self.emit(
            ev.BatchFinished(
                index=index,
                succeeded=tuple(r.name for r in recs if r.state == HostState.ROLLED_BACK),
                failed=tuple(r.name for r in recs if r.state == HostState.ROLLBACK_FAILED),
                rollback=True,
            )
        )
        return len(queue)

    # -- resuming -------------------------------------------------------------------

    def restore(self, point: RestorePoint) -> None:
        """Continue a journaled rollout from ``point`` (before :meth:`run`): take over
        its hosts, budget and place in the plan, journal the reconciliation (held until
        the run starts) and start paused; over the budget, on_failure applies now, as it
        would have mid-run."""
        if self._ran:
            raise RuntimeError("restore before run()")
        self.view = self._emitter.view = point.view
        self._first_event = point.first_event
        for name, rec in self.recs.items():
            h = point.hosts.get(name)
            if h is None:
                continue
            rec.state, rec.detail, rec.step = h.state, h.detail, h.step
            rec.changed, rec.batch = h.changed, h.batch
            rec.once_done = set(h.once_done)
            rec.previous_version, rec.previous_read = h.previous_version, h.previous_read
            if h.failed:
                rec.failed = True
                self.budget.fail(name)
            if h.observed_version is not None:
                self.emit(ev.VersionRead(host=name, version=h.observed_version, role="current"))
            old = point.view.hosts.get(name)
            if old is None or old.state != h.state or old.detail != h.detail:
                self.emit(
                    ev.HostStateChanged(host=name, state=h.state, step=h.step, detail=h.detail)
                )
        self._start_batch = point.start_batch
        self._gate_first = point.gate_first
        c = self.control
        if point.rolling_back:
            c.rollback_requested = c.rolling_back = True
        c.paused = True
        c.pause_reason = point.pause_reason
        self.emit(ev.Notice(message=point.plan_text))
        if self.budget.exceeded and not point.rolling_back:
            failed = sorted(self.budget.failed)
            self.fire(
                "max_failures",
                f"on resume: {len(failed)} hosts failed or flagged, more than max_failures "
                f"allows ({self.budget.allowed}): {', '.join(failed)}",
                {"failed": len(failed), "allowed": self.budget.allowed, "resume": True},
            )

    # -- what commands, gates and the preflight use (context.EngineContext) ---------

    def emit(self, event: ev.Event) -> None:
        self._emitter.emit(event)

    def announce(self, reason: str = "") -> None:
        """Journal the phase the flags derive now (the one rule: machine.derive)."""
        phase = self.control.phase
        if not legal(self._phase, phase):
            log.error("illegal phase transition %s -> %s (%s)", self._phase, phase, reason)
        self._phase = phase
        self.emit(ev.RolloutStateChanged(state=phase, reason=reason))

    def set_host_state(self, rec: HostRecord, state: HostState, detail: str = "") -> None:
        self._work.set_state(rec, state, detail=detail)

    @property
    def has_monitors(self) -> bool:
        return bool(self._monitors)

    def new_version_requests(self) -> float:
        for sample in self._analyzer.samples():
            if sample.scope == "cohort:new":
                return sample.requests or 0.0
        return 0.0

    async def probe(self, conn: Connection, health: HealthSpec) -> tuple[bool, str]:
        return await self._work.probe(conn, health)

    async def _shell_probe(self, conn: Connection, health: HealthSpec) -> tuple[bool, str]:
        """:func:`probe_health`, run by the host's monitor over the same connection:
        in its persistent shell, which then serves the post-deploy watch (one channel
        for gating and watch instead of an exec per probe plus the shell)."""
        monitor = self._monitors.get(conn.host.name)
        if monitor is None or monitor.conn is not conn:
            return await probe_health(conn, health)
        result: tuple[bool, str] = await monitor.probe(health)
        return result

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RuntimeError("the rollout is not running")
        return self._tg.create_task(coro, name=name)

    def connected(self, host: str, conn: Connection) -> None:
        self._work_conns[host] = conn

    @property
    def leases(self) -> Leases | None:
        return self._leases

    def _lease_lost(self, host: str, detail: str) -> None:
        """Another console took a lease we held: stop starting work, say where."""
        self.emit(
            ev.Alert(level="critical", rule="lease_lost", message=detail, host=host, action="pause")
        )
        self.policy("pause", f"lease lost on {host}")

    # -- what a strategy drives (strategy.StrategyContext) -------------------------

    @property
    def start_batch(self) -> int:
        return self._start_batch

    @property
    def gate_first(self) -> int | None:
        return self._gate_first

    async def wait_unpaused(self) -> None:
        c = self.control
        await c.wait_for(lambda: not c.halted or c.stopping or self.exit_when_paused)

    async def stop_check(self) -> Verdict | None:
        c = self.control
        if stop := aborted(c):
            return stop
        if c.rollback_requested:
            return await self.strategy.roll_back(self)
        if c.halted and self.exit_when_paused:
            pending = [
                r for r in self.recs.values() if r.state in (HostState.PENDING, HostState.FROZEN)
            ]
            if pending or self.budget.exceeded:
                return Outcome.PAUSED, c.pause_reason or "paused"
        return None

    async def run_gate(self, after: int) -> None:
        await gates.run_gate(self, after)

    def replan(self, size: int | str, reason: str, hosts: Collection[str] | None = None) -> bool:
        def keep(name: str) -> bool:
            pending = self.recs[name].state == HostState.PENDING
            return pending and (hosts is None or name in hosts)

        _, _, changed = self.batches.recut(size, keep)
        if changed:
            self.emit(ev.PlanChanged(batches=self.batches.snapshot(), reason=reason))
        return changed

    # -- plumbing -------------------------------------------------------------------

    def _started_event(self) -> ev.RolloutStarted:
        spec = self.spec
        hosts = {}
        for name, rec in self.recs.items():
            info = rec.host.to_json()
            info["vars"] = mask_vars(info["vars"], spec.secrets)
            hosts[name] = info
        return ev.RolloutStarted(
            rollout_id=self.rollout_id,
            service=spec.service,
            version=spec.version,
            operator=self.operator,
            spec_path=spec.path,
            spec_hash=spec_hash(spec.text),
            spec_text=spec.text,  # masked by the emitter, as every event
            inventory_path=self.inventory_path or (spec.inventory or ""),
            batches=self.batches.snapshot(),
            settings=self._settings(),
            hosts=hosts,
        )

    def _settings(self) -> dict[str, Any]:
        spec, g = self.spec, self.spec.between_batches
        return {
            "environment": spec.environment,
            "max_parallel": spec.max_parallel,
            "max_failures_allowed": self.budget.allowed,
            "on_failure": spec.on_failure,
            "between_batches": {
                "gate": g.kind,
                "bake": g.bake,
                "timeout": g.timeout,
                "on_timeout": g.on_timeout,
            },
            "allow_unreachable": self.allow_unreachable,
            "error_rate_max": spec.error_rate.max if spec.error_rate else None,
            "error_rate_max_vs_baseline": spec.error_rate.max_vs_baseline
            if spec.error_rate
            else None,
            "steps": [s.name for s in spec.steps],
            "targeted": len(self.recs),
        }


def spec_hash(text: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
