"""A start does not replay every finished rollout (issue 13): ``rolldeck run`` and
``rolldeck resume`` look for unfinished rollouts in the state directory, and a
journal whose last line ends its rollout for good is told from its end alone.
Anything unsure (torn, paused, events after the end, a huge last line) is still
replayed whole, so the hints are the same as before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from console.core import events as ev
from console.resume import find_rollout, unfinished_hints
from console.store.journal import TAIL_BYTES, Journal, append_to, last_line


def journal(state: Path, rid: str, *events: ev.Event, service: str = "web") -> Path:
    j = Journal.create(state, rid)
    asyncio.run(j.close())
    path = j.path
    started = ev.RolloutStarted(
        rollout_id=rid,
        service=service,
        version="2.0",
        operator="ops",
        spec_path="/x/spec.yaml",
        spec_hash="sha256:0",
        spec_text="service: web\n",
        inventory_path="/x/inv.yaml",
        batches=(("a",),),
    )
    append_to(path, [started, *events])
    return path


def finished(outcome: ev.Outcome) -> ev.RolloutFinished:
    return ev.RolloutFinished(outcome=outcome, exit_code=ev.OUTCOME_EXIT_CODES[outcome])


def test_last_line_reads_the_end_only(tmp_path: Path) -> None:
    path = journal(tmp_path, "web-1", finished(ev.Outcome.SUCCEEDED))
    last = last_line(path)
    assert last is not None and last["kind"] == "rollout_finished"
    assert last["outcome"] == "succeeded"
    with path.open("ab") as f:
        f.write(b'{"kind":"notice","mess')  # torn by a crash mid-write
    assert last_line(path) is None
    long = tmp_path / "long.jsonl"
    long.write_bytes(b'{"kind":"notice","message":"' + b"x" * TAIL_BYTES + b'"}\n')
    assert last_line(long) is None  # its start is before the bytes read: unsure
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    assert last_line(link) is None  # never through a symlink


@pytest.mark.parametrize(
    ("tail", "hinted"),
    [
        ([finished(ev.Outcome.SUCCEEDED)], False),
        ([finished(ev.Outcome.FAILED)], False),
        ([finished(ev.Outcome.PAUSED)], True),
        ([], True),  # interrupted: no end at all
        # ended, then more events (a resume appends to the same journal): replayed
        ([finished(ev.Outcome.PAUSED), ev.Notice(message="resumed")], True),
    ],
)
def test_hints_are_those_of_a_whole_replay(
    tmp_path: Path, tail: list[ev.Event], hinted: bool
) -> None:
    journal(tmp_path, "web-20261203T000000Z-aaaa", *tail)
    hints = unfinished_hints(tmp_path, "web")
    assert len(hints) == int(hinted), hints
    if hinted:
        assert "web-20261203T000000Z-aaaa" in hints[0]
        assert find_rollout(tmp_path, None, "web").rollout_id == "web-20261203T000000Z-aaaa"


def test_many_finished_journals_are_not_replayed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for i in range(30):
        journal(tmp_path, f"web-{i:04d}", finished(ev.Outcome.SUCCEEDED))
    journal(tmp_path, "web-paused", finished(ev.Outcome.PAUSED))
    import console.resume as resume

    replayed: list[Path] = []
    real = resume.replay

    def counting(path: Path) -> resume.Replay:
        replayed.append(path)
        return real(path)

    monkeypatch.setattr(resume, "replay", counting)
    hints = unfinished_hints(tmp_path, "web")
    assert [p.name for p in replayed] == ["web-paused.jsonl"]
    assert len(hints) == 1 and "web-paused" in hints[0]
