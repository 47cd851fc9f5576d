"""The journal: 0600, fsync'd off the event loop in group commits, every durable event
on disk before any consumer sees it, torn last lines tolerated, secrets redacted."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.store.journal import (
    Journal,
    JournalError,
    list_journals,
    read_header,
    read_journal,
    resolve_state_dir,
)
from console.transport.fake import Reply
from tests.test_engine_helpers import Run, hosts, journal_in, make_engine, run_engine, spec_from


async def test_every_durable_event_is_on_disk_before_consumers_see_it(tmp_path: Path) -> None:
    journal = journal_in(tmp_path)
    run = make_engine(spec_from("batches: [2]\n"), 6, journal=journal)
    run.fake.on(r"^install", lines=["a", "b"], delay=0.02)
    missing: list[Event] = []

    def react(event: Event, r: Run) -> None:
        if not event.durable:
            return
        on_disk = read_journal(journal.path)
        if event not in on_disk:
            missing.append(event)

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    assert missing == []
    on_disk = read_journal(journal.path)
    durable = [e for e in run.events if e.durable]
    assert on_disk == durable  # same events, same order
    assert any(isinstance(e, ev.StepOutput) for e in run.events)
    assert not any(isinstance(e, ev.StepOutput) for e in on_disk)  # ephemeral


async def test_file_mode_header_and_group_commit(tmp_path: Path) -> None:
    journal = journal_in(tmp_path, "shop-1")
    run = make_engine(spec_from("batches: [100%]\nmax_parallel: 20\n"), 20, journal=journal)
    await run_engine(run)
    mode = stat.S_IMODE(os.stat(journal.path).st_mode)
    assert mode == 0o600
    head = read_header(journal.path)
    assert head["kind"] == "journal" and head["rollout_id"] == "shop-1" and head["who"] == "tester"
    events = read_journal(journal.path)
    started = events[0]
    assert isinstance(started, ev.RolloutStarted)
    assert started.spec_hash.startswith("sha256:") and "install {version}" in started.spec_text
    assert started.batches == (tuple(f"h{i:02d}" for i in range(1, 21)),)
    assert isinstance(events[-1], ev.RolloutFinished)
    # group commit: many events share an fsync
    assert journal.events_written == len(events)
    assert journal.commits < journal.events_written / 2


async def test_fsync_runs_off_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.current_thread()
    threads: set[bool] = set()
    real = os.fsync

    def spy(fd: int) -> None:
        threads.add(threading.current_thread() is loop_thread)
        real(fd)

    journal = journal_in(tmp_path)  # the header is written before the loop matters
    monkeypatch.setattr(os, "fsync", spy)
    run = make_engine(spec_from(), 3, journal=journal)
    await run_engine(run)
    assert threads == {False}


async def test_journal_records_who_versions_and_commands(tmp_path: Path) -> None:
    journal = journal_in(tmp_path)
    run = make_engine(spec_from("batches: [1, 2]\n"), 5, journal=journal, exit_when_paused=True)
    release = asyncio.Event()  # h02 is still moving when the pause lands
    run.fake.on(r"^install", Reply(wait=release), hosts=["h02"])

    def react(e: Event, r: Run) -> None:
        if isinstance(e, ev.HostStateChanged) and e.state == HostState.HEALTHY and e.host == "h01":
            r.engine.pause(reason="coffee", operator="alice")
            release.set()

    await run_engine(run, react)
    events = read_journal(journal.path)
    cmds = [e for e in events if isinstance(e, ev.OperatorCommand)]
    assert [(c.command, c.operator, c.reason) for c in cmds] == [("pause", "alice", "coffee")]
    reads = [(e.host, e.role, e.version) for e in events if isinstance(e, ev.VersionRead)]
    assert ("h01", "previous", "1.0") in reads and ("h01", "new", "2.0") in reads
    finished = next(e for e in events if isinstance(e, ev.StepFinished))
    assert finished.exit_code == 0 and finished.status == "ok"
    assert events[-1].outcome == Outcome.PAUSED


async def test_spec_and_host_secrets_never_reach_the_journal(tmp_path: Path) -> None:
    spec = spec_from(
        "secrets: [db_password]\nvars: {db_password: hunter2-spec}\n"
        'steps:\n  - {name: install, run: "install {vars.db_password} {vars.api_token}"}\n'
    )
    journal = journal_in(tmp_path)
    run = make_engine(spec, host_list=hosts(2, api_token="tok-987654"), journal=journal)
    run.fake.on(r"^install", lines=["token tok-987654 ok"], stderr=["pw hunter2-spec"])
    await run_engine(run)
    text = journal.path.read_text()
    assert "hunter2-spec" not in text and "tok-987654" not in text
    assert "***" in text


def test_torn_last_line_is_ignored_and_corruption_elsewhere_raises(tmp_path: Path) -> None:
    j = Journal.create(tmp_path, "r2")
    j.append(ev.Notice(message="one"))
    j.append(ev.Notice(message="two"))
    import asyncio

    asyncio.run(j.close())
    with open(j.path, "ab") as f:
        f.write(b'{"kind": "notice", "message": "thr')  # the crash cut this write
    assert [e.message for e in read_journal(j.path)] == ["one", "two"]
    lines = j.path.read_bytes().split(b"\n")
    lines[1] = b"{garbage"
    j.path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=":2: corrupt"):
        read_journal(j.path)


def test_create_refuses_existing_and_lists_journals(tmp_path: Path) -> None:
    a = Journal.create(tmp_path, "a")
    with pytest.raises(JournalError, match="already exists"):
        Journal.create(tmp_path, "a")
    os.utime(a.path, (1, 1))
    Journal.create(tmp_path, "b")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_journals(tmp_path)] == ["a.jsonl", "b.jsonl"]
    assert list_journals(tmp_path / "missing") == []


def test_state_dir_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir(None) == tmp_path / "xdg" / "rolldeck"
    assert (tmp_path / "xdg" / "rolldeck").is_dir()
    assert resolve_state_dir(tmp_path / "mine") == tmp_path / "mine"


def test_journal_lines_are_json_with_kind(tmp_path: Path) -> None:
    j = Journal.create(tmp_path, "c")
    j.append(ev.Notice(message="hi"))
    import asyncio

    asyncio.run(j.flush())
    asyncio.run(j.close())
    rows = [json.loads(x) for x in j.path.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["journal", "notice"]


async def test_failing_journal_pauses_the_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import console.store.journal as jmod

    journal = journal_in(tmp_path)
    real = jmod._write_all
    full = {"disk": False}

    def flaky(fd: int, lines: list[str]) -> None:
        # the disk fills up with the write that holds h01's install: the writer
        # group-commits, so a count of writes would depend on timing
        if full["disk"] or any(
            '"kind":"step_started"' in ln and '"host":"h01"' in ln for ln in lines
        ):
            full["disk"] = True
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, lines)

    monkeypatch.setattr(jmod, "_write_all", flaky)
    run = make_engine(spec_from("batches: [1, 2]\n"), 5, journal=journal, exit_when_paused=True)
    # h01's install holds until the engine has heard of the failed write
    heard = asyncio.Event()
    run.fake.on(r"^install", Reply(wait=heard), hosts=["h01"])
    told = journal.on_error
    assert told is not None

    def failed(exc: Exception) -> None:
        told(exc)
        heard.set()

    journal.on_error = failed
    await run_engine(run)
    assert run.outcome == Outcome.PAUSED
    alert = next(e for e in run.events if isinstance(e, ev.Alert))
    assert alert.rule == "journal" and "No space left" in alert.message
    assert isinstance(run.events[-1], ev.RolloutFinished)  # consumers still saw the end
    assert run.final("h05") == HostState.PENDING


def test_append_to_a_closed_journal(tmp_path: Path) -> None:
    from console.store.journal import append_to

    j = Journal.create(tmp_path, "d")
    import asyncio

    asyncio.run(j.close())
    append_to(
        j.path, [ev.Notice(message="scorecard"), ev.StepOutput(host="h", step="s", lines=("x",))]
    )
    assert [type(e).__name__ for e in read_journal(j.path)] == ["Notice"]
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
