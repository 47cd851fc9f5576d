"""``rolldeck history`` and ``rolldeck show`` on journals written by real engine runs
(FakeTransport): outcomes, versions, who, failures, operator decisions with reasons and
the counts at that moment, the rule that stopped a rollout with its numbers, --json,
and clear errors for unknown or ambiguous ids."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from console.cli import main as cli_main
from console.core import events as ev
from console.core.commands import unix_user
from console.core.events import Event, HostState, Outcome
from console.core.state import RolloutView
from console.store.history import history, render_history, render_timeline, resolve_id, timeline
from console.store.journal import journal_path
from console.store.lock import RolloutLock
from console.transport.fake import Reply
from tests.test_engine_helpers import Run, journal_in, make_engine, run_engine, spec_from


async def succeeded(tmp: Path, rid: str = "shop-ok") -> Run:
    run = make_engine(
        spec_from("batches: [1, 2]\n"), 4, journal=journal_in(tmp, rid), rollout_id=rid
    )
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    return run


async def rolled_back(tmp: Path, rid: str = "shop-rb") -> Run:
    """h02 fails install in batch 2; on_failure rollback fires on max_failures."""
    run = make_engine(
        spec_from("batches: [1, 2]\non_failure: rollback\n"),
        4,
        journal=journal_in(tmp, rid),
        rollout_id=rid,
    )
    run.fake.on(r"^install", exit_code=1, hosts=["h02"])
    await run_engine(run)
    assert run.outcome == Outcome.ROLLED_BACK
    return run


async def paused_by_operator(tmp: Path, rid: str = "other-pz") -> Run:
    """An operator pauses after the first batch, with a reason; the run exits paused."""
    spec = spec_from("service: other\nbatches: [1, 2]\n")
    run = make_engine(spec, 5, journal=journal_in(tmp, rid), rollout_id=rid, exit_when_paused=True)
    # batch 2 holds until the pause is in: consumers see BatchFinished(0) only after
    # its fsync, which may come after the whole next batch on a loaded machine
    release = asyncio.Event()
    run.fake.on(r"^install", Reply(wait=release), hosts=["h02", "h03"])

    def react(event: Event, r: Run) -> None:
        if isinstance(event, ev.BatchFinished) and event.index == 0:
            r.engine.pause(reason="latency up on h01", operator="carol")
            release.set()

    await run_engine(run, react)
    assert run.outcome == Outcome.PAUSED
    return run


def capture(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_history_lists_outcomes_newest_first_with_versions_and_failures(
    tmp_path: Path,
) -> None:
    await succeeded(tmp_path)
    await rolled_back(tmp_path)
    pz_run = await paused_by_operator(tmp_path)
    rows = history(tmp_path)
    assert [r.rollout_id for r in rows] == ["other-pz", "shop-rb", "shop-ok"]
    by = {r.rollout_id: r for r in rows}
    ok, rb, pz = by["shop-ok"], by["shop-rb"], by["other-pz"]
    assert (ok.outcome, ok.previous_versions, ok.version) == ("succeeded", ["1.0"], "2.0")
    assert (ok.hosts, ok.hosts_changed, ok.failures, ok.operator) == (4, 4, [], "tester")
    assert ok.duration is not None and ok.duration > 0
    # the failed host counts as a failure even though it was rolled back afterwards
    assert rb.outcome == "rolled_back" and rb.failures == ["h02"]
    assert rb.hosts_changed == 3 and "rolled back 3 hosts" in rb.reason
    assert pz.outcome == "paused" and pz.service == "other"
    assert pz.hosts_changed == len(pz_run.engine.view.changed_hosts()) < 5
    assert [r.rollout_id for r in history(tmp_path, service="shop")] == ["shop-rb", "shop-ok"]
    assert [r.rollout_id for r in history(tmp_path, limit=1)] == ["other-pz"]
    table = render_history(rows)
    assert "1.0 -> 2.0" in table and "1 (h02)" in table and "3/4" in table


async def test_history_cli_json_and_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await succeeded(tmp_path)
    await rolled_back(tmp_path)
    code, out, _ = capture(capsys, "history", "--state-dir", str(tmp_path), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["rollout_id"] for r in rows] == ["shop-rb", "shop-ok"]
    assert rows[0]["outcome"] == "rolled_back" and rows[0]["failures"] == ["h02"]
    code, out, _ = capture(capsys, "history", "--state-dir", str(tmp_path), "--limit", "1")
    assert code == 0 and "shop-rb" in out and "shop-ok" not in out
    code, _, err = capture(capsys, "history", "--state-dir", str(tmp_path), "--limit", "0")
    assert code == 2 and "--limit" in err


async def test_show_explains_why_a_rollout_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await rolled_back(tmp_path)
    t = timeline(journal_path(tmp_path, "shop-rb"))
    stopped = t.stopped
    assert stopped["outcome"] == "rolled_back"
    [rule] = stopped["rules"]
    assert rule["rule"] == "max_failures" and rule["action"] == "rollback"
    assert rule["numbers"] == {"failed": 1, "allowed": 0, "targeted": 4}
    # the policy's own decision is journaled as a command by 'policy'
    assert stopped["decisions"][0]["command"] == "rollback"
    assert stopped["decisions"][0]["operator"] == "policy"
    # the counts at each moment are the engine's own fold at that point
    alert = next(e for e in t.entries if e.kind == "alert")
    assert alert.counts["failed"] == 1 and alert.counts["healthy"] == 1
    kinds = [e.kind for e in t.entries]
    assert kinds[0] == "rollout_started" and kinds[-1] == "rollout_finished"
    assert kinds.count("batch_started") == 2 + 2  # two forward, two rollback batches
    last = t.entries[-1]
    assert last.counts == {
        k: v for k, v in run.engine.view.counts().items() if v or k in last.counts
    }
    text = render_timeline(t)
    assert "rule max_failures fired -> rollback" in text and '"allowed": 0' in text

    code, out, _ = capture(capsys, "show", "shop-r", "--state-dir", str(tmp_path), "--json")
    assert code == 0
    doc = json.loads(out.splitlines()[1])  # after the header
    assert doc["rollout"]["rollout_id"] == "shop-rb"
    assert doc["stopped"]["rules"][0]["numbers"]["failed"] == 1


async def test_show_records_the_operator_decision_with_reason_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await paused_by_operator(tmp_path)
    t = timeline(journal_path(tmp_path, "other-pz"))
    cmd = next(e for e in t.entries if e.kind == "operator_command")
    assert (cmd.operator, cmd.reason) == ("carol", "latency up on h01")
    # the counts shown are those a console folding the live stream had at that event
    live = RolloutView()
    for e in run.events:
        live.apply(e)
        if isinstance(e, ev.OperatorCommand):
            break
    assert cmd.counts == {k: v for k, v in live.counts().items() if v or k in cmd.counts}
    assert cmd.counts["healthy"] >= 1 and cmd.counts["pending"] >= 1
    after = t.entries[t.entries.index(cmd) + 1]
    assert after.kind == "rollout_state" and after.state == "paused"
    assert t.stopped["decisions"] == [
        {
            "command": "pause",
            "operator": "carol",
            "user": unix_user(),  # the Unix user, from the kernel, beside the label
            "reason": "latency up on h01",
            "ts": cmd.ts,
        }
    ]
    code, out, _ = capture(capsys, "show", "other-pz", "--state-dir", str(tmp_path))
    assert code == 0
    assert "pause by carol (latency up on h01)" in out
    assert "why it stopped: paused" in out


async def test_unknown_and_ambiguous_ids_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await succeeded(tmp_path, "shop-a1")
    await succeeded(tmp_path, "shop-a2")
    assert resolve_id(tmp_path, "shop-a1").name == "shop-a1.jsonl"
    code, _, err = capture(capsys, "show", "shop-a", "--state-dir", str(tmp_path))
    assert code == 2 and "ambiguous" in err and "shop-a1" in err and "shop-a2" in err
    code, _, err = capture(capsys, "show", "zzz", "--state-dir", str(tmp_path))
    assert code == 2 and "no rollout 'zzz'" in err


def write_unfinished(tmp: Path, rid: str, pid: int) -> None:
    """A journal cut off mid-rollout (its owner was killed): header and first events."""
    started = ev.RolloutStarted(
        rollout_id=rid,
        service="shop",
        version="3.0",
        operator="dave",
        spec_path="spec.yaml",
        spec_hash="sha256:0",
        spec_text="",
        inventory_path="inv.yaml",
        batches=(("h01",), ("h02",)),
        hosts={"h01": {}, "h02": {}},
    )
    lines = [
        {"kind": "journal", "format": 1, "rollout_id": rid, "pid": pid,
         "machine": socket.gethostname(), "who": "dave"},
        ev.to_json(started),
        ev.to_json(ev.BatchStarted(index=0, total=2, hosts=("h01",))),
        ev.to_json(ev.HostStateChanged(host="h01", state=HostState.RUNNING, step="install")),
    ]  # fmt: skip
    path = journal_path(tmp, rid)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_unfinished_rollouts_are_running_or_interrupted(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # beyond pid_max on this machine: never alive
    write_unfinished(tmp_path, "shop-dead", dead)
    write_unfinished(tmp_path, "shop-live", os.getpid())
    lock = RolloutLock.acquire(tmp_path, service="shop", inventory="", rollout_id="shop-locked")
    write_unfinished(tmp_path, "shop-locked", dead)  # header pid dead, but the lock is live
    try:
        by = {r.rollout_id: r for r in history(tmp_path)}
    finally:
        lock.release()
    assert by["shop-dead"].outcome == "interrupted"
    assert by["shop-live"].outcome == "running" and by["shop-live"].pid == os.getpid()
    assert by["shop-locked"].outcome == "running"
    assert by["shop-dead"].batch == 1 and by["shop-dead"].hosts_changed == 0
    t = timeline(journal_path(tmp_path, "shop-dead"))
    assert t.stopped["outcome"] == "interrupted"


def test_corrupt_and_foreign_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "junk.jsonl").write_text("not json\n{}\n")
    (tmp_path / "empty.jsonl").write_text("")
    write_unfinished(tmp_path, "shop-x", 2**22 + 1)
    assert [r.rollout_id for r in history(tmp_path)] == ["shop-x"]
