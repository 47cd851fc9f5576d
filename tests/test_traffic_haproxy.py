"""Rolling with drain through a real HAProxy, over real OpenSSH.

The hosts are loopback hosts of the session's sshd (tests/fixtures/sshd.py), each with
its own deploy root and its own HTTP server (tests/fixtures/haproxy.py ``HostSite``)
serving the version its ``current`` link points at; a real HAProxy balances over them,
and its admin socket is reached through the SSH connection of ``lb-01``, an inventory
host on the same sshd. A load generator sends requests through HAProxy for the whole
rollout. The deploy stops each host's service (503) while it changes, so a host that
still had traffic during its deploy would fail requests: zero failures proves the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.describe import describe
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.plan import make_plan
from console.spec import RolloutSpec, parse_spec
from console.traffic.haproxy import HAProxy, HAProxyError
from console.transport import make_transport
from inventory.model import Host
from tests.fixtures.haproxy import (  # noqa: F401
    HAProxyServer,
    HostSite,
    LoadGenerator,
    haproxy_factory,
)
from tests.fixtures.sshd import SSHFleet
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd

SPEC = """
service: shop
version: "2.0"
batches: [1, 100%]
max_parallel: 2
max_failures: 0
on_failure: {on_failure}
between_batches: auto
release_dir: "{{vars.root}}"
lease: {{path: "{{vars.root}}/.leases"}}
load_balancer:
  host: lb-01
  socket: {socket}
  backend: app
  drain: {{wait_sessions: 0, timeout: {drain_timeout}}}
steps:
  - name: stop
    run: touch {{vars.root}}/DOWN
  - name: install
    run: >-
      mkdir -p {{vars.root}}/releases/{{version}} &&
      printf '%s\\n' {{version}} > {{vars.root}}/releases/{{version}}/VERSION
  - name: activate
    run: ln -sfn releases/{{version}} {{vars.root}}/current
  - name: start
    run: rm -f {{vars.root}}/DOWN
health:  # what the host's HTTP server answers 200 for: its release, not broken
  run: >-
    test ! -e {{vars.root}}/DOWN && test ! -e {{vars.root}}/current/BROKEN &&
    grep -qx {{version}} {{vars.root}}/current/VERSION
  every: 0.05s
  healthy_after: 2
  deadline: 1s
rollback:
  steps:
    - name: stop
      run: touch {{vars.root}}/DOWN
    - name: restore
      run: ln -sfn releases/{{previous_version}} {{vars.root}}/current
    - name: start
      run: rm -f {{vars.root}}/DOWN
"""


@dataclasses.dataclass
class Setup:
    fleet: SSHFleet
    lb: Host
    haproxy: HAProxyServer
    sites: dict[str, HostSite]

    def spec(self, *, on_failure: str = "pause", drain_timeout: str = "10s") -> RolloutSpec:
        text = SPEC.format(
            on_failure=on_failure, socket=self.haproxy.socket, drain_timeout=drain_timeout
        )
        return parse_spec(text, "spec.yaml")

    def engine(self, spec: RolloutSpec, **kw: object) -> Engine:
        plan = make_plan([h.name for h in self.fleet.hosts], spec.batches)
        return Engine(
            spec,
            self.fleet.hosts,
            plan,
            make_transport(self.fleet.options),
            journal=None,
            operator="tester",
            monitors=False,
            balancer=self.lb,
            **kw,  # type: ignore[arg-type]
        )


def seed(root: Path, version: str = "1.0") -> None:
    (root / "releases" / version).mkdir(parents=True, exist_ok=True)
    (root / "releases" / version / "VERSION").write_text(version + "\n")
    (root / "current").symlink_to(f"releases/{version}")


@contextlib.contextmanager
def balanced_fleet(
    fleet: SSHFleet, start_haproxy: Callable[[dict[str, int]], HAProxyServer]
) -> Iterator[tuple[Host, HAProxyServer, dict[str, HostSite]]]:
    """``fleet``'s hosts each serving HTTP on release 1.0, a HAProxy in front, and
    ``lb-01`` (an inventory host on the same sshd) to reach its admin socket."""
    lb_root = fleet.root("web-01").parent / "lb-01"
    lb_root.mkdir()
    lb = dataclasses.replace(fleet.hosts[0], name="lb-01", vars={"root": str(lb_root)})
    sites = {h.name: HostSite(h.name, fleet.root(h.name)).start() for h in fleet.hosts}
    try:
        for site in sites.values():
            seed(site.root)
        yield lb, start_haproxy({name: site.port for name, site in sites.items()}), sites
    finally:
        for site in sites.values():
            site.stop()


@pytest.fixture
def setup(
    sshd_fleet: Callable[..., SSHFleet],
    haproxy_factory: Callable[[dict[str, int]], HAProxyServer],  # noqa: F811
) -> Iterator[Setup]:
    fleet = sshd_fleet(3)
    with balanced_fleet(fleet, haproxy_factory) as (lb, haproxy, sites):
        yield Setup(fleet, lb, haproxy, sites)


async def drive(engine: Engine, timeout: float = 60.0) -> tuple[Outcome, list[Event]]:
    seen: list[Event] = []
    sub = engine.bus.subscribe()

    async def consume() -> None:
        async for batch in sub.batches():
            seen.extend(batch)

    async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        outcome = await engine.run()
    return outcome, seen


def traffic(seen: list[Event], host: str) -> list[ev.TrafficChanged]:
    return [e for e in seen if isinstance(e, ev.TrafficChanged) and e.host == host]


def states_of(seen: list[Event], host: str) -> list[HostState]:
    return [e.state for e in seen if isinstance(e, ev.HostStateChanged) and e.host == host]


async def rolled(
    setup: Setup, spec: RolloutSpec, **kw: object
) -> tuple[Outcome, list[Event], LoadGenerator]:
    engine = setup.engine(spec, **kw)
    with LoadGenerator(setup.haproxy.url) as load:
        await wait_until(lambda: load.count >= 20, what="requests before the rollout")
        outcome, seen = await drive(engine)
        before = load.count
        await wait_until(lambda: load.count >= before + 20, what="requests after it")
    return outcome, seen, load


async def test_rolling_with_drain_fails_no_request_and_ends_every_host_ready(
    setup: Setup,
) -> None:
    outcome, seen, load = await rolled(setup, setup.spec())

    assert outcome == Outcome.SUCCEEDED
    assert load.failures() == []
    assert {"web-01 1.0", "web-01 2.0", "web-03 2.0"} <= load.bodies()
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")
    for host in setup.sites:
        moves = traffic(seen, host)
        assert [m.admin for m in moves] == ["drain", "drain", "ready"], moves
        assert moves[1].sessions == 0 and moves[1].detail.startswith("drained")
        # drained before the first step, ready before counted done
        order = [e for e in seen if getattr(e, "host", None) == host]
        drained = order.index(moves[1])
        first_step = next(e for e in order if isinstance(e, ev.StepStarted))
        healthy = next(
            e for e in order if isinstance(e, ev.HostStateChanged) and e.state == HostState.HEALTHY
        )
        assert drained < order.index(first_step)
        assert order.index(moves[2]) < order.index(healthy)
    notices = [e.message for e in seen if isinstance(e, ev.Notice)]
    assert "load balancer: backend app on lb-01: 3 ready" in notices
    words = describe(traffic(seen, "web-02")[0]).text()
    assert words.startswith("web-02 traffic drain (app/web-02")


async def test_a_host_whose_health_fails_stays_drained(setup: Setup) -> None:
    broken = setup.fleet.root("web-01") / "releases" / "2.0"
    broken.mkdir(parents=True)
    (broken / "BROKEN").write_text("")  # 2.0 serves 500 on web-01

    outcome, seen, load = await rolled(setup, setup.spec(), exit_when_paused=True)

    assert outcome == Outcome.PAUSED
    assert states_of(seen, "web-01")[-1] == HostState.FAILED
    assert load.failures() == []  # never sent traffic while broken
    assert setup.haproxy.admin_states() == {"web-01": "drain", "web-02": "ready", "web-03": "ready"}
    kept = traffic(seen, "web-01")[-1]
    assert kept.failed and kept.admin == "drain"
    assert "kept drained: health gating" in describe(kept).text()


async def test_an_abort_mid_deploy_leaves_the_host_drained_and_says_so(setup: Setup) -> None:
    engine = setup.engine(setup.spec(), exit_when_paused=True)
    sub = engine.bus.subscribe()
    seen: list[Event] = []

    async def watch() -> None:
        async for batch in sub.batches():
            for e in batch:
                seen.append(e)
                if isinstance(e, ev.StepStarted) and e.step == "install":
                    engine.abort("stop", operator="tester")

    async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
        tg.create_task(watch())
        outcome = await engine.run()
    assert outcome == Outcome.ABORTED
    kept = traffic(seen, "web-01")[-1]
    assert kept.failed and kept.admin == "drain"
    assert kept.detail.startswith("kept drained: aborted ")
    assert setup.haproxy.admin_states()["web-01"] == "drain"


async def test_rollback_drains_reverts_gates_and_readies(setup: Setup) -> None:
    broken = setup.fleet.root("web-03") / "releases" / "2.0"
    broken.mkdir(parents=True)
    (broken / "BROKEN").write_text("")

    outcome, seen, load = await rolled(setup, setup.spec(on_failure="rollback"))

    assert outcome == Outcome.ROLLED_BACK
    assert load.failures() == []
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")
    for host, site in setup.sites.items():
        assert site.answer() == (200, f"{host} 1.0")
        assert [m.admin for m in traffic(seen, host)][-3:] == ["drain", "drain", "ready"]
    assert traffic(seen, "web-03")[2].failed  # it stayed drained until its rollback


async def test_a_drain_that_outlasts_its_timeout_fails_the_host_with_the_count(
    setup: Setup,
) -> None:
    import threading
    import urllib.request

    # Hold one session on every server: two slow requests through HAProxy, round robin.
    def slow() -> None:
        with urllib.request.urlopen(f"{setup.haproxy.url}/slow?s=30", timeout=60) as r:
            r.read()

    threads = [threading.Thread(target=slow, daemon=True) for _ in setup.sites]
    for thread in threads:
        thread.start()
    api = HAProxy(await make_transport(setup.fleet.options).connect(setup.lb), setup.haproxy.socket)
    await wait_until(lambda: _all_busy(api), timeout=10, what="a session on every server")
    try:
        spec = setup.spec(drain_timeout="0.3s")
        outcome, seen = await drive(setup.engine(spec, exit_when_paused=True))
    finally:
        for site in setup.sites.values():
            site.release()
    assert outcome == Outcome.PAUSED
    failed = [e for e in seen if isinstance(e, ev.HostStateChanged) and e.state == HostState.FAILED]
    assert [e.host for e in failed] == ["web-01"]
    assert "drain: 1 sessions still on app/web-01 after 0.3s" in failed[0].detail
    assert not [e for e in seen if isinstance(e, ev.StepStarted)]  # nothing deployed
    assert setup.haproxy.admin_states()["web-01"] == "drain"
    for thread in threads:
        thread.join(10)


async def _all_busy(api: HAProxy) -> bool:
    servers = await api.servers("app")
    return sum(s.sessions for s in servers.values()) >= 3


async def test_a_backend_without_a_hosts_server_refuses_the_rollout_before_any_change(
    setup: Setup,
) -> None:
    spec = setup.spec()
    text = spec.text.replace("  backend: app\n", "  backend: app\n  server: '{host}-x'\n")
    outcome, seen = await drive(setup.engine(parse_spec(text, "spec.yaml")))
    assert outcome == Outcome.FAILED
    finished = seen[-1]
    assert isinstance(finished, ev.RolloutFinished)
    assert finished.reason == (
        "load balancer: backend app on lb-01 has no server for 3 hosts: "
        "web-01 (web-01-x), web-02 (web-02-x), web-03 (web-03-x)"
    )
    assert not [e for e in seen if isinstance(e, ev.StepStarted | ev.TrafficChanged)]
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")


# -- the runtime API client, over the LB host's SSH connection -----------------------------


async def test_the_client_over_ssh_by_socket_and_by_tcp_api(setup: Setup) -> None:
    transport = make_transport(setup.fleet.options)
    try:
        conn = await transport.connect(setup.lb)
        by_socket = HAProxy(conn, setup.haproxy.socket)
        by_tcp = HAProxy(conn, f"127.0.0.1:{setup.haproxy.api_port}")
        for _ in range(2):  # idempotent
            await by_socket.set_state("app", "web-02", "drain")
        await by_tcp.set_weight("app", "web-03", 7)
        servers = await by_tcp.servers("app")
        assert {n: (s.admin, s.weight, s.sessions) for n, s in servers.items()} == {
            "web-01": ("ready", 1, 0),
            "web-02": ("drain", 1, 0),
            "web-03": ("ready", 7, 0),
        }
        assert servers["web-02"].status == "DRAIN"
        await by_tcp.set_state("app", "web-01", "maint")
        assert setup.haproxy.admin_states()["web-01"] == "maint"  # HAProxy's own answer
        assert (await by_socket.server("app", "web-01")).admin == "maint"
        with pytest.raises(HAProxyError, match="No such server"):
            await by_socket.set_state("app", "web-09", "drain")
        with pytest.raises(HAProxyError, match="no backend 'nope'"):
            await by_socket.servers("nope")
        with pytest.raises(HAProxyError, match=r"cannot reach /nonexistent/admin\.sock"):
            await HAProxy(conn, "/nonexistent/admin.sock").servers("app")
        # the connection is still good after a refused forward
        assert (await conn.run("echo ok", timeout=5)).first_line == "ok"
    finally:
        await transport.close()


# -- kill -9, then resume: traffic ends where the journal and HAProxy agree -----------------

RESUME_SPEC = """
service: shop
version: "2.0"
inventory: inventory.yaml
targets: "web-*"
batches: [1, 100%]
max_failures: 0
between_batches: auto
release_dir: "{{vars.root}}"
lease: {{path: "{{vars.root}}/.leases"}}
load_balancer: {{host: lb-01, socket: {socket}, backend: app}}
steps:
  - {{name: stop, run: "touch {{vars.root}}/DOWN"}}
  - name: install
    run: >-
      mkdir -p {{vars.root}}/releases/{{version}} &&
      printf '%s\\n' {{version}} > {{vars.root}}/releases/{{version}}/VERSION
  - {{name: activate, run: "ln -sfn releases/{{version}} {{vars.root}}/current"}}
  - {{name: start, run: "rm -f {{vars.root}}/DOWN"}}
health:
  run: >-
    while test -e {{vars.root}}/HOLD; do sleep 0.02; done;
    test ! -e {{vars.root}}/DOWN && grep -qx {{version}} {{vars.root}}/current/VERSION
  every: 0.05s
  healthy_after: 2
  deadline: 1s
  timeout: 30s
"""


async def test_killed_between_its_deploy_and_ready_a_host_is_readied_by_resume(
    setup: Setup, tmp_path: Path
) -> None:
    """``rolldeck run`` is killed (SIGKILL) once web-01's last step finished, while its
    health probe is held (``HOLD``): after its deploy, before its ready. ``resume`` finds
    web-01 healthy on 2.0 with every step done (not deployed again), sees in HAProxy
    that the server this rollout drained is still drained, and sets it ready; the other
    hosts roll with drain. No request fails throughout."""
    import os
    import sys

    from console.store.history import render_timeline, timeline
    from console.store.journal import list_journals, read_journal
    from tests.test_resume_cli import REPO, run_and_kill

    h = setup.lb
    lines = [
        f"defaults: {{user: {h.user}, port: {h.port}, key: {h.key}, known_hosts: {h.known_hosts}}}",
        "hosts:",
        *(
            f"  {x.name}: {{address: 127.0.0.1, vars: {{root: {x.vars['root']}}}}}"
            for x in [*setup.fleet.hosts, h]
        ),
    ]
    (tmp_path / "inventory.yaml").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "rollout.yaml"
    spec.write_text(RESUME_SPEC.format(socket=setup.haproxy.socket))
    state = tmp_path / "state"
    web01 = setup.fleet.root("web-01")
    (web01 / "HOLD").write_text("")

    with LoadGenerator(setup.haproxy.url) as load:
        await wait_until(lambda: load.count >= 20, what="requests before the rollout")
        await run_and_kill(spec, state, b'"step":"start","status":"ok"')
        assert setup.haproxy.admin_states()["web-01"] == "drain"
        assert setup.sites["web-01"].answer() == (200, "web-01 2.0")  # deployed
        (web01 / "HOLD").unlink()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "console",
            "resume",
            "--headless",
            "--yes",
            "--state-dir",
            str(state),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (out.decode(), err.decode())
        before = load.count
        await wait_until(lambda: load.count >= before + 20, what="requests after the resume")

    assert load.failures() == []
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")
    for host, site in setup.sites.items():
        assert site.answer() == (200, f"{host} 2.0")
    (path,) = list_journals(state)
    events = read_journal(path)
    moves = [(e.host, e.admin, e.detail) for e in events if isinstance(e, ev.TrafficChanged)]
    assert ("web-01", "ready", "resumed: healthy, back in traffic") in moves
    shown = render_timeline(timeline(path))  # `rolldeck show`
    assert re.search(
        r"web-01 traffic ready \(app/web-01, \d+ sessions?\): resumed: healthy, back in traffic",
        shown,
    ), shown
    assert "web-02 traffic drain (app/web-02, 0 sessions): drained in" in shown
    again = [e for e in events if isinstance(e, ev.StepStarted) and e.host == "web-01"]
    assert [e.step for e in again] == ["stop", "install", "activate", "start"]  # once
