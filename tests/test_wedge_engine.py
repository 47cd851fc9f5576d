"""A wedged host never hangs a rollout: real OpenSSH, one sshd per host.

For each phase (preflight, version read, a step's channel open, the stop of a
timed-out step, health gating, the post-deploy watch, rollback) one host's sshd is
frozen (SIGSTOP of the listener and every process under it: TCP up, nothing answers)
or killed. Each case checks that the host is failed within its bound plus a margin,
that the reason names the operation and the time, that ``on_failure`` is followed,
that a later batch is never touched, that no wait on a server is left (the deadline
registry) and that no task outlives the engine. The worst detection time per phase is
printed (``pytest -s``) for the notes.

Plan: ``h1 | h2 | h3`` (batches of one); the fault is always on h1 or h2, and h3 must
never be touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.commands import Command
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.plan import make_plan
from console.spec import RolloutSpec, parse_spec
from console.transport import make_transport
from console.transport.deadlines import REGISTRY
from tests.fixtures.wedge import WedgeFleet
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd
FleetMaker = Callable[..., WedgeFleet]

REPLY = 2.0  # --connect-timeout: connect, and any request to a connected host
STEP_TIMEOUT = 3.0
HEALTH_TIMEOUT = 2.0
GATING_DEADLINE = 4.0
MARGIN = 6.0  # generous: 2 busy cores; a wait that escaped its bound takes 300 s
WORST: dict[str, float] = {}

SPEC = """
service: wedge
version: "2.0"
batches: [1, 1, 100%]
max_parallel: 5
max_failures: 0
on_failure: {on_failure}
between_batches: {gate}
steps:
  - name: install
    run: >-
      touch {{vars.root}}/IN_INSTALL;
      while test ! -e {{vars.go}}; do sleep 0.05; done;
      if test -e {{vars.root}}/SLOW; then sleep 60; fi;
      if test -e {{vars.root}}/FAIL; then exit 1; fi;
      mkdir -p {{vars.root}}/releases/{{version}} &&
      printf '%s\\n' {{version}} > {{vars.root}}/releases/{{version}}/VERSION
    timeout: {step_timeout}s
  - name: activate
    run: ln -sfn releases/{{version}} {{vars.root}}/current
    timeout: {step_timeout}s
{current_version}
health:
  run: touch {{vars.root}}/GATING; test -f {{vars.root}}/current/VERSION
  every: 0.1s
  timeout: {health_timeout}s
  healthy_after: {healthy_after}
  deadline: {deadline}s
rollback:
  steps:
    - name: restore
      run: >-
        touch {{vars.root}}/ROLLING;
        if test -e {{vars.root}}/SLOW_RB; then sleep 60; fi;
        ln -sfn releases/{restore} {{vars.root}}/current
      timeout: {step_timeout}s
"""


def make_spec(
    *,
    on_failure: str = "pause",
    gate: str = "auto",
    version: bool = True,
    healthy_after: int = 1,
) -> RolloutSpec:
    text = SPEC.format(
        on_failure=on_failure,
        gate=gate,
        step_timeout=STEP_TIMEOUT,
        health_timeout=HEALTH_TIMEOUT,
        healthy_after=healthy_after,
        deadline=GATING_DEADLINE,
        restore="{previous_version}" if version else "1.0",
        current_version=("current_version: cat {vars.root}/current/VERSION" if version else ""),
    )
    return parse_spec(text, "wedge.yaml")


def release(fleet: WedgeFleet) -> None:
    """Let the installs go on (they wait for the GO file)."""
    Path(fleet.hosts[0].vars["go"]).touch()


def seed(fleet: WedgeFleet) -> None:
    for host in fleet.hosts:
        root = fleet.root(host.name)
        (root / "releases" / "1.0").mkdir(parents=True, exist_ok=True)
        (root / "releases" / "1.0" / "VERSION").write_text("1.0\n")
        (root / "current").symlink_to("releases/1.0")


@dataclass
class Run:
    outcome: Outcome
    events: list[Event]
    injected: float | None  # time.monotonic() of the fault
    failed_at: dict[str, float] = field(default_factory=dict)  # host -> first failure
    running_at: dict[str, float] = field(default_factory=dict)

    def states(self, host: str) -> list[tuple[HostState, str]]:
        return [
            (e.state, e.detail)
            for e in self.events
            if isinstance(e, ev.HostStateChanged) and e.host == host
        ]

    def touched(self, host: str) -> bool:
        return any(isinstance(e, ev.StepStarted) and e.host == host for e in self.events)


FAILED_STATES = (HostState.FAILED, HostState.ROLLBACK_FAILED)


async def rollout(
    fleet: WedgeFleet,
    spec: RolloutSpec,
    *,
    fault: Callable[[], None],
    when: Callable[[Engine], asyncio.Future[None] | None] | None = None,
    trigger: Path | None = None,
    react: Callable[[Event, Engine], None] | None = None,
    monitors: bool = False,
    go: bool = True,
) -> Run:
    """Run the rollout; inject ``fault`` once ``trigger`` exists (or before the start
    when ``trigger`` is None and ``go`` is False...). The GO file releases installs."""
    plan = make_plan([h.name for h in fleet.hosts], spec.batches)
    engine = Engine(
        spec,
        fleet.hosts,
        plan,
        make_transport(fleet.options),
        journal=None,
        operator="tester",
        monitors=monitors,
        exit_when_paused=True,
    )
    seen: list[Event] = []
    failed_at: dict[str, float] = {}
    running_at: dict[str, float] = {}
    injected: list[float] = []
    sub = engine.bus.subscribe()

    async def consume() -> None:
        async for batch in sub.batches():
            for event in batch:
                seen.append(event)
                if isinstance(event, ev.HostStateChanged):
                    now = time.monotonic()
                    if event.state in FAILED_STATES:
                        failed_at.setdefault(event.host, now)
                    if event.state == HostState.RUNNING:
                        running_at.setdefault(event.host, now)
                if react is not None:
                    react(event, engine)

    async def inject() -> None:
        if trigger is not None:
            await wait_until(trigger.exists, what=f"{trigger} to appear", timeout=60)
        fault()
        injected.append(time.monotonic())
        if go:
            release(fleet)

    async with asyncio.timeout(120), asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        injector = tg.create_task(inject())
        outcome = await engine.run()
        injector.cancel()
    return Run(outcome, seen, injected[0] if injected else None, failed_at, running_at)


def leftovers_checked() -> None:
    """Nothing waits on a server any more, and no task outlived the engine."""
    assert REGISTRY.overdue(grace=0) == [], REGISTRY.overdue(grace=0)
    assert REGISTRY.pending() == [], [w.describe() for w in REGISTRY.pending()]
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    assert left == [], left


def record(phase: str, seconds: float, bound: float) -> None:
    WORST[phase] = max(WORST.get(phase, 0.0), seconds)
    print(f"\nwedge: {phase}: detected in {seconds:.2f} s (bound {bound:g} s)")
    assert seconds <= bound + MARGIN, f"{phase}: {seconds:.1f} s > {bound:g} s + {MARGIN:g} s"


def detail_of(run: Run, host: str) -> str:
    failed = [d for s, d in run.states(host) if s in FAILED_STATES]
    assert failed, run.states(host)
    return failed[0]


FAULTS = ["freeze", "kill"]


def fault_on(fleet: WedgeFleet, name: str, fault: str) -> Callable[[], None]:
    return (lambda: fleet.freeze(name)) if fault == "freeze" else (lambda: fleet.kill(name))


# -- preflight ---------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_preflight_reports_a_wedged_host_and_refuses(
    wedge_fleet: FleetMaker, fault: str
) -> None:
    fleet = wedge_fleet(3, connect_timeout=REPLY)
    seed(fleet)
    release(fleet)
    fault_on(fleet, "h2", fault)()
    started = time.monotonic()
    run = await rollout(fleet, make_spec(), fault=lambda: None, go=False)
    took = time.monotonic() - started
    assert run.outcome == Outcome.FAILED  # preflight refused the start
    result = next(e for e in run.events if isinstance(e, ev.PreflightResult) and e.host == "h2")
    assert not result.ok and not result.reachable
    if fault == "freeze":
        assert f"no answer from h2 for {REPLY:g} s while connecting" in result.error
        record("preflight", took, REPLY)
    else:
        assert "connection refused" in result.error
    for name in ("h1", "h2", "h3"):
        assert not run.touched(name)
    leftovers_checked()


# -- the version read and a step's channel open: frozen between batches -----------


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("phase", ["version read", "step"])
async def test_a_host_wedged_after_preflight_fails_within_its_bound(
    wedge_fleet: FleetMaker, fault: str, phase: str
) -> None:
    """The issue's case: h2 passed preflight (its connection is open), then froze;
    its first request (the version read, or the first step) gets no answer."""
    fleet = wedge_fleet(3, connect_timeout=REPLY)
    seed(fleet)
    spec = make_spec(version=phase == "version read")
    trigger = fleet.root("h1") / "IN_INSTALL"  # h1 (batch 1) is installing: freeze h2
    run = await rollout(fleet, spec, fault=fault_on(fleet, "h2", fault), trigger=trigger)
    detail = detail_of(run, "h2")
    assert run.outcome == Outcome.PAUSED, (detail, run.events)  # on_failure: pause
    what = "the previous version read" if phase == "version read" else "step install"
    if fault == "freeze":
        assert detail == f"no answer from h2 for {REPLY:g} s while opening a channel for {what}"
        record(phase, run.failed_at["h2"] - run.running_at["h2"], REPLY)
    else:
        assert "unreachable" in detail or "connection" in detail, detail
    assert run.states("h1")[-1][0] == HostState.HEALTHY
    assert not run.touched("h3")
    leftovers_checked()


# -- the stop of a timed-out step ----------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_host_wedged_mid_step_is_failed_after_its_timeout_and_the_kill(
    wedge_fleet: FleetMaker, fault: str
) -> None:
    fleet = wedge_fleet(3, connect_timeout=REPLY)
    seed(fleet)
    (fleet.root("h2") / "SLOW").touch()  # h2's install hangs: it will time out
    release(fleet)
    trigger = fleet.root("h2") / "IN_INSTALL"
    run = await rollout(
        fleet, make_spec(on_failure="abort"), fault=fault_on(fleet, "h2", fault), trigger=trigger
    )
    assert run.outcome == Outcome.FAILED  # on_failure: abort stops the rollout
    detail = detail_of(run, "h2")
    assert run.injected is not None
    took = run.failed_at["h2"] - run.injected
    if fault == "freeze":
        # The step timed out; the kill goes to the same frozen server.
        assert (
            detail == f"no answer from h2 for {REPLY:g} s while sending the kill for step install"
        )
        record("stop of a timed-out step", took, STEP_TIMEOUT + REPLY)
    else:
        assert detail.startswith("unreachable during install: "), detail
        record("step (sshd killed)", took, 0.0)
    assert not run.touched("h3")
    leftovers_checked()


# -- health gating -----------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_host_wedged_during_health_gating_fails_by_the_deadline(
    wedge_fleet: FleetMaker, fault: str
) -> None:
    fleet = wedge_fleet(3, connect_timeout=REPLY)
    seed(fleet)
    release(fleet)
    trigger = fleet.root("h2") / "GATING"  # h2's first probe: it needs 5 in a row
    run = await rollout(
        fleet, make_spec(healthy_after=5), fault=fault_on(fleet, "h2", fault), trigger=trigger
    )
    assert run.outcome == Outcome.PAUSED
    detail = detail_of(run, "h2")
    assert detail.startswith("health gating: "), detail
    if fault == "freeze":
        assert f"no answer from h2 for {REPLY:g} s" in detail, detail
    assert run.injected is not None
    record(
        f"health gating ({fault})",
        run.failed_at["h2"] - run.injected,
        GATING_DEADLINE + HEALTH_TIMEOUT + REPLY,
    )
    assert not run.touched("h3")
    leftovers_checked()


# -- the post-deploy watch (monitors) ----------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_watched_host_that_wedges_is_failed_by_its_monitor(
    wedge_fleet: FleetMaker, fault: str
) -> None:
    """h1 and h2 are deployed and watched while the gate after batch 2 waits; h2 then
    freezes: its monitor's poll gets no answer, the host fails, on_failure pauses."""
    fleet = wedge_fleet(3, connect_timeout=REPLY)
    seed(fleet)
    release(fleet)
    injected: list[float] = []

    def react(event: Event, engine: Engine) -> None:
        if isinstance(event, ev.GateWaiting) and event.after_batch == 0:
            engine.execute(Command("continue", operator="tester"))
        if isinstance(event, ev.GateWaiting) and event.after_batch == 1 and not injected:
            fault_on(fleet, "h2", fault)()
            injected.append(time.monotonic())

    run = await rollout(
        fleet,
        make_spec(gate="manual"),
        fault=lambda: None,
        react=react,
        monitors=True,
        go=False,
    )
    assert run.outcome == Outcome.PAUSED
    detail = detail_of(run, "h2")
    assert detail.startswith("unhealthy after deploy: "), detail
    if fault == "freeze":
        assert f"no answer from h2 for {REPLY:g} s" in detail, detail
    # A poll every 0.1 s under its 2 s timeout, then the kill's 2 s bound.
    record(
        f"post-deploy watch ({fault})", run.failed_at["h2"] - injected[0], HEALTH_TIMEOUT + REPLY
    )
    assert not run.touched("h3")
    leftovers_checked()


# -- rollback ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_host_wedged_during_rollback_is_reported_and_the_rollback_ends(
    wedge_fleet: FleetMaker, fault: str
) -> None:
    """h2 fails its install; on_failure rolls back h1 and h2. h1's restore hangs and
    its sshd freezes: h1 is ROLLBACK_FAILED in bound, the rollout ends, h3 untouched."""
    fleet = wedge_fleet(3, connect_timeout=REPLY)
    seed(fleet)
    release(fleet)
    (fleet.root("h2") / "FAIL").touch()
    (fleet.root("h1") / "SLOW_RB").touch()
    trigger = fleet.root("h1") / "ROLLING"
    run = await rollout(
        fleet,
        make_spec(on_failure="rollback"),
        fault=fault_on(fleet, "h1", fault),
        trigger=trigger,
    )
    assert run.outcome != Outcome.SUCCEEDED
    h1 = [s for s, _ in run.states("h1")]
    assert HostState.ROLLING_BACK in h1 and h1[-1] == HostState.ROLLBACK_FAILED, h1
    detail = detail_of(run, "h1")
    assert run.injected is not None
    if fault == "freeze":
        assert (
            detail == f"no answer from h1 for {REPLY:g} s while sending the kill for step restore"
        )
        record("rollback", run.failed_at["h1"] - run.injected, STEP_TIMEOUT + REPLY)
    else:
        assert detail.startswith("unreachable during restore: "), detail
    assert not run.touched("h3")
    leftovers_checked()


def test_zz_print_the_worst_detection_times() -> None:
    """Not a check: the worst detection time per phase, for the notes (``-s``)."""
    for phase, seconds in sorted(WORST.items()):
        print(f"wedge worst: {phase}: {seconds:.2f} s")
