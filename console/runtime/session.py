"""The one place a rollout's inputs become an :class:`~console.engine.Engine`.

Why one place: ``run``, ``demo``, ``drill``, ``resume``, the tests and the bench scripts
each built their engine, its transport and its journal header by hand, and a new
engine keyword (a restore point, a clock) meant editing every copy. Here:

* :func:`~console.runtime.rollout.load_rollout`: spec + inventory -> the targeted
  hosts and their plan (:class:`~console.runtime.rollout.Rollout`);
* :func:`create_journal`: the journal with the header every front end writes;
* :func:`build_engine`: rollout + journal + the lock already held + transport options
  -> the engine, with the notices its start journals (a broken stale lock...).

Taking and releasing the lock stays with the caller: how to wait for it and what to
say when it is held is the command line's policy, not the engine's.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from console.core.clock import SYSTEM, Clock
from console.engine import Engine, RestorePoint, spec_hash
from console.engine.leases import PRELUDE, LeaseOptions
from console.lock_options import broke_lock_notice
from console.runtime.limits import LocalFailureGuard, stop_for_local_cause
from console.runtime.rollout import Rollout, load_rollout
from console.signals.probe import Probe, probe_health
from console.store.journal import Journal
from console.store.lock import RolloutLock
from console.templating import redactor_for
from console.transport import Transport, TransportOptions, make_transport, rollout_options

__all__ = ["Rollout", "build_engine", "create_journal", "load_rollout"]


def create_journal(
    state_dir: Path,
    rollout_id: str,
    rollout: Rollout,
    operator: str,
    extra: Mapping[str, object] | None = None,
) -> Journal:
    """A new journal whose header says who ran what, where, from which files: what
    ``history``, ``show`` and ``resume`` read back. ``extra``: more header keys (a
    demo's or drill's scenario)."""
    header: dict[str, object] = {
        "who": operator,
        "service": rollout.spec.service,
        "version": rollout.spec.version,
        "spec_hash": spec_hash(rollout.spec.text),
        "machine": socket.gethostname(),
        "pid": os.getpid(),
        "spec_path": os.path.abspath(rollout.spec.path),
        "inventory_path": os.path.abspath(rollout.inventory_path),
        "argv": sys.argv[1:],
    }
    header.update(extra or {})
    return Journal.create(state_dir, rollout_id, header)


def build_engine(
    rollout: Rollout,
    *,
    operator: str,
    journal: Journal | None,
    rollout_id: str | None = None,
    options: TransportOptions | None = None,
    transport: Transport | None = None,
    lock: RolloutLock | None = None,
    lock_reason: str = "",
    allow_unreachable: bool = False,
    exit_when_paused: bool = False,
    monitors: bool = True,
    probe: Probe = probe_health,
    resume: RestorePoint | None = None,
    clock: Clock = SYSTEM,
    notices: Iterable[str] = (),
    leases: LeaseOptions | None = None,
    metrics_textfile: str | None = None,
) -> Engine:
    """The engine for ``rollout``, its start's notices queued.

    ``transport`` (a test's fake) wins over ``options``; with neither, the transport
    is sized for the rollout (:func:`~console.transport.rollout_options`). ``lock``:
    the lock the caller holds; a stale one it broke or took over is journaled, with
    ``lock_reason``. ``resume``: where a journaled rollout continues from (``rolldeck
    resume``). ``exit_when_paused``: headless (nobody at the keys to resume it, nobody
    looking: a spec without a ``vitals`` key then polls no vitals, signals/polls.py).
    ``clock``: the engine's time (a test's manual clock). ``leases``: take the fleet
    lock and host leases on the hosts (``run`` and ``resume``; see engine/leases.py).
    ``metrics_textfile``: a directory for the rollout's Prometheus text file (wins
    over the spec's ``metrics_out``). Hooks and the metrics file read the bus after
    the journal and never hold the rollout up (console/notify).
    """
    guard: LocalFailureGuard | None = None
    if transport is None:
        options = options or rollout_options(len(rollout.hosts))
        if leases is not None and PRELUDE not in options.shell_prelude:
            # every kept shell defines the folded lease operation once (leases.py)
            options = replace(options, shell_prelude=options.shell_prelude + PRELUDE)
        # A connect failing for a local cause (EMFILE, no user name) stops the rollout
        # once instead of failing hosts as unreachable (console/runtime/limits.py).
        transport = guard = LocalFailureGuard(make_transport(options), options)
    engine = Engine(
        rollout.spec,
        rollout.hosts,
        rollout.plan,
        transport,
        journal=journal,
        operator=operator,
        allow_unreachable=allow_unreachable,
        rollout_id=rollout_id,
        exit_when_paused=exit_when_paused,
        inventory_path=rollout.inventory_path,
        monitors=monitors,
        probe=probe,
        resume=resume,
        clock=clock,
        leases=leases,
        balancer=rollout.balancer,
        watched=not exit_when_paused,  # headless: no default vitals (nobody sees them)
    )
    if guard is not None:
        guard.on_local_failure = lambda reason: stop_for_local_cause(engine, reason)
    metrics_dir = metrics_textfile or rollout.spec.metrics_out
    if metrics_dir:
        from console.notify.textfile import attach_metrics_file

        attach_metrics_file(engine, metrics_dir)
    if rollout.spec.notify:  # after the journal, on threads of their own: console/notify
        from console.notify import attach_notifier

        attach_notifier(
            engine,
            rollout.spec.notify,
            redactor=redactor_for(rollout.spec, rollout.hosts),
            journal=str(journal.path) if journal is not None else "",
        )
    if lock is not None and lock.broken is not None:
        own = lock.broken.rollout_id == engine.rollout_id
        engine.notice(broke_lock_notice(operator, lock.broken.describe(), lock_reason, own=own))
    for notice in notices:
        engine.notice(notice)
    return engine
