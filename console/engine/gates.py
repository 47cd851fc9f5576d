"""Gates between batches: auto, manual (with timeout and a safe default) and bake.

A bake holds for its duration while the deployed hosts' health keeps passing (the
monitors' health watch, or, without monitors, probes run here) and the error-rate
analyzer does not alert. A bake that ends before the analyzer has seen enough of the
new version's requests to judge it is extended, by at most one error-rate window: a
bake that could not have caught anything proves nothing. A manual gate never passes
by itself unless its ``on_timeout`` says ``continue``.

Every duration here (the bake, a manual gate's timeout, the bake's extension, the
probes of a bake without monitors) runs on the engine's clock, so a test with a
:class:`~console.core.clock.ManualClock` steps through them. Gates see the engine as
an :class:`~console.engine.context.EngineContext` and announce the phase the machine
derives (WAITING while a gate is open, unless paused or frozen).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from console.core import events as ev
from console.core.events import HostState
from console.engine.approval_gate import run_approval_gate
from console.engine.command_gate import run_command_gate
from console.engine.context import EngineContext
from console.engine.control import HostRecord
from console.engine.gate_wait import open_gate, timed_out
from console.engine.hostwork import signals_spec

ANALYZE_EVERY = 1.0  # seconds between error-rate evaluations


async def run_gate(engine: EngineContext, after: int) -> None:
    c = engine.control
    g = engine.spec.between_batches
    clock = engine.clock
    if c.stopping:
        return
    if g.kind == "auto":
        engine.emit(ev.GatePassed(after_batch=after, by="auto"))
        return

    def stop() -> bool:
        return c.stopping or (c.halted and engine.exit_when_paused)

    if g.kind == "bake":
        c.gate_open = "bake"
        engine.emit(ev.GateWaiting(after_batch=after, gate="bake", until=clock.wall() + g.bake))
        engine.announce(f"baking {g.bake:g}s after batch {after + 1}")
        watcher = None
        if not engine.has_monitors and engine.spec.health is not None:
            watcher = engine.spawn(_bake_watch(engine), "bake-watch")
        try:
            stopped = await c.wait_for(stop, timeout=g.bake)
            if not stopped:
                stopped = await _await_verdict(engine, stop, after)
            if not stopped:  # the last word before the next batch may start
                stopped = engine.judge_error_rate() or stop()
            if not stopped and engine.canary is not None:  # Prometheus analysis
                stopped = await engine.canary.gate_verdict(stop, after)
        finally:
            c.gate_open = None
            if watcher is not None:
                watcher.cancel()
        if not stopped:
            engine.emit(ev.GatePassed(after_batch=after, by="bake"))
            engine.announce()
        return
    if g.kind == "command":  # a gate that asks an outside system
        await run_command_gate(engine, after, stop)
        return
    if g.kind == "approval":  # a second person's approval
        await run_approval_gate(engine, after, stop)
        return
    open_gate(engine, after, "manual")
    engine.announce(f"manual gate after batch {after + 1}")
    try:
        answered = await c.wait_for(
            lambda: c.gate_continued_by is not None or stop(), timeout=g.timeout
        )
    finally:
        c.gate_open = None
    if c.gate_continued_by is not None:
        engine.emit(ev.GatePassed(after_batch=after, by=f"operator:{c.gate_continued_by}"))
        engine.announce()
    elif not answered:
        timed_out(engine, after, "manual", f"unanswered for {g.timeout:g}s")


async def _await_verdict(engine: EngineContext, stop: Callable[[], bool], after: int) -> bool:
    """Extend a bake until the error-rate analyzer has enough of the new version's
    requests to judge it (at most one more window): a bake that ends before any
    verdict was possible proves nothing. Metrics mode only; True if stopped."""
    spec = engine.spec.error_rate
    if spec is None or engine.spec.metrics is None or not engine.has_monitors:
        return False
    have = engine.new_version_requests()
    if have >= spec.min_requests:
        return False
    engine.emit(
        ev.Notice(
            message=f"bake after batch {after + 1} extended: the error-rate verdict needs "
            f"{spec.min_requests} requests on the new version, it has {have:.0f}"
        )
    )
    clock = engine.clock
    deadline = clock.monotonic() + spec.window
    while clock.monotonic() < deadline:
        if await engine.control.wait_for(stop, timeout=ANALYZE_EVERY):
            return True
        if engine.new_version_requests() >= spec.min_requests:
            return False
    return False


async def _bake_watch(engine: EngineContext) -> None:
    """Without monitors: probe every healthy host each ``health.every`` while baking."""
    assert engine.spec.health is not None
    sem = asyncio.Semaphore(engine.spec.max_parallel)

    async def check(rec: HostRecord) -> None:
        health = signals_spec(engine.spec, rec.host).health
        assert health is not None
        async with sem:
            conn = await engine.transport.connect(rec.host)
            ok, detail = await engine.probe(conn, health)
        engine.emit(ev.HealthSample(host=rec.name, ok=ok, detail=detail))
        if not ok:
            engine.host_unhealthy(rec.name, detail)

    while True:
        healthy = [r for r in engine.recs.values() if r.state == HostState.HEALTHY]
        async with asyncio.TaskGroup() as tg:
            for rec in healthy:
                tg.create_task(check(rec))
        await engine.clock.sleep(engine.spec.health.every)
