"""``rolldeck resume`` end to end: which rollout, the clear exit-2 errors, the paused
start with the reconciled state, one journal per rollout, and a rollback that was in
progress when the console died continuing as a rollback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.errors import InputError
from console.resume import find_rollout
from console.store.journal import list_journals, read_journal
from console.store.lock import RolloutLock
from tests.fixtures.simfleet import FleetFactory

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "console"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def cli(*argv: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_and_kill(spec: Path, state: Path, marker: bytes, *extra: str) -> None:
    """``rolldeck run`` killed with SIGKILL once its journal contains ``marker``. It
    runs in the spec's directory with a relative spec path: resume, run from
    elsewhere, must still find the spec and the inventory."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        spec.name,
        "--headless",
        "--yes",
        "--state-dir",
        str(state),  # tmp_path: absolute already
        *extra,
        cwd=spec.parent,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            while proc.returncode is None:
                paths = list_journals(state)
                if paths and marker in paths[0].read_bytes():
                    break
                await asyncio.sleep(0.005)
        assert proc.returncode is None, "the rollout ended before the kill point"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def events_of(state: Path) -> list[ev.Event]:
    (path,) = list_journals(state)
    return read_journal(path)


async def test_no_rollout_and_bad_ids_are_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, _, err = await cli("resume", "--headless", "--state-dir", str(state))
    assert code == 2 and "no unfinished rollout to resume" in err
    code, _, err = await cli("resume", "nope", "--headless", "--state-dir", str(state))
    assert code == 2 and "no rollout 'nope'" in err


async def test_resume_starts_paused_and_appends_to_the_same_journal(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=4, time_scale=0.05)
    state = tmp_path / "state"
    await run_and_kill(fleet.spec_path, state, b'"kind":"batch_finished"')
    rid = events_of(state)[0].rollout_id  # type: ignore[attr-defined]

    # Without --yes a headless resume shows the reconciled state and the plan, then
    # stops paused, waiting for the operator.
    code, out, err = await cli("resume", "--headless", "--state-dir", str(state))
    assert code == 6, err
    assert f"rollout {rid}" in out and "reconciled:" in out
    assert "web-01" in out and "healthy" in out
    assert f"rolldeck resume {rid}" in err
    events = events_of(state)
    assert sum(isinstance(e, ev.RolloutStarted) for e in events) == 1
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert any(m.startswith("resumed by ") for m in notices)
    assert any("took over its own stale lock" in m for m in notices)
    current = [e for e in events if isinstance(e, ev.VersionRead) and e.role == "current"]
    assert {e.host for e in current} == set(fleet.hosts)
    assert events[-1].outcome == ev.Outcome.PAUSED  # type: ignore[attr-defined]

    # A finished rollout is not resumable; the same id, by prefix, now finishes it.
    code, _, err = await cli("resume", rid[:-3], "--headless", "--yes", "--state-dir", str(state))
    assert code == 0, err
    assert len(list_journals(state)) == 1
    for name in fleet.hosts:
        st = fleet.host_state(name)
        assert st.active == st.running == "2.4.1" and not st.drained
    code, _, err = await cli("resume", rid, "--headless", "--state-dir", str(state))
    assert code == 2 and "already ended: succeeded" in err
    code, out, _ = await cli("history", "--state-dir", str(state))
    assert out.count(rid) == 1 and "succeeded" in out


async def test_a_running_rollout_is_not_resumed_and_a_changed_spec_is_refused(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=2, time_scale=0.05)
    state = tmp_path / "state"
    await run_and_kill(fleet.spec_path, state, b'"kind":"step_started"')
    rid = events_of(state)[0].rollout_id  # type: ignore[attr-defined]
    (lock_file,) = state.glob("lock-*.lock")
    lock_file.unlink()
    held = RolloutLock.acquire(
        state, service="checkout-api", inventory=str(fleet.inventory_path), rollout_id=rid
    )
    try:
        with pytest.raises(InputError, match=r"still running .*rolldeck attach"):
            find_rollout(state, rid, None)
    finally:
        held.release()
    fleet.spec_path.write_text(fleet.spec_path.read_text() + "\n# edited\n")
    code, _, err = await cli("resume", rid, "--headless", "--state-dir", str(state))
    assert code == 2 and "changed since rollout" in err


async def test_a_rollback_in_progress_continues_as_a_rollback(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=4, scenario="bad-canary", time_scale=0.05)
    state = tmp_path / "state"
    await run_and_kill(fleet.spec_path, state, b'"rollback":true')
    code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
    assert code == 4, out + err  # rolled back
    events = events_of(state)
    changed = {e.host for e in events if isinstance(e, ev.StepStarted) and not e.rollback}
    assert changed
    for name in fleet.hosts:
        assert fleet.host_state(name).active == "2.4.0"
    # After the resume nothing moved forward: no deploy step started again.
    resumed_at = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, ev.Notice) and e.message.startswith("resumed by")
    )
    assert not [e for e in events[resumed_at:] if isinstance(e, ev.StepStarted) and not e.rollback]


async def test_once_step_in_flight_is_flagged_not_rerun_and_spends_the_budget(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = await sim_fleet_factory(n=2, time_scale=0.05)
    spec = fleet.spec_path.with_name("rollout-once.yaml")
    text = fleet.spec_path.read_text()
    old = "{name: restart, run: svc restart,"
    spec.write_text(text.replace(old, "{name: restart, run: svc restart, once: true,", 1))
    state = tmp_path / "state"
    marker = b'"step":"restart","command"'
    await run_and_kill(spec, state, marker)
    # The console died right after journaling the once step's start: cut the journal
    # there, as a crash at that instant leaves it.
    (path,) = list_journals(state)
    data = path.read_bytes()
    cut = data.index(b"\n", data.index(marker)) + 1
    path.write_bytes(data[:cut])
    host = events_of(state)[-1].host  # type: ignore[attr-defined]
    # Whether the restart reached the host before the kill is exactly what nobody knows.
    before = fleet.host_state(host).restarts
    assert before <= 1

    code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
    assert code == 6, out + err  # max_failures 0 and on_failure pause: the operator decides
    assert f"{host}" in out and "flagged" in out
    events = events_of(state)
    flagged = [
        e
        for e in events
        if isinstance(e, ev.HostStateChanged) and e.host == host and "once step restart" in e.detail
    ]
    assert flagged and flagged[-1].state == ev.HostState.FAILED
    alerts = [e for e in events if isinstance(e, ev.Alert) and e.rule == "max_failures"]
    assert alerts and alerts[-1].numbers.get("resume") is True
    assert fleet.host_state(host).restarts == before  # not run again by the resume


async def test_a_gate_never_passed_is_not_skipped_on_resume(
    sim_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    """The console died (here: stopped headless without --yes) at the manual gate after
    batch 1: the resume runs that gate again before batch 2, it does not jump it."""
    fleet = await sim_fleet_factory(n=4, time_scale=0.05)
    spec = fleet.spec_path.with_name("rollout-manual.yaml")
    lines = [
        "between_batches: manual" if line.startswith("between_batches:") else line
        for line in fleet.spec_path.read_text().splitlines()
    ]
    spec.write_text("\n".join(lines) + "\n")
    state = tmp_path / "state"
    code, _, err = await cli("run", str(spec), "--headless", "--state-dir", str(state))
    assert code == 6, err  # paused at the manual gate: no --yes
    events = events_of(state)
    assert [e.after_batch for e in events if isinstance(e, ev.GateWaiting)] == [0]
    assert not [e for e in events if isinstance(e, ev.GatePassed)]

    code, out, err = await cli("resume", "--headless", "--state-dir", str(state))
    assert code == 6, err
    assert "after the gate that follows batch 1" in out
    before = len(events_of(state))
    code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
    assert code == 0, out + err
    resumed = events_of(state)[before:]
    gate = next(i for i, e in enumerate(resumed) if isinstance(e, ev.GateWaiting))
    assert resumed[gate].after_batch == 0  # type: ignore[attr-defined]
    passed = next(i for i, e in enumerate(resumed) if isinstance(e, ev.GatePassed))
    batch = next(i for i, e in enumerate(resumed) if isinstance(e, ev.BatchStarted))
    assert gate < passed < batch and resumed[batch].index == 1  # type: ignore[attr-defined]
    commands = [e for e in resumed if isinstance(e, ev.OperatorCommand)]
    assert any(c.command == "continue" and "--yes" in c.reason for c in commands)
