"""DORA figures from the journals (``rolldeck history --dora``).

One finished rollout is one deployment attempt of its service. Per service and
environment (a staging success neither counts as a production deployment nor
restores a production failure; ``--environment`` keeps one), over a window
(``--since``):

- deployment frequency: succeeded rollouts per day of the window;
- lead time for changes: from the commit's time (``run --commit SHA --commit-time T``,
  in the journal header) to the end of the rollout that shipped it, succeeded ones
  only; median and mean;
- change failure rate: rolled back or failed, over every rollout that ended
  (succeeded, failed, rolled back, aborted; a paused or interrupted one has not ended);
- time to restore: from the end of a failed or rolled-back rollout to the end of the
  next succeeded one of the same service in the same environment (median and mean);
  failures with no success after them yet are counted as not restored.
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from console.core.errors import InputError
from console.store.journal import JournalError, list_journals, read_lines

ENDED = ("succeeded", "failed", "rolled_back", "aborted")
FAILURES = ("failed", "rolled_back")
DAY = 86400.0


def parse_time(text: str, field_name: str = "commit time") -> float:
    """Unix seconds, or ISO 8601 (``2026-12-01T10:00:00Z``; no zone: UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{text!r} is not a time (ISO 8601 like 2026-12-01T10:00:00Z, or Unix seconds)",
            field=field_name,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class Deployment:
    rollout_id: str
    service: str
    environment: str
    version: str
    started: float
    finished: float
    outcome: str
    commit: str | None = None
    commit_time: float | None = None


def read_deployment(path: Path) -> Deployment | None:
    """The rollout in ``path`` if it ended (None: running, paused, interrupted)."""
    lines = read_lines(path)
    if not lines or lines[0].get("kind") != "journal":
        return None
    head = lines[0]
    started = finished = None
    outcome, environment, service, version = "", "", "", ""
    for obj in lines[1:]:
        kind = obj.get("kind")
        if kind == "rollout_started" and started is None:
            started = float(obj.get("ts") or 0)
            service = str(obj.get("service") or "")
            version = str(obj.get("version") or "")
            environment = str((obj.get("settings") or {}).get("environment") or "")
        elif kind == "rollout_finished":
            finished = float(obj.get("ts") or 0)
            outcome = str(obj.get("outcome") or "")
    if started is None or finished is None or outcome not in ENDED:
        return None
    commit_time = head.get("commit_time")
    return Deployment(
        rollout_id=str(head.get("rollout_id") or path.stem),
        service=service or str(head.get("service") or ""),
        environment=environment,
        version=version or str(head.get("version") or ""),
        started=started,
        finished=finished,
        outcome=outcome,
        commit=head.get("commit"),
        commit_time=float(commit_time) if commit_time is not None else None,
    )


def deployments(
    state_dir: Path, service: str | None = None, environment: str | None = None
) -> list[Deployment]:
    """Every ended rollout in the state directory (of ``service`` in ``environment``,
    when given), oldest end first."""
    out = []
    for path in list_journals(state_dir):
        try:
            dep = read_deployment(path)
        except JournalError:
            continue  # a corrupt journal says nothing reliable about DORA
        if dep is None or service not in (None, dep.service):
            continue
        if environment is None or dep.environment == environment:
            out.append(dep)
    return sorted(out, key=lambda d: (d.finished, d.rollout_id))


@dataclass(slots=True)
class Dora:
    service: str
    environment: str  # "" for rollouts whose spec names none
    days: float
    rollouts: int = 0  # ended in the window
    succeeded: int = 0
    failed: int = 0  # failed or rolled back
    per_day: float = 0.0
    lead_time_median: float | None = None
    lead_time_mean: float | None = None
    lead_times: int = 0  # succeeded rollouts with a commit time
    change_failure_rate: float | None = None
    restore_median: float | None = None
    restore_mean: float | None = None
    restored: int = 0
    not_restored: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _median_mean(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.median(values), statistics.fmean(values)


def dora(all_deps: Iterable[Deployment], *, since: float, now: float) -> list[Dora]:
    """Per service and environment (sorted), the window being ``since`` .. ``now``
    (Unix seconds)."""
    groups: dict[tuple[str, str], list[Deployment]] = {}
    for d in all_deps:
        groups.setdefault((d.service, d.environment), []).append(d)
    rows = []
    days = max(1e-9, (now - since) / DAY)
    for service, environment in sorted(groups):
        deps = sorted(groups[service, environment], key=lambda d: d.finished)
        window = [d for d in deps if since <= d.finished <= now]
        row = Dora(service=service, environment=environment, days=days, rollouts=len(window))
        for d in window:
            row.outcomes[d.outcome] = row.outcomes.get(d.outcome, 0) + 1
        row.succeeded = row.outcomes.get("succeeded", 0)
        row.failed = sum(row.outcomes.get(o, 0) for o in FAILURES)
        row.per_day = row.succeeded / days
        leads = [
            d.finished - d.commit_time
            for d in window
            if d.outcome == "succeeded" and d.commit_time is not None
        ]
        row.lead_times = len(leads)
        row.lead_time_median, row.lead_time_mean = _median_mean(leads)
        if window:
            row.change_failure_rate = row.failed / len(window)
        restores = []
        for i, d in enumerate(deps):
            if d.outcome not in FAILURES or not since <= d.finished <= now:
                continue
            fix = next((n for n in deps[i + 1 :] if n.outcome == "succeeded"), None)
            if fix is None or fix.finished > now:
                row.not_restored += 1
            else:
                restores.append(fix.finished - d.finished)
        row.restored = len(restores)
        row.restore_median, row.restore_mean = _median_mean(restores)
        rows.append(row)
    return rows


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / DAY:.1f}d"


def render_dora(rows: list[Dora]) -> str:
    """The table ``history --dora`` prints."""
    if not rows:
        return "no ended rollouts in the window"
    head = (
        f"{'SERVICE':<20} {'ENV':<10} {'ROLLOUTS':>8} {'OK':>4} {'PER DAY':>8} {'LEAD TIME':>10} "
        f"{'CHANGE FAIL':>11} {'RESTORE':>8} {'OPEN':>5}"
    )
    lines = [head]
    for r in rows:
        cfr = "-" if r.change_failure_rate is None else f"{r.change_failure_rate * 100:.0f}%"
        lines.append(
            f"{r.service[:20]:<20} {(r.environment or '-')[:10]:<10} {r.rollouts:>8} "
            f"{r.succeeded:>4} {r.per_day:>8.2f} "
            f"{_span(r.lead_time_median):>10} {cfr:>11} {_span(r.restore_median):>8} "
            f"{r.not_restored:>5}"
        )
    lines.append(
        f"window {rows[0].days:g} days; lead time and restore are medians; "
        "change fail: failed or rolled back over rollouts that ended"
    )
    return "\n".join(lines)


def dumps(rows: list[Dora]) -> str:
    return json.dumps([r.to_json() for r in rows], indent=2)
