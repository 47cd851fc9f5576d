"""The ``load_balancer:`` section: which HAProxy backend carries the fleet's traffic.

Pure data (the loader, ``console/spec/load.py``, reads it; ``console/traffic/`` acts on
it). The runtime API is reached through the SSH connection of ``host``, an inventory
host: a unix socket on that host (``socket``) or a TCP stats socket it can reach
(``api: HOST:PORT``), so no port of the load balancer is opened to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

LB_TYPES = ("haproxy",)
SERVER_TEMPLATE = "{host}"  # each host's HAProxy server name: its inventory name
DRAIN_WAIT_SESSIONS = 0
DRAIN_TIMEOUT = 60.0  # seconds for a drained server's sessions to end
LB_KEYS = ("type", "host", "socket", "api", "backend", "server", "drain")
DRAIN_KEYS = ("wait_sessions", "timeout")


@dataclass(frozen=True, slots=True)
class LoadBalancerSpec:
    """``load_balancer:``. Exactly one of ``socket`` (an absolute path on ``host``)
    and ``api`` (``HOST:PORT``, as seen from ``host``) is set."""

    host: str
    backend: str
    socket: str | None = None
    api: str | None = None
    server: str = SERVER_TEMPLATE
    type: str = "haproxy"
    wait_sessions: int = DRAIN_WAIT_SESSIONS
    drain_timeout: float = DRAIN_TIMEOUT

    @property
    def target(self) -> str:
        """Where the runtime API listens, as the transport's socket forward takes it:
        an absolute path, or HOST:PORT."""
        return self.socket if self.socket is not None else str(self.api)
