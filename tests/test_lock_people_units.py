"""Locks designed for people: message, heartbeat, staleness by heartbeat, waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from console.store.lock import (
    HEARTBEAT_EVERY,
    STALE_AFTER_BEATS,
    LockHeld,
    LockInfo,
    RolloutLock,
    is_stale,
    lock_path,
    read_lock,
)
from tests.waiting import wait_until_sync


def take(tmp: Path, rid: str = "r1", **kw: object) -> RolloutLock:
    return RolloutLock.acquire(tmp, service="shop", inventory="inv.yaml", rollout_id=rid, **kw)  # type: ignore[arg-type]


def plant(tmp: Path, **fields: object) -> Path:
    """A lock file as another holder left it."""
    info = LockInfo(
        pid=1,
        user="alice",
        host="elsewhere",
        started=time.time() - 600,
        rollout_id="theirs",
        service="shop",
        inventory=os.path.abspath("inv.yaml"),
        message="INC-7 hotfix",
        heartbeat=time.time(),
    )
    info = replace(info, **fields)  # type: ignore[arg-type]
    path = lock_path(tmp, "shop", "inv.yaml")
    path.write_text(json.dumps(asdict(info)))
    return path


def test_message_and_heartbeat_are_written_and_refreshed(tmp_path: Path) -> None:
    lock = take(tmp_path, message="deploying for INC-7", heartbeat=False)
    first = read_lock(lock.path)
    assert first is not None and first.message == "deploying for INC-7"
    assert first.heartbeat > 0
    lock.start_heartbeat(every=0.02)

    def advanced() -> bool:
        now = read_lock(lock.path)
        return now is not None and now.heartbeat > first.heartbeat

    wait_until_sync(advanced, what="the heartbeat to advance")
    now = read_lock(lock.path)
    assert now is not None
    assert now.message == "deploying for INC-7" and now.pid == os.getpid()
    assert oct(os.stat(lock.path).st_mode & 0o777) == "0o600"
    lock.release()
    assert not lock.path.exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_heartbeat_does_not_overwrite_a_lock_that_was_taken_over(tmp_path: Path) -> None:
    lock = take(tmp_path, heartbeat=False)
    plant(tmp_path)  # someone broke ours and took it
    assert lock.beat() is False
    holder = read_lock(lock.path)
    assert holder is not None and holder.rollout_id == "theirs"
    lock.release()
    assert lock.path.exists()  # not ours to remove


def test_a_live_lock_from_another_machine_is_held_and_described(tmp_path: Path) -> None:
    path = plant(tmp_path)
    assert not is_stale(read_lock(path), path)
    with pytest.raises(LockHeld) as err:
        take(tmp_path)
    assert not err.value.stale
    text = str(err.value)
    assert "alice on elsewhere" in text and '"INC-7 hotfix"' in text
    assert "last heartbeat 0s ago" in text


def test_no_heartbeat_for_n_intervals_is_stale_even_from_another_machine(tmp_path: Path) -> None:
    old = time.time() - HEARTBEAT_EVERY * (STALE_AFTER_BEATS + 1)
    path = plant(tmp_path, heartbeat=old)
    assert is_stale(read_lock(path), path)
    with pytest.raises(LockHeld) as err:
        take(tmp_path)
    assert err.value.stale
    assert "stale lock on shop" in str(err.value) and "INC-7 hotfix" in str(err.value)
    lock = take(tmp_path, break_lock=True)
    assert lock.broken is not None and lock.broken.rollout_id == "theirs"
    lock.release()


def test_a_recent_heartbeat_alone_does_not_make_a_lock_stale(tmp_path: Path) -> None:
    recent = time.time() - HEARTBEAT_EVERY * (STALE_AFTER_BEATS - 1)
    path = plant(tmp_path, heartbeat=recent)
    assert not is_stale(read_lock(path), path)


def test_lock_wait_waits_for_the_holder_to_let_go(tmp_path: Path) -> None:
    # The holder keeps the lock until told (a line on its stdin, or EOF), not for a
    # fixed time: the first take() must find it held however slow the machine is.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path;"
            " from console.store.lock import RolloutLock;"
            "lock = RolloutLock.acquire(Path(sys.argv[1]), service='shop',"
            " inventory='inv.yaml', rollout_id='first', message='hold on');"
            "print('held', flush=True); sys.stdin.readline(); lock.release()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=os.getcwd(),
    )
    assert holder.stdin is not None and holder.stdout is not None

    def let_go() -> None:
        if not holder.stdin.closed:  # type: ignore[union-attr]
            holder.stdin.close()  # type: ignore[union-attr]

    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(LockHeld) as err:
            take(tmp_path, wait=0.1)
        assert not err.value.stale and "hold on" in str(err.value)
        told: list[str] = []

        def waiting(exc: LockHeld) -> None:
            told.append(str(exc))
            let_go()  # now that we wait: the holder lets go, we get it on the next look

        lock = take(tmp_path, wait=20, on_wait=waiting)
        assert len(told) == 1 and "first" in told[0]
        assert read_lock(lock.path).rollout_id == "r1"  # type: ignore[union-attr]
        lock.release()
    finally:
        let_go()
        holder.wait(10)


def test_a_stale_lock_is_never_waited_for(tmp_path: Path) -> None:
    plant(tmp_path, host=os.uname().nodename, pid=_dead_pid())
    waited: list[str] = []
    with pytest.raises(LockHeld) as err:
        take(tmp_path, wait=30, on_wait=lambda exc: waited.append(str(exc)))
    assert err.value.stale and waited == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
