"""What ``rolldeck check`` says about the load balancer, checked before anything runs:
each targeted host's HAProxy server name is rendered and must be a HAProxy name, and
no two hosts may share one (draining one would drain the other)."""

from __future__ import annotations

from console.core.errors import InputError
from console.spec import RolloutSpec, format_duration
from console.templating import TemplateError, build_context, render
from console.traffic.haproxy import HAProxyError, check_name
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


def describe_balancer(spec: RolloutSpec, servers: dict[str, str]) -> list[str]:
    """The ``traffic`` lines of ``rolldeck check``."""
    lb = spec.load_balancer
    if lb is None:
        return []
    via = f"socket {lb.socket}" if lb.socket is not None else f"TCP {lb.api}"
    pairs = [f"{h} -> {lb.backend}/{s}" for h, s in servers.items()]
    shown = ", ".join(pairs[:SERVERS_SHOWN])
    if len(pairs) > SERVERS_SHOWN:
        shown += f" and {len(pairs) - SERVERS_SHOWN} more"
    return [
        f"traffic     {lb.type} backend {lb.backend} on {lb.host} ({via}, through its SSH "
        "connection)",
        f"            each host is drained before its steps (until {lb.wait_sessions} "
        f"sessions, at most {format_duration(lb.drain_timeout)}), set ready once healthy;",
        "            a host that fails stays drained; rollback drains, reverts, gates, readies",
        f"            servers: {shown}",
    ]
