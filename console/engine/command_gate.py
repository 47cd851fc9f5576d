"""A gate that asks an outside system (``between_batches: {gate: command, run: ...}``).

The command runs on this machine (a change-management check, a ticket's status), in
the spec file's directory, with ``{service}``, ``{version}`` and ``{vars.x}`` filled
and shell-quoted and ``ROLLDECK_SERVICE``/``VERSION``/``ENVIRONMENT``/``BATCH`` set.
Its exit status is the answer: 0 go, 1 not yet (asked again ``every`` seconds), any
other no: ``on_failure`` fires with the command's output as the reason. A command
that outlives its bound (the poll interval, at least :data:`MIN_BOUND`, at most the
time the gate has left) is killed and counts as *not yet*: a slow answer is not a no,
and the gate's own ``timeout`` (then ``on_timeout``) still bounds the wait. Every
answer is journaled (``GateAnswer``). An operator's ``continue`` passes the gate as
at a manual one. Polls wait while the rollout is paused; the poll interval and the
gate's timeout run on the engine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from console.core import events as ev
from console.core.secrets import SECRET_ENV
from console.core.text import shorten
from console.engine.context import EngineContext
from console.engine.gate_wait import open_gate, timed_out
from console.engine.machine import on_failure_action
from console.spec import GateSpec
from console.templating import TemplateError, context_vars, render

MIN_BOUND = 10.0  # seconds a poll may take at least, whatever the interval
OUTPUT_KEPT = 2000  # characters of a command's output kept in its answer
REASON_SHOWN = 300  # characters of that output in the on_failure reason


def _answer(code: int | None) -> str:
    if code == 0:
        return "go"
    if code == 1 or code is None:  # None: timed out, asked again
        return "not_yet"
    return "no"


async def ask(command: str, cwd: str, env: dict[str, str], bound: float) -> tuple[int | None, str]:
    """Run ``command`` once: (exit code, output); (None, why) when it timed out, 127
    when it could not start. Its process group is killed at the bound."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return 127, f"cannot start: {exc.strerror or exc}"
    try:
        async with asyncio.timeout(bound):
            out, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await proc.wait()
        return None, f"no answer within {bound:g}s: killed, asked again"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    text = out.decode("utf-8", "replace").strip()
    return proc.returncode, text[-OUTPUT_KEPT:]


def spec_dir(path: str) -> str:
    """Where local commands run: the spec file's directory (``./gates/x.sh``)."""
    return os.path.dirname(os.path.abspath(path)) if path else os.getcwd()


def _command(engine: EngineContext, g: GateSpec, after: int) -> str:
    spec = engine.spec
    assert g.run is not None
    context = {
        "service": spec.service,
        "version": spec.version,
        "new_version": spec.version,
        "vars": context_vars(spec, None),
    }
    return render(g.run, context)


async def run_command_gate(engine: EngineContext, after: int, stop: Callable[[], bool]) -> None:
    """Ask until go, no, the gate's timeout, a stop or an operator's continue."""
    c, g, clock, spec = engine.control, engine.spec.between_batches, engine.clock, engine.spec
    n = after + 1
    open_gate(engine, after, "command")
    engine.announce(f"command gate after batch {n}")
    deadline = clock.monotonic() + g.timeout if g.timeout else None
    cwd = spec_dir(spec.path)
    env = {
        **{k: v for k, v in os.environ.items() if k not in SECRET_ENV},  # never rolldeck's
        "ROLLDECK_SERVICE": spec.service,
        "ROLLDECK_VERSION": spec.version,
        "ROLLDECK_ENVIRONMENT": spec.environment or "",
        "ROLLDECK_BATCH": str(n),
    }

    def left() -> float | None:
        return None if deadline is None else deadline - clock.monotonic()

    def done() -> bool:
        return stop() or c.gate_continued_by is not None

    try:
        poll = 0
        while True:
            await c.wait_for(lambda: done() or not c.halted)
            if done():
                break
            poll += 1
            code: int | None
            try:
                command = _command(engine, g, after)
            except TemplateError as exc:
                code, output = 2, f"cannot render the gate's command: {exc}"
            else:
                remaining = left()
                bound = max(MIN_BOUND, g.every)
                if remaining is not None:
                    bound = max(0.1, min(bound, remaining))
                code, output = await ask(command, cwd, env, bound)
            answer = _answer(code)
            remaining = left()
            again = answer == "not_yet" and (remaining is None or remaining > 0)
            engine.emit(
                ev.GateAnswer(
                    after_batch=after,
                    gate="command",
                    answer=answer,
                    exit_code=code,
                    output=output,
                    poll=poll,
                    next_at=clock.wall() + g.every if again else None,
                )
            )
            if done():
                break
            if answer == "go":
                engine.emit(ev.GatePassed(after_batch=after, by="command"))
                engine.announce()
                return
            if answer == "no":
                _said_no(engine, after, code, output, poll)
                return
            if remaining is not None and remaining <= 0:
                timed_out(engine, after, "command", f"gave no go within {g.timeout:g}s")
                return
            wait = g.every if remaining is None else min(g.every, remaining)
            if await c.wait_for(done, timeout=wait):
                break
    finally:
        c.gate_open = None
    if c.gate_continued_by is not None and not c.stopping:
        engine.emit(ev.GatePassed(after_batch=after, by=f"operator:{c.gate_continued_by}"))
        engine.announce()


def _said_no(engine: EngineContext, after: int, code: int | None, output: str, poll: int) -> None:
    """The gate said no: an alert with its output, then on_failure (as a rule that
    tripped)."""
    spec = engine.spec
    action, note = on_failure_action(spec.on_failure, bool(spec.rollback.steps))
    said = shorten(output, REASON_SHOWN, squash=True) or "(no output)"
    engine.emit(
        ev.Alert(
            level="critical",
            rule="gate.command",
            message=f"command gate after batch {after + 1} said no (exit {code}): {said}{note}",
            numbers={"exit_code": code, "batch": after + 1, "poll": poll},
            action=action,
        )
    )
    engine.policy(action, f"gate said no: {said}")
