"""The drill scorecard as a pure function of journal events, the scenario's faults and
the versions read back from the fleet; and its journal append and printed forms."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

from console.core import events as ev
from console.core.events import HostState, Outcome
from console.drill import (
    DrillInfo,
    append_event,
    live_step,
    print_scorecard,
    scenario_faults,
    score,
    scorecard_rows,
)
from console.engine import POLICY
from console.simfleet.layout import host_slots
from console.simfleet.scenario import load_scenario, parse_scenario
from console.spec import Step
from console.store.journal import read_journal

OLD, NEW = "2.4.0", "2.4.1"
HOSTS = [s.name for s in host_slots(6)]  # web-01 api-01 worker-01 web-02 api-02 worker-02
T0 = 1_000_000.0


def started() -> ev.RolloutStarted:
    return ev.RolloutStarted(
        ts=T0,
        rollout_id="r",
        service="checkout-api",
        version=NEW,
        operator="alice",
        spec_path="rollout.yaml",
        spec_hash="sha256:x",
        spec_text="",
        inventory_path="inventory.yaml",
        batches=(("web-01",), tuple(HOSTS[1:])),
    )


def preflight() -> list[ev.Event]:
    return [ev.PreflightResult(ts=T0 + 0.1, host=h, reachable=True, version=OLD) for h in HOSTS]


def deploy(host: str, start: float, *, live: bool = True) -> list[ev.Event]:
    """A host's deploy as the engine journals it: previous version, steps, new version."""
    out: list[ev.Event] = [
        ev.VersionRead(ts=start, host=host, version=OLD, role="previous"),
        ev.StepStarted(ts=start, host=host, step="install", command="svc install 2.4.1"),
    ]
    if live:
        out += [
            ev.StepFinished(
                ts=start + 1, host=host, step="install", status="ok", exit_code=0, duration=1
            ),
            ev.StepFinished(
                ts=start + 2, host=host, step="activate", status="ok", exit_code=0, duration=1
            ),
            ev.VersionRead(ts=start + 3, host=host, version=NEW, role="new"),
        ]
    return out


def info(faults: dict[str, str], policy: str = "auto") -> DrillInfo:
    return DrillInfo("test", 7, policy, faults, "activate")


def test_bad_canary_rolled_back_by_policy() -> None:
    events = [started(), *preflight(), *deploy("web-01", T0 + 1)]
    events += [
        ev.Alert(ts=T0 + 5.5, level="warning", rule="signal.metrics", message="noise"),
        ev.Alert(
            ts=T0 + 6, level="critical", rule="error_rate.max", message="15%", action="rollback"
        ),
        ev.OperatorCommand(ts=T0 + 6.25, command="rollback", operator=POLICY, reason="on_failure"),
        ev.RolloutFinished(ts=T0 + 9, outcome=Outcome.ROLLED_BACK, exit_code=4),
    ]
    faults = {h: "error rate 15%" for h in HOSTS}
    card = score(events, info(faults), dict.fromkeys(HOSTS, OLD))
    assert card.fault_at == T0 + 3  # activate finished on web-01: the version went live
    assert card.time_to_alert == 3.0  # the warning is not an alert
    assert card.first_alert.startswith("error_rate.max")
    assert card.time_to_act == 0.25 and card.action_by_policy
    assert card.first_action == "rollback by the engine's policy"
    assert card.blast_radius == ("web-01",) == card.new_version_hosts
    assert card.rollback == "completed" and card.not_rolled_back == ()
    assert card.unknown_version_hosts == () and card.alerts == 1
    assert (card.outcome, card.exit_code, card.target_version) == (Outcome.ROLLED_BACK, 4, NEW)


def test_rollback_incomplete_when_a_host_is_not_back() -> None:
    events = [started(), *preflight(), *deploy("web-01", T0 + 1), *deploy("api-01", T0 + 2)]
    events += [
        ev.OperatorCommand(ts=T0 + 8, command="rollback", operator="alice"),
        ev.RolloutFinished(ts=T0 + 9, outcome=Outcome.FAILED, exit_code=3),
    ]
    truth = dict.fromkeys(HOSTS, OLD) | {"api-01": NEW}
    card = score(events, info({}), truth)
    assert card.rollback == "incomplete" and card.not_rolled_back == ("api-01",)
    assert card.fault_at is None and card.time_to_alert is None and card.time_to_act is None
    assert card.blast_radius == () and card.new_version_hosts == ("api-01", "web-01")


def test_operator_policy_times_the_human_not_the_engine() -> None:
    events = [started(), *preflight(), *deploy("web-01", T0 + 1)]
    events += [
        ev.HostStateChanged(ts=T0 + 4, host="web-01", state=HostState.FAILED, detail="unhealthy"),
        ev.Alert(ts=T0 + 4.1, level="critical", rule="max_failures", message="1 failed"),
        ev.OperatorCommand(ts=T0 + 4.1, command="pause", operator=POLICY),
        ev.OperatorCommand(ts=T0 + 3, command="pause", operator="bob"),  # before the alert
        ev.OperatorCommand(ts=T0 + 16, command="rollback", operator="bob"),
        ev.RolloutFinished(ts=T0 + 20, outcome=Outcome.ROLLED_BACK, exit_code=4),
    ]
    card = score(events, info({"web-01": "flaps"}, "operator"), dict.fromkeys(HOSTS, OLD))
    assert card.time_to_alert == 1.0 and card.first_alert.startswith("web-01 failed")
    assert card.time_to_act == 12.0 and card.first_action == "rollback by bob"
    assert not card.action_by_policy


def test_fault_that_never_goes_live_counts_from_its_deploy() -> None:
    """A hung install or a dead host: the fault shows when its deploy starts there."""
    events = [
        started(),
        *preflight(),
        *deploy("web-01", T0 + 1),
        *deploy("web-02", T0 + 5, live=False),
    ]
    events += [
        ev.StepFinished(
            ts=T0 + 11, host="web-02", step="install", status="timeout", exit_code=None, duration=6
        ),
        ev.HostStateChanged(ts=T0 + 11, host="web-02", state=HostState.FAILED, detail="timeout"),
        ev.OperatorCommand(ts=T0 + 11.5, command="pause", operator=POLICY),
        ev.RolloutFinished(ts=T0 + 12, outcome=Outcome.PAUSED, exit_code=6),
    ]
    truth = dict.fromkeys(HOSTS, OLD) | {"web-01": NEW}
    card = score(events, info({"web-02": "install hangs"}), truth)
    assert card.fault_at == T0 + 5 and card.time_to_alert == 6.0 and card.time_to_act == 0.5
    assert card.timed_out_steps == (("web-02", "install"),)
    assert card.blast_radius == () and card.new_version_hosts == ("web-01",)
    assert card.rollback == "not_requested" and card.unknown_version_hosts == ()


def test_unknown_final_version_is_reported() -> None:
    events = [
        started(),
        *preflight(),
        ev.RolloutFinished(ts=T0 + 2, outcome=Outcome.SUCCEEDED, exit_code=0),
    ]
    card = score(events, info({}), dict.fromkeys(HOSTS, OLD) | {"api-02": "9.9.9"})
    assert card.unknown_version_hosts == ("api-02",)
    rows = dict(scorecard_rows(card))
    assert rows["final versions (read over SSH)"].startswith("NOT all known: 1 host (api-02)")


def test_scenario_faults_of_the_builtins() -> None:
    assert scenario_faults(load_scenario("healthy"), HOSTS) == {}
    assert scenario_faults(load_scenario("slow-rollout"), HOSTS) == {}  # slow is not bad
    assert set(scenario_faults(load_scenario("bad-canary"), HOSTS)) == set(HOSTS)
    slow = scenario_faults(load_scenario("slow-canary"), HOSTS)  # latency 3x is bad
    assert set(slow) == set(HOSTS) and "latency 120ms" in slow["web-01"]
    assert set(scenario_faults(load_scenario("demo"), HOSTS)) == {"worker-02"}
    assert set(scenario_faults(load_scenario("hung-install"), HOSTS)) == {"web-02"}
    assert set(scenario_faults(load_scenario("flapping-health"), HOSTS)) == {"worker-01"}
    assert set(scenario_faults(load_scenario("host-dies-mid-batch"), HOSTS)) == {"api-02"}
    better = parse_scenario("versions: {default: {error_rate: 2%}, new: {error_rate: 1%}}")
    assert scenario_faults(better, HOSTS) == {}  # a lower error rate is no fault


def test_live_step_is_the_last_step_naming_the_version() -> None:
    from dataclasses import replace

    from console.spec import RolloutSpec

    base = RolloutSpec(path="s", text="", service="s", version="1", inventory=None)
    steps = (Step("install", "i {version}"), Step("activate", "a {version}"), Step("restart", "r"))
    assert live_step(replace(base, steps=steps)) == "activate"
    assert live_step(replace(base, steps=(Step("go", "deploy"),))) == "go"
    assert live_step(base) is None


def test_append_event_keeps_the_journal_format_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b'{"kind":"journal","format":1}\n')
    os.close(fd)
    card = score([started(), *preflight()], info({}), dict.fromkeys(HOSTS, OLD))
    append_event(path, card)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (back,) = read_journal(path)
    assert back == card


def test_printed_forms() -> None:
    events = [started(), *preflight(), *deploy("web-01", T0 + 1)]
    card = score(
        events, info({"web-01": "error rate 15%"}), dict.fromkeys(HOSTS, OLD) | {"web-01": NEW}
    )
    buf = io.StringIO()
    print_scorecard(card, buf, as_json=True)
    data = json.loads(buf.getvalue())
    assert data["kind"] == "drill_scorecard" and data["blast_radius"] == ["web-01"]
    buf = io.StringIO()
    print_scorecard(card, buf)
    text = buf.getvalue()
    assert "blast radius" in text and "error rate 15%: 1 host (web-01)" in text


def test_blue_green_switch_back_is_a_completed_rollback() -> None:
    """The new pool ran the bad version idle; the fault shows once the switch sends it
    traffic, and the switch back (no deploy) leaves it idle on the new version."""
    blue, green = HOSTS[:3], HOSTS[3:]
    pools = {"blue": blue, "green": green}
    events = [started(), *preflight()]
    events.append(
        ev.TrafficShifted(
            ts=T0 + 0.5, move="pools", backend="app", live="blue", idle="green", pools=pools
        )
    )
    for i, host in enumerate(green):
        events += deploy(host, T0 + 1 + i)
    events += [
        ev.TrafficShifted(
            ts=T0 + 10, move="switch", phase="start", backend="app", live="green", idle="blue"
        ),
        ev.TrafficShifted(ts=T0 + 10.2, move="switch", backend="app", live="green", idle="blue"),
        ev.Alert(ts=T0 + 12, level="critical", rule="error_rate.max", message="15%"),
        ev.OperatorCommand(ts=T0 + 12.1, command="rollback", operator=POLICY),
        ev.TrafficShifted(
            ts=T0 + 12.2,
            move="switch_back",
            phase="start",
            backend="app",
            live="blue",
            idle="green",
        ),
        ev.TrafficShifted(
            ts=T0 + 12.3, move="switch_back", backend="app", live="blue", idle="green"
        ),
        ev.RolloutFinished(ts=T0 + 13, outcome=Outcome.ROLLED_BACK, exit_code=4),
    ]
    faults = {h: "error rate 15%" for h in HOSTS}
    truth = dict.fromkeys(blue, OLD) | dict.fromkeys(green, NEW)
    card = score(events, info(faults), truth)
    assert card.fault_at == T0 + 10  # the switch, not green's idle deploy at T0 + 4
    assert card.time_to_alert == 2.0 and card.time_to_act == 0.1
    assert card.rollback == "completed" and card.not_rolled_back == ()
    assert card.blast_radius == tuple(sorted(green)) and card.unknown_version_hosts == ()
    # Without the switch back the green hosts on the new version are not rolled back.
    cut = [e for e in events if not (isinstance(e, ev.TrafficShifted) and e.move == "switch_back")]
    assert score(cut, info(faults), truth).not_rolled_back == tuple(sorted(green))


def test_balancer_lines_say_where_traffic_is_and_who_answered() -> None:
    from console.drill import balancer_lines

    report = {
        "backend": "app",
        "servers": {
            "web-01": {"admin": "ready", "weight": 1, "pool": "blue"},
            "api-01": {"admin": "ready", "weight": 1, "pool": "blue"},
            "web-02": {"admin": "drain", "weight": 1, "pool": "green"},
        },
        "traffic": {
            "sent": 12,
            "skipped": 0,
            "answers": {"2.4.0": {"200": 9}, "2.4.1": {"200": 2, "500": 1}},
            "last": {"2.4.0": T0, "2.4.1": T0},
        },
    }
    lb, load = balancer_lines(report)
    assert (
        lb
        == "HAProxy backend app: blue 2 hosts (web-01, api-01) ready; green 1 host (web-02) drain"
    )
    assert load.startswith("load generator: 12 requests through HAProxy; 2.4.0 answered 9 (200: 9)")
    assert "2.4.1 answered 3 (200: 2, 500: 1), last at" in load
