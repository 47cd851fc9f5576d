"""A second person's approval (``between_batches: {gate: approval, approvers: N}``).

The gate waits until ``approvers`` Unix users other than the one running the rollout
have approved: ``rolldeck approve ID`` or the ``c`` key of a console attached over the
socket. Who approved is the kernel's word (the socket's SO_PEERCRED uid, stamped by
the attach server; never a name from the wire), so one person cannot approve their
own rollout by typing another name, and each user counts once (engine/commands.py
decides, the journal records label, Unix name, uid and reason). ``before: final``
asks only before the last batch; the other gates are auto. A ``timeout`` applies
``on_timeout`` as at a manual gate; ``continue`` there means go without approval.
"""

from __future__ import annotations

from collections.abc import Callable

from console.core import events as ev
from console.engine.context import EngineContext
from console.engine.gate_wait import open_gate, timed_out


def asks_here(engine: EngineContext, after: int) -> bool:
    """Whether the approval gate applies after batch ``after`` (``before: final``:
    only when the next batch is the last)."""
    g = engine.spec.between_batches
    return g.before == "every" or after + 2 >= len(engine.batches)


async def run_approval_gate(engine: EngineContext, after: int, stop: Callable[[], bool]) -> None:
    c, g = engine.control, engine.spec.between_batches
    n = after + 1
    if not asks_here(engine, after):
        engine.emit(ev.GatePassed(after_batch=after, by="auto"))
        return
    c.approvals, c.approvers_needed = {}, g.approvers
    open_gate(engine, after, "approval")
    who = "a second person" if g.approvers == 1 else f"{g.approvers} other people"
    engine.announce(f"approval gate after batch {n}: waiting for {who} (rolldeck approve)")

    def approved() -> bool:
        return len(c.approvals) >= g.approvers

    try:
        answered = await c.wait_for(lambda: approved() or stop(), timeout=g.timeout)
    finally:
        c.gate_open = None
    if approved():
        names = ", ".join(c.approvals.values())
        engine.emit(ev.GatePassed(after_batch=after, by=f"approval:{names}"))
        engine.announce()
    elif not answered:
        timed_out(
            engine,
            after,
            "approval",
            f"got {len(c.approvals)} of {g.approvers} approvals within {g.timeout:g}s",
            approvals=len(c.approvals),
        )
