"""SimFleet: N simulated hosts in this process, reached only through real SSH.

    async with SimFleet(n=24, directory=tmp, scenario="demo", seed=7) as fleet:
        fleet.inventory_path, fleet.spec_path, fleet.hosts   # name -> port
        fleet.host_state("api-02").active
        await fleet.kill_host("web-03"); await fleet.revive_host("web-03")

Starting writes DIR: ``inventory.yaml``, ``rollout.yaml``, ``known_hosts``, the client
key ``id_ed25519`` (0600), the host keys (0600, reused on restart) and ``fleet.json``
(ports, scenario, seed). A restarted fleet tries its previous ports first. A fleet in
another process is driven through the ``simctl`` user (:mod:`console.simfleet.control`).

A ``load_balancer`` scenario also starts a real HAProxy in front of the hosts' HTTP
servers (:mod:`console.simfleet.haproxy`; the second pool of a blue-green fleet set
to drain or maint in it), the host ``lb-01`` (an SSH host like the others, not in
``fleet.hosts``; it forwards only to HAProxy's runtime API), and the load generator
(:mod:`console.simfleet.load`); ``fleet.traffic`` holds what it saw and
``await fleet.balancer_report()`` what HAProxy says. On stop, the fleet writes both
to ``DIR/traffic.json``, then ends HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncssh

from console.simfleet import keys as keyfiles
from console.simfleet.control import CONTROL_USER, controller
from console.simfleet.haproxy import MISSING, BalancerError, HAProxyProcess, find_haproxy
from console.simfleet.host import HostState, SimHost
from console.simfleet.layout import (
    FLEET_FILE,
    INVENTORY_FILE,
    LB_HOST,
    SPEC_FILE,
    BalancerLayout,
    Slot,
    host_slots,
    inventory_yaml,
    load_rate,
    pool_members,
    rollout_yaml,
)
from console.simfleet.load import LoadGenerator, TrafficCounts
from console.simfleet.logs import LogPump
from console.simfleet.metrics_http import MetricsPage
from console.simfleet.scenario import Scenario, Trigger, load_scenario
from console.simfleet.server import Auth, Forwards, HostServer, base_options

log = logging.getLogger(__name__)

DEFAULT_USER = "deploy"
TRAFFIC_FILE = "traffic.json"  # a load-balanced fleet's last report, written on stop


class SimFleet:
    """The embedded simulated fleet (see the module docstring)."""

    def __init__(
        self,
        n: int = 24,
        directory: str | os.PathLike[str] = ".",
        scenario: str | os.PathLike[str] | Scenario = "healthy",
        seed: int = 1,
        *,
        log_rate: float | None = None,
        time_scale: float | None = None,
        user: str = DEFAULT_USER,
        address: str = "127.0.0.1",
    ) -> None:
        if n < 1:
            raise ValueError("a fleet needs at least one host")
        self.n = n
        self.directory = Path(directory).resolve()
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(os.fspath(scenario))
        self.scenario = scenario
        self.seed = seed
        self.log_rate = log_rate
        self.time_scale = self.scenario.time_scale if time_scale is None else time_scale
        self.user = user
        self.address = address
        self._servers: dict[str, HostServer] = {}
        self._pages: dict[str, MetricsPage] = {}  # each host's /metrics over HTTP
        self._pump = LogPump()
        self._tasks: set[asyncio.Task[None]] = set()
        self.haproxy: HAProxyProcess | None = None  # with a load_balancer scenario
        self.lb_server: HostServer | None = None  # lb-01, the way to HAProxy's socket
        self._load: LoadGenerator | None = None
        self._pools: dict[str, list[str]] = {}

    # --- paths and lookups -----------------------------------------------------------

    @property
    def inventory_path(self) -> Path:
        return self.directory / INVENTORY_FILE

    @property
    def spec_path(self) -> Path:
        return self.directory / SPEC_FILE

    @property
    def known_hosts_path(self) -> Path:
        return self.directory / keyfiles.KNOWN_HOSTS_FILE

    @property
    def client_key_path(self) -> Path:
        return self.directory / keyfiles.CLIENT_KEY_FILE

    @property
    def hosts(self) -> dict[str, int]:
        """Host name -> port, in inventory order."""
        return {name: hs.port for name, hs in self._servers.items()}

    @property
    def metrics_ports(self) -> dict[str, int]:
        """Host name -> the port of its Prometheus page (``GET /metrics``)."""
        return {name: page.port for name, page in self._pages.items()}

    @property
    def balancer(self) -> BalancerLayout | None:
        """How rolldeck reaches the fleet's HAProxy (None without a load balancer)."""
        if self.haproxy is None or self.lb_server is None:
            return None
        lb = self.scenario.load_balancer
        return BalancerLayout(socket=self.haproxy.socket, pools=lb.pools if lb else None)

    @property
    def traffic(self) -> TrafficCounts:
        """What the load generator sent and got back (empty without a balancer)."""
        return self._load.counts if self._load is not None else TrafficCounts()

    async def balancer_report(self) -> dict[str, Any] | None:
        """HAProxy's servers now (admin state, weight, pool) and the load generator's
        counts; None without a load balancer."""
        if self.haproxy is None:
            return None
        pool_of = {h: pool for pool, hosts in self._pools.items() for h in hosts}
        servers = await self.haproxy.server_states()
        return {
            "frontend": self.haproxy.url,
            "socket": self.haproxy.socket,
            "backend": self.haproxy.backend,
            "servers": {
                name: {"admin": admin, "weight": weight, "pool": pool_of.get(name)}
                for name, (admin, weight) in servers.items()
            },
            "pools": self._pools,
            "traffic": self.traffic.to_json(),
        }

    def sim_host(self, name: str) -> SimHost:
        return self._server(name).host

    def host_state(self, name: str) -> HostState:
        return self._server(name).host.state()

    def _server(self, name: str) -> HostServer:
        try:
            return self._servers[name]
        except KeyError:
            raise KeyError(f"no simulated host {name!r}") from None

    @property
    def lines_generated(self) -> int:
        return self._pump.lines_generated

    def ready_line(self) -> str:
        ports = sorted(self.hosts.values())
        lb = ""
        if self.haproxy is not None and self.lb_server is not None:
            lb = (
                f", HAProxy {self.haproxy.url} (admin socket through {LB_HOST} "
                f"on port {self.lb_server.port})"
            )
        return (
            f"sim-fleet ready: {self.n} hosts on {self.address} ports {ports[0]}-{ports[-1]}, "
            f"scenario {self.scenario.name}, seed {self.seed}, "
            f"inventory {self.inventory_path}, spec {self.spec_path}{lb}"
        )

    # --- fault injection -------------------------------------------------------------

    async def kill_host(self, name: str) -> None:
        """The host drops every connection and refuses new ones."""
        self._server(name).kill()

    async def revive_host(self, name: str) -> None:
        """The host listens again, on the same port with the same key."""
        await self._server(name).revive()

    def set_disk_full(self, name: str, full: bool = True) -> None:
        self._server(name).host.disk_full = full

    def _on_trigger(self, host: SimHost, kind: str, trigger: Trigger) -> None:
        delay = host.scaled(trigger.delay) if trigger.on else self.time_scale * (trigger.after or 0)
        self._spawn(self._fault(host.name, kind, trigger, delay))

    async def _fault(
        self, name: str, kind: str, trigger: Trigger, delay: float, applied: bool = False
    ) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if not applied:
                await self._set_fault(name, kind, True)
            if trigger.recover_after is not None:
                await asyncio.sleep(trigger.recover_after * self.time_scale)
                await self._set_fault(name, kind, False)
        except OSError as exc:  # e.g. the port was taken while the host was down
            log.error("%s: scenario fault %s could not be applied: %s", name, kind, exc)

    async def _set_fault(self, name: str, kind: str, on: bool) -> None:
        if kind == "disk_full":
            self.set_disk_full(name, on)
        elif on:
            await self.kill_host(name)
        else:
            await self.revive_host(name)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        lb = self.scenario.load_balancer
        if lb is not None and find_haproxy() is None:
            raise BalancerError(f"scenario {self.scenario.name} needs a load balancer: {MISSING}")
        if lb is not None and lb.pools is not None and self.n < 2:
            raise ValueError("a fleet with two pools needs at least two hosts")
        self.directory.mkdir(parents=True, exist_ok=True)
        slots = host_slots(self.n)
        for rule in self.scenario.hosts:
            if not any(rule.matches(s.name) for s in slots):
                log.warning(
                    "%s:%s: host rule %r matches none of the %d hosts",
                    self.scenario.path,
                    rule.line,
                    rule.match,
                    self.n,
                )
        count = self.n + (1 if lb is not None else 0)  # lb-01's key is the last
        host_keys = await asyncio.to_thread(keyfiles.host_keys, self.directory, count)
        client = await asyncio.to_thread(keyfiles.client_key, self.directory)
        auth = Auth(self.user, frozenset({client.public_data}), control_user=CONTROL_USER)
        control = controller(self)
        previous = await asyncio.to_thread(self._previous_ports)
        previous_pages = await asyncio.to_thread(self._previous_ports, "metrics_ports")
        base = base_options(host_keys[0])
        try:
            for slot, key in zip(slots, host_keys[: self.n], strict=True):
                host = SimHost(
                    slot.name,
                    self.scenario,
                    seed=self.seed,
                    time_scale=self.time_scale,
                    log_rate=self.log_rate,
                )
                host.on_trigger = self._on_trigger
                server = HostServer(host, base, key, auth, self._pump, self.address, control)
                await server.listen(previous.get(slot.name, 0))
                self._servers[slot.name] = server
                page = MetricsPage(host, self.address)
                await page.listen(previous_pages.get(slot.name, 0))
                self._pages[slot.name] = page
            if lb is not None:
                await self._start_balancer(slots, host_keys[-1], base, auth, previous)
            await asyncio.to_thread(self._write_files, slots)
        except BaseException:
            await self.stop()
            raise
        if self.haproxy is not None:
            self._load = LoadGenerator(
                self.address, self.haproxy.port, load_rate(self.scenario, self.n)
            )
            self._spawn(self._load.run())
        for server in self._servers.values():
            for rule in server.host.rules:
                for kind, trigger in (
                    ("unreachable", rule.unreachable),
                    ("disk_full", rule.disk_full),
                ):
                    if trigger is None or trigger.on is not None:
                        continue
                    if trigger.at_start and kind == "unreachable":
                        server.kill()  # before the ready line: no client ever gets in
                        self._spawn(self._fault(server.host.name, kind, trigger, 0.0, True))
                    elif trigger.after is not None:
                        self._on_trigger(server.host, kind, trigger)

    async def _start_balancer(
        self,
        slots: list[Slot],
        key: asyncssh.SSHKey,
        base: asyncssh.SSHServerConnectionOptions,
        auth: Auth,
        previous: dict[str, int],
    ) -> None:
        """HAProxy over the hosts' HTTP ports, the idle pool set aside in it, lb-01
        forwarding to its runtime API only, and every host counting real requests."""
        lb = self.scenario.load_balancer
        assert lb is not None
        self.haproxy = HAProxyProcess(self.directory, self.metrics_ports, address=self.address)
        await self.haproxy.start()
        if lb.pools is not None:
            self._pools = pool_members(slots, lb.pools)
            for name in self._pools[lb.pools[1]]:
                await self.haproxy.set_state(name, lb.idle)
        for server in self._servers.values():
            server.host.real_traffic = True
        host = SimHost(
            LB_HOST,
            self.scenario,
            seed=self.seed,
            time_scale=self.time_scale,
            log_rate=self.log_rate,
        )
        forwards = Forwards(
            unix=frozenset({self.haproxy.socket}),
            tcp=frozenset({(self.address, self.haproxy.api_port)}),
        )
        server = HostServer(
            host, base, key, auth, self._pump, self.address, controller(self), forwards
        )
        await server.listen(previous.get(LB_HOST, 0))
        self.lb_server = server

    async def stop(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        for task in tuple(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.haproxy is not None and self.haproxy.running:
            try:
                report = await self.balancer_report()
                text = json.dumps(report, indent=1) + "\n"
                await asyncio.to_thread(keyfiles.write_public, self.directory / TRAFFIC_FILE, text)
            except (BalancerError, OSError) as exc:
                log.warning("the load balancer's last report could not be written: %s", exc)
        if self.haproxy is not None:
            await self.haproxy.stop()
        if self.lb_server is not None:
            await self.lb_server.close()
        await asyncio.gather(*(s.close() for s in self._servers.values()), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self._pages.values()), return_exceptions=True)
        await self._pump.close()

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- files -----------------------------------------------------------------------

    def _previous_ports(self, key: str = "hosts") -> dict[str, int]:
        try:
            data = json.loads((self.directory / FLEET_FILE).read_text(encoding="utf-8"))
            ports = {str(k): int(v) for k, v in data.get(key, {}).items()}
            if key == "hosts" and isinstance(data.get("balancer"), dict):
                ports[LB_HOST] = int(data["balancer"]["port"])
            return ports
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            return {}

    def _write_files(self, slots: list[Slot]) -> None:
        header = (
            f"Written by rolldeck sim-fleet: {self.n} simulated hosts on {self.address}, "
            f"scenario {self.scenario.name}, seed {self.seed}."
        )
        ports = self.hosts
        servers = [*self._servers.values(), *([self.lb_server] if self.lb_server else [])]
        entries = [(s.port, s.host_key) for s in servers]
        keyfiles.write_public(
            self.known_hosts_path, keyfiles.known_hosts_text(self.address, entries)
        )
        keyfiles.write_public(
            self.inventory_path,
            inventory_yaml(
                slots,
                ports,
                address=self.address,
                user=self.user,
                header=header,
                metrics_ports=self.metrics_ports,
                balancer=self.balancer,
                lb_port=self.lb_server.port if self.lb_server is not None else None,
            ),
        )
        keyfiles.write_public(
            self.spec_path,
            rollout_yaml(self.scenario, self.n, self.time_scale, header, balancer=self.balancer),
        )
        fleet: dict[str, Any] = {
            "pid": os.getpid(),
            "python": sys.executable,
            "address": self.address,
            "user": self.user,
            "scenario": self.scenario.name,
            "seed": self.seed,
            "time_scale": self.time_scale,
            "hosts": ports,
            "metrics_ports": self.metrics_ports,
        }
        if self.haproxy is not None and self.lb_server is not None:
            fleet["balancer"] = {
                "host": LB_HOST,
                "port": self.lb_server.port,
                "socket": self.haproxy.socket,
                "api": self.haproxy.api,
                "frontend": self.haproxy.url,
                "backend": self.haproxy.backend,
                "pools": list(self._pools),
                "members": self._pools,
                "haproxy_pid": self.haproxy.pid,
            }
        keyfiles.write_public(self.directory / FLEET_FILE, json.dumps(fleet, indent=1) + "\n")
