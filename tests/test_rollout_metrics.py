"""``metrics_out``/``--metrics-textfile``: the rollout's own Prometheus text file,
parsed with prometheus_client's parser and held against the journal."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from console.core import events as ev
from console.core.errors import InputError
from console.core.events import Outcome, RolloutState
from console.notify.textfile import attach_metrics_file, file_name
from console.store.journal import read_journal
from tests.test_engine_helpers import Run, journal_in, make_engine, run_engine, spec_from


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_name(found: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def phase_times(events: list[ev.Event]) -> tuple[float, float]:
    """(paused, at manual gates) from the journal's phase changes, by hand."""
    paused = gated = 0.0
    phase, since, gate = None, 0.0, None
    for e in events:
        if isinstance(e, ev.RolloutStarted):
            since = e.ts
        elif isinstance(e, ev.GateWaiting):
            gate = e.gate
        elif isinstance(e, ev.GatePassed):
            gate = None
        elif isinstance(e, ev.RolloutStateChanged | ev.RolloutFinished):
            if phase in (RolloutState.PAUSED, RolloutState.FROZEN):
                paused += e.ts - since
            elif phase == RolloutState.WAITING and gate == "manual":
                gated += e.ts - since
            since = e.ts
            phase = e.state if isinstance(e, ev.RolloutStateChanged) else None
    return paused, gated


async def test_the_metrics_file_parses_and_matches_the_journal(tmp_path: Path) -> None:
    spec = spec_from("batches: [1, 2]\non_failure: rollback\nbetween_batches: manual\n")
    run = make_engine(spec, 3, journal=journal_in(tmp_path))
    run.fake.on(r"^activate 2.0", exit_code=1, hosts=["h03"])
    out = tmp_path / "textfile"
    attach_metrics_file(run.engine, str(out))

    def react(e: ev.Event, r: Run) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(e, ev.GateWaiting):
            r.engine.pause(reason="look first")
            loop.call_later(0.1, r.engine.resume)
            loop.call_later(0.2, r.engine.continue_)

    await run_engine(run, react)
    assert run.outcome == Outcome.ROLLED_BACK
    events = read_journal(run.engine.journal.path)  # type: ignore[union-attr]
    path = out / file_name("shop", "")
    assert [p.name for p in out.iterdir()] == [path.name]  # atomic: no temporary left
    found = samples(path)
    base = (("environment", ""), ("outcome", "rolled_back"), ("service", "shop"))
    started = next(e for e in events if isinstance(e, ev.RolloutStarted))
    finished = next(e for e in events if isinstance(e, ev.RolloutFinished))
    duration = finished.ts - started.ts
    paused, gated = phase_times(events)
    assert paused > 0 and gated > 0
    one = {k[0]: v for k, v in found.items() if k[1] == base}
    assert one["rolldeck_rollout_duration_seconds"] == pytest.approx(duration)
    assert one["rolldeck_rollout_paused_seconds"] == pytest.approx(paused)
    assert one["rolldeck_rollout_gate_wait_seconds"] == pytest.approx(gated)
    assert one["rolldeck_rollout_progress_seconds"] == pytest.approx(duration - paused - gated)
    assert one["rolldeck_rollout_exit_code"] == 4 and one["rolldeck_rollout_rollbacks"] == 1
    rb_start = next(
        e.ts
        for e in events
        if isinstance(e, ev.RolloutStateChanged) and e.state == RolloutState.ROLLING_BACK
    )
    rb_end = [e.ts for e in events if isinstance(e, ev.BatchFinished) and e.rollback][-1]
    assert one["rolldeck_rollout_rollback_duration_seconds"] == pytest.approx(rb_end - rb_start)
    hosts = {dict(k)["state"]: v for k, v in by_name(found, "rolldeck_rollout_hosts").items()}
    assert hosts == finished.counts
    alerts = {dict(k)["rule"]: v for k, v in by_name(found, "rolldeck_rollout_alerts").items()}
    assert alerts == Counter(e.rule for e in events if isinstance(e, ev.Alert))


def test_an_unwritable_metrics_directory_is_bad_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = make_engine(spec_from(), 1)
    with pytest.raises(InputError, match="metrics directory"):
        attach_metrics_file(run.engine, str(blocker / "sub"))


async def test_a_failed_write_is_journaled_once_per_episode_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A directory where the file should be: every write fails until it goes; the
    journal says so once, then once that writing works again."""
    spec = spec_from("batches: [1, 2]\nbetween_batches: manual\n")
    run = make_engine(spec, 3, journal=journal_in(tmp_path))
    out = tmp_path / "textfile"
    metrics = attach_metrics_file(run.engine, str(out))
    blocker = out / file_name("shop", "")
    blocker.mkdir()

    seen: set[str] = set()

    def react(e: ev.Event, r: Run) -> None:  # the gate opens once the failure is told
        if isinstance(e, ev.Notice) and "cannot write" in e.message:
            blocker.rmdir()  # the operator fixes it
            seen.add("notice")
        elif isinstance(e, ev.GateWaiting):
            seen.add("gate")
        if seen == {"notice", "gate"}:
            seen.add("continued")
            r.engine.continue_()

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    events = read_journal(run.engine.journal.path)  # type: ignore[union-attr]
    said = [e.message for e in events if isinstance(e, ev.Notice) and "textfile" in e.message]
    assert len(said) == 2, said
    assert "cannot write (IsADirectoryError" in said[0] and "written again" in said[1]
    assert metrics.failures >= 1 and metrics.error is None
    assert f"written again after {metrics.failures} failed" in said[1]
    one = samples(blocker)  # the last picture, written at the end
    assert one[("rolldeck_rollout_exit_code", (("environment", ""), ("outcome", "succeeded"),
                                               ("service", "shop")))] == 0  # fmt: skip


async def test_a_resumed_rollout_writes_its_whole_story(tmp_path: Path) -> None:
    """``rolldeck resume`` brings no RolloutStarted: the file still comes, its start and
    duration those of the rollout, the time nobody was rolling counted as paused."""
    from console.resume import Observation, reconcile, replay
    from console.store.journal import Journal

    spec = spec_from("batches: [1, 2]\nbetween_batches: manual\n")
    first = make_engine(spec, 3, journal=journal_in(tmp_path), exit_when_paused=True)

    def pause_at_gate(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.GateWaiting):
            r.engine.pause(reason="the console goes away")

    await run_engine(first, pause_at_gate)
    assert first.outcome == Outcome.PAUSED
    path = first.engine.journal.path  # type: ignore[union-attr]
    seen = {"h01": Observation(True, "2.0", True)}
    seen |= {h: Observation(True, "1.0", True) for h in ("h02", "h03")}
    point = reconcile(replay(path), spec, seen, "tester").restore_point()
    again = make_engine(spec, 3, journal=Journal.open_existing(path), resume=point, rollout_id="r1")
    out = tmp_path / "textfile"
    attach_metrics_file(again.engine, str(out))

    def go_on(e: ev.Event, r: Run) -> None:
        if isinstance(e, ev.RolloutStateChanged) and e.state == RolloutState.PAUSED:
            r.engine.resume()
        elif isinstance(e, ev.GateWaiting):
            r.engine.continue_()

    await run_engine(again, go_on)
    assert again.outcome == Outcome.SUCCEEDED
    events = read_journal(path)
    started = next(e for e in events if isinstance(e, ev.RolloutStarted))
    finished = [e for e in events if isinstance(e, ev.RolloutFinished)][-1]
    gap_from = max(e.ts for e in first.events)
    gap_to = min(e.ts for e in again.events)
    labels = (("environment", ""), ("outcome", "succeeded"), ("service", "shop"))
    one = {n: v for (n, ls), v in samples(out / file_name("shop", "")).items() if ls == labels}
    assert one["rolldeck_rollout_start_time_seconds"] == pytest.approx(started.ts)
    assert one["rolldeck_rollout_duration_seconds"] == pytest.approx(finished.ts - started.ts)
    assert one["rolldeck_rollout_paused_seconds"] >= gap_to - gap_from > 0
