"""The engine's seams: one batch cut for the planner and ``set_batch_size``, the
injectable clock under the gates, and a resumed rollout restored through one public
method."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from console.core import events as ev
from console.core.clock import ManualClock
from console.core.events import HostState, Outcome, RolloutState
from console.core.state import RolloutView
from console.engine.context import HostRestore, RestorePoint
from console.engine.control import Control
from console.plan import make_plan, replan
from tests.test_engine_helpers import Run, hosts, make_engine, run_engine, spec_from

PERCENTAGES = ("64.4%", "33.3%", "12.5%", "0.1%", "1.1%", "7%", "99.9%", "100%", "50%", "2.35%")
HOST_COUNTS = sorted({1, 2, 3, 7, 10, 99, 100, 101, 250, 333, 999, 1000, 2999, 3000,
                      *range(13, 3001, 97)})  # fmt: skip


def test_set_batch_size_cuts_as_the_planner_does() -> None:
    """For host counts from 1 to 3,000 and awkward percentages, the engine's batches
    after ``set_batch_size`` are exactly ``plan.replan``'s (the old engine had its own
    float parser: 64.4% of 250 hosts cut 162 there, 161 in the planner)."""
    spec = spec_from("batches: [1]\n")
    for n in HOST_COUNTS:
        run = make_engine(spec, n)
        names = [h.name for h in hosts(n)]
        planned = make_plan(names, [1])
        for size in PERCENTAGES:
            run.engine.set_batch_size(size)
            want = replan(planned, 0, names, size).batches
            assert run.engine.batches.snapshot() == want, (n, size)
    # and a count, in digits or as a number
    run = make_engine(spec, 10)
    run.engine.set_batch_size("4")
    assert [len(b) for b in run.engine.batches.snapshot()] == [4, 4, 2]


def test_set_batch_size_refusals_change_nothing() -> None:
    run = make_engine(spec_from(), 10)
    before = run.engine.batches.snapshot()
    for bad in ("0", "0%", "101%", "x", None, True, 2.5, -1):
        run.engine.set_batch_size(bad)  # type: ignore[arg-type]
    assert run.engine.batches.snapshot() == before


async def test_control_wait_for_times_out_on_the_clock() -> None:
    clock = ManualClock()
    control = Control(clock)
    flag = {"set": False}
    waiter = asyncio.create_task(control.wait_for(lambda: flag["set"], timeout=30))
    await until(lambda: clock.sleepers == 1)
    clock.advance(29.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)
    assert await waiter is False

    waiter = asyncio.create_task(control.wait_for(lambda: flag["set"], timeout=30))
    await until(lambda: clock.sleepers == 1)
    flag["set"] = True
    control.wake()
    assert await waiter is True
    await until(lambda: clock.sleepers == 0)  # its timer is gone


# -- gates on a manual clock ----------------------------------------------------------


async def until(predicate: Callable[[], bool], limit: int = 200_000) -> None:
    """Yield to the loop until ``predicate()`` holds (a condition, not a duration)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def settle(turns: int = 50) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


class Recorder:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.sub = run.engine.bus.subscribe()
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for batch in self.sub.batches():
            self.run.events.extend(batch)

    def seen(self, cls: type[ev.Event], where: Callable[[ev.Event], bool] = lambda e: True) -> int:
        return sum(1 for e in self.run.events if isinstance(e, cls) and where(e))


# Health gating sleeps on the engine's clock too: one pass is enough here, so a host's
# gating needs no clock step and only the gate's own timers wait on the clock.
ONE_PASS = "health: {run: check, every: 0.01s, healthy_after: 1, deadline: 1s}\n"


async def test_bake_steps_through_a_manual_clock() -> None:
    """A two-minute bake passes when the clock says so, not before, without waiting."""
    clock = ManualClock()
    spec = spec_from("between_batches: 2m\n" + ONE_PASS)
    run = make_engine(spec, 3, clock=clock)  # batches 1, 2
    rec = Recorder(run)
    engine_task = asyncio.create_task(run.engine.run())
    await until(lambda: rec.seen(ev.GateWaiting) == 1)
    gate = next(e for e in run.events if isinstance(e, ev.GateWaiting))
    assert gate.gate == "bake" and gate.until == clock.wall() + 120
    assert run.engine.view.state == RolloutState.WAITING
    # the bake's timer and its health watch (no monitors) sleep on the clock
    await until(lambda: clock.sleepers == 2)
    clock.advance(119)
    await until(lambda: clock.sleepers == 2)  # the watch probed again and sleeps
    await settle()
    assert rec.seen(ev.GatePassed) == 0 and not run.deploy_commands("h02")
    assert run.commands("h01").count("check") >= 2  # probed while baking
    clock.advance(1)
    assert await engine_task == Outcome.SUCCEEDED
    await until(lambda: rec.seen(ev.RolloutFinished) == 1)
    assert [e.by for e in run.events if isinstance(e, ev.GatePassed)] == ["bake"]
    assert run.final("h03") == HostState.HEALTHY


async def test_manual_gate_timeout_on_a_manual_clock() -> None:
    """A ten-minute manual gate times out when the clock passes it: on_timeout abort."""
    clock = ManualClock()
    spec = spec_from("between_batches: {gate: manual, timeout: 10m}\n" + ONE_PASS)
    run = make_engine(spec, 3, clock=clock)
    rec = Recorder(run)
    engine_task = asyncio.create_task(run.engine.run())
    await until(lambda: rec.seen(ev.GateWaiting) == 1 and clock.sleepers == 1)
    gate = next(e for e in run.events if isinstance(e, ev.GateWaiting))
    assert gate.until == clock.wall() + 600 and gate.on_timeout == "abort"
    clock.advance(599)
    await until(lambda: clock.sleepers == 1)
    await settle()
    assert rec.seen(ev.Alert) == 0
    clock.advance(1)
    assert await engine_task == Outcome.FAILED
    await until(lambda: rec.seen(ev.RolloutFinished) == 1)
    alert = next(e for e in run.events if isinstance(e, ev.Alert))
    assert alert.rule == "gate.timeout" and alert.action == "abort"
    assert not run.deploy_commands("h02")


# -- restore ----------------------------------------------------------------------------


async def test_restore_seeds_hosts_budget_and_a_paused_start() -> None:
    run = make_engine(spec_from("max_failures: 0\non_failure: pause\n"), 3, exit_when_paused=True)
    point = RestorePoint(
        view=RolloutView(),
        first_event=ev.Notice(message="resumed by tester"),
        hosts={
            "h01": HostRestore(
                state=HostState.HEALTHY,
                detail="on 2.0",
                step="activate",
                changed=True,
                batch=0,
                once_done=frozenset({"install"}),
                previous_version="1.0",
                previous_read=True,
                observed_version="2.0",
            ),
            "h02": HostRestore(
                state=HostState.FAILED,
                detail="exit 1 in install",
                step="install",
                changed=True,
                batch=1,
                failed=True,
            ),
        },
        start_batch=1,
        gate_first=None,
        rolling_back=False,
        plan_text="reconciled: 1 deploy",
        pause_reason="resumed: waiting for the operator",
    )
    engine = run.engine
    engine.restore(point)
    h01, h02, h03 = (engine.recs[n] for n in ("h01", "h02", "h03"))
    assert (h01.state, h01.previous_version, h01.once_done) == (
        HostState.HEALTHY,
        "1.0",
        {"install"},
    )
    assert h02.failed and engine.budget.failed == {"h02"} and engine.budget.exceeded
    assert h03.state == HostState.PENDING and not h03.changed
    assert engine.control.paused and engine.view is point.view
    await run_engine(run)
    assert run.outcome == Outcome.PAUSED
    first = run.events[0]
    assert isinstance(first, ev.Notice) and first.message == "resumed by tester"
    assert not run.kinds(ev.RolloutStarted)
    reads = run.kinds(ev.VersionRead)
    assert [(r.host, r.version, r.role) for r in reads] == [("h01", "2.0", "current")]
    assert {e.host for e in run.kinds(ev.HostStateChanged)} >= {"h01", "h02"}
    assert "reconciled: 1 deploy" in [n.message for n in run.kinds(ev.Notice)]
    # over the budget on resume: on_failure applies now, as it would have mid-run
    alert = run.kinds(ev.Alert)[0]
    assert alert.rule == "max_failures" and alert.message.startswith("on resume: 1 hosts")
    assert run.kinds(ev.RolloutStateChanged)[-1].state == RolloutState.PAUSED
    assert not run.deploy_commands("h03")


def test_the_engine_package_does_not_know_resume() -> None:
    """Resume builds a RestorePoint; the engine never imports it (not even lazily or
    for typing), and commands, gates and the preflight see a context, not ``Engine``."""
    import grimp

    graph = grimp.build_graph("console", cache_dir=None)
    engine = graph.find_descendants("console.engine") | {"console.engine"}
    for module in engine:
        assert "console.resume" not in graph.find_modules_directly_imported_by(module), module
    for module in ("commands", "gates", "preflight", "context", "machine", "batches"):
        imported = graph.find_modules_directly_imported_by(f"console.engine.{module}")
        assert "console.engine.core" not in imported and "console.engine" not in imported
