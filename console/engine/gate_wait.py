"""What every gate that waits for an answer shares (manual, command, approval): it
opens with a ``GateWaiting`` naming its deadline, and when ``timeout`` passes with no
answer it raises a ``gate.timeout`` alert and applies ``on_timeout``."""

from __future__ import annotations

from typing import Any

from console.core import events as ev
from console.engine.context import EngineContext


def open_gate(engine: EngineContext, after: int, kind: str) -> None:
    """Flag the gate after batch ``after`` as open and journal that it waits."""
    c, g = engine.control, engine.spec.between_batches
    c.gate_open, c.gate_continued_by = kind, None
    engine.emit(
        ev.GateWaiting(
            after_batch=after,
            gate=kind,
            until=engine.clock.wall() + g.timeout if g.timeout else None,
            on_timeout=g.on_timeout if g.timeout else None,
        )
    )


def timed_out(engine: EngineContext, after: int, kind: str, message: str, **numbers: Any) -> None:
    """No answer within the gate's timeout: alert, then ``on_timeout`` (``continue``
    passes the gate)."""
    g = engine.spec.between_batches
    engine.emit(
        ev.Alert(
            level="warning",
            rule="gate.timeout",
            message=f"{kind} gate after batch {after + 1} {message}: {g.on_timeout}",
            numbers={"timeout": g.timeout, "batch": after + 1, **numbers},
            action=g.on_timeout,
        )
    )
    if g.on_timeout == "continue":
        engine.emit(ev.GatePassed(after_batch=after, by="timeout"))
        engine.announce()
    else:
        engine.policy(g.on_timeout, f"{kind} gate timed out")
