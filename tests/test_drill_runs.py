"""``rolldeck drill`` end to end, headless: a real fleet child, the real engine over
SSH, the scorecard on stdout and in the journal, and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from console.core import events as ev
from console.core.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_PAUSED, EXIT_ROLLED_BACK
from console.engine import POLICY
from console.store.journal import read_journal

OLD, NEW = "2.4.0", "2.4.1"
SCALE = "0.05"  # every simulated duration x0.05 (step timeouts keep a 5 s floor)

pytestmark = pytest.mark.timeout(240)


@dataclass
class Drill:
    code: int
    stdout: list[dict[str, Any]]
    stderr: str
    events: list[ev.Event]  # the journal
    card: ev.DrillScorecard
    state_dir: Path


async def cli(tmp: Path, *argv: str) -> tuple[int, str, str]:
    """Run ``rolldeck ARGV`` with TMPDIR inside ``tmp``; return code, stdout, stderr."""
    scratch = tmp / "tmp"
    scratch.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "console",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_nothing_left(tmp: Path) -> None:
    """The fleet's temp dir is gone and no process of it survives."""
    scratch = tmp / "tmp"
    assert list(scratch.iterdir()) == []
    for p in psutil.process_iter(["cmdline"]):
        assert str(scratch) not in " ".join(p.info["cmdline"] or []), p


async def drill(tmp: Path, scenario: str, *extra: str) -> Drill:
    state = tmp / "state"
    code, out, err = await cli(
        tmp, "drill", scenario, "--hosts", "6", "--time-scale", SCALE, "--json",
        "--state-dir", str(state), *extra,
    )  # fmt: skip
    assert "Traceback" not in err, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["kind"] == "drill_scorecard", err
    (journal,) = state.glob("*.jsonl")
    assert sorted(p.name for p in state.iterdir()) == [journal.name]  # the lock is released
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    events = read_journal(journal)
    card = events[-1]
    assert isinstance(card, ev.DrillScorecard)
    assert ev.to_json(card) == lines[-1]  # what was printed is what was journaled
    assert card.exit_code == code
    assert_nothing_left(tmp)
    return Drill(code, lines, err, events, card, state)


def check_consistent(card: ev.DrillScorecard) -> None:
    """The scorecard's numbers agree with each other."""
    if card.time_to_alert is not None:
        assert card.fault_at is not None and card.first_alert_at is not None
        assert card.first_alert_at >= card.fault_at
        assert card.time_to_alert == round(card.first_alert_at - card.fault_at, 3)
    if card.time_to_act is not None:
        assert card.first_action_at is not None and card.first_alert_at is not None
        assert card.time_to_act == round(card.first_action_at - card.first_alert_at, 3)
    assert set(card.blast_radius) == set(card.new_version_hosts) & set(card.bad_hosts)
    known = {OLD, NEW}
    assert not card.unknown_version_hosts
    assert set(card.final_versions.values()) <= known


async def test_bad_canary_rolls_back_automatically(tmp_path: Path) -> None:
    d = await drill(tmp_path, "bad-canary", "--policy", "auto")
    card = d.card
    assert d.code == EXIT_ROLLED_BACK and card.outcome == ev.Outcome.ROLLED_BACK
    canary = next(e for e in d.events if isinstance(e, ev.RolloutStarted)).batches[0]
    assert card.blast_radius == tuple(canary) == card.new_version_hosts == ("web-01",)
    assert card.first_alert.startswith("error_rate")
    assert card.action_by_policy and card.first_action.startswith("rollback")
    assert card.time_to_alert is not None and card.time_to_act is not None
    assert card.rollback == "completed" and card.not_rolled_back == ()
    assert card.final_versions == dict.fromkeys(card.final_versions, OLD)
    assert len(card.final_versions) == 6
    check_consistent(card)
    # The policy's rollback is in the journal, labelled as the engine's own.
    cmds = [e for e in d.events if isinstance(e, ev.OperatorCommand)]
    assert any(c.command == "rollback" and c.operator == POLICY for c in cmds)


async def test_healthy_succeeds_without_an_alert(tmp_path: Path) -> None:
    d = await drill(tmp_path, "healthy")  # --json alone: headless, policy auto
    card = d.card
    assert d.code == EXIT_OK and card.policy == "auto"
    assert card.alerts == 0 and card.first_alert == "" and card.fault_at is None
    assert card.bad_hosts == {} and card.blast_radius == ()
    assert card.rollback == "not_requested" and card.timed_out_steps == ()
    assert card.final_versions == dict.fromkeys(card.final_versions, NEW)
    assert len(card.new_version_hosts) == 6
    check_consistent(card)


async def test_hung_install_records_the_timed_out_step(tmp_path: Path) -> None:
    d = await drill(tmp_path, "hung-install", "--policy", "auto")
    card = d.card
    assert d.code == EXIT_PAUSED
    assert ("web-02", "install") in card.timed_out_steps
    timeouts = [e for e in d.events if isinstance(e, ev.StepFinished) and e.status == "timeout"]
    assert [(e.host, e.step) for e in timeouts] == [("web-02", "install")]
    assert card.final_versions["web-02"] == OLD and "web-02" not in card.new_version_hosts
    assert card.blast_radius == () and card.first_alert.startswith("web-02")
    check_consistent(card)


@pytest.mark.slow
async def test_other_scenarios(tmp_path: Path) -> None:
    """More built-ins, concurrently (they mostly wait on simulated time); slow-rollout
    and demo outcomes are covered by tests/test_simfleet_rollouts.py and the demo's."""
    runs = {
        "host-dies-mid-batch": ("host-dies-mid-batch", "--policy", "auto"),
        "flapping-health": ("flapping-health", "--policy", "auto"),
        "bad-canary-operator": ("bad-canary", "--policy", "operator"),
    }
    for name in runs:
        (tmp_path / name).mkdir()
    results = await asyncio.gather(*(drill(tmp_path / n, *a) for n, a in runs.items()))
    by = dict(zip(runs, results, strict=True))
    for d in results:
        check_consistent(d.card)

    dies = by["host-dies-mid-batch"].card
    assert dies.exit_code == EXIT_PAUSED and dies.final_versions["api-02"] == OLD
    assert dies.blast_radius == () and dies.first_alert.startswith("api-02")

    flap = by["flapping-health"].card
    assert flap.exit_code == EXIT_PAUSED and flap.blast_radius == ("worker-01",)

    # Operator policy, nobody at the keyboard: the engine only pauses, nobody acts.
    op = by["bad-canary-operator"]
    assert op.code == EXIT_PAUSED and op.card.policy == "operator"
    assert op.card.first_alert and op.card.first_action == "" and op.card.time_to_act is None
    assert op.card.rollback == "not_requested"
    started = next(e for e in op.events if isinstance(e, ev.RolloutStarted))
    assert started.settings["on_failure"] == "pause"
    assert "--policy operator" in started.spec_text


async def test_bad_scenario_is_bad_input(tmp_path: Path) -> None:
    code, _, err = await cli(tmp_path, "drill", "bad-canery", "--state-dir", str(tmp_path / "s"))
    assert code == EXIT_BAD_INPUT
    assert "did you mean 'bad-canary'" in err and "Traceback" not in err
    assert_nothing_left(tmp_path)
