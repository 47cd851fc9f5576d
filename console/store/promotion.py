"""Promotion from staging (``requires:``): has this service been rolled out where the
spec says, with the outcome and version it says, recently enough? Read from the ended
rollouts in the state directory (:mod:`console.store.dora`'s reader), by ``check`` and
by ``run`` before anything starts; ``run --override-requires --reason`` goes on and
journals who skipped what."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from console.spec.load import format_duration
from console.spec.model import RequireSpec, RolloutSpec
from console.store.dora import Deployment, deployments

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: RequireSpec
    met_by: Deployment | None
    reason: str  # what met it, or why nothing did


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / DAY:.1f}d ago"


def judge(spec: RolloutSpec, state_dir: Path, now: float | None = None) -> list[Verdict]:
    """One verdict per rule of ``spec.requires``, newest matching rollout first."""
    if not spec.requires:
        return []
    now = time.time() if now is None else now
    history = deployments(state_dir, spec.service)
    out = []
    for rule in spec.requires:
        what = f"a {rule.outcome.replace('_', ' ')} {rule.environment} rollout of {spec.service}"
        if rule.same_version:
            what += f" {spec.version}"
        if rule.within is not None:
            what += f" within {format_duration(rule.within)}"
        there = [d for d in history if d.environment == rule.environment]
        ok = [
            d
            for d in there
            if d.outcome == rule.outcome
            and (not rule.same_version or d.version == spec.version)
            and (rule.within is None or now - d.finished <= rule.within)
        ]
        if ok:
            d = ok[-1]
            out.append(Verdict(rule, d, f"{what}: {d.rollout_id} ({_ago(now - d.finished)})"))
            continue
        if there:
            last = there[-1]
            seen = (
                f"the last {rule.environment} rollout is {last.rollout_id}: {spec.service} "
                f"{last.version} {last.outcome.replace('_', ' ')} {_ago(now - last.finished)}"
            )
        else:
            seen = f"no {rule.environment} rollout of {spec.service} in {state_dir}"
        out.append(Verdict(rule, None, f"requires {what}; {seen}"))
    return out


def unmet(verdicts: list[Verdict]) -> list[str]:
    return [v.reason for v in verdicts if v.met_by is None]
