"""The traffic line above the host table: where the backend's traffic goes as a whole.

Blue-green: each pool, which one is LIVE, its version(s) and size, and the last move
(``app: blue LIVE 2.4.0 (4) · green idle 2.4.1 (4) · ↩ switched back 09:01:02``). A
weighted canary: the share asked, the weights of the canary hosts and of the rest, and
the share those integer weights give (``⇄ canary 5% of app (step 1): weights 4/7 give
4.94%``). Plain data, ``(text, theme variable)`` segments as the host table's cells
are: nothing here imports Textual.
"""

from __future__ import annotations

from collections.abc import Iterable

from console.core import events as ev
from console.core.describe import GLYPHS, shift_text
from console.core.state import HostView, RolloutView
from console.core.text import printable
from screens.format import clock_time

Segment = tuple[str, str | None]

SEP = " · "

# The last whole-backend move, in a few words (the timeline has the full sentence).
_MOVE_WORDS = {
    ("switch", "start"): "switching…",
    ("switch", "done"): "switched",
    ("switch_back", "start"): "switching back…",
    ("switch_back", "done"): "switched back",
}
_MOVE_GLYPHS = {"switch": GLYPHS["traffic"], "switch_back": GLYPHS["rolled back"]}


def traffic_summary(view: RolloutView) -> list[Segment]:
    """The traffic line's segments; empty when no whole-backend move happened (a
    rolling rollout's per-host drains show in the host table alone)."""
    shift = view.shift
    if view.has_pools:
        return _pools(view, shift)
    if shift is None:
        return []
    if shift.move in ("before", "weights", "restore"):
        return _canary(view, shift)
    return [(printable(shift_text(shift)), None)]


def pool_members(view: RolloutView) -> dict[str, list[HostView]]:
    """Pool name -> its hosts, the live pool first."""
    out: dict[str, list[HostView]] = {}
    for name in (view.live_pool, view.idle_pool):
        if name:
            out[name] = []
    for h in view.hosts.values():
        if h.pool:
            out.setdefault(h.pool, []).append(h)
    return out


def versions_of(hosts: Iterable[HostView]) -> str:
    """``2.4.0``, ``2.4.0,2.4.1`` (mid-deploy), ``?`` (not read yet)."""
    found = sorted({h.version for h in hosts if h.version})
    if not found:
        return "?"
    return ",".join(found) if len(found) <= 2 else f"{found[0]}…(+{len(found) - 1})"


def _pools(view: RolloutView, shift: ev.TrafficShifted | None) -> list[Segment]:
    out: list[Segment] = []
    backend = shift.backend if shift is not None else ""
    if backend:
        out.append((f"{printable(backend)}: ", "muted"))
    for i, (pool, hosts) in enumerate(pool_members(view).items()):
        if i:
            out.append((SEP, "muted"))
        live = pool == view.live_pool
        ready = sum(1 for h in hosts if h.traffic == "ready")
        out.append((printable(pool), None))
        out.append((" LIVE" if live else " idle", "host-healthy" if live else "muted"))
        out.append((f" {printable(versions_of(hosts))}", None))
        # the expected: every server of the live pool ready, none of the idle one
        odd = (live and _all_read(hosts) and ready != len(hosts)) or (not live and ready)
        count = f" ({len(hosts)}, {ready} ready)" if odd else f" ({len(hosts)})"
        out.append((count, "batch-active" if odd else "muted"))
    if shift is not None and shift.move != "pools":
        words = _MOVE_WORDS.get((shift.move, shift.phase), shift.move)
        glyph = _MOVE_GLYPHS.get(shift.move, GLYPHS["traffic"])
        var = "host-rolled-back" if shift.move == "switch_back" else "batch-active"
        if shift.phase == "done" and shift.move == "switch":
            var = "host-healthy"
        out.append((SEP, "muted"))
        out.append((f"{glyph} {words} {clock_time(shift.ts)}", var))
    return out


def _all_read(hosts: list[HostView]) -> bool:
    """Every host's server state was read (before that, no count is odd)."""
    return all(h.traffic for h in hosts)


def _canary(view: RolloutView, shift: ev.TrafficShifted) -> list[Segment]:
    backend = printable(shift.backend)
    if shift.move == "before":  # the canary deploys at weight 0: no request reaches it
        n = len(shift.original)
        return [
            (f"{GLYPHS['traffic']} canary of {backend}: no traffic yet", "muted"),
            (f"{SEP}weights of {n} server{'s' if n != 1 else ''} read", "muted"),
        ]
    if shift.move == "restore":
        words = "weights restored" if shift.phase == "done" else "restoring weights…"
        return [
            (f"{backend}: ", "muted"),
            (f"{GLYPHS['traffic']} {words}", "host-healthy"),
            (f" {clock_time(shift.ts)}", "muted"),
        ]
    asked = f"{shift.share:g}%" if shift.share is not None else "?"
    out: list[Segment] = [(f"{GLYPHS['traffic']} canary {asked} of {backend}", "batch-active")]
    if shift.step is not None:
        out.append((f" (step {shift.step + 1})", "muted"))
    split = canary_weights(view, shift)
    if split or shift.achieved is not None:
        out.append((": weights", None))
        if split:
            out.append((f" {split}", None))
        if shift.achieved is not None:
            out.append((f" give {shift.achieved:.2f}%", None))
    if shift.phase == "start":
        out.append((f"{SEP}setting…", "batch-active"))
    return out


def canary_weights(view: RolloutView, shift: ev.TrafficShifted) -> str:
    """``1/19``: the canary servers' weight over the others' (``1-2/19`` when they
    differ). The move's own weights where a server is known by its host's name (the
    default ``server: '{host}'``), else the host's weight as last read; "" when
    neither tells the canary from the rest."""
    if not view.batches:
        return ""
    canary = set(view.batches[0])
    weights: dict[str, int] = {}
    for name, h in view.hosts.items():
        w = shift.weights.get(view.pool_servers.get(name, name), h.weight)
        if w is not None:
            weights[name] = w
    mine = [w for name, w in weights.items() if name in canary]
    rest = [w for name, w in weights.items() if name not in canary]
    if not mine or not rest:
        return ""
    return f"{_span(mine)}/{_span(rest)}"


def _span(weights: list[int]) -> str:
    low, high = min(weights), max(weights)
    return str(low) if low == high else f"{low}-{high}"
