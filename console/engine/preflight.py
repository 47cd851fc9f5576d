"""Preflight: before anything changes, check every targeted host.

Connect (bounded concurrency; the transport also caps handshakes and checks host keys
strictly), render every command the host will run (a missing var fails here, not on
host 37 of batch 3), take its lease and read its current version (one exec on a
``shell`` lease host with the version read as the login user: leases.py), run the
spec's ``preflight`` checks. The lease is held from here until the host is done, so
the version read here is the host's "previous" version (hostwork.py). Hosts that fail
refuse the start, unless ``allow_unreachable``: then they are shown SKIPPED, count
against the failure budget, and their leases are released at once. A refused host key
is never skipped: it stops the start whatever ``allow_unreachable`` says.

It sees the engine as an :class:`~console.engine.context.EngineContext`; its events
carry raw text (the emitter masks secrets in every event).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from console.become import Become, become_for
from console.core import events as ev
from console.core.errors import InputError
from console.core.events import HostState
from console.core.text import shorten
from console.engine.context import EngineContext
from console.engine.control import HostRecord
from console.engine.hostwork import (
    DETAIL_MAX,
    VERSION_TIMEOUT,
    HostFailure,
    run_as,
    sudo_refusal,
    why,
)
from console.templating import TemplateError, build_context, render
from console.transport.base import HostKeyError, RunResult, TransportError

log = logging.getLogger(__name__)
CONCURRENCY = 50  # hosts checked at once (handshakes are capped by the transport too)
SKEW_LISTED = 5


KEY_REFUSED = "host key: "  # the prefix of a refused host key's preflight error


def _short(text: str) -> str:
    return shorten(text, DETAIL_MAX, squash=True)


async def run_preflight(engine: EngineContext) -> str | None:
    """Check every host; the refusal reason, or None to go ahead."""
    bad: dict[str, str] = {}
    versions: dict[str, str | None] = {}
    sem = asyncio.Semaphore(CONCURRENCY)
    # The fleet lock is taken while the hosts' handshakes run (a connection changes
    # nothing); no host's lease is taken, nor its version read, before it is held.
    leases = engine.leases
    lock: asyncio.Task[str | None] | None = None

    async def locked() -> bool:
        return lock is None or await asyncio.shield(lock) is None

    async def one(rec: HostRecord) -> None:
        async with sem:
            try:
                result = await _check(engine, rec, locked)
            except Exception as exc:  # one host's surprise must not crash the preflight
                log.exception("preflight of %s", rec.name)
                error = _short(f"internal error: {exc!r}")
                result = ev.PreflightResult(host=rec.name, reachable=False, ok=False, error=error)
        if result is None:
            return  # the fleet lock was refused: nothing to say about this host
        engine.emit(result)
        versions[rec.name] = result.version
        if not result.ok:
            bad[rec.name] = result.error

    async with asyncio.TaskGroup() as tg:
        if leases is not None:
            lock = tg.create_task(leases.lock_fleet(), name="preflight:fleet-lock")
        for rec in engine.recs.values():
            rec.task = tg.create_task(one(rec), name=f"preflight:{rec.name}")
    if lock is not None and (refusal := lock.result()):
        return refusal  # another console holds the service: no host was changed
    for host, fingerprint in list(engine.transport.accepted_keys):
        engine.emit(
            ev.Notice(message=f"accepted new host key {fingerprint} (first use)", host=host)
        )
    _summary_notice(engine, versions, bad)
    if engine.control.aborted:
        return None
    if not bad:
        return None
    listed = "; ".join(f"{h}: {reason}" for h, reason in list(bad.items())[:SKEW_LISTED])
    more = f" (and {len(bad) - SKEW_LISTED} more)" if len(bad) > SKEW_LISTED else ""
    # A refused host key is a security alarm, not a host that is down: it stops the
    # rollout even under allow_unreachable (a host is never quietly left behind for it).
    keys = [h for h, reason in bad.items() if reason.startswith(KEY_REFUSED)]
    if keys and engine.allow_unreachable:
        return (
            f"preflight refused the start: the host key of {len(keys)} hosts was refused "
            f"(never skipped, even with unreachable hosts allowed): "
            + "; ".join(f"{h}: {bad[h]}" for h in keys[:SKEW_LISTED])
            + (f" (and {len(keys) - SKEW_LISTED} more)" if len(keys) > SKEW_LISTED else "")
        )
    if not engine.allow_unreachable:
        hint = f"; {engine.preflight_hint}" if engine.preflight_hint else ""
        return (
            f"preflight refused the start: {len(bad)} of {len(engine.recs)} hosts failed: "
            f"{listed}{more}{hint}"
        )
    for name, reason in bad.items():
        rec = engine.recs[name]
        engine.set_host_state(rec, HostState.SKIPPED, detail=f"preflight: {reason}")
        rec.failed = True
        engine.budget.fail(name)
    if (leases := engine.leases) is not None:  # a skipped host is not held till the end
        async with asyncio.TaskGroup() as tg:
            for name in bad:
                if leases.holds(engine.recs[name].host):
                    tg.create_task(leases.release(engine.recs[name].host))
    if engine.budget.exceeded:
        return (
            f"preflight: {len(bad)} hosts failed, more than max_failures allows "
            f"({engine.budget.allowed}): {listed}{more}"
        )
    engine.emit(
        ev.Notice(
            message=f"going ahead without {len(bad)} hosts that failed preflight: {listed}{more}"
        )
    )
    return None


async def _check(
    engine: EngineContext, rec: HostRecord, locked: Callable[[], Awaitable[bool]]
) -> ev.PreflightResult | None:
    """One host's preflight; None when the fleet lock (``locked``, awaited once
    connected) was refused: the host is left as it was."""
    spec = engine.spec
    name = rec.name
    try:
        conn = await engine.transport.connect(rec.host)
    except HostKeyError as exc:
        return ev.PreflightResult(
            host=name, reachable=False, ok=False, error=_short(KEY_REFUSED + exc.message)
        )
    except TransportError as exc:
        return ev.PreflightResult(
            host=name, reachable=False, ok=False, error=_short(f"unreachable: {exc.message}")
        )
    if not await locked():
        return None
    engine.connected(name, conn)
    leases = engine.leases
    version: str | None = None
    try:
        command: str | None = None
        become: Become | None = None
        if spec.current_version:
            command = render(spec.current_version, build_context(spec, rec.host, None))
            become = become_for(spec, rec.host, None)
        result: RunResult | None = None
        if leases is not None:
            # The host's lease, held from here until the host is done; the version read
            # rides in the same exec when it runs as the login user (leases.py).
            then = command if become is None else None
            held, result = await leases.take_at_preflight(rec.host, conn, then, VERSION_TIMEOUT)
            if held:
                return ev.PreflightResult(host=name, reachable=True, ok=False, error=_short(held))
        if command is not None:
            if result is None:
                result = await run_as(conn, name, command, become, timeout=VERSION_TIMEOUT)
            refused = sudo_refusal(rec.host, result, become, "the version read")
            if refused is not None or not result.ok or not result.first_line:
                error = refused or (
                    why(result, "current_version")
                    if not result.ok
                    else "current_version printed nothing"
                )
                return ev.PreflightResult(host=name, reachable=True, ok=False, error=error)
            version = result.first_line
            if leases is not None:
                leases.saw_version(rec.host, version)  # the deploy's "previous" (hostwork)
        _render_all(engine, rec, version)
        checks: list[tuple[str, bool, str]] = []
        for step in spec.preflight:
            command = render(step.run, build_context(spec, rec.host, version), raw=step.raw)
            become = become_for(spec, rec.host, step)
            result = await run_as(conn, name, command, become, timeout=step.timeout)
            passed = result.ok
            detail = sudo_refusal(rec.host, result, become, f"preflight {step.name}")
            checks.append((step.name, passed, "ok" if passed else detail or why(result, step.name)))
    except (InputError, HostFailure) as exc:  # TemplateError, a bad ansible_become* var
        detail = exc.detail if isinstance(exc, HostFailure) else str(exc)
        return ev.PreflightResult(
            host=name, reachable=True, version=version, ok=False, error=_short(detail)
        )
    except TransportError as exc:
        return ev.PreflightResult(
            host=name,
            reachable=False,
            version=version,
            ok=False,
            error=_short(f"unreachable: {exc.message}"),
        )
    failed = [c for c in checks if not c[1]]
    error = "; ".join(f"{n}: {d}" for n, _, d in failed)
    return ev.PreflightResult(
        host=name, reachable=True, version=version, ok=not failed, error=error, checks=tuple(checks)
    )


def _render_all(engine: EngineContext, rec: HostRecord, version: str | None) -> None:
    """Render every command of this host once, so a bad template fails here."""
    spec = engine.spec
    context = build_context(spec, rec.host, version)
    for step in spec.steps:
        render(step.run, context, raw=step.raw)
    if spec.health is not None:
        render(spec.health.run, context)
    if spec.current_version is None:
        return  # no previous version to roll back to; rollback steps naming it fail then
    for step in spec.rollback.steps:
        try:
            render(step.run, context, raw=step.raw)
        except TemplateError as exc:
            raise TemplateError(f"rollback step {step.name}: {exc}") from exc


def _summary_notice(
    engine: EngineContext, versions: dict[str, str | None], bad: dict[str, str]
) -> None:
    """One line for the timeline: how many hosts passed, and which versions run where
    (a skew between hosts is worth seeing before anything changes)."""
    total = len(engine.recs)
    seen = Counter(v for v in versions.values() if v is not None)
    parts = []
    for version, n in seen.most_common():
        if len(seen) > 1:
            hosts = [h for h, v in versions.items() if v == version]
            names = ", ".join(hosts[:SKEW_LISTED]) + (" ..." if len(hosts) > SKEW_LISTED else "")
            parts.append(f"{version} on {n} ({names})")
        else:
            parts.append(f"{version} on {n}")
    running = ("; version skew: " if len(seen) > 1 else "; running ") + "; ".join(parts)
    message = f"preflight: {total - len(bad)}/{total} hosts passed" + (running if parts else "")
    engine.emit(ev.Notice(message=message))
