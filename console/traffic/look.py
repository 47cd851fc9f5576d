"""``rolldeck check --lb``: the load balancer as it is now, and what the run would do.

``check`` connects nowhere by default; ``--lb`` reads the backend once through the
load balancer host's SSH connection (as ``run`` does) and says, in the strategy's
words, where the traffic is and what will move: blue-green names the live pool and the
switch to come (or the refusal ``run`` would give: a pool half live), the weighted
canary the canary's share now and the weights of its first step, rolling the servers'
states. A targeted host without a server is what ``run`` would refuse too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from console.spec import RolloutSpec
from console.traffic.haproxy import HAProxy, ServerState
from console.traffic.pools import PoolError, live_pool, serving
from console.traffic.weights import canary_weights
from console.transport.base import Connection

INDENT = " " * 12


@dataclass(slots=True)
class LookedAt:
    """What ``--lb`` found: the lines to print, the JSON, and whether ``run`` would
    refuse to start on it."""

    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    refused: bool = False


async def read_backend(conn: Connection, spec: RolloutSpec) -> dict[str, ServerState]:
    """Every server of the spec's backend, read through ``conn`` (HAProxyError)."""
    assert spec.load_balancer is not None
    api = HAProxy(conn, spec.load_balancer.target)
    return await api.servers(spec.load_balancer.backend)


def look(
    spec: RolloutSpec,
    servers: Mapping[str, str],
    pools: Mapping[str, list[str]],
    first_batch: tuple[str, ...],
    states: Mapping[str, ServerState],
) -> LookedAt:
    """The words for ``states`` (``servers``: host -> server; ``pools``: blue-green's)."""
    assert spec.load_balancer is not None
    backend = spec.load_balancer.backend
    out = LookedAt()
    counts = Counter(s.admin for s in states.values())
    said = ", ".join(f"{n} {admin}" for admin, n in sorted(counts.items()))
    out.lines.append(f"lb now      backend {backend} on {spec.load_balancer.host}: {said}")
    out.data["servers"] = {
        name: {"admin": s.admin, "weight": s.weight, "sessions": s.sessions, "status": s.status}
        for name, s in states.items()
    }
    missing = [f"{h} ({s})" for h, s in servers.items() if s not in states]
    if missing:
        out.refused = True
        out.lines.append(f"{INDENT}run would refuse: no server for {', '.join(missing)}")
        out.data["missing"] = [h for h, s in servers.items() if s not in states]
        return out
    if spec.strategy == "blue-green":
        _pools(out, spec, servers, pools, states)
    elif spec.strategy == "canary" and spec.traffic:
        _canary(out, spec, servers, first_batch, states)
    return out


def _pools(
    out: LookedAt,
    spec: RolloutSpec,
    servers: Mapping[str, str],
    pools: Mapping[str, list[str]],
    states: Mapping[str, ServerState],
) -> None:
    for pool, hosts in pools.items():
        up = sum(serving(states[servers[h]]) for h in hosts)
        out.lines.append(f"{INDENT}pool {pool}: {up} of {len(hosts)} servers in traffic")
    try:
        live, idle = live_pool(pools, servers, states)
    except PoolError as exc:
        out.refused = True
        out.lines.append(f"{INDENT}run would refuse: {exc}")
        return
    out.data |= {"live": live, "idle": idle}
    out.lines.append(
        f"{INDENT}live pool {live}: run deploys pool {idle} ({len(pools[idle])} hosts) out of "
        f"traffic, then switches {spec.load_balancer.backend if spec.load_balancer else ''} "
        f"from {live} to {idle}"
    )


def _canary(
    out: LookedAt,
    spec: RolloutSpec,
    servers: Mapping[str, str],
    first_batch: tuple[str, ...],
    states: Mapping[str, ServerState],
) -> None:
    canary = sorted(servers[h] for h in first_batch)
    live = {name: s.weight for name, s in states.items() if serving(s)}
    total = sum(live.values())
    now = sum(live.get(c, 0) for c in canary)
    share = 100 * now / total if total else 0.0
    others = {name: w for name, w in live.items() if name not in canary}
    first = canary_weights(spec.traffic[0], canary, others)
    weights = sorted({first.weights[c] for c in canary})
    rest = sorted({w for name, w in first.weights.items() if name not in canary})
    out.data |= {"canary_share_now": share, "first_step": first.weights}
    out.lines.append(
        f"{INDENT}canary {', '.join(canary)} gets {share:.1f}% now; its first step "
        f"{spec.traffic[0]:g}% sets weight {'/'.join(map(str, weights))} on it and "
        f"{'/'.join(map(str, rest)) or '-'} on the others ({first.achieved:.2f}%)"
    )
