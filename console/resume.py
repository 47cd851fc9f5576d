"""``rolldeck resume``'s core: find a rollout, replay its journal, look at the hosts,
reconcile, and hand an :class:`~console.engine.Engine` the
:class:`~console.engine.context.RestorePoint` it continues from
(``Engine(resume=state.restore_point())``).

The resumed engine appends to the same journal under the same rollout id, so
``history`` and ``show`` see one rollout. Its first event is a ``Notice`` (not a
second ``RolloutStarted``); the reconciliation is journaled as ``VersionRead``
(role ``current``) and ``HostStateChanged`` events, then a notice with the plan for
the rest. It starts paused: the operator (or ``--yes`` headless) resumes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.core import events as ev
from console.core.errors import InputError
from console.core.events import HostState, Outcome
from console.core.files import MAX_INPUT_BYTES, read_limited, universal_newlines
from console.core.state import RolloutView, fold
from console.engine.context import HostRestore, RestorePoint
from console.engine.hostwork import VERSION_TIMEOUT, signals_spec
from console.reconcile import Decision, JournalFacts, Observation, decide, journal_facts
from console.signals.health import probe_health
from console.spec import HealthSpec, RolloutSpec, parse_spec
from console.store.history import is_running, live_owners, load_events, resolve_id
from console.store.journal import JournalError, last_line, list_journals
from console.templating import TemplateError, build_context, render
from console.transport.base import Connection, Transport, TransportError
from inventory import load_inventory
from inventory.model import Host

RESUMABLE = (None, Outcome.PAUSED)
CONCURRENCY = 20  # hosts observed at once (handshakes are capped by the transport too)
PAUSE_REASON = "resumed: waiting for the operator"
ROLLBACK_PAUSE_REASON = "rollback requested: waiting for the operator"
# An ended rollout ``rolldeck rollback`` takes back: every outcome but rolled back
# (a succeeded release may turn out bad later), and an unfinished one not running.
ROLLBACK_FROM = (
    None,
    Outcome.PAUSED,
    Outcome.FAILED,
    Outcome.ABORTED,
    Outcome.SUCCEEDED,
)


@dataclass(slots=True)
class Replay:
    """A rollout as its journal tells it."""

    path: Path
    header: dict[str, Any]
    events: list[ev.Event]
    started: ev.RolloutStarted
    view: RolloutView

    @property
    def rollout_id(self) -> str:
        return self.started.rollout_id

    @property
    def spec_path(self) -> str:
        """Absolute (the header's), so a resume works from any directory."""
        return str(self.header.get("spec_path") or self.started.spec_path)

    @property
    def inventory_path(self) -> str:
        return str(self.header.get("inventory_path") or self.started.inventory_path)


@dataclass(slots=True)
class ResumeState:
    """A rollout reconciled with its hosts: what ``resume`` shows, and the restore
    point the engine continues from (:meth:`restore_point`)."""

    replay: Replay
    facts: JournalFacts
    observed: dict[str, Observation]
    decisions: dict[str, Decision]
    operator: str
    first_event: ev.Event = field(init=False)
    start_batch: int = 0
    pause_reason: str = PAUSE_REASON

    @property
    def gate_first(self) -> int | None:
        """The gate before ``start_batch`` when it was never passed (the console died
        at it or in its bake): it runs again before that batch, as it would have."""
        s = self.start_batch
        if 0 < s < len(self.facts.batches) and (s - 1) not in self.facts.gates_passed:
            return s - 1
        return None

    def __post_init__(self) -> None:
        self.first_event = ev.Notice(
            message=(
                f"resumed by {self.operator} (pid {os.getpid()} on {socket.gethostname()}) "
                f"after {len(self.replay.events)} journaled events"
            )
        )

    def replayed_view(self) -> RolloutView:
        return fold(self.replay.events)

    @property
    def rolling_back(self) -> bool:
        return self.facts.rolling_back

    def plan_text(self) -> str:
        """The rest of the rollout, in words."""
        by: dict[str, list[str]] = {}
        for name, d in self.decisions.items():
            by.setdefault(d.action, []).append(name)
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in sorted(by.items())]
        if self.rolling_back:
            n = len(by.get("roll_back", []))
            rest = f"the rollback continues on {n} host{'' if n == 1 else 's'}"
        else:
            todo = len(by.get("deploy", [])) + len(by.get("redeploy", []))
            total = len(self.facts.batches)
            rest = (
                f"{todo} hosts left to deploy from batch {self.start_batch + 1} of {total}"
                if todo
                else "no host left to deploy"
            )
            if todo and self.gate_first is not None:
                rest += f", after the gate that follows batch {self.gate_first + 1}"
        flagged = by.get("flagged", [])
        warn = f"; flagged for the operator: {', '.join(sorted(flagged))}" if flagged else ""
        return f"reconciled: {', '.join(parts)}; {rest}{warn}"

    def restore_point(self) -> RestorePoint:
        """What the engine takes over: every host as reconciled, the batch and gate to
        continue from; it starts paused (``Engine.restore``)."""
        hosts: dict[str, HostRestore] = {}
        for name, d in self.decisions.items():
            facts = self.facts.hosts.get(name)
            if facts is None:
                continue
            seen = self.observed.get(name)
            read = facts.previous_version is not None or facts.changed
            hosts[name] = HostRestore(
                state=d.state,
                detail=d.detail,
                step=facts.step,
                changed=facts.changed,
                batch=facts.batch if (facts.changed or d.state != HostState.PENDING) else None,
                once_done=frozenset(facts.once_done),
                previous_version=facts.previous_version if read else None,
                previous_read=read,
                failed=d.failed,
                observed_version=seen.version if seen is not None else None,
            )
        return RestorePoint(
            view=self.replayed_view(),
            first_event=self.first_event,
            hosts=hosts,
            start_batch=self.start_batch,
            gate_first=self.gate_first,
            rolling_back=self.rolling_back,
            plan_text=self.plan_text(),
            pause_reason=self.pause_reason,
        )


# -- finding the rollout -----------------------------------------------------------------


def replay(path: Path) -> Replay:
    header, events = load_events(path)
    started = next((e for e in events if isinstance(e, ev.RolloutStarted)), None)
    if started is None:
        raise InputError(f"{path}: the journal has no RolloutStarted event", field="ID")
    return Replay(path, header, events, started, fold(events))


def find_rollout(state_dir: Path, rollout_id: str | None, service: str | None) -> Replay:
    """The rollout to resume: ``rollout_id`` (or a unique prefix), else the latest
    unfinished one (of ``service``). InputError when there is none or it cannot be."""
    owners = live_owners(state_dir)
    if rollout_id:
        r = replay(resolve_id(state_dir, rollout_id))
        _check_resumable(state_dir, r, owners)
        return r
    candidates: list[Replay] = []
    for path in list_journals(state_dir):
        if _ended(path):
            continue
        try:
            r = replay(path)
        except (InputError, JournalError, KeyError, TypeError, ValueError):
            continue
        if service is not None and r.started.service != service:
            continue
        if r.view.outcome not in RESUMABLE:
            continue
        if is_running(state_dir, r.rollout_id, r.header, owners)[0]:
            continue
        candidates.append(r)
    if not candidates:
        what = f" of {service}" if service else ""
        raise InputError(f"no unfinished rollout{what} to resume in {state_dir}", field="ID")
    services = {r.started.service for r in candidates}
    if service is None and len(services) > 1:
        raise InputError(
            f"unfinished rollouts of several services ({', '.join(sorted(services))}): "
            "name one with ID or --service",
            field="ID",
        )
    return max(candidates, key=lambda r: (r.started.ts, r.rollout_id))


def _check_resumable(state_dir: Path, r: Replay, owners: dict[str, int]) -> None:
    if r.view.outcome not in RESUMABLE:
        assert r.view.outcome is not None
        back = (
            f"; `rolldeck rollback {r.rollout_id}` takes back the hosts it changed"
            if r.view.outcome in ROLLBACK_FROM
            else ""
        )
        raise InputError(
            f"rollout {r.rollout_id} already ended: {r.view.outcome.value}{back}", field="ID"
        )
    _check_not_running(state_dir, r, owners)


def find_for_rollback(state_dir: Path, rollout_id: str) -> Replay:
    """The rollout ``rolldeck rollback`` takes back: ended (failed, aborted, succeeded),
    stopped (paused, interrupted) or with a rollback cut short; never a running one."""
    r = replay(resolve_id(state_dir, rollout_id))
    if r.view.outcome not in ROLLBACK_FROM:
        assert r.view.outcome is not None
        raise InputError(
            f"rollout {r.rollout_id} already ended {r.view.outcome.value}: nothing to roll back",
            field="ID",
        )
    _check_not_running(state_dir, r, live_owners(state_dir))
    return r


def _check_not_running(state_dir: Path, r: Replay, owners: dict[str, int]) -> None:
    running, pid = is_running(state_dir, r.rollout_id, r.header, owners)
    if running:
        raise InputError(
            f"rollout {r.rollout_id} is still running (pid {pid}): "
            f"`rolldeck attach {r.rollout_id}` to take it over",
            field="ID",
        )


# -- what the rollout ran: spec and hosts -----------------------------------------------


def load_resumed_spec(r: Replay) -> RolloutSpec:
    """The spec file the rollout started from, if unchanged (its hash is journaled)."""
    s = r.started
    path = r.spec_path
    try:  # bounded before it is read in full, as every spec is (``load_spec``)
        data = read_limited(path, MAX_INPUT_BYTES, "the rollout's spec")
    except OSError as exc:
        raise InputError(
            f"the rollout's spec {path} cannot be read ({exc.strerror or exc})", field="spec"
        ) from None
    try:
        text: str | None = universal_newlines(data.decode("utf-8"))
    except UnicodeDecodeError:
        text = None  # not what was journaled (that was UTF-8): changed
    if text is None or "sha256:" + hashlib.sha256(text.encode()).hexdigest() != s.spec_hash:
        raise InputError(
            f"the spec {path} changed since rollout {s.rollout_id} started; "
            "restore it (its journaled text is in `rolldeck show`) to resume",
            file=path,
        )
    return parse_spec(text, path)  # the text checked, not a second read of the file


def resumed_hosts(r: Replay, batches: list[tuple[str, ...]]) -> list[Host]:
    inv = load_inventory(r.inventory_path)
    names = [n for b in batches for n in b]
    missing = [n for n in names if n not in inv.hosts]
    if missing:
        raise InputError(
            f"hosts of the rollout missing from {r.inventory_path}: " + ", ".join(missing[:5]),
            file=r.inventory_path,
        )
    return [inv.hosts[n] for n in names]


# -- looking at the hosts ---------------------------------------------------------------


async def observe(
    spec: RolloutSpec,
    hosts: list[Host],
    transport: Transport,
    going_back: Mapping[str, str] | None = None,
) -> dict[str, Observation]:
    """Every host's current version and health, read over SSH now.

    ``going_back`` (a rollback being resumed): host -> the version it goes back to;
    those hosts' health is judged against that version, as the rollback judges it.
    """
    sem = asyncio.Semaphore(CONCURRENCY)
    out: dict[str, Observation] = {}
    back = going_back or {}

    async def one(host: Host) -> None:
        async with sem:
            out[host.name] = await observe_host(spec, host, transport, back.get(host.name))

    async with asyncio.TaskGroup() as tg:
        for host in hosts:
            tg.create_task(one(host), name=f"observe:{host.name}")
    return out


async def observe_host(
    spec: RolloutSpec, host: Host, transport: Transport, going_back_to: str | None = None
) -> Observation:
    try:
        conn = await transport.connect(host)
    except TransportError as exc:
        return Observation(False, None, None, f"unreachable: {exc.message}")
    version: str | None = None
    try:
        if spec.current_version:
            command = render(spec.current_version, build_context(spec, host, None))
            result = await conn.run(command, timeout=VERSION_TIMEOUT)
            if result.ok and result.first_line:
                version = result.first_line.strip()
        rollback = going_back_to is not None
        health = signals_spec(spec, host, going_back_to, rollback=rollback).health
    except TemplateError as exc:
        return Observation(True, version, None, str(exc))
    except TransportError as exc:
        return Observation(False, version, None, f"unreachable: {exc.message}")
    if health is None:
        return Observation(True, version, True, "no health check in the spec")
    healthy, detail = await health_gate(conn, health)
    return Observation(True, version, healthy, detail)


async def health_gate(conn: Connection, health: HealthSpec) -> tuple[bool, str]:
    """``healthy_after`` passes in a row before ``deadline``, as the engine gates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + health.deadline
    passes, detail = 0, ""
    while True:
        ok, detail = await probe_health(conn, health)
        passes = passes + 1 if ok else 0
        if passes >= health.healthy_after:
            return True, detail
        if deadline - loop.time() < health.every:
            return False, detail
        await asyncio.sleep(health.every)


def rollback_targets(r: Replay, spec: RolloutSpec, *, requested: bool = False) -> dict[str, str]:
    """Hosts a resumed rollback takes back, with the version each goes back to
    (empty when the journal shows no rollback, unless ``requested``: ``rolldeck
    rollback`` of an ended rollout)."""
    facts = journal_facts(r.events, frozenset(s.name for s in spec.steps if s.once))
    if not (facts.rolling_back or requested):
        return {}
    return {
        name: hf.previous_version
        for name, hf in facts.hosts.items()
        if hf.changed and hf.previous_version is not None
    }


def changed_hosts(r: Replay, spec: RolloutSpec) -> list[str]:
    """The hosts the rollout changed (a deploy step started on them), in plan order."""
    facts = journal_facts(r.events, frozenset(s.name for s in spec.steps if s.once))
    return [n for b in facts.batches for n in b if facts.hosts[n].changed]


def reconcile(
    r: Replay,
    spec: RolloutSpec,
    observed: dict[str, Observation],
    operator: str,
    *,
    roll_back: bool = False,
) -> ResumeState:
    """``roll_back``: ``rolldeck rollback``: the rollout is taken back whatever its
    journal shows, and only the hosts it changed take part."""
    once = frozenset(s.name for s in spec.steps if s.once)
    facts = journal_facts(r.events, once)
    if roll_back:
        facts.rolling_back = True
        kept = (tuple(n for n in b if facts.hosts[n].changed) for b in facts.batches)
        facts.batches = [b for b in kept if b]
    decisions = {
        name: decide(
            facts.hosts[name],
            observed.get(name, Observation(False, None, None, "not observed")),
            target=spec.version,
            steps=tuple(s.name for s in spec.steps),
            once_steps=once,
            rollback_steps=tuple(s.name for s in spec.rollback.steps),
            rolling_back=facts.rolling_back,
        )
        for name in (n for b in facts.batches for n in b)
    }
    todo = [
        facts.hosts[n].batch
        for n, d in decisions.items()
        if d.state == HostState.PENDING and facts.hosts[n].batch is not None
    ]
    start = min((b for b in todo if b is not None), default=len(facts.batches))
    state = ResumeState(r, facts, observed, decisions, operator, start_batch=start)
    if roll_back:
        outcome = r.view.outcome.value if r.view.outcome else "interrupted"
        state.pause_reason = ROLLBACK_PAUSE_REASON
        state.first_event = ev.Notice(
            message=(
                f"rollback of rollout {r.rollout_id} ({outcome}) requested by {operator} "
                f"(pid {os.getpid()} on {socket.gethostname()}) after "
                f"{len(r.events)} journaled events"
            )
        )
    return state


def describe_state(state: ResumeState) -> list[str]:
    """The reconciled picture, one line per host, then the plan."""
    lines = [
        f"rollout {state.replay.rollout_id}: {state.replay.started.service} "
        f"{state.replay.started.version}"
    ]
    for name, d in state.decisions.items():
        lines.append(f"  {name:<20} {d.state.value:<12} {d.action:<11} {d.detail}")
    lines.append(state.plan_text())
    return lines


def _ended(path: Path) -> bool:
    """Whether the journal's last line ends its rollout for good (not paused): told
    from the file's end alone, so a state directory of many finished rollouts is not
    replayed whole at every start. Anything else (unsure included) is replayed."""
    last = last_line(path)
    if last is None or last.get("kind") != ev.RolloutFinished.kind:
        return False
    outcome = last.get("outcome")
    return outcome in {o.value for o in Outcome} and Outcome(outcome) not in RESUMABLE


def unfinished_hints(state_dir: Path, service: str) -> list[str]:
    """What ``rolldeck run`` says on start about this service's unfinished rollouts:
    how to resume a stopped one, or attach to a running one."""
    owners = live_owners(state_dir)
    out: list[str] = []
    for path in list_journals(state_dir):
        if _ended(path):
            continue
        try:
            r = replay(path)
        except (InputError, JournalError, KeyError, TypeError, ValueError):
            continue
        if r.started.service != service or r.view.outcome not in RESUMABLE:
            continue
        running, pid = is_running(state_dir, r.rollout_id, r.header, owners)
        rid = r.rollout_id
        if running:
            out.append(f"rollout {rid} of {service} is running (pid {pid}): rolldeck attach {rid}")
            continue
        how = "paused" if r.view.outcome == Outcome.PAUSED else "interrupted (its console died)"
        why = f": {r.view.state_reason}" if r.view.state_reason else ""
        out.append(
            f"rollout {rid} of {service} stopped unfinished, {how}{why}; "
            f"continue it with: rolldeck resume {rid}"
        )
    return out
