"""State files that cannot be redirected (issue 18, point 2).

A real second Unix user plants symlinks (and a file of its own) at the names rolldeck
writes in a state directory it could write to: rolldeck refuses that directory (path,
mode, fix; exit 2); once the directory is tightened (the planted names stay), nothing
rolldeck does writes outside it: the symlinks' root-only target keeps its bytes and
mtime, and every other file outside the state directory too.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from console.attach.server import AttachServer
from console.cli import main as cli_main
from console.core import events as ev
from console.core.safe_files import (
    UnsafeDirectory,
    create_private,
    ensure_private_dir,
    open_append,
    write_atomic,
)
from console.drill import append_event
from console.store.journal import (
    Journal,
    JournalError,
    append_to,
    list_journals,
    read_lines,
    resolve_state_dir,
)
from console.store.lock import LockHeld, RolloutLock, lock_path
from tests.fixtures.second_user import OtherUser, other_user, shared_base  # noqa: F401
from tests.test_engine_helpers import make_engine, spec_from


def snapshot(base: Path, skip: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``base`` outside ``skip``: (mtime_ns, mode, content)."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n != skip]
        for n in filenames:
            p = d / n
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(p)] = (st.st_mtime_ns, st.st_mode, data)
    return out


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


# -- the directory rule ---------------------------------------------------------------


def test_loose_or_foreign_state_dir_refused_with_path_mode_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "new" / "state"
    assert resolve_state_dir(fresh) == fresh.resolve()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700  # created private

    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(UnsafeDirectory) as info:
        resolve_state_dir(loose)
    msg = str(info.value)
    assert str(loose) in msg and "0777" in msg and f"chmod 700 {loose}" in msg
    for argv in (["resume", "--yes"], ["history"], ["ps"], ["show", "x"]):
        code, err = cli(capsys, *argv, "--state-dir", str(loose))
        assert code == 2, argv
        assert str(loose) in err and "0777" in err and "chmod 700" in err, err
        assert "Traceback" not in err
    loose.chmod(0o770)  # group-writable is refused too
    with pytest.raises(UnsafeDirectory, match="writable by group"):
        resolve_state_dir(loose)
    loose.chmod(0o750)  # group read and search: the --attach-group layout
    assert resolve_state_dir(loose) == loose.resolve()

    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, 54321, -1)  # an account that is not ours
    with pytest.raises(UnsafeDirectory, match="owned by uid 54321, not by you"):
        resolve_state_dir(foreign)
    code, err = cli(capsys, "resume", "--yes", "--state-dir", str(foreign))
    assert code == 2 and "owned by uid 54321" in err
    assert resolve_state_dir(foreign, shared=True) == foreign.resolve()  # reading is fine
    code, _ = cli(capsys, "history", "--state-dir", str(foreign))
    assert code == 0

    # A parent another user could rename the state directory out of.
    parent = tmp_path / "open-parent"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="without the sticky bit"):
        resolve_state_dir(parent / "state")
    parent.chmod(0o1777)  # like /tmp: others cannot move what is ours
    assert resolve_state_dir(parent / "state") == (parent / "state").resolve()

    # A symlinked name is resolved once; the files go to the real directory.
    link = tmp_path / "link"
    link.symlink_to(fresh)
    assert resolve_state_dir(link) == fresh.resolve()


def test_helpers_never_follow_a_name(tmp_path: Path) -> None:
    d = ensure_private_dir(tmp_path / "s")
    target = tmp_path / "target"
    target.write_bytes(b"keep\n")
    (d / "a").symlink_to(target)
    with pytest.raises(FileExistsError):
        create_private(d / "a")
    with pytest.raises(OSError):  # ELOOP
        open_append(d / "a")
    fifo = d / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):  # ENXIO: no reader; the open did not block on it
        open_append(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # with a reader: not a regular file
    try:
        with pytest.raises(PermissionError, match="not a regular file"):
            open_append(fifo)
    finally:
        os.close(fd)
    write_atomic(d / "a", b"new\n")  # replaces the link itself
    assert (d / "a").read_bytes() == b"new\n" and not (d / "a").is_symlink()
    assert stat.S_IMODE((d / "a").stat().st_mode) == 0o600
    assert target.read_bytes() == b"keep\n"
    assert sorted(p.name for p in d.iterdir()) == ["a", "fifo"]  # no temp file left


# -- a second user plants the names ---------------------------------------------------------


def _plant(user: OtherUser, names: list[Path], target: Path) -> None:
    for name in names:
        r = user.run("ln", "-s", str(target), str(name))
        assert r.returncode == 0, r.stderr
        assert name.is_symlink() and name.lstat().st_uid == user.uid


async def test_second_user_symlinks_are_refused_then_never_followed(
    other_user: OtherUser,  # noqa: F811
    shared_base: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = other_user
    secret = shared_base / "root-only"
    secret.write_bytes(b"root only, never lock JSON\n")
    secret.chmod(0o600)
    state = shared_base / "state"
    state.mkdir()
    state.chmod(0o777)  # as found: created by someone else's umask, or by hand
    service, inventory = "shop", str(shared_base / "hosts.ini")
    lock = lock_path(state, service, inventory)
    planted = [
        state / "r1.jsonl",  # a journal's name
        lock,  # the lock's name
        lock.with_name(f".{lock.name}.{os.getpid()}.tmp"),  # the old heartbeat temp name
        state / "r3.sock",  # an attach socket's name
        state / "r4.log",  # a detached log's name
    ]
    _plant(user, planted, secret)
    theirs = state / "r2.jsonl"  # a journal-looking file of theirs
    r = user.run("sh", "-c", f"printf '%s\\n' '{{\"kind\":\"journal\"}}' > {theirs}")
    assert r.returncode == 0, r.stderr

    # rolldeck refuses the directory as it is.
    code, err = cli(capsys, "resume", "--yes", "--state-dir", str(state))
    assert code == 2 and str(state) in err and "0777" in err and "chmod 700" in err
    with pytest.raises(UnsafeDirectory):
        resolve_state_dir(state)

    # The operator tightens it; what was planted stays.
    state.chmod(0o700)
    assert resolve_state_dir(state) == state.resolve()
    before = snapshot(shared_base, skip=state)
    secret_mtime = secret.stat().st_mtime_ns

    with pytest.raises(JournalError, match="already exists"):
        Journal.create(state, "r1")
    with pytest.raises(JournalError, match="cannot open"):
        Journal.open_existing(state / "r1.jsonl")
    with pytest.raises(JournalError):
        read_lines(state / "r1.jsonl")  # not read through the link either
    assert [p.name for p in list_journals(state)] == ["r2.jsonl"]
    with pytest.raises(JournalError, match="not by you"):
        append_to(theirs, [ev.Notice(message="x")])
    with pytest.raises(OSError):
        append_event(state / "r1.jsonl", ev.Notice(message="x"))

    # The lock: the planted link reads as an unreadable lock (live while it is young:
    # refused), is broken once stale without being followed, and the heartbeat
    # rewrites never go through the old temp name.
    with pytest.raises(LockHeld, match="unreadable lock file"):
        RolloutLock.acquire(
            state, service=service, inventory=inventory, rollout_id="r5", heartbeat=False
        )
    old = time.time_ns() - 60 * 10**9  # planted a minute ago
    os.utime(lock, ns=(old, old), follow_symlinks=False)
    held = RolloutLock.acquire(
        state,
        service=service,
        inventory=inventory,
        rollout_id="r5",
        break_lock=True,
        heartbeat=False,
    )
    try:
        assert not lock.is_symlink() and lock.lstat().st_uid == os.geteuid()
        for _ in range(3):
            assert held.beat()
        assert json.loads(lock.read_text())["rollout_id"] == "r5"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert planted[2].is_symlink()  # left alone, not written through
    finally:
        held.release()

    # The attach socket replaces the link (a dead name), never binds through it.
    journal = Journal.create(state, "r3")
    run = make_engine(spec_from(), 2, journal=journal, rollout_id="r3")
    server = AttachServer(run.engine, state / "r3.sock")
    server.start()
    try:
        assert stat.S_ISSOCK((state / "r3.sock").lstat().st_mode)
    finally:
        await server.close()
        await journal.close()

    # Theme and config: the same rules in $XDG_CONFIG_HOME/rolldeck.
    from themes.store import config_path, save_theme_choice

    monkeypatch.setenv("XDG_CONFIG_HOME", str(state / "cfg"))
    cfg = config_path().parent
    cfg.mkdir(parents=True)
    cfg.chmod(0o777)
    with pytest.raises(PermissionError, match="0777"):
        save_theme_choice("rolldeck-light")
    cfg.chmod(0o700)
    config_path().symlink_to(secret)
    save_theme_choice("rolldeck-light")
    assert json.loads(config_path().read_text()) == {"theme": "rolldeck-light"}
    assert not config_path().is_symlink()

    assert secret.read_bytes() == b"root only, never lock JSON\n"
    assert secret.stat().st_mtime_ns == secret_mtime
    assert snapshot(shared_base, skip=state) == before  # nothing outside was written
