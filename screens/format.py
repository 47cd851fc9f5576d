"""Pure formatting for the console: symbols, words, sparklines, durations, estimates.

No Textual here, so this is unit-testable and shared by every widget. Colour is
expressed as a semantic theme variable name (resolved by the widget), and every host
state has a symbol and a word as well, so no information is carried by colour alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from console.core.describe import (
    HOST_GLYPHS,
    HOST_SHORT_WORDS,
    OUTCOME_WORDS,
    ROLLOUT_WORDS,
    Severity,
)
from console.core.describe import (
    format_rate as format_rate,
)
from console.core.events import HostState, Outcome, RolloutState
from console.core.state import RolloutView

# The console's colours (theme variables); glyphs and words are console.core.describe's.
HOST_STATE_VARS: dict[HostState, str] = {
    HostState.PENDING: "host-pending",
    HostState.PREFLIGHT: "host-running",
    HostState.RUNNING: "host-running",
    HostState.VERIFYING: "host-running",
    HostState.HEALTHY: "host-healthy",
    HostState.FAILED: "host-failed",
    HostState.SKIPPED: "host-skipped",
    HostState.FROZEN: "host-frozen",
    HostState.INTERRUPTED: "host-failed",
    HostState.ROLLING_BACK: "host-rolled-back",
    HostState.ROLLED_BACK: "host-rolled-back",
    HostState.ROLLBACK_FAILED: "host-failed",
}
SEVERITY_VARS: dict[Severity, str] = {
    Severity.INFO: "muted",
    Severity.OK: "host-healthy",
    Severity.WARNING: "batch-active",
    Severity.CRITICAL: "host-failed",
}

# state -> (glyph, short word, theme variable), for the host table and detail screen
HOST_STATE_STYLE: dict[HostState, tuple[str, str, str]] = {
    s: (HOST_GLYPHS[s], HOST_SHORT_WORDS[s], HOST_STATE_VARS[s]) for s in HostState
}

# Buckets of the overall progress line, in display order: (label, states, variable).
PROGRESS_BUCKETS: tuple[tuple[str, frozenset[HostState], str], ...] = (
    ("pending", frozenset({HostState.PENDING, HostState.PREFLIGHT}), "host-pending"),
    (
        "running",
        frozenset({HostState.RUNNING, HostState.VERIFYING, HostState.FROZEN}),
        "host-running",
    ),
    ("healthy", frozenset({HostState.HEALTHY}), "host-healthy"),
    (
        "failed",
        frozenset({HostState.FAILED, HostState.ROLLBACK_FAILED, HostState.INTERRUPTED}),
        "host-failed",
    ),
    (
        "rolled back",
        frozenset({HostState.ROLLED_BACK, HostState.ROLLING_BACK}),
        "host-rolled-back",
    ),
    ("skipped", frozenset({HostState.SKIPPED}), "host-skipped"),
)

DONE_STATES = frozenset(
    {
        HostState.HEALTHY,
        HostState.FAILED,
        HostState.SKIPPED,
        HostState.ROLLED_BACK,
        HostState.ROLLBACK_FAILED,
        HostState.INTERRUPTED,
    }
)

FAILING_STATES = frozenset({HostState.FAILED, HostState.ROLLBACK_FAILED, HostState.INTERRUPTED})

SPARK_CHARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float], width: int = 8, ceiling: float | None = None) -> str:
    """The last ``width`` values as block characters, scaled to ``ceiling`` (or max)."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    top = max(ceiling or 0.0, max(vals))
    if top <= 0:
        return SPARK_CHARS[0] * len(vals)
    last = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[min(last, max(0, round(v / top * last)))] for v in vals)


def health_strip(history: Iterable[bool], width: int = 20) -> str:
    """Pass/fail history as ``+``/``x`` marks (shape, not only colour)."""
    return "".join("+" if ok else "x" for ok in list(history)[-width:])


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def clock_time(ts: float) -> str:
    """The console's stamp before a timeline line: the local clock."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


_OUTCOME_VARS = {
    Outcome.SUCCEEDED: "host-healthy",
    Outcome.FAILED: "host-failed",
    Outcome.ROLLED_BACK: "host-rolled-back",
    Outcome.ABORTED: "host-failed",
    Outcome.PAUSED: "batch-active",
}
_ROLLOUT_VARS = {
    RolloutState.PREFLIGHT: "host-running",
    RolloutState.RUNNING: "host-running",
    RolloutState.PAUSED: "batch-active",
    RolloutState.FROZEN: "host-frozen",
    RolloutState.WAITING: "batch-active",
    RolloutState.ROLLING_BACK: "host-rolled-back",
    RolloutState.ABORTED: "host-failed",
    RolloutState.DONE: "host-healthy",
}


def state_label(view: RolloutView) -> tuple[str, str]:
    """The header's rollout state word (the describer's, in capitals) and its theme
    variable; at a gate, which gate."""
    if view.outcome is not None:
        return OUTCOME_WORDS[view.outcome].upper(), _OUTCOME_VARS[view.outcome]
    word = ROLLOUT_WORDS[view.state].upper()
    if view.state == RolloutState.WAITING:
        gate = view.gate.gate if view.gate is not None else "bake"
        word += {"manual": " AT GATE", "command": " · ASKING", "approval": " · APPROVAL"}.get(
            gate, " · BAKE"
        )
    return word, _ROLLOUT_VARS[view.state]


def old_versions(view: RolloutView) -> str:
    """The versions hosts ran before the rollout: ``2.4.0`` or ``2.3.9,2.4.0``."""
    olds = sorted(view.previous_versions())
    if not olds:
        olds = sorted(
            {h.version for h in view.hosts.values() if h.version and h.version != view.version}
        )
    if not olds:
        return "?"
    return ",".join(olds) if len(olds) <= 2 else f"{olds[0]}…(+{len(olds) - 1})"


def estimate_left(view: RolloutView, now: float) -> float | None:
    """Seconds left at the pace so far (finished hosts per second), or None."""
    if view.started is None or view.outcome is not None or not view.hosts:
        return None
    if view.state != RolloutState.RUNNING:
        return None  # paused, at a gate or rolling back: the pace says nothing
    done = sum(1 for h in view.hosts.values() if h.state in DONE_STATES)
    if done == 0:
        return None
    elapsed = max(0.0, now - view.started)
    return elapsed / done * (len(view.hosts) - done)


def batch_position(view: RolloutView) -> str:
    total = len(view.batches)
    if view.batch_index is None:
        return f"batch -/{total}" if total else "batch -"
    return f"batch {view.batch_index + 1}/{total}"


def bucket_counts(view: RolloutView) -> list[tuple[str, int, str]]:
    counts = view.counts()
    return [
        (label, sum(counts[s.value] for s in states), var)
        for label, states, var in PROGRESS_BUCKETS
    ]


def sorted_unique(values: Sequence[str]) -> list[str]:
    return sorted(set(values))
