"""Reconcile a crashed rollout's journal with what the hosts actually run.

Pure decisions, no I/O: :func:`journal_facts` extracts, per host, what the journal
proves (its last state, the steps of its last attempt, the ``once`` steps that
finished, the step in flight when the console died); :func:`decide` combines those
facts with a fresh observation of the host (its current version read over SSH and a
health check) into what the resumed engine starts it as.

The rules (issue 7, "Resume after a crash"):

* Steps are idempotent by documentation, so a host whose deploy was cut short is
  re-run from its first step, except for ``once: true`` steps that already finished ok.
* A ``once`` step that journaled ``StepStarted`` without ``StepFinished`` may or may
  not have run: it is never re-run; the host is flagged (FAILED) for the operator.
* A host whose steps all finished (or that never started) and that is on the target
  version and healthy counts as done. A host cut mid-deploy is not short-cut even if
  it looks healthy: its remaining steps (an undrain, say) still have to run.
* During a rollback: rolled-back hosts stay rolled back, a host found on its previous
  version and healthy after its rollback steps counts as rolled back, the other
  changed hosts are rolled back when the rollback continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console.core import events as ev
from console.core.events import HostState

MOVING = frozenset(
    {
        HostState.PREFLIGHT,
        HostState.RUNNING,
        HostState.VERIFYING,
        HostState.FROZEN,
        HostState.INTERRUPTED,
        HostState.ROLLING_BACK,
    }
)


@dataclass(slots=True)
class HostFacts:
    """What the journal says about one host."""

    name: str
    state: HostState = HostState.PENDING
    step: str | None = None
    detail: str = ""
    batch: int | None = None
    previous_version: str | None = None
    changed: bool = False  # a deploy step started on it at some point
    attempt_started: list[str] = field(default_factory=list)  # deploy steps, last attempt
    attempt_ok: list[str] = field(default_factory=list)
    in_flight: str | None = None  # a step started and never finished
    in_flight_rollback: bool = False
    once_done: set[str] = field(default_factory=set)
    rollback_ok: list[str] = field(default_factory=list)  # rollback steps, last attempt


@dataclass(slots=True)
class JournalFacts:
    hosts: dict[str, HostFacts]
    batches: list[tuple[str, ...]]
    rolling_back: bool  # a rollback was requested or running
    gates_passed: frozenset[int] = frozenset()  # after_batch of every gate passed


@dataclass(frozen=True, slots=True)
class Observation:
    """A host as found on resume: ``version`` None when it could not be read."""

    reachable: bool
    version: str | None
    healthy: bool | None  # None: not checked
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    state: HostState
    action: str  # done | deploy | redeploy | flagged | failed | skipped | rolled_back | roll_back
    detail: str
    failed: bool = False  # counts against the failure budget


def journal_facts(events: list[ev.Event], once_steps: frozenset[str]) -> JournalFacts:
    hosts: dict[str, HostFacts] = {}
    batches: list[tuple[str, ...]] = []
    rolling_back = False
    gates: set[int] = set()

    def host(name: str) -> HostFacts:
        return hosts.setdefault(name, HostFacts(name))

    for e in events:
        match e:
            case ev.RolloutStarted():
                batches = [tuple(b) for b in e.batches]
                for name in e.hosts:
                    host(name)
            case ev.PlanChanged():
                batches = [tuple(b) for b in e.batches]
            case ev.RolloutStateChanged() if e.state == ev.RolloutState.ROLLING_BACK:
                rolling_back = True
            case ev.OperatorCommand() if e.command == "rollback" and e.accepted:
                rolling_back = True
            case ev.BatchStarted() if e.rollback:
                rolling_back = True
            case ev.GatePassed():
                gates.add(e.after_batch)
            case ev.HostStateChanged():
                h = host(e.host)
                if e.state == HostState.RUNNING and e.detail != "resumed":
                    h.attempt_started, h.attempt_ok = [], []  # a new attempt (or a retry)
                if e.state == HostState.ROLLING_BACK and h.state != HostState.FROZEN:
                    h.rollback_ok = []
                h.state, h.detail = e.state, e.detail
                if e.step is not None:
                    h.step = e.step
            case ev.VersionRead() if e.role == "previous":
                host(e.host).previous_version = e.version
            case ev.StepStarted():
                h = host(e.host)
                h.in_flight, h.in_flight_rollback = e.step, e.rollback
                if not e.rollback:
                    h.changed = True
                    h.attempt_started.append(e.step)
            case ev.StepFinished():
                h = host(e.host)
                if h.in_flight == e.step:
                    h.in_flight = None
                if e.status != "ok":
                    continue
                if e.rollback:
                    h.rollback_ok.append(e.step)
                else:
                    h.attempt_ok.append(e.step)
                    if e.step in once_steps:
                        h.once_done.add(e.step)
            case _:
                pass
    for i, batch in enumerate(batches):
        for name in batch:
            host(name).batch = i
    return JournalFacts(hosts, batches, rolling_back, frozenset(gates))


def decide(
    facts: HostFacts,
    seen: Observation,
    *,
    target: str,
    steps: tuple[str, ...],
    once_steps: frozenset[str],
    rollback_steps: tuple[str, ...],
    rolling_back: bool,
) -> Decision:
    """What the resumed engine starts this host as (see the module doc)."""
    found = f"found on {seen.version}" if seen.version else "version unknown"
    if seen.healthy is not None:
        found += ", healthy" if seen.healthy else ", not healthy"
    if rolling_back:
        return _decide_rollback(facts, seen, found, rollback_steps)
    state = facts.state
    if facts.in_flight in once_steps and not facts.in_flight_rollback:
        return Decision(
            HostState.FAILED,
            "flagged",
            f"once step {facts.in_flight} was in flight when the console stopped and "
            f"must not run twice: check the host ({found}), then retry or skip it",
            failed=True,
        )
    on_target = seen.version is not None and seen.version == target and seen.healthy is True
    if state == HostState.HEALTHY:
        if seen.version is not None and seen.version != target:
            return Decision(
                HostState.FAILED,
                "flagged",
                f"the journal says healthy on {target} but the host runs {seen.version}",
                failed=True,
            )
        return Decision(HostState.HEALTHY, "done", f"healthy ({found})")
    if state == HostState.FAILED and facts.in_flight is None:
        return Decision(HostState.FAILED, "failed", facts.detail or "failed", failed=True)
    if state == HostState.SKIPPED:
        return Decision(
            HostState.SKIPPED,
            "skipped",
            facts.detail or "skipped",
            failed=facts.detail.startswith("preflight"),
        )
    if not facts.changed:
        if on_target:
            return Decision(HostState.HEALTHY, "done", f"already on the target version ({found})")
        return Decision(HostState.PENDING, "deploy", f"not started ({found})")
    complete = all(s in facts.attempt_ok or s in facts.once_done for s in steps)
    if complete and on_target:
        return Decision(HostState.HEALTHY, "done", f"every step had finished; {found}")
    where = facts.in_flight or facts.step or "its first step"
    skipping = sorted(facts.once_done)
    tail = f"; once steps done, not re-run: {', '.join(skipping)}" if skipping else ""
    return Decision(
        HostState.PENDING,
        "redeploy",
        f"was {state.value} at {where} when the console stopped ({found}): "
        f"re-running its steps{tail}",
    )


def _decide_rollback(
    facts: HostFacts, seen: Observation, found: str, rollback_steps: tuple[str, ...]
) -> Decision:
    if facts.state == HostState.ROLLED_BACK:
        return Decision(HostState.ROLLED_BACK, "rolled_back", f"rolled back ({found})")
    if not facts.changed:
        if facts.state in (HostState.FAILED, HostState.SKIPPED):
            return Decision(
                facts.state, "skipped", facts.detail, failed=facts.state == HostState.FAILED
            )
        return Decision(HostState.PENDING, "deploy", f"never changed ({found})")
    back = (
        facts.previous_version is not None
        and seen.version == facts.previous_version
        and seen.healthy is True
        and all(s in facts.rollback_ok for s in rollback_steps)
    )
    if back:
        return Decision(HostState.ROLLED_BACK, "rolled_back", f"rollback had finished; {found}")
    state = HostState.INTERRUPTED if facts.state in MOVING else facts.state
    return Decision(
        state,
        "roll_back",
        f"to be rolled back to {facts.previous_version} ({found})",
        failed=facts.state == HostState.FAILED,
    )
