"""Reopening a journal to append to it after a crash (``Journal.open_existing``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from console.core import events as ev
from console.store.journal import Journal, read_header, read_journal


def tear(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b'{"kind":"notice","message":"torn by a cra')  # the console died here


async def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    j = Journal.create(tmp_path, "r1", {"who": "alice"})
    j.append(ev.Notice(message="first"))
    await j.flush()
    await j.close()
    tear(j.path)
    again = Journal.open_existing(j.path)
    again.start()
    again.append(ev.Notice(message="after the resume"))
    await again.close()
    assert [e.message for e in read_journal(j.path)] == ["first", "after the resume"]  # type: ignore[attr-defined]
    assert read_header(j.path)["who"] == "alice"
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600


async def test_an_intact_journal_is_appended_to_as_is(tmp_path: Path) -> None:
    j = Journal.create(tmp_path, "r2")
    j.append(ev.Notice(message="one"))
    await j.close()
    before = j.path.read_bytes()
    again = Journal.open_existing(j.path)
    again.append(ev.Notice(message="two"))
    await again.close()
    assert j.path.read_bytes().startswith(before)
    assert [e.message for e in read_journal(j.path)] == ["one", "two"]  # type: ignore[attr-defined]
