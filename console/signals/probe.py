"""The probe seam: how a host's health is asked, whatever answers it.

A :class:`Probe` checks one host once and says ``(passed, detail)``; it never raises
but for cancellation, since a probe that cannot run has simply failed and its reason
is what the operator reads. The engine's health gating, its bake watch and resume
take a probe and never look at how it works.

:func:`probe_health` is today's probe: the spec's health command run over the host's
connection (a shell). An HTTP or a Prometheus probe is another function of the same
shape in a module beside this one. The monitor's chained polls are shell-specific:
they run the same command through :func:`health_verdict`, so both judge a result alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol

from console.core.text import shorten
from console.spec import HealthSpec
from console.transport.base import Connection, RunResult, TransportError

log = logging.getLogger(__name__)

DETAIL_MAX = 200  # characters of a probe's or a signal's detail in an event


class Probe(Protocol):
    """One health check of one host: ``(passed, detail)``; only cancellation raises."""

    def __call__(self, conn: Connection, spec: HealthSpec, /) -> Awaitable[tuple[bool, str]]: ...


def one_line(text: str, limit: int = DETAIL_MAX) -> str:
    """Collapse whitespace and cut to ``limit`` characters, for event details."""
    return shorten(text, limit, squash=True)


async def probe_health(conn: Connection, spec: HealthSpec) -> tuple[bool, str]:
    """Run the health command once under ``spec.timeout``: ``(passed, detail)``.

    Only cancellation propagates: a probe that cannot run has failed, and its reason
    is the detail the operator sees.
    """
    try:
        result = await conn.run(spec.run, timeout=spec.timeout)
    except Exception as e:
        return False, probe_error(conn.host.name, e)
    return health_verdict(result, spec)


def probe_error(host: str, e: Exception) -> str:
    """The detail of a probe that raised instead of returning a result."""
    if isinstance(e, TransportError):
        return one_line(f"unreachable: {e.message}")
    if isinstance(e, OSError):  # includes TimeoutError
        return one_line(f"connection error: {e or type(e).__name__}")
    # a probe must never take the caller down with it
    log.warning("health probe on %s raised", host, exc_info=e)
    return one_line(f"probe error: {type(e).__name__}: {e}")


def health_verdict(result: RunResult, spec: HealthSpec) -> tuple[bool, str]:
    """``(passed, detail)`` of a finished health command."""
    first = one_line(result.first_line)
    if result.ok:
        return True, first or "ok"
    if result.status == "timeout":
        return False, f"timed out after {spec.timeout:g}s"
    if result.status == "failed":
        if result.exit_code is not None:
            how = f"exit {result.exit_code}"
        else:
            how = f"killed by {result.signal}" if result.signal else "failed"
        return False, one_line(how + (f": {first}" if first else ""))
    return False, one_line(f"{result.status}" + (f": {first}" if first else ""))
