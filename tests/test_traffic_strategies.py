"""The weighted canary and blue-green through a real HAProxy, over real OpenSSH.

Same parts as tests/test_traffic_haproxy.py: loopback hosts of the session's sshd, each
with its own HTTP server serving the release its ``current`` link points at, a real
HAProxy in front (roundrobin, no health checks: what sends traffic to a server is its
administrative state and weight, which rolldeck sets), its admin socket reached through
the SSH connection of ``lb-01``, and a load generator sending requests through it.

Shares are measured from HAProxy's own counters (``stot`` per server) while the
canary's gate holds the step: the tolerance is 2 percentage points on 400 requests
(roundrobin spreads by weight almost exactly; the slack covers requests in flight when
the counters are read).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.runtime.rollout import plan_for
from console.spec import RolloutSpec, parse_spec
from console.transport import make_transport
from inventory.model import Host
from tests.fixtures.haproxy import (  # noqa: F401
    HAProxyServer,
    HostSite,
    LoadGenerator,
    haproxy_factory,
)
from tests.fixtures.sshd import SSHFleet
from tests.test_traffic_haproxy import balanced_fleet
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd

STEPS = """
release_dir: "{vars.root}"
lease: {path: "{vars.root}/.leases"}
steps:
  - name: stop
    run: touch {vars.root}/DOWN
  - name: install
    run: >-
      mkdir -p {vars.root}/releases/{version} &&
      printf '%s\\n' {version} > {vars.root}/releases/{version}/VERSION
  - name: activate
    run: ln -sfn releases/{version} {vars.root}/current
  - name: start
    run: rm -f {vars.root}/DOWN
health:
  run: >-
    while test -e {vars.root}/HOLD; do sleep 0.02; done;
    test ! -e {vars.root}/DOWN && grep -qx {version} {vars.root}/current/VERSION
  every: 0.05s
  healthy_after: 2
  deadline: 1s
  timeout: 30s
rollback:
  steps:
    - name: stop
      run: touch {vars.root}/DOWN
    - name: restore
      run: ln -sfn releases/{previous_version} {vars.root}/current
    - name: start
      run: rm -f {vars.root}/DOWN
"""

CANARY = """
service: shop
version: "2.0"
batches: [1, 100%]
max_parallel: 2
strategy: canary
traffic: [5%, 25%, 100%]
between_batches: {{gate: manual, timeout: 5m, on_timeout: abort}}
load_balancer: {{host: lb-01, socket: {socket}, backend: app}}
"""

BLUE_GREEN = """
service: shop
version: "2.0"
inventory: inventory.yaml
batches: [1, 100%]
strategy: blue-green
blue: blue
green: green
between_batches: {between}
load_balancer: {{host: lb-01, socket: {socket}, backend: app}}
"""

SHARE_TOLERANCE = 2.0  # percentage points, on MEASURED requests
MEASURED = 400


@dataclasses.dataclass
class Setup:
    fleet: SSHFleet
    lb: Host
    haproxy: HAProxyServer
    sites: dict[str, HostSite]
    hosts: list[Host]

    def engine(self, spec: RolloutSpec, **kw: object) -> Engine:
        return Engine(
            spec,
            self.hosts,
            plan_for(spec, self.hosts),
            make_transport(self.fleet.options),
            journal=None,
            operator="tester",
            monitors=False,
            balancer=self.lb,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture
def setup(
    sshd_fleet: Callable[..., SSHFleet],
    haproxy_factory: Callable[[dict[str, int]], HAProxyServer],  # noqa: F811
) -> Iterator[Setup]:
    fleet = sshd_fleet(4)
    pools = {"web-01": "blue", "web-02": "blue", "web-03": "green", "web-04": "green"}
    hosts = [dataclasses.replace(h, groups=(pools[h.name],)) for h in fleet.hosts]
    with balanced_fleet(fleet, haproxy_factory) as (lb, haproxy, sites):
        yield Setup(fleet, lb, haproxy, sites, hosts)


def spec_of(head: str, **fmt: str) -> RolloutSpec:
    return parse_spec(head.format(**fmt) + STEPS, "spec.yaml")


def weights(haproxy: HAProxyServer) -> dict[str, int]:
    out: dict[str, int] = {}
    header: list[str] = []
    for line in haproxy.ask("show servers state app").splitlines():
        if line.startswith("#"):
            header = line.lstrip("#").split()
        elif header and line.strip():
            row = dict(zip(header, line.split(), strict=False))
            out[row["srv_name"]] = int(row["srv_uweight"])
    return out


async def measured_share(haproxy: HAProxyServer, server: str) -> float:
    """The percentage of the next MEASURED requests HAProxy sent to ``server``."""
    before = haproxy.served()

    def sent() -> int:
        now = haproxy.served()
        return sum(now.values()) - sum(before.values())

    await wait_until(lambda: sent() >= MEASURED, timeout=60, what="requests to measure")
    after = haproxy.served()
    total = sum(after.values()) - sum(before.values())
    return 100 * (after[server] - before[server]) / total


class Driven:
    """An engine run in the background, its events collected as they come."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[Event] = []
        self.outcome: Outcome | None = None

    async def run(self) -> None:
        sub = self.engine.bus.subscribe()

        async def consume() -> None:
            async for batch in sub.batches():
                self.seen.extend(batch)

        async with asyncio.timeout(90), asyncio.TaskGroup() as tg:
            tg.create_task(consume())
            self.outcome = await self.engine.run()

    def shifts(self, move: str, phase: str = "done") -> list[ev.TrafficShifted]:
        return [
            e
            for e in self.seen
            if isinstance(e, ev.TrafficShifted) and e.move == move and e.phase == phase
        ]

    def gates(self) -> int:
        return sum(isinstance(e, ev.GateWaiting) for e in self.seen)


# -- the canary by weight ------------------------------------------------------------


async def test_a_weighted_canary_gets_its_share_then_every_weight_is_restored(
    setup: Setup,
) -> None:
    spec = spec_of(CANARY, socket=setup.haproxy.socket)
    run = Driven(setup.engine(spec))
    with LoadGenerator(setup.haproxy.url, workers=4) as load:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run.run())
            measured: dict[float, float] = {}
            for step, share in enumerate((5.0, 25.0)):
                await wait_until(lambda s=step: run.gates() > s, timeout=60, what="step gate")
                (shift,) = [e for e in run.shifts("weights") if e.step == step]
                assert shift.share == share and shift.achieved == pytest.approx(share, abs=0.5)
                assert weights(setup.haproxy) == shift.weights
                measured[share] = await measured_share(setup.haproxy, "web-01")
                run.engine.continue_("judged")
        print(f"\ncanary share measured by HAProxy: {measured}")
    assert run.outcome == Outcome.SUCCEEDED
    for share, got in measured.items():
        assert abs(got - share) <= SHARE_TOLERANCE, (share, got)
    assert load.failures() == []
    assert weights(setup.haproxy) == dict.fromkeys(setup.sites, 1)  # restored
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")
    (before,) = run.shifts("before")
    assert before.original == dict.fromkeys(setup.sites, 1)
    (promoted,) = run.shifts("restore")
    assert promoted.share == 100
    # the canary was readied at weight 0: no request reached it before its share
    first = next(e for e in run.seen if isinstance(e, ev.TrafficChanged) and e.admin == "ready")
    assert (first.host, first.weight) == ("web-01", 0)


async def test_a_weighted_canary_rolled_back_at_its_gate_restores_the_weights(
    setup: Setup,
) -> None:
    spec = spec_of(CANARY, socket=setup.haproxy.socket)
    run = Driven(setup.engine(spec))
    with LoadGenerator(setup.haproxy.url) as load:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run.run())
            await wait_until(lambda: run.gates() > 0, timeout=60, what="the 5% gate")
            run.engine.rollback("the canary looks wrong")
        before = load.count
        await wait_until(lambda: load.count >= before + 30, what="requests after it")
    assert run.outcome == Outcome.ROLLED_BACK
    assert load.failures() == []
    assert weights(setup.haproxy) == dict.fromkeys(setup.sites, 1)
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")
    assert setup.sites["web-01"].answer() == (200, "web-01 1.0")
    restore = run.shifts("restore")[-1]
    assert restore.detail == "rolling back" and restore.weights["web-01"] == 0


async def test_an_aborted_weighted_canary_restores_the_weights(setup: Setup) -> None:
    spec = spec_of(CANARY, socket=setup.haproxy.socket)
    run = Driven(setup.engine(spec))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(run.run())
        await wait_until(lambda: run.gates() > 0, timeout=60, what="the 5% gate")
        assert weights(setup.haproxy)["web-01"] != 1
        run.engine.abort("stop here")
    assert run.outcome == Outcome.ABORTED
    assert weights(setup.haproxy) == dict.fromkeys(setup.sites, 1)
    assert run.shifts("restore")[-1].detail == "the rollout stops"


# -- blue-green ------------------------------------------------------------------------


def idle_green(setup: Setup) -> None:
    for server in ("web-03", "web-04"):
        assert setup.haproxy.ask(f"set server app/{server} state drain").strip() == ""


def bg_spec(setup: Setup, between: str = "auto") -> RolloutSpec:
    return spec_of(BLUE_GREEN, socket=setup.haproxy.socket, between=between)


async def test_blue_green_deploys_the_idle_pool_and_switches_without_a_failed_request(
    setup: Setup,
) -> None:
    idle_green(setup)
    run = Driven(setup.engine(bg_spec(setup)))
    with LoadGenerator(setup.haproxy.url) as load:
        await wait_until(lambda: load.count >= 20, what="requests before the rollout")
        await run.run()
        before = load.count
        await wait_until(lambda: load.count >= before + 30, what="requests after it")
        after = load.answers[before:]
    assert run.outcome == Outcome.SUCCEEDED, run.seen[-1]
    assert load.failures() == []
    assert {body.split()[1] for _, body in after} == {"2.0"}  # only the new pool serves
    states = setup.haproxy.admin_states()
    assert states == {"web-01": "drain", "web-02": "drain", "web-03": "ready", "web-04": "ready"}
    for host in ("web-01", "web-02"):  # the old pool: idle on the old version, untouched
        assert setup.sites[host].answer() == (200, f"{host} 1.0")
    (pools,) = run.shifts("pools")
    assert (pools.live, pools.idle) == ("blue", "green")
    assert pools.pools == {"blue": ["web-01", "web-02"], "green": ["web-03", "web-04"]}
    (switch,) = run.shifts("switch")
    assert (switch.live, switch.idle) == ("green", "blue")
    final = {e.host: e.state for e in run.seen if isinstance(e, ev.HostStateChanged)}
    assert final["web-01"] == HostState.SKIPPED and final["web-03"] == HostState.HEALTHY
    assert run.seen[-1].reason.startswith("pool green live on 2.0")  # type: ignore[attr-defined]


async def test_blue_green_rollback_is_the_switch_back(setup: Setup) -> None:
    idle_green(setup)
    run = Driven(setup.engine(bg_spec(setup, "{gate: manual, timeout: 5m}")))
    with LoadGenerator(setup.haproxy.url) as load:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run.run())
            await wait_until(lambda: bool(run.shifts("switch")), timeout=60, what="the switch")
            await wait_until(lambda: run.gates() > 0, timeout=60, what="the gate after it")
            await wait_until(
                lambda: any(b in ("web-03 2.0", "web-04 2.0") for _, b in load.answers),
                what="the new pool serving",
            )
            asked = load.count
            run.engine.rollback("bad release")
        done = load.count
        await wait_until(lambda: load.count >= done + 30, what="requests after it")
        later = load.answers[done:]
        new_after_ask = [i for i, (_, b) in enumerate(load.answers[asked:]) if b.endswith("2.0")]
    print(f"\nrequests served by 2.0 after the rollback was asked: {len(new_after_ask)}")
    assert run.outcome == Outcome.ROLLED_BACK
    assert load.failures() == []
    assert {body.split()[1] for _, body in later} == {"1.0"}
    states = setup.haproxy.admin_states()
    assert states == {"web-01": "ready", "web-02": "ready", "web-03": "drain", "web-04": "drain"}
    for host in ("web-03", "web-04"):  # left idle on the new version: nothing reverted
        assert setup.sites[host].answer() == (200, f"{host} 2.0")
    assert not [e for e in run.seen if isinstance(e, ev.StepStarted) and e.rollback]
    assert run.shifts("switch_back")[0].live == "blue"
    assert "switched back to pool blue" in run.seen[-1].reason  # type: ignore[attr-defined]


async def test_blue_green_refuses_when_neither_pool_is_cleanly_live(setup: Setup) -> None:
    setup.haproxy.ask("set server app/web-03 state drain")  # green half live: web-04 serves
    run = Driven(setup.engine(bg_spec(setup)))
    await run.run()
    assert run.outcome == Outcome.FAILED
    assert "pool green is half live: web-04 serve" in run.seen[-1].reason  # type: ignore[attr-defined]
    assert not [e for e in run.seen if isinstance(e, ev.StepStarted)]


class CliRun:
    """``rolldeck run`` of ``spec`` in a subprocess (the user's way, for kill -9), its
    journal read as it grows, then ``resume``: the plumbing of the tests below."""

    def __init__(self, setup: Setup, tmp_path: Path, spec_text: str) -> None:
        h = setup.lb
        lines = [
            f"defaults: {{user: {h.user}, port: {h.port}, key: {h.key}, "
            f"known_hosts: {h.known_hosts}}}",
            "hosts:",
            *(
                f"  {x.name}: {{address: 127.0.0.1, vars: {{root: {x.vars['root']}}}}}"
                for x in [*setup.fleet.hosts, h]
            ),
            "groups:",
            "  blue: {hosts: [web-01, web-02]}",
            "  green: {hosts: [web-03, web-04]}",
        ]
        (tmp_path / "inventory.yaml").write_text("\n".join(lines) + "\n")
        self.spec = tmp_path / "rollout.yaml"
        self.spec.write_text(spec_text + STEPS)
        self.dir = tmp_path
        self.state = tmp_path / "state"
        self.proc: asyncio.subprocess.Process | None = None

    def _cli(self, *args: str, **kw: Any) -> Any:
        from tests.test_resume_cli import CLI, REPO

        env = {**os.environ, "PYTHONPATH": REPO}
        return asyncio.create_subprocess_exec(*CLI, *args, cwd=self.dir, env=env, **kw)

    async def start(self) -> None:
        said = (self.dir / "run.out").open("wb")
        self.proc = await self._cli(
            "run", self.spec.name, "--headless", "--yes", "--state-dir", str(self.state),
            stdout=said, stderr=said,
        )  # fmt: skip

    def journal(self) -> bytes:
        from console.store.journal import list_journals

        paths = list_journals(self.state)
        return paths[0].read_bytes() if paths else b""

    async def until(self, marker: bytes, what: str) -> None:
        """Until the journal holds ``marker``; fails with the run's output if it ended."""
        assert self.proc is not None
        proc = self.proc
        await wait_until(lambda: marker in self.journal() or proc.returncode, timeout=60, what=what)
        assert proc.returncode is None, (self.dir / "run.out").read_text()

    async def kill(self) -> None:
        """SIGKILL, or just reaped when it ended already (a test's way out)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def resume(self) -> tuple[int, str]:
        proc = await self._cli(
            "resume", "--headless", "--yes", "--state-dir", str(self.state),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
        return proc.returncode, out.decode()

    def events(self) -> list[Event]:
        from console.store.journal import list_journals, read_journal

        (path,) = list_journals(self.state)
        return read_journal(path)


@contextlib.contextmanager
def haproxy_stopped(setup: Setup) -> Iterator[Callable[[], None]]:
    """SIGSTOP HAProxy when the returned callable is called; SIGCONT on the way out."""
    stopped = []

    def stop() -> None:
        os.kill(setup.haproxy.process.pid, signal.SIGSTOP)
        stopped.append(True)

    try:
        yield stop
    finally:
        if stopped:
            os.kill(setup.haproxy.process.pid, signal.SIGCONT)


async def test_killed_mid_switch_then_resumed_traffic_ends_where_journal_and_haproxy_agree(
    setup: Setup, tmp_path: Path
) -> None:
    """``rolldeck run`` is killed (SIGKILL) after the switch was journaled and before
    HAProxy heard it all (HAProxy is stopped with SIGSTOP once the last green host is
    in health gating, so the switch's requests hang), and one server is then readied by
    hand as if the switch had got that far. ``resume`` finishes the switch from
    HAProxy's word: green live, blue idle, and the journal says so."""
    from console.store.history import render_timeline, timeline
    from console.store.journal import list_journals

    idle_green(setup)
    run = CliRun(setup, tmp_path, BLUE_GREEN.format(socket=setup.haproxy.socket, between="auto"))
    hold = setup.fleet.root("web-04") / "HOLD"
    hold.write_text("")
    await run.start()
    try:
        with haproxy_stopped(setup) as stop_haproxy:
            await run.until(b'"host":"web-04","state":"verifying"', "web-04 in health gating")
            stop_haproxy()
            hold.unlink()
            await run.until(b'"move":"switch","phase":"start"', "the switch journaled")
            await run.kill()
    finally:
        await run.kill()
    assert b'"move":"switch","phase":"done"' not in run.journal()
    setup.haproxy.ask("set server app/web-03 state ready")  # the switch got this far
    code, out = await run.resume()
    assert code == 0, out
    states = setup.haproxy.admin_states()
    assert states == {"web-01": "drain", "web-02": "drain", "web-03": "ready", "web-04": "ready"}
    last = [e for e in run.events() if isinstance(e, ev.TrafficShifted)][-1]
    assert (last.move, last.phase, last.live, last.idle) == ("switch", "done", "green", "blue")
    shown = render_timeline(timeline(list_journals(run.state)[0]))
    assert "traffic switched to green; blue idle" in shown, shown


async def test_a_weighted_canary_killed_at_its_share_is_resumed_and_its_weights_restored(
    setup: Setup, tmp_path: Path
) -> None:
    """``rolldeck run`` is killed (SIGKILL) once the 5% weights are set: HAProxy keeps
    them (nothing restores a killed process's moves). ``resume`` re-applies the
    journal's last step, judges it again, goes on to 25%, promotes and rolls the rest:
    every weight ends as it was before the rollout, every host on 2.0 and ready."""
    head = CANARY.replace(
        "{{gate: manual, timeout: 5m, on_timeout: abort}}", "{{gate: bake, bake: 0.5s}}"
    )
    text = (
        head.format(socket=setup.haproxy.socket) + 'inventory: inventory.yaml\ntargets: "web-*"\n'
    )
    run = CliRun(setup, tmp_path, text)
    await run.start()
    try:
        await run.until(b'"move":"weights","phase":"done"', "the 5% weights set")
    finally:
        await run.kill()
    assert weights(setup.haproxy)["web-01"] != 1  # the canary's weights outlive the kill
    code, out = await run.resume()
    assert code == 0, out
    assert weights(setup.haproxy) == dict.fromkeys(setup.sites, 1)
    assert setup.haproxy.admin_states() == dict.fromkeys(setup.sites, "ready")
    for host, site in setup.sites.items():
        assert site.answer() == (200, f"{host} 2.0")
    shifts = [
        (e.move, e.step)
        for e in run.events()
        if isinstance(e, ev.TrafficShifted)
        if e.phase == "done"
    ]
    assert shifts == [
        ("before", None), ("weights", 0), ("weights", 0), ("weights", 1), ("restore", 1),
    ], shifts  # fmt: skip


def test_check_lb_says_which_pool_is_live_and_what_will_switch(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from console.cli import main

    spec = CliRun(
        setup, tmp_path, BLUE_GREEN.format(socket=setup.haproxy.socket, between="auto")
    ).spec
    idle_green(setup)
    assert main(["check", str(spec), "--lb"]) == 0
    out = capsys.readouterr().out
    assert "lb now      backend app on lb-01: 2 drain, 2 ready" in out
    assert "pool blue: 2 of 2 servers in traffic" in out
    assert "live pool blue: run deploys pool green (2 hosts) out of traffic, then switches" in out
    assert main(["check", str(spec), "--lb", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["lb"]
    assert (data["live"], data["idle"]) == ("blue", "green")
    assert data["servers"]["web-03"]["admin"] == "drain"
    setup.haproxy.ask("set server app/web-03 state ready")  # green half live
    assert main(["check", str(spec), "--lb"]) == 3
    assert "run would refuse: pool green is half live" in capsys.readouterr().out


def test_check_lb_shows_the_canary_share_now_and_its_first_weights(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from console.cli import main

    text = CANARY.format(socket=setup.haproxy.socket)
    spec = CliRun(setup, tmp_path, text + 'inventory: inventory.yaml\ntargets: "web-*"\n').spec
    assert main(["check", str(spec), "--lb"]) == 0
    out = capsys.readouterr().out
    # 1 canary beside 3 at weight 1: 25% now; 5% is weight 3 against 19 each (5.00%)
    assert "canary web-01 gets 25.0% now; its first step 5% sets weight 3 on it and 19" in out


async def test_killed_mid_switch_back_then_resumed_the_old_pool_is_live_again(
    setup: Setup, tmp_path: Path
) -> None:
    """The bake after the switch says no (a command gate), ``on_failure: rollback``
    starts the switch back; HAProxy is stopped (SIGSTOP) first, so the switch back is
    journaled and hangs; ``rolldeck run`` is killed (SIGKILL). ``resume`` rolls back
    before anything else: the switch back is finished, exit 4 (rolled back), blue live
    and green idle on 2.0, nothing reverted."""
    idle_green(setup)
    gate = tmp_path / "gate.sh"
    gate.write_text(f"#!/bin/sh\nif [ -e {tmp_path}/NO ]; then exit 2; fi\nexit 1\n")
    gate.chmod(0o755)
    between = f"{{gate: command, run: {gate}, every: 0.1s, timeout: 5m}}"
    text = BLUE_GREEN.format(socket=setup.haproxy.socket, between=between)
    run = CliRun(setup, tmp_path, text + "on_failure: rollback\n")
    await run.start()
    try:
        with haproxy_stopped(setup) as stop_haproxy:
            await run.until(b'"move":"switch","phase":"done"', "the switch")
            stop_haproxy()
            (tmp_path / "NO").write_text("")
            await run.until(b'"move":"switch_back","phase":"start"', "the switch back journaled")
            await run.kill()
    finally:
        await run.kill()
    assert b'"move":"switch_back","phase":"done"' not in run.journal()
    code, out = await run.resume()
    assert code == 4, out
    states = setup.haproxy.admin_states()
    assert states == {"web-01": "ready", "web-02": "ready", "web-03": "drain", "web-04": "drain"}
    for host in ("web-03", "web-04"):
        assert setup.sites[host].answer() == (200, f"{host} 2.0")
    events = run.events()
    last = [e for e in events if isinstance(e, ev.TrafficShifted)][-1]
    assert (last.move, last.phase, last.live, last.idle) == ("switch_back", "done", "blue", "green")
    assert not [e for e in events if isinstance(e, ev.StepStarted) and e.rollback]
