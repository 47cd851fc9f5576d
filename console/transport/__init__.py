"""Transports: how the engine reaches hosts. ``make_transport`` is the one entry point.

The engine gets one :class:`~console.transport.base.Transport` and never asks which
kind of host it talks to: :class:`RoutingTransport` sends ``localhost`` hosts to the
local transport (subprocesses) and every other host over SSH.

A host is local when its ``rolldeck_connection`` (or Ansible's ``ansible_connection``)
var is ``local``, or when it is named ``localhost`` with a loopback address and no port.
Any other value of those vars (``ssh``, ``smart``) means SSH. Per host, the var
``rolldeck_kill: pgroup | signal`` selects how a timed-out command is stopped (see
:mod:`console.transport.remote_kill`) and ``rolldeck_shell: sh | none`` whether the
host's commands run in a shell (the monitor's polls chain and share one kept open).
"""

from __future__ import annotations

import asyncio

from console.transport.base import (
    Connection,
    HostKeyError,
    HostUnreachable,
    HostUnresponsive,
    RunResult,
    Session,
    Transport,
    TransportError,
    TransportOptions,
    rollout_options,
)
from console.transport.local import LocalTransport
from console.transport.ssh import SSHTransport
from inventory.model import Host

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

__all__ = [
    "Connection",
    "HostKeyError",
    "HostUnreachable",
    "HostUnresponsive",
    "LocalTransport",
    "RoutingTransport",
    "RunResult",
    "SSHTransport",
    "Session",
    "Transport",
    "TransportError",
    "TransportOptions",
    "is_local",
    "make_transport",
    "rollout_options",
]


def is_local(host: Host) -> bool:
    """Whether ``host`` runs its commands on this machine rather than over SSH."""
    for var in ("rolldeck_connection", "ansible_connection"):
        if var in host.vars:
            return str(host.vars[var]).strip().lower() == "local"
    return host.name == "localhost" and host.port is None and host.address in LOOPBACK


class RoutingTransport:
    """One Transport over two: local hosts to :class:`LocalTransport`, the rest to SSH."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self.ssh = SSHTransport(self.options)
        self.local = LocalTransport(self.options)

    @property
    def accepted_keys(self) -> list[tuple[str, str]]:
        """Host keys trusted on first use, as (host, fingerprint): for the journal."""
        return self.ssh.accepted_keys

    @property
    def open_connections(self) -> int:
        return self.ssh.open_connections + self.local.open_connections

    async def connect(self, host: Host) -> Connection:
        if is_local(host):
            return await self.local.connect(host)
        return await self.ssh.connect(host)

    async def close_host(self, name: str) -> None:
        await self.ssh.close_host(name)
        await self.local.close_host(name)

    async def close(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.ssh.close())
            group.create_task(self.local.close())


def make_transport(options: TransportOptions | None = None) -> RoutingTransport:
    """The transport a rollout uses: SSH for remote hosts, subprocesses for localhost."""
    return RoutingTransport(options)
