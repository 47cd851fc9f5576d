"""The simulated fleet behind a real HAProxy: the scenario key, the HAProxy it starts,
its admin socket reached only through lb-01 over SSH, the hosts' HTTP application, the
load generator, and counters that count the real requests each host answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil
import pytest

from console.core.errors import InputError
from console.simfleet import SimFleet, parse_scenario, start_fleet_process
from console.simfleet.haproxy import BalancerError
from console.simfleet.host import SimHost
from console.simfleet.layout import BalancerLayout, rollout_yaml
from console.simfleet.load import REQUEST_TIMEOUT, LoadGenerator, parse_answer
from console.spec import parse_spec
from console.traffic.haproxy import HAProxy, HAProxyError
from console.transport import make_transport
from console.transport.base import TransportOptions
from inventory.loader import load_inventory
from tests.fixtures.haproxy import require_haproxy
from tests.fixtures.simfleet import FleetFactory
from tests.waiting import wait_until, wait_until_sync

OLD, NEW = "2.4.0", "2.4.1"

COUNTED = """
load_balancer: true
request_rate: 0          # no load generator: the test's own requests are all there is
versions: {default: {error_rate: 30%, latency: 1ms}}
"""


def counters(host: SimHost) -> tuple[int, int]:
    """(200s, 500s) as the host's own metrics page says."""
    text = host.metrics_text()
    assert text is not None
    values = {}
    for line in text.splitlines():
        if line.startswith("http_requests_total{"):
            values[line.split('"')[1]] = int(line.rsplit(" ", 1)[1])
    return values["200"], values["500"]


async def get(port: int) -> tuple[int, str, str, str]:
    """One ``GET /`` on 127.0.0.1:PORT: status, version, host, body."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = await reader.read(-1)
        writer.close()
    status, version, host = parse_answer(data)
    return status, version, host, data.split(b"\r\n\r\n", 1)[1].decode()


async def set_pools(fleet: SimFleet, ready: list[str], drain: list[str]) -> None:
    assert fleet.haproxy is not None
    for name in ready:
        await fleet.haproxy.set_state(name, "ready")
    for name in drain:
        await fleet.haproxy.set_state(name, "drain")


async def test_a_blue_green_fleet_behind_haproxy(sim_fleet_factory: FleetFactory) -> None:
    """Blue live, green idle as HAProxy says; the idle pool reports no request at all;
    a bad green errors only once traffic reaches it, and stops answering within a
    request's timeout of the switch back."""
    require_haproxy()
    fleet = await sim_fleet_factory(n=4, scenario="blue-green-bad")
    blue, green = ["web-01", "api-01"], ["worker-01", "web-02"]
    report = await fleet.balancer_report()
    assert report is not None
    assert {n: (s["admin"], s["pool"]) for n, s in report["servers"].items()} == {
        "web-01": ("ready", "blue"),
        "api-01": ("ready", "blue"),
        "worker-01": ("drain", "green"),
        "web-02": ("drain", "green"),
    }
    assert "lb-01" not in fleet.hosts  # not a fleet host: never targeted, never scored
    inventory = load_inventory(str(fleet.inventory_path))
    assert sorted(inventory.groups["green"]) == sorted(green)
    assert inventory.hosts["lb-01"].port == fleet.lb_server.port  # type: ignore[union-attr]
    spec = parse_spec(fleet.spec_path.read_text(), str(fleet.spec_path))
    assert spec.load_balancer is not None and spec.load_balancer.host == "lb-01"
    assert spec.load_balancer.socket == fleet.haproxy.socket  # type: ignore[union-attr]
    assert (spec.strategy, spec.blue, spec.green) == ("blue-green", "blue", "green")
    assert [s.name for s in spec.steps] == ["install", "activate", "restart"]  # HAProxy drains

    traffic = fleet.traffic
    await wait_until(lambda: traffic.served(OLD, 200) >= 40, what="blue answering requests")
    assert set(traffic.hosts) <= set(blue)
    for name in green:
        assert counters(fleet.sim_host(name)) == (0, 0)  # idle: no traffic, nothing counted
        assert not [x for x in fleet.sim_host(name).recent_logs(50) if "GET /" in x]
    assert all(sum(counters(fleet.sim_host(n))) > 0 for n in blue)
    assert any("GET / 200" in x for x in fleet.sim_host("web-01").recent_logs(50))

    # Green gets the bad version, still idle: still nothing to report.
    for name in green:
        host = fleet.sim_host(name)
        host.installed.append(NEW)
        host.active = NEW
        host.restart()
    await wait_until(
        lambda: all(fleet.sim_host(n).health()[0] for n in green), what="green serving 2.4.1"
    )
    seen = traffic.served(OLD)
    await wait_until(lambda: traffic.served(OLD) >= seen + 20, what="more requests on blue")
    assert traffic.served(NEW) == 0 and all(counters(fleet.sim_host(n)) == (0, 0) for n in green)

    await set_pools(fleet, ready=green, drain=blue)  # the switch
    await wait_until(lambda: traffic.served(NEW, 500) >= 3, what="the bad version's errors")
    assert all(counters(fleet.sim_host(n))[1] > 0 for n in green)
    assert any(" ERROR " in x for x in fleet.sim_host("web-02").recent_logs(100))

    await set_pools(fleet, ready=blue, drain=green)  # the switch back
    switched_back = time.time()
    seen = traffic.served(OLD)
    await wait_until(lambda: traffic.served(OLD) >= seen + 40, what="blue live again")
    # A drained server takes no new request: only those already in flight finish.
    assert traffic.last[NEW] <= switched_back + REQUEST_TIMEOUT
    # nothing failed to answer (``skipped`` are requests the generator never sent, its
    # slots all busy: a loaded machine, not the switch)
    assert traffic.served("", 0) == 0


async def test_counters_count_the_requests_each_ready_server_answered(
    sim_fleet_factory: FleetFactory,
) -> None:
    require_haproxy()
    fleet = await sim_fleet_factory(n=3, scenario=parse_scenario(COUNTED))
    assert fleet.haproxy is not None
    await fleet.haproxy.set_state("web-01", "drain")
    answers = [await get(fleet.haproxy.port) for _ in range(60)]
    by_host: dict[str, list[int]] = {}
    for status, version, host, body in answers:
        assert version == OLD and body.startswith(f"{host} {OLD}")
        by_host.setdefault(host, []).append(status)
    assert set(by_host) == {"api-01", "worker-01"}  # never the drained server
    assert counters(fleet.sim_host("web-01")) == (0, 0)
    for host, statuses in by_host.items():
        assert counters(fleet.sim_host(host)) == (statuses.count(200), statuses.count(500))
    assert 0 < sum(s.count(500) for s in by_host.values()) < 60  # 30%, seeded
    # The host's own HTTP port answers too, and says who and what.
    status, version, host, _ = await get(fleet.metrics_ports["web-01"])
    assert (status in (200, 500), version, host) == (True, OLD, "web-01")


async def test_the_admin_socket_is_reached_through_lb01_and_nothing_else(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    require_haproxy()
    fleet = await sim_fleet_factory(n=2, scenario=parse_scenario(COUNTED))
    assert fleet.haproxy is not None
    hosts = load_inventory(str(fleet.inventory_path)).hosts
    other = tmp_path / "other.sock"  # a socket of this machine that is not HAProxy's
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(other))
    listener.listen()
    transport = make_transport(TransportOptions(ssh_config=[], connect_timeout=10))
    try:
        lb = await transport.connect(hosts["lb-01"])
        by_socket = HAProxy(lb, fleet.haproxy.socket)
        by_tcp = HAProxy(lb, fleet.haproxy.api)
        await by_socket.set_state("app", "api-01", "drain")
        servers = await by_tcp.servers("app")
        assert {n: s.admin for n, s in servers.items()} == {"web-01": "ready", "api-01": "drain"}
        refused = [
            HAProxy(lb, str(other)),  # another unix socket
            HAProxy(lb, f"127.0.0.1:{fleet.hosts['web-01']}"),  # another port
        ]
        for client in refused:
            with pytest.raises(HAProxyError, match="not allowed"):
                await client.servers("app")
        assert (await lb.run("echo ok", timeout=10)).first_line == "ok"  # still usable
        web = await transport.connect(hosts["web-01"])  # an app host forwards nothing
        with pytest.raises(HAProxyError, match="not allowed"):
            await HAProxy(web, fleet.haproxy.socket).servers("app")
    finally:
        await transport.close()
        listener.close()
    assert fleet.lb_server is not None  # nor does the fleet's control user, on lb-01
    async with asyncssh.connect(
        "127.0.0.1",
        fleet.lb_server.port,
        username="simctl",
        client_keys=[str(fleet.client_key_path)],
        known_hosts=str(fleet.known_hosts_path),
        agent_path=None,
        config=[],
    ) as conn:
        with pytest.raises(asyncssh.ChannelOpenError, match="not allowed"):
            await conn.open_unix_connection(fleet.haproxy.socket)


async def test_the_load_generator_is_bounded_and_times_out() -> None:
    """Against a server that never answers: at most CONCURRENCY requests in flight, the
    rest counted as skipped, each request ended by its timeout (status 0)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    load = LoadGenerator("127.0.0.1", port, 100.0, concurrency=2, timeout=0.3)
    task = asyncio.create_task(load.run())
    try:
        await wait_until(lambda: load.counts.served("", 0) >= 4, what="requests timed out")
        await wait_until(lambda: load.counts.skipped > 10, what="requests skipped")
        assert load.counts.sent - load.counts.served("", 0) <= 2  # in flight, at most
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for writer in held:
            writer.close()
        server.close()


def test_the_fleet_process_reports_and_leaves_no_haproxy_behind(tmp_path: Path) -> None:
    """Through ``simctl balancer``; HAProxy ends with the fleet, also when it is killed."""
    require_haproxy()
    fleet = start_fleet_process(4, tmp_path / "a", scenario="blue-green-bad", time_scale=0.05)
    try:
        wait_until_sync(
            lambda: asyncio.run(fleet.balancer())["traffic"]["sent"] > 0, what="requests sent"
        )
        report = asyncio.run(fleet.balancer())
        assert report["pools"] == {"blue": ["web-01", "api-01"], "green": ["worker-01", "web-02"]}
        info = json.loads((fleet.directory / "fleet.json").read_text())["balancer"]
        pid = info["haproxy_pid"]
        assert psutil.Process(pid).name() == "haproxy"
    finally:
        fleet.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    saved = json.loads((fleet.directory / "traffic.json").read_text())
    assert saved["servers"]["worker-01"]["admin"] == "drain" and saved["traffic"]["sent"] > 0
    assert not Path(info["socket"]).exists()

    killed = start_fleet_process(2, tmp_path / "b", scenario=parse_path(tmp_path), time_scale=1)
    pid = json.loads((killed.directory / "fleet.json").read_text())["balancer"]["haproxy_pid"]
    os.kill(killed.pid, signal.SIGKILL)
    killed.proc.wait()
    wait_until_sync(lambda: not psutil.pid_exists(pid), what="haproxy gone with its parent")


def parse_path(tmp_path: Path) -> str:
    path = tmp_path / "counted.yaml"
    path.write_text(COUNTED)
    return str(path)


async def test_without_haproxy_the_fleet_says_how_to_get_it(
    sim_fleet_factory: FleetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("console.simfleet.haproxy.HAPROXY", "/nonexistent/haproxy")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BalancerError, match=r"apt-get install haproxy"):
        await sim_fleet_factory(n=2, scenario=parse_scenario(COUNTED))


def test_the_application_answers_by_the_running_version() -> None:
    now = [100.0]
    sc = parse_scenario(
        "versions: {default: {error_rate: 0%, warmup: 2s, restart_duration: 1s},"
        " new: {error_rate: 100%}}"
    )
    host = SimHost("web-01", sc, seed=3, time_scale=1.0, clock=lambda: now[0])
    ok = host.answer()
    assert (ok.status, ok.version, ok.body) == (200, OLD, "web-01 2.4.0\n") and ok.latency > 0
    host.served(ok)
    assert counters(host) == (0, 0)  # not behind the load balancer: simulated traffic only
    host.real_traffic = True
    host.served(ok)
    assert counters(host) == (1, 0)
    host.installed.append(NEW)
    host.active = NEW
    host.restart()
    assert host.answer().status == 503 and host.answer().version == ""  # down
    now[0] += 1.0
    assert host.answer().status == 503  # warming up
    now[0] += 2.0
    bad = host.answer()
    assert (bad.status, bad.version) == (500, NEW) and bad.body.startswith("web-01 2.4.1 error:")
    host.served(bad)
    assert counters(host) == (0, 1)  # the restart reset the counters, as a process's do
    assert math.isclose(host.latency_sum, bad.latency)


@pytest.mark.parametrize(
    "text,field",
    [
        ("load_balancer: {pools: [blue]}", "load_balancer.pools"),
        ("load_balancer: {pools: [blue, blue]}", "load_balancer.pools"),
        ("load_balancer: {pools: [all, green]}", "load_balancer.pools"),
        ("load_balancer: {idle: gone}", "load_balancer.idle"),
        ("load_balancer: yes please", "load_balancer"),
        ("load_balancer: {bogus: 1}", "load_balancer.bogus"),
        ("rollout: {strategy: blue-green}", "rollout.strategy"),
        ("rollout: {strategy: sideways}", "rollout.strategy"),
        ("rollout: {traffic: [5%, 100%]}", "rollout.traffic"),
        ("load_balancer: {pools: [b, g]}\nrollout: {blue: x}", "rollout.blue"),
    ],
)
def test_scenario_balancer_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_scenario(text + "\n", "s.yaml")
    assert info.value.field == field


def test_the_spec_of_a_balanced_fleet() -> None:
    """Canary by weight: every host behind HAProxy, lb-01 out of the targets; the gate's
    bake follows time_scale."""
    sc = parse_scenario(
        "load_balancer: true\n"
        "rollout: {strategy: canary, traffic: [10%, 50%, 100%], between_batches: 20s}\n"
    )
    text = rollout_yaml(sc, 6, 0.5, "h", balancer=BalancerLayout(socket="/tmp/x/haproxy.sock"))
    spec = parse_spec(text, "rollout.yaml")
    assert (spec.strategy, spec.traffic, spec.targets) == ("canary", (10, 50, 100), "all:!lb")
    assert spec.load_balancer is not None and spec.load_balancer.socket == "/tmp/x/haproxy.sock"
    assert "between_batches: 10s" in text
    assert "svc drain" not in text  # HAProxy drains each host


def test_a_long_fleet_directory_puts_the_socket_in_a_short_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from console.simfleet.haproxy import MAX_SOCKET_PATH, socket_path

    assert socket_path(tmp_path) == (str(tmp_path / "haproxy.sock"), None)
    long = tmp_path / ("x" * 100)
    for tmpdir in (str(tmp_path), str(long)):  # even when $TMPDIR is long too
        monkeypatch.setattr(tempfile, "tempdir", tmpdir)
        path, temporary = socket_path(long)
        assert temporary is not None and path == os.path.join(temporary, "haproxy.sock")
        assert len(os.fsencode(path)) <= MAX_SOCKET_PATH
        os.rmdir(temporary)
