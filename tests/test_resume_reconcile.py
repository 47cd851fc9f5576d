"""Reconciliation rules (console.reconcile): journal facts + what the host runs now."""

from __future__ import annotations

from console.core import events as ev
from console.core.events import HostState, RolloutState
from console.reconcile import Observation, decide, journal_facts

STEPS = ("drain", "install", "restart", "undrain")
ONCE = frozenset({"restart"})
ROLLBACK = ("activate", "restart")


def started(*hosts: str) -> ev.RolloutStarted:
    return ev.RolloutStarted(
        rollout_id="r",
        service="s",
        version="2",
        operator="o",
        spec_path="x",
        spec_hash="h",
        spec_text="",
        inventory_path="i",
        batches=(hosts[:1], hosts[1:]),
        hosts={h: {} for h in hosts},
    )


def deploy(host: str, upto: int, *, finish_last: bool = True) -> list[ev.Event]:
    """Host events of a deploy that reached step index ``upto``."""
    out: list[ev.Event] = [
        ev.HostStateChanged(host=host, state=HostState.RUNNING),
        ev.VersionRead(host=host, version="1", role="previous"),
    ]
    for i, step in enumerate(STEPS[: upto + 1]):
        out.append(ev.StepStarted(host=host, step=step, command=step))
        if i < upto or finish_last:
            out.append(
                ev.StepFinished(host=host, step=step, status="ok", exit_code=0, duration=0.1)
            )
    return out


def run(
    events: list[ev.Event], seen: Observation, host: str = "a", rolling_back: bool | None = None
):  # type: ignore[no-untyped-def]
    facts = journal_facts(events, ONCE)
    return decide(
        facts.hosts[host],
        seen,
        target="2",
        steps=STEPS,
        once_steps=ONCE,
        rollback_steps=ROLLBACK,
        rolling_back=facts.rolling_back if rolling_back is None else rolling_back,
    )


OLD_OK = Observation(True, "1", True)
NEW_OK = Observation(True, "2", True)
NEW_SICK = Observation(True, "2", False)


def test_not_started_host_is_deployed_unless_already_on_target() -> None:
    events = [started("a", "b")]
    assert run(events, OLD_OK).action == "deploy"
    done = run(events, NEW_OK)
    assert (done.action, done.state) == ("done", HostState.HEALTHY)
    assert run(events, NEW_SICK).action == "deploy"


def test_in_flight_idempotent_step_is_rechecked_and_rerun() -> None:
    events = [started("a", "b"), *deploy("a", 1, finish_last=False)]  # install in flight
    d = run(events, OLD_OK)
    assert (d.action, d.state) == ("redeploy", HostState.PENDING)
    assert "install" in d.detail
    # Even if it looks healthy on the target, the remaining steps must still run.
    assert run(events, NEW_OK).action == "redeploy"


def test_in_flight_once_step_is_flagged_never_rerun() -> None:
    events = [started("a", "b"), *deploy("a", 2, finish_last=False)]  # restart in flight
    for seen in (OLD_OK, NEW_OK, Observation(False, None, None)):
        d = run(events, seen)
        assert (d.action, d.state, d.failed) == ("flagged", HostState.FAILED, True)
        assert "once step restart" in d.detail


def test_finished_once_step_is_remembered_across_attempts() -> None:
    events = [started("a", "b"), *deploy("a", 3, finish_last=False)]  # undrain in flight
    facts = journal_facts(events, ONCE)
    assert facts.hosts["a"].once_done == {"restart"}
    d = run(events, OLD_OK)
    assert d.action == "redeploy" and "not re-run: restart" in d.detail
    # A new attempt (retry) resets the attempt's steps, not the once steps done.
    events += [ev.HostStateChanged(host="a", state=HostState.RUNNING, detail="retry")]
    facts = journal_facts(events, ONCE)
    assert facts.hosts["a"].attempt_ok == [] and facts.hosts["a"].once_done == {"restart"}


def test_all_steps_done_and_healthy_on_target_counts_as_done() -> None:
    events = [
        started("a", "b"),
        *deploy("a", 3),
        ev.HostStateChanged(host="a", state=HostState.VERIFYING),
    ]
    assert run(events, NEW_OK).action == "done"
    assert run(events, NEW_SICK).action == "redeploy"


def test_journaled_healthy_host_on_another_version_is_flagged() -> None:
    events = [
        started("a", "b"),
        *deploy("a", 3),
        ev.HostStateChanged(host="a", state=HostState.HEALTHY),
    ]
    assert run(events, NEW_OK).action == "done"
    assert run(events, OLD_OK).action == "flagged"


def test_failed_host_stays_failed_and_counts() -> None:
    events = [
        started("a", "b"),
        *deploy("a", 1),
        ev.HostStateChanged(host="a", state=HostState.FAILED, detail="exit 1 in install"),
    ]
    d = run(events, OLD_OK)
    assert (d.state, d.failed, d.detail) == (HostState.FAILED, True, "exit 1 in install")


def test_rollback_in_progress_continues_as_a_rollback() -> None:
    events = [
        started("a", "b", "c"),
        *deploy("a", 3),
        ev.HostStateChanged(host="a", state=HostState.HEALTHY),
        *deploy("b", 3),
        ev.HostStateChanged(host="b", state=HostState.HEALTHY),
        ev.OperatorCommand(command="rollback", operator="o"),
        ev.RolloutStateChanged(state=RolloutState.ROLLING_BACK),
        ev.HostStateChanged(host="b", state=HostState.ROLLING_BACK),
        ev.StepStarted(host="b", step="activate", command="a", rollback=True),
        ev.StepFinished(
            host="b", step="activate", status="ok", exit_code=0, duration=0, rollback=True
        ),
        ev.StepStarted(host="b", step="restart", command="r", rollback=True),
        ev.StepFinished(
            host="b", step="restart", status="ok", exit_code=0, duration=0, rollback=True
        ),
        ev.HostStateChanged(host="b", state=HostState.ROLLED_BACK),
        ev.HostStateChanged(host="a", state=HostState.ROLLING_BACK),
        ev.StepStarted(host="a", step="activate", command="a", rollback=True),
    ]
    facts = journal_facts(events, ONCE)
    assert facts.rolling_back
    assert run(events, OLD_OK, "b").state == HostState.ROLLED_BACK  # stays rolled back
    a = run(events, OLD_OK, "a")  # its rollback was cut: not proven, roll it back again
    assert (a.action, a.state) == ("roll_back", HostState.INTERRUPTED)
    c = run(events, OLD_OK, "c")
    assert (c.action, c.state) == ("deploy", HostState.PENDING)  # never changed: left alone


def test_rollback_finished_on_host_but_not_journaled_counts_as_rolled_back() -> None:
    events = [
        started("a", "b"),
        *deploy("a", 3),
        ev.RolloutStateChanged(state=RolloutState.ROLLING_BACK),
        ev.HostStateChanged(host="a", state=HostState.ROLLING_BACK),
    ]
    for step in ROLLBACK:
        events += [
            ev.StepStarted(host="a", step=step, command=step, rollback=True),
            ev.StepFinished(
                host="a", step=step, status="ok", exit_code=0, duration=0, rollback=True
            ),
        ]
    assert run(events, OLD_OK).state == HostState.ROLLED_BACK
    assert run(events, NEW_OK).action == "roll_back"


def test_plan_changes_are_followed() -> None:
    events = [started("a", "b", "c"), ev.PlanChanged(batches=(("a",), ("b",), ("c",)))]
    facts = journal_facts(events, ONCE)
    assert facts.batches == [("a",), ("b",), ("c",)]
    assert facts.hosts["c"].batch == 2


def test_restore_point_carries_the_reconciliation() -> None:
    """``resume`` hands the engine one RestorePoint (``Engine.restore``), built here
    from the journal and what the hosts run now; it never writes engine state."""
    from pathlib import Path

    from console.core.state import fold
    from console.resume import PAUSE_REASON, Replay, reconcile
    from tests.test_engine_helpers import spec_from

    events: list[ev.Event] = [
        started("a", "b"),
        ev.HostStateChanged(host="a", state=HostState.RUNNING),
        ev.VersionRead(host="a", version="1.0", role="previous"),
    ]
    for step in ("install", "activate"):
        events += [
            ev.StepStarted(host="a", step=step, command=step),
            ev.StepFinished(host="a", step=step, status="ok", exit_code=0, duration=0.1),
        ]
    events.append(ev.HostStateChanged(host="a", state=HostState.HEALTHY))
    assert isinstance(events[0], ev.RolloutStarted)
    replay = Replay(Path("journal"), {}, events, events[0], fold(events))
    seen = {"a": Observation(True, "2.0", True), "b": Observation(True, "1.0", True)}
    state = reconcile(replay, spec_from(), seen, "tester")
    point = state.restore_point()
    a, b = point.hosts["a"], point.hosts["b"]
    assert (a.state, a.changed, a.batch) == (HostState.HEALTHY, True, 0)
    assert (a.previous_version, a.previous_read, a.observed_version) == ("1.0", True, "2.0")
    assert (b.state, b.changed, b.batch, b.previous_read) == (HostState.PENDING, False, None, False)
    assert (point.start_batch, point.gate_first, point.rolling_back) == (1, 0, False)
    assert point.pause_reason == PAUSE_REASON and point.plan_text == state.plan_text()
    assert isinstance(point.first_event, ev.Notice)
    assert point.view.hosts["a"].state == HostState.HEALTHY


async def test_a_resumed_rollback_observes_health_against_the_version_going_back_to() -> None:
    """Resuming a rollback: a host going back to 1.0 is healthy when it serves 1.0
    (``{version}`` means the version it should run now), not judged against 2.0."""
    from console.resume import observe
    from console.spec import parse_spec
    from console.transport.fake import FakeTransport
    from inventory.model import Host

    spec = parse_spec(
        "service: shop\nversion: '2.0'\ncurrent_version: version\n"
        "steps: [{name: install, run: 'install {version}'}]\n"
        "health: {run: 'serves {version}', every: 0.01s, healthy_after: 1, deadline: 1s}\n"
        "rollback: {steps: ['activate {previous_version}']}\n",
        "spec.yaml",
    )
    fake = FakeTransport()
    fake.on(r"^version$", lines=["1.0"])
    fake.on(r"^serves 1\.0$", exit_code=0)
    fake.on(r"^serves 2\.0$", exit_code=1, lines=["serving 1.0"])
    hosts = [Host(name="h01", address="10.0.0.1"), Host(name="h02", address="10.0.0.2")]
    seen = await observe(spec, hosts, fake, {"h01": "1.0"})
    assert seen["h01"].healthy is True  # judged against the version it goes back to
    assert seen["h02"].healthy is False  # not rolling back: judged against the target
    assert fake.ran("h01", r"^serves 1\.0$") and not fake.ran("h01", r"^serves 2\.0$")
