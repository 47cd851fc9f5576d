"""Scoring a rehearsal drill: what the journal and the fleet's true states say.

A drill runs a rollout against the simulated fleet with a known fault (the scenario),
so rolldeck can be graded on it: how long after the fault could first show (behind a
load balancer, once a switch or a canary's weights sent it traffic) did an alert
fire, how long after that did someone (or the engine's policy) act, how many hosts
ran the bad version, whether the rollback completed (in blue-green, the switch back:
the new pool stays idle on the new version) and whether every host ended on a
version the journal can account for. Everything here is a pure function of the
journal's events, the scenario and the versions read back from the fleet, so it is
tested without running anything; ``console.subcommands.demo`` runs the drill.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from console.core import events as ev
from console.core.events import DrillScorecard, Event, HostState, Outcome
from console.core.safe_files import open_append
from console.simfleet.scenario import Scenario

if TYPE_CHECKING:
    from console.spec import RolloutSpec

ACTIONS = ("pause", "rollback", "abort")  # the commands that count as acting on an alert
FAILED_STATES = (HostState.FAILED, HostState.ROLLBACK_FAILED)
LATENCY_FAULT = 1.5  # a target version this many times slower than the initial is bad


# -- what the scenario makes bad ----------------------------------------------------


def scenario_faults(scenario: Scenario, hosts: Iterable[str]) -> dict[str, str]:
    """Host -> why the scenario makes it (or the target version on it) bad.

    A host is bad when the target version behaves worse there than the initial one
    (a higher error rate, a median latency over LATENCY_FAULT times the initial's,
    failing or flapping health, a hanging install) or when a host rule breaks the host
    itself (full disk, unreachable). A slow *host* (``slow:``) is not a fault: it still
    gets there within its timeouts.
    """
    target, initial = scenario.target_version, scenario.initial_version
    out: dict[str, str] = {}
    for host in hosts:
        new, old = scenario.behaviour(host, target), scenario.behaviour(host, initial)
        why: list[str] = []
        if (new.error_rate or 0.0) > (old.error_rate or 0.0):
            why.append(
                f"error rate {_pct(new.error_rate)} on {target} (was {_pct(old.error_rate)})"
            )
        old_latency, new_latency = old.latency or 0.0, new.latency or 0.0
        if new_latency > LATENCY_FAULT * old_latency:
            why.append(
                f"latency {new_latency * 1000:g}ms on {target} (was {old_latency * 1000:g}ms)"
            )
        if new.install_hangs:
            why.append(f"install of {target} hangs")
        if new.health == "failing":
            why.append(f"health fails on {target}")
        if new.flapping:
            why.append(f"health flaps every {new.flapping:g}s on {target}")
        for rule in scenario.rules_for(host):
            if rule.disk_full is not None:
                why.append("disk full" + _trigger(rule.disk_full))
            if rule.unreachable is not None:
                why.append("unreachable" + _trigger(rule.unreachable))
        if why:
            out[host] = "; ".join(why)
    return out


def _pct(ratio: float | None) -> str:
    return f"{(ratio or 0.0) * 100:g}%"


def _trigger(t: object) -> str:
    on, after = getattr(t, "on", None), getattr(t, "after", None)
    if on:
        return f" on {on}"
    if after is not None:
        return f" after {after:g}s"
    return ""


def live_step(spec: RolloutSpec) -> str | None:
    """The deploy step after which the new version is live on a host: the last step
    that names ``{version}`` (an install or activate), else the last step."""
    named = [s.name for s in spec.steps if "{version}" in s.run]
    if named:
        return named[-1]
    return spec.steps[-1].name if spec.steps else None


# -- the scorecard ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrillInfo:
    """What the scorecard needs besides the journal."""

    scenario: str
    seed: int
    policy: str  # 'auto' | 'operator'
    faults: Mapping[str, str]  # scenario_faults() over the fleet's hosts
    live_step: str | None


@dataclass(slots=True)
class _Facts:
    """What one pass over the journal finds, before any judgement."""

    target: str = ""
    outcome: Outcome = Outcome.FAILED
    exit_code: int = ev.OUTCOME_EXIT_CODES[Outcome.FAILED]
    previous: dict[str, str | None] = field(default_factory=dict)  # read before the change
    preflight: dict[str, str] = field(default_factory=dict)  # read at preflight
    deploy_start: dict[str, float] = field(default_factory=dict)
    live_at: dict[str, float] = field(default_factory=dict)
    timed_out: list[tuple[str, str]] = field(default_factory=list)
    detections: list[tuple[float, str]] = field(default_factory=list)
    actions: list[ev.OperatorCommand] = field(default_factory=list)
    rollback_requested: bool = False
    alerts: int = 0
    pools: dict[str, list[str]] = field(default_factory=dict)  # blue-green: pool -> hosts
    traffic_at: float | None = None  # the new version first got traffic by a shift
    idle_after_switch_back: set[str] = field(default_factory=set)  # hosts left out of traffic

    def read(self, events: Iterable[Event], live_step: str | None) -> None:
        for e in events:
            match e:
                case ev.RolloutStarted():
                    self.target = e.version
                case ev.PreflightResult() if e.version:
                    self.preflight[e.host] = e.version
                case ev.VersionRead(role="previous"):
                    self.previous.setdefault(e.host, e.version)
                case ev.VersionRead(role="new") if e.version == self.target:
                    self.live_at.setdefault(e.host, e.ts)
                case ev.StepStarted(rollback=False):
                    self.deploy_start.setdefault(e.host, e.ts)
                case ev.StepFinished():
                    if e.status == "timeout":
                        step = f"rollback {e.step}" if e.rollback else e.step
                        self.timed_out.append((e.host, step))
                    if not e.rollback and e.step == live_step and e.status == "ok":
                        self.live_at.setdefault(e.host, e.ts)
                case ev.Alert(level="critical"):
                    self.alerts += 1
                    self.detections.append((e.ts, f"{e.rule}: {e.message}"))
                case ev.HostStateChanged() if e.state in FAILED_STATES:
                    self.detections.append((e.ts, f"{e.host} {e.state.value}: {e.detail}"))
                case ev.OperatorCommand() if e.command in ACTIONS:
                    self.rollback_requested |= e.command == "rollback" and e.accepted
                    self.actions.append(e)
                case ev.TrafficShifted(move="pools") if e.pools:
                    self.pools = {pool: list(hosts) for pool, hosts in e.pools.items()}
                case ev.TrafficShifted(move="switch" | "weights", phase="start"):
                    if self.traffic_at is None:
                        self.traffic_at = e.ts
                case ev.TrafficShifted(move="switch_back", phase="done"):
                    # Blue-green's rollback is the switch back: the new pool keeps the
                    # new version, idle (no traffic), which is what rolled back means here.
                    self.idle_after_switch_back = set(self.pools.get(e.idle, ()))
                case ev.RolloutFinished():
                    self.outcome, self.exit_code = e.outcome, e.exit_code
        for host, version in self.preflight.items():  # hosts never changed
            self.previous.setdefault(host, version)


def score(
    events: Sequence[Event], info: DrillInfo, final_versions: Mapping[str, str]
) -> DrillScorecard:
    """The scorecard of a finished drill from its journal events and every host's
    active version as read back from the fleet (``final_versions``)."""
    from console.engine import POLICY  # the operator name of the engine's own commands

    f = _Facts()
    f.read(events, info.live_step)

    # When the fault could first show: the bad version live on a bad host, or, where
    # it never went live there (a failed install, a dead host), its deploy starting.
    starts = [f.live_at.get(h, f.deploy_start.get(h)) for h in info.faults]
    fault_at = min((t for t in starts if t is not None), default=None)
    if fault_at is not None and f.traffic_at is not None:
        # Blue-green's new pool, a weighted canary at weight 0: the bad version ran
        # without traffic; it could show (and be alerted on) only once a shift sent some.
        fault_at = max(fault_at, f.traffic_at)

    after = [d for d in f.detections if fault_at is None or d[0] >= fault_at]
    first_alert_at, first_alert = min(after, default=(None, ""), key=lambda d: d[0])

    # Under --policy operator the engine's own commands do not count: only a person's.
    since = first_alert_at if first_alert_at is not None else fault_at
    act = next(
        (
            a
            for a in f.actions
            if (info.policy == "auto" or a.operator != POLICY) and (since is None or a.ts >= since)
        ),
        None,
    )
    first_action = ""
    if act is not None:
        who = "the engine's policy" if act.operator == POLICY else act.operator
        first_action = f"{act.command} by {who}"

    target = f.target
    exposed = set(f.live_at) | {h for h, v in final_versions.items() if target and v == target}
    known = {h: {target, f.previous.get(h)} - {None, ""} for h in final_versions}
    unknown = sorted(h for h, v in final_versions.items() if v not in known[h])
    rollback = "not_requested"
    not_back: tuple[str, ...] = ()
    if f.rollback_requested:
        not_back = tuple(
            h
            for h in sorted(f.deploy_start)  # every host a deploy step touched
            if h not in f.idle_after_switch_back
            and (f.previous.get(h) is None or final_versions.get(h) != f.previous[h])
        )
        done = f.outcome == Outcome.ROLLED_BACK and not not_back
        rollback = "completed" if done else "incomplete"

    return DrillScorecard(
        scenario=info.scenario,
        seed=info.seed,
        policy=info.policy,
        outcome=f.outcome,
        exit_code=f.exit_code,
        target_version=target,
        fault_at=fault_at,
        first_alert_at=first_alert_at,
        first_alert=first_alert,
        time_to_alert=_delta(fault_at, first_alert_at),
        first_action_at=act.ts if act else None,
        first_action=first_action,
        action_by_policy=act is not None and act.operator == POLICY,
        time_to_act=_delta(first_alert_at, act.ts if act else None),
        bad_hosts=dict(info.faults),
        new_version_hosts=tuple(sorted(exposed)),
        blast_radius=tuple(sorted(exposed & set(info.faults))),
        rollback=rollback,
        not_rolled_back=not_back,
        final_versions=dict(sorted(final_versions.items())),
        unknown_version_hosts=tuple(unknown),
        timed_out_steps=tuple(f.timed_out),
        alerts=f.alerts,
    )


def _delta(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)


# -- the load balancer's side ---------------------------------------------------------


def balancer_lines(report: Mapping[str, Any]) -> list[str]:
    """A load-balanced fleet's ``simctl balancer`` report in words: which servers
    HAProxy holds in which state (by pool), and what the load generator's requests got
    back from each version, with the wall time of each version's last answer."""
    servers: Mapping[str, Mapping[str, Any]] = report.get("servers", {})
    groups: dict[tuple[str, str], list[str]] = {}
    for name, s in servers.items():
        admin = str(s.get("admin"))
        weight = int(s.get("weight", 1))
        state = admin if weight > 0 or admin != "ready" else "ready, weight 0"
        groups.setdefault((str(s.get("pool") or ""), state), []).append(name)
    parts = [
        f"{pool + ' ' if pool else ''}{_names(hosts, 4)} {state}"
        for (pool, state), hosts in sorted(groups.items())
    ]
    lines = [f"HAProxy backend {report.get('backend', 'app')}: " + "; ".join(parts)]
    traffic: Mapping[str, Any] = report.get("traffic", {})
    answers: Mapping[str, Mapping[str, int]] = traffic.get("answers", {})
    last: Mapping[str, float] = traffic.get("last", {})
    served = []
    for version, by_status in sorted(answers.items()):
        total = sum(by_status.values())
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(by_status.items()))
        who = version or "no server (HAProxy or the network)"
        when = (
            f", last at {time.strftime('%H:%M:%S', time.localtime(last[version]))}"
            if version in last
            else ""
        )
        served.append(f"{who} answered {total} ({codes}){when}")
    skipped = int(traffic.get("skipped", 0))
    more = f"; {skipped} not sent (every slot busy)" if skipped else ""
    lines.append(
        f"load generator: {traffic.get('sent', 0)} requests through HAProxy; "
        + ("; ".join(served) or "no answers")
        + more
    )
    return lines


# -- the journal -----------------------------------------------------------------------


def append_event(path: str | os.PathLike[str], event: Event) -> None:
    """Append one event to a finished rollout's journal, fsync'd, in the journal's
    own JSON-lines format. The file must exist (its 0600 mode is kept as it is)."""
    line = json.dumps(ev.to_json(event), separators=(",", ":"), default=str) + "\n"
    fd = open_append(path)  # never through a symlink, only a regular file of ours
    try:
        view = memoryview(line.encode())
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


# -- printing --------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _names(names: Sequence[str], limit: int = 8) -> str:
    """``3 (web-01, api-01, worker-01)``; long lists end in ``and N more``."""
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    hosts = "host" if len(names) == 1 else "hosts"
    return f"{len(names)} {hosts}" + (f" ({shown}{more})" if names else "")


def _versions(card: DrillScorecard) -> str:
    counts: dict[str, int] = {}
    for version in card.final_versions.values():
        counts[version] = counts.get(version, 0) + 1
    parts = ", ".join(f"{n} on {v}" for v, n in sorted(counts.items()))
    if card.unknown_version_hosts:
        return f"NOT all known: {_names(list(card.unknown_version_hosts))}; {parts}"
    return f"all known ({parts})"


def scorecard_rows(card: DrillScorecard) -> list[tuple[str, str]]:
    """The scorecard as (label, value) lines, for the table and plain text alike."""
    by_why: dict[str, list[str]] = {}
    for host, why in sorted(card.bad_hosts.items()):
        by_why.setdefault(why, []).append(host)
    fault_text = "; ".join(f"{why}: {_names(hosts, 4)}" for why, hosts in by_why.items())
    clock = time.strftime("%H:%M:%S", time.localtime(card.fault_at)) if card.fault_at else "-"
    alert = _seconds(card.time_to_alert)
    if card.first_alert:
        alert += f"  ({card.first_alert})"
    elif card.fault_at is not None:
        alert += "  (no alert)"
    act = _seconds(card.time_to_act)
    if card.first_action:
        act += f"  ({card.first_action})"
    rollback = card.rollback.replace("_", " ")
    if card.not_rolled_back:
        rollback += f": not back on their previous version: {_names(list(card.not_rolled_back))}"
    timed = ", ".join(f"{h} {s}" for h, s in card.timed_out_steps) or "none"
    return [
        ("scenario", f"{card.scenario} (seed {card.seed}, policy {card.policy})"),
        ("outcome", f"{card.outcome.value} (exit {card.exit_code})"),
        ("fault", fault_text or "none in this fleet"),
        ("fault could first show", clock),
        ("time to first alert", alert),
        ("alert to first action", act),
        ("blast radius (ran the bad version)", _names(list(card.blast_radius))),
        (f"hosts that ran {card.target_version}", _names(list(card.new_version_hosts))),
        ("rollback", rollback),
        ("final versions (read over SSH)", _versions(card)),
        ("timed-out steps", timed),
        ("critical alerts", str(card.alerts)),
    ]


def print_scorecard(card: DrillScorecard, out: IO[str], *, as_json: bool = False) -> None:
    """A rich table (plain text when ``out`` is not a terminal), or one JSON line."""
    if as_json:
        out.write(json.dumps(ev.to_json(card), separators=(",", ":"), default=str) + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="drill scorecard", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in scorecard_rows(card):
        table.add_row(label, value)
    Console(file=out, soft_wrap=False).print(table)
