"""What ``rolldeck check`` says about the load balancer, checked before anything runs:
each targeted host's HAProxy server name is rendered and must be a HAProxy name, and
no two hosts may share one (draining one would drain the other)."""

from __future__ import annotations

from console.core.errors import InputError
from console.spec import RolloutSpec, format_duration
from console.templating import TemplateError, build_context, render
from console.traffic.haproxy import HAProxyError, check_name
from console.traffic.pools import split_pools
from inventory.model import Host

SERVERS_SHOWN = 5


def server_names(spec: RolloutSpec, hosts: list[Host]) -> dict[str, str]:
    """Host -> its server name in the backend; InputError at ``load_balancer.server``."""
    lb = spec.load_balancer
    if lb is None:
        return {}
    where = "load_balancer.server"
    line = spec.lines.get(where)
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for host in hosts:
        try:
            name = check_name(
                render(lb.server, build_context(spec, host, None), raw=True), "server"
            )
        except TemplateError as exc:
            raise InputError(
                f"{host.name}: {exc.message}", file=spec.path, line=line, field=where
            ) from None
        except HAProxyError as exc:
            raise InputError(
                f"{host.name}: {exc}", file=spec.path, line=line, field=where
            ) from None
        if name in seen:
            raise InputError(
                f"{seen[name]} and {host.name} are both server {name!r} of backend "
                f"{lb.backend}: each host needs its own (e.g. server: '{{host}}')",
                file=spec.path,
                line=line,
                field=where,
            )
        seen[name] = host.name
        out[host.name] = name
    return out


def pools_of(spec: RolloutSpec, hosts: list[Host]) -> dict[str, list[str]]:
    """blue-green: pool -> its targeted hosts ({} for other strategies; the rollout's
    loader has refused a host in neither or both already)."""
    if spec.strategy != "blue-green" or spec.blue is None or spec.green is None:
        return {}
    return split_pools(((h.name, h.groups) for h in hosts), spec.blue, spec.green)


def describe_balancer(
    spec: RolloutSpec, servers: dict[str, str], pools: dict[str, list[str]] | None = None
) -> list[str]:
    """The ``traffic`` lines of ``rolldeck check``: the backend, what the strategy does
    with it, and (blue-green) the pools; ``pools``: pool -> its targeted hosts."""
    lb = spec.load_balancer
    if lb is None:
        return []
    via = f"socket {lb.socket}" if lb.socket is not None else f"TCP {lb.api}"
    shown = _first([f"{h} -> {lb.backend}/{s}" for h, s in servers.items()])
    drain = (
        f"drained before its steps (until {lb.wait_sessions} sessions, at most "
        f"{format_duration(lb.drain_timeout)})"
    )
    lines = [
        f"traffic     {lb.type} backend {lb.backend} on {lb.host} ({via}, through its SSH "
        "connection)",
    ]
    if spec.strategy == "blue-green":
        for pool, hosts in (pools or {}).items():
            lines.append(f"            pool {pool}: {len(hosts)} hosts ({_first(hosts)})")
        lines += [
            "            blue-green: the live pool is the one HAProxy has ready when the run",
            "            starts (check connects nowhere; a pool half live is refused); the idle",
            "            pool is deployed in its batches out of traffic, then the backend switches",
            "            to it (its servers ready, then the live ones drained) and bakes; success",
            "            leaves the old pool idle on its version; rollback switches back",
        ]
    elif spec.strategy == "canary" and spec.traffic:
        steps = " -> ".join(f"{s:g}%" for s in spec.traffic)
        lines += [
            f"            canary by weight: the first batch gets {steps} of the backend (HAProxy",
            "            weights, closest integers; the others keep their proportions), judged by",
            "            the between_batches gate after each share; 100% restores every weight,",
            f"            then the rest rolls, each host {drain};",
            "            abort, rollback and a headless pause restore the weights first",
        ]
    else:
        lines += [
            f"            each host is {drain}, set ready once healthy;",
            "            a host that fails stays drained; rollback drains, reverts, gates, readies",
        ]
    lines.append(f"            servers: {shown}")
    return lines


def _first(items: list[str]) -> str:
    """The first SERVERS_SHOWN of ``items``, and how many more."""
    shown = ", ".join(items[:SERVERS_SHOWN])
    if len(items) > SERVERS_SHOWN:
        shown += f" and {len(items) - SERVERS_SHOWN} more"
    return shown
