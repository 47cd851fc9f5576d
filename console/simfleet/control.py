"""Driving a fleet that runs in another process: the ``simctl`` control user.

Any simulated host accepts the fleet's client key for a second user, ``simctl``,
whose exec requests act on the whole fleet instead of one host. That is how a drill
or a test, with the fleet in a child process (:class:`~console.simfleet.process.FleetProcess`),
injects faults and reads every host's true state without a side channel:

    state [HOST...]          one JSON object per host (HostState fields)
    kill HOST...             drop the hosts' connections, refuse new ones
    revive HOST...           listen again, same port and key
    disk-full HOST on|off    fill or free the host's disk
    balancer                 one JSON object: HAProxy's servers now (admin state,
                             weight, pool) and the load generator's counts; exit 1
                             when the fleet has no load balancer
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from console.core.errors import RolldeckError
from console.simfleet.commands import Context
from console.simfleet.host import HostState

CONTROL_USER = "simctl"
USAGE = (
    "usage: state [HOST...] | kill HOST... | revive HOST... | disk-full HOST on|off | balancer\n"
)


class Controllable(Protocol):
    """What the control user drives: a :class:`~console.simfleet.fleet.SimFleet`.
    Declared here so the fleet imports its controller and not the other way round."""

    @property
    def hosts(self) -> Mapping[str, int]: ...

    def host_state(self, name: str) -> HostState: ...

    def set_disk_full(self, name: str, full: bool = True) -> None: ...

    async def kill_host(self, name: str) -> None: ...

    async def revive_host(self, name: str) -> None: ...

    async def balancer_report(self) -> dict[str, Any] | None: ...


def state_to_json(state: HostState) -> str:
    return json.dumps(dataclasses.asdict(state), separators=(",", ":"))


def state_from_json(line: str) -> HostState:
    data = json.loads(line)
    data["installed"] = tuple(data["installed"])
    return HostState(**data)


def controller(fleet: Controllable) -> Callable[[str, Context], Awaitable[int]]:
    """The exec handler for the control user of ``fleet``."""

    async def run(line: str, ctx: Context) -> int:
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            ctx.err(f"simctl: {exc}\n")
            return 2
        if not argv:
            ctx.err(USAGE)
            return 2
        verb, names = argv[0], argv[1:]
        if verb == "balancer" and not names:
            try:
                report = await fleet.balancer_report()
            except RolldeckError as exc:
                ctx.err(f"simctl: {exc}\n")
                return 1
            if report is None:
                ctx.err("simctl: this fleet has no load balancer\n")
                return 1
            ctx.out(json.dumps(report, separators=(",", ":")) + "\n")
            return 0
        if verb not in ("state", "kill", "revive", "disk-full") or (verb != "state" and not names):
            ctx.err(USAGE)
            return 2
        if verb == "disk-full":
            if len(names) != 2 or names[1] not in ("on", "off"):
                ctx.err(USAGE)
                return 2
            names, flag = names[:1], names[1] == "on"
        unknown = [n for n in names if n not in fleet.hosts]
        if unknown:
            ctx.err(f"simctl: no such host: {', '.join(unknown)}\n")
            return 1
        if verb == "state":
            for name in names or list(fleet.hosts):
                ctx.out(state_to_json(fleet.host_state(name)) + "\n")
        elif verb == "disk-full":
            fleet.set_disk_full(names[0], flag)
        else:
            for name in names:
                await (fleet.kill_host(name) if verb == "kill" else fleet.revive_host(name))
        return 0

    return run
