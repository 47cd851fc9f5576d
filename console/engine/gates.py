"""Gates between batches: auto, manual (with timeout and a safe default) and bake.

A bake holds for its duration while the deployed hosts' health keeps passing (the
monitors' health watch, or, without monitors, probes run here) and the error-rate
analyzer does not alert. A bake that ends before the analyzer has seen enough of the
new version's requests to judge it is extended, by at most one error-rate window: a
bake that could not have caught anything proves nothing. A manual gate never passes
by itself unless its ``on_timeout`` says ``continue``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from console.core import events as ev
from console.core.events import HostState, RolloutState
from console.engine.hostwork import signals_spec

if TYPE_CHECKING:
    from console.engine.control import HostRecord
    from console.engine.core import Engine

ANALYZE_EVERY = 1.0  # seconds between error-rate evaluations


async def run_gate(engine: Engine, after: int) -> None:
    c = engine.control
    g = engine.spec.between_batches
    if c.stopping:
        return
    if g.kind == "auto":
        engine._emit(ev.GatePassed(after_batch=after, by="auto"))
        return
    stop = lambda: c.stopping or ((c.paused or c.frozen) and engine.exit_when_paused)  # noqa: E731
    if g.kind == "bake":
        c.gate_open = "bake"
        engine._emit(ev.GateWaiting(after_batch=after, gate="bake", until=time.time() + g.bake))
        engine._state(RolloutState.WAITING, f"baking {g.bake:g}s after batch {after + 1}")
        watcher = None
        if not engine._monitors and engine.spec.health is not None:
            assert engine._tg is not None
            watcher = engine._tg.create_task(_bake_watch(engine))
        try:
            stopped = await c.wait_for(stop, timeout=g.bake)
            if not stopped:
                stopped = await _await_verdict(engine, stop, after)
            if not stopped:  # the last word before the next batch may start
                stopped = engine._judge_error_rate() or stop()
        finally:
            c.gate_open = None
            if watcher is not None:
                watcher.cancel()
        if not stopped:
            engine._emit(ev.GatePassed(after_batch=after, by="bake"))
            _state_after_gate(engine)
        return
    c.gate_open, c.gate_continued_by = "manual", None
    until = time.time() + g.timeout if g.timeout else None
    engine._emit(
        ev.GateWaiting(
            after_batch=after,
            gate="manual",
            until=until,
            on_timeout=g.on_timeout if g.timeout else None,
        )
    )
    engine._state(RolloutState.WAITING, f"manual gate after batch {after + 1}")
    try:
        answered = await c.wait_for(
            lambda: c.gate_continued_by is not None or stop(), timeout=g.timeout
        )
    finally:
        c.gate_open = None
    if c.gate_continued_by is not None:
        engine._emit(ev.GatePassed(after_batch=after, by=f"operator:{c.gate_continued_by}"))
        _state_after_gate(engine)
    elif not answered:
        engine._emit(
            ev.Alert(
                level="warning",
                rule="gate.timeout",
                message=f"manual gate after batch {after + 1} unanswered for "
                f"{g.timeout:g}s: {g.on_timeout}",
                numbers={"timeout": g.timeout, "batch": after + 1},
                action=g.on_timeout,
            )
        )
        if g.on_timeout == "continue":
            engine._emit(ev.GatePassed(after_batch=after, by="timeout"))
            _state_after_gate(engine)
        else:
            engine._policy(g.on_timeout, "manual gate timed out")


async def _await_verdict(engine: Engine, stop: Callable[[], bool], after: int) -> bool:
    """Extend a bake until the error-rate analyzer has enough of the new version's
    requests to judge it (at most one more window): a bake that ends before any
    verdict was possible proves nothing. Metrics mode only; True if stopped."""
    spec = engine.spec.error_rate
    if spec is None or engine.spec.metrics is None or not engine._monitors:
        return False

    def requests() -> float:
        for sample in engine._analyzer.samples():
            if sample.scope == "cohort:new":
                return sample.requests or 0.0
        return 0.0

    have = requests()
    if have >= spec.min_requests:
        return False
    engine._emit(
        ev.Notice(
            message=f"bake after batch {after + 1} extended: the error-rate verdict needs "
            f"{spec.min_requests} requests on the new version, it has {have:.0f}"
        )
    )
    deadline = time.monotonic() + spec.window
    while time.monotonic() < deadline:
        if await engine.control.wait_for(stop, timeout=ANALYZE_EVERY):
            return True
        if requests() >= spec.min_requests:
            return False
    return False


def _state_after_gate(engine: Engine) -> None:
    c = engine.control
    engine._state(
        RolloutState.FROZEN
        if c.frozen
        else RolloutState.PAUSED
        if c.paused
        else RolloutState.RUNNING
    )


async def _bake_watch(engine: Engine) -> None:
    """Without monitors: probe every healthy host each ``health.every`` while baking."""
    assert engine.spec.health is not None
    sem = asyncio.Semaphore(engine.spec.max_parallel)

    async def check(rec: HostRecord) -> None:
        health = signals_spec(engine.spec, rec.host).health
        assert health is not None
        async with sem:
            conn = await engine.transport.connect(rec.host)
            ok, detail = await engine._work.probe(conn, health)
        engine._emit(ev.HealthSample(host=rec.name, ok=ok, detail=engine._redactor.redact(detail)))
        if not ok:
            engine._on_unhealthy(rec.name, detail)

    while True:
        healthy = [r for r in engine.recs.values() if r.state == HostState.HEALTHY]
        async with asyncio.TaskGroup() as tg:
            for rec in healthy:
                tg.create_task(check(rec))
        await asyncio.sleep(engine.spec.health.every)
