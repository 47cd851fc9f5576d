"""Blue-green pools: which hosts are in which, and which pool HAProxy has live.

Pure: the hosts' groups come from the inventory, the servers' states from HAProxy
(:class:`console.traffic.haproxy.ServerState`). A pool is *live* when every one of its
servers is ready with a weight above 0, *idle* when none of them would get a request
(drained, in maintenance, or weight 0). Anything in between (a pool half switched by
hand, both live, neither) is refused before any change, naming the servers: the
strategy never guesses which pool the users are on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from console.traffic.haproxy import ServerState


class PoolError(ValueError):
    """The pools or HAProxy's picture of them do not allow a switch; ``str`` says why."""


def split_pools(
    hosts: Iterable[tuple[str, tuple[str, ...]]], blue: str, green: str
) -> dict[str, list[str]]:
    """``{blue: [hosts], green: [hosts]}`` from (host, groups) pairs; PoolError when a
    host is in both or neither, or a pool is empty."""
    pools: dict[str, list[str]] = {blue: [], green: []}
    for name, groups in hosts:
        inside = [p for p in (blue, green) if p in groups]
        if len(inside) == 2:
            raise PoolError(f"{name} is in both pools, {blue} and {green}")
        if not inside:
            raise PoolError(f"{name} is in neither pool ({blue}, {green}): target only their hosts")
        pools[inside[0]].append(name)
    for pool, names in pools.items():
        if not names:
            raise PoolError(f"pool {pool} has no targeted host")
    return pools


def serving(state: ServerState) -> bool:
    """Would HAProxy send this server new requests."""
    return state.admin == "ready" and state.weight > 0


def live_pool(
    pools: Mapping[str, list[str]],
    servers: Mapping[str, str],
    states: Mapping[str, ServerState],
) -> tuple[str, str]:
    """(live, idle) as HAProxy has them (``servers``: host -> its server name,
    ``states``: server -> its state); PoolError naming the servers otherwise."""
    verdict: dict[str, str] = {}
    for pool, names in pools.items():
        up = [servers[n] for n in names if serving(states[servers[n]])]
        if len(up) == len(names):
            verdict[pool] = "live"
        elif not up:
            verdict[pool] = "idle"
        else:
            down = [servers[n] for n in names if not serving(states[servers[n]])]
            raise PoolError(
                f"pool {pool} is half live: {', '.join(up)} serve, {', '.join(down)} do not; "
                "set the pool's servers all ready or all drained before the rollout"
            )
    live = [p for p, v in verdict.items() if v == "live"]
    if len(live) != 1:
        said = "both pools serve" if live else "neither pool serves"
        raise PoolError(f"{said} in HAProxy: one pool must be live and the other idle")
    idle = next(p for p in pools if p != live[0])
    return live[0], idle
