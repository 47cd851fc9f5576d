"""The host table's rows as plain data: column specs, cell values, sort keys, filter.

Cells are ``(text, theme variable or None)`` pairs, so a row is cheap to compare with
the one on screen: the table widget re-styles and writes only the cells whose pair
changed. Nothing here imports Textual.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from console.core.describe import GLYPHS
from console.core.events import HostState
from console.core.state import HostView
from console.core.text import printable, shorten
from screens.format import (
    FAILING_STATES,
    HOST_STATE_STYLE,
    format_rate,
    sparkline,
)

Cell = tuple[str, str | None]
SortKey = tuple[Any, ...]

# A leading timestamp says nothing in a one-line "last log" cell: drop it.
# ... and so does the "service[pid]:" of a syslog-style line (the level is kept).
_SYSLOG_TAG = re.compile(r"^(\w+\s+)?[\w.-]+\[\d+\]:\s*")
_LEADING_TIMESTAMP = re.compile(r"^\[?\d{4}-\d\d-\d\d[T ][\d:.,]+(Z|[+-]\d\d:?\d\d)?\]?\s+")


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    key: str
    label: str
    width: int
    wide_only: bool = False  # dropped below the wide breakpoint
    traffic_only: bool = False  # shown once a load balancer moved a host
    pool_only: bool = False  # shown once a host belongs to a blue-green pool
    min_width: int = 0  # how far a narrow terminal may squeeze it (0: not at all)


COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("batch", "B", 3),
    ColumnSpec("state", "State", 12),
    ColumnSpec("host", "Host", 14, min_width=10),
    ColumnSpec("pool", "Pool", 7, pool_only=True, min_width=6),
    ColumnSpec("group", "Group", 7, wide_only=True),
    ColumnSpec("version", "Version", 8, min_width=7),
    ColumnSpec("step", "Step", 8, min_width=6),
    ColumnSpec("health", "Health", 7, min_width=6),
    ColumnSpec("traffic", "LB", 9, traffic_only=True),
    ColumnSpec("err", "Err rate", 11, min_width=8),
    ColumnSpec("vitals", "Load Mem", 8, wide_only=True),
    ColumnSpec("log", "Last log / why", 20),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
# A terminal too narrow for every column squeezes these first (each to its
# ``min_width``: names cut with an ellipsis, the error sparkline shortened), and only
# then drops these, in order (the host detail shows the step).
SQUEEZE_ORDER = ("host", "step", "version", "pool", "health", "err")
DROP_ORDER = ("step",)

_HEALTH = {
    "healthy": (f"{GLYPHS['healthy']} ok", "host-healthy"),
    "unhealthy": (f"{GLYPHS['failed']} fail", "host-failed"),
    "flapping": ("≈ flap", "batch-active"),
}

_TRAFFIC = {"ready": "host-healthy", "drain": "batch-active", "maint": "host-failed"}
KEPT_MARK = GLYPHS["failed"]  # a server kept drained because its host failed

SORT_MODES = ("batch", "name", "state", "error", "pool")
SORT_COLUMNS = {"batch": "batch", "host": "name", "state": "state", "err": "error", "pool": "pool"}

_STATE_RANK = {
    HostState.FAILED: 0,
    HostState.ROLLBACK_FAILED: 0,
    HostState.INTERRUPTED: 1,
    HostState.ROLLING_BACK: 2,
    HostState.RUNNING: 3,
    HostState.VERIFYING: 3,
    HostState.FROZEN: 4,
    HostState.PREFLIGHT: 5,
    HostState.PENDING: 6,
    HostState.SKIPPED: 7,
    HostState.ROLLED_BACK: 8,
    HostState.HEALTHY: 9,
}


def host_cells(
    h: HostView,
    target_version: str,
    ceiling: float | None,
    log_width: int = 40,
    active_batch: int | None = None,
    live_pool: str = "",
    spark_width: int = 5,
) -> tuple[Cell, ...]:
    """One row, in :data:`COLUMNS` order; the running batch's number is highlighted,
    and so is the pool carrying the traffic (``live_pool``, blue-green). The error
    rate's sparkline is ``spark_width`` long (less in a squeezed column)."""
    symbol, word, var = HOST_STATE_STYLE[h.state]
    if h.health_ok is None:
        health: Cell = ("-", "muted")
    else:
        health = _HEALTH.get(h.health_status, ("… gate", "host-running"))
    if h.version is None:
        version: Cell = ("-", "muted")
    else:
        version = (printable(h.version), "host-healthy" if h.version == target_version else None)
    rate_text = format_rate(h.error_rate, h.error_rate_unit)
    spark = sparkline(
        h.error_rate_history, spark_width, ceiling if h.error_rate_unit == "ratio" else None
    )
    over = (
        ceiling is not None
        and h.error_rate_unit == "ratio"
        and h.error_rate is not None
        and h.error_rate > ceiling
    )
    vitals = "-"
    if h.load1 is not None or h.mem_used_pct is not None:
        load = f"{h.load1:.1f}" if h.load1 is not None else "-"
        mem = f"{h.mem_used_pct:.0f}%" if h.mem_used_pct is not None else "-"
        vitals = f"{load} {mem}"
    if h.state in FAILING_STATES and h.detail:
        last: Cell = (shorten(printable(h.detail), log_width, squash=True), "host-failed")
    else:
        line = _SYSLOG_TAG.sub(r"\1", _LEADING_TIMESTAMP.sub("", h.last_log))
        last = (shorten(printable(line), log_width), "muted")
    return (
        (
            str(h.batch + 1) if h.batch is not None else "-",
            "batch-active" if h.batch is not None and h.batch == active_batch else "muted",
        ),
        (f"{symbol} {word}", var),
        # Segments go to the terminal as they are: every text from outside is made
        # printable here (the one sanitiser), names, groups, versions, steps, logs.
        (printable(h.name), None),
        pool_cell(h, live_pool),
        (printable(",".join(h.groups)) or "-", "muted"),
        version,
        (printable(h.step or "-"), None),
        health,
        traffic_cell(h, idle=bool(live_pool) and bool(h.pool) and h.pool != live_pool),
        (f"{rate_text:>5} {spark}", "host-failed" if over else None),
        (vitals, None),
        last,
    )


def traffic_cell(h: HostView, *, idle: bool = False) -> Cell:
    """The host's server in the load balancer: ``ready 19`` (with its weight, when
    read: ``ready 0`` takes no traffic), ``drain``, ``drain ✖`` (kept drained: the host
    failed), ``maint``. A drained server of the idle blue-green pool is the expected
    state, so it is muted rather than highlighted."""
    if not h.traffic:
        return ("-", "muted")
    if h.traffic_kept:
        return (f"{printable(h.traffic)} {KEPT_MARK}", "host-failed")
    if h.traffic == "ready" and h.weight is not None:
        return (f"ready {h.weight}", "host-healthy" if h.weight > 0 else "muted")
    if h.traffic == "drain" and idle:
        return ("drain", "muted")
    return (printable(h.traffic), _TRAFFIC.get(h.traffic))


def pool_cell(h: HostView, live_pool: str) -> Cell:
    """The host's blue-green pool, in the healthy colour when it is the live one (the
    LB column beside says ready or drain in words, so colour is never alone)."""
    if not h.pool:
        return ("-", "muted")
    return (printable(h.pool), "host-healthy" if h.pool == live_pool else "muted")


def sort_key(
    mode: str, failing_first: bool, order: dict[str, int]
) -> Callable[[HostView], SortKey]:
    """A key over HostView for ``mode``; ``order`` is the inventory position of each host."""

    def key(h: HostView) -> SortKey:
        first = (0 if h.state in FAILING_STATES else 1,) if failing_first else ()
        pos = order.get(h.name, 0)
        if mode == "name":
            rest: SortKey = (h.name,)
        elif mode == "state":
            rest = (_STATE_RANK[h.state], h.batch if h.batch is not None else 1 << 30, pos)
        elif mode == "error":
            rest = (-(h.error_rate or 0.0), pos)
        elif mode == "pool":  # blue-green: each pool together, in batch order
            rest = (not h.pool, h.pool, h.batch if h.batch is not None else 1 << 30, pos)
        else:
            rest = (h.batch if h.batch is not None else 1 << 30, pos)
        return first + rest

    return key


def sort_inputs(h: HostView, mode: str) -> SortKey:
    """What the order depends on, so the table re-sorts only when this changed."""
    if mode == "error":
        return (h.state in FAILING_STATES, h.error_rate)
    if mode == "state":
        return (h.state, h.batch)
    if mode == "pool":
        return (h.state in FAILING_STATES, h.pool, h.batch)
    return (h.state in FAILING_STATES, h.batch)


def matches(h: HostView, query: str) -> bool:
    """Filter: every whitespace-separated term must appear in name, group, pool,
    state, version, step or batch (``b2``); case-insensitive."""
    if not query:
        return True
    hay = " ".join(
        (
            h.name,
            *h.groups,
            h.pool,
            h.state.value,
            h.version or "",
            h.step or "",
            f"b{h.batch + 1}" if h.batch is not None else "",
        )
    ).lower()
    return all(term in hay for term in query.lower().split())
