"""The per-(service, inventory) rollout lock: refuse, stale, break, release."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from console.store.lock import LockHeld, RolloutLock, lock_path, read_lock


def take(tmp: Path, rid: str = "r1", **kw: object) -> RolloutLock:
    return RolloutLock.acquire(tmp, service="shop", inventory="inv.yaml", rollout_id=rid, **kw)  # type: ignore[arg-type]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_file_mode_and_contents(tmp_path: Path) -> None:
    lock = take(tmp_path)
    assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
    info = read_lock(lock.path)
    assert info is not None
    assert (info.pid, info.host, info.rollout_id, info.service) == (
        os.getpid(),
        socket.gethostname(),
        "r1",
        "shop",
    )
    assert info.inventory == os.path.abspath("inv.yaml")
    lock.release()
    assert not lock.path.exists()
    lock.release()  # idempotent


def test_second_rollout_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with take(tmp_path, "first"):
        with pytest.raises(LockHeld) as exc:
            take(tmp_path, "second")
        msg = str(exc.value)
        assert "rollout first" in msg and f"pid {os.getpid()}" in msg and "started" in msg
        assert not exc.value.stale
        # --break-lock never breaks a live holder on this machine
        with pytest.raises(LockHeld):
            take(tmp_path, "third", break_lock=True)
    take(tmp_path, "fourth").release()  # released by the with block


def test_other_service_or_inventory_is_a_different_lock(tmp_path: Path) -> None:
    with take(tmp_path):
        RolloutLock.acquire(
            tmp_path, service="cart", inventory="inv.yaml", rollout_id="x"
        ).release()
        RolloutLock.acquire(
            tmp_path, service="shop", inventory="other.yaml", rollout_id="y"
        ).release()


def _plant(tmp: Path, pid: int, host: str | None = None) -> Path:
    path = lock_path(tmp, "shop", "inv.yaml")
    data = {
        "pid": pid,
        "user": "ghost",
        "host": host or socket.gethostname(),
        "started": 1_700_000_000.0,
        "rollout_id": "old",
        "service": "shop",
        "inventory": os.path.abspath("inv.yaml"),
    }
    path.write_text(json.dumps(data))
    return path


def test_stale_lock_is_reported_and_broken_only_on_request(tmp_path: Path) -> None:
    _plant(tmp_path, dead_pid())
    with pytest.raises(LockHeld) as exc:
        take(tmp_path)
    assert exc.value.stale
    assert "stale lock" in str(exc.value) and "--break-lock" in str(exc.value)
    assert "ghost" in str(exc.value)
    lock = take(tmp_path, "new", break_lock=True)
    assert lock.broken is not None and lock.broken.rollout_id == "old"
    assert read_lock(lock.path).rollout_id == "new"  # type: ignore[union-attr]
    lock.release()


def test_lock_from_another_machine_needs_break_lock(tmp_path: Path) -> None:
    _plant(tmp_path, 1, host="elsewhere.example")
    with pytest.raises(LockHeld, match=r"elsewhere\.example"):
        take(tmp_path)
    take(tmp_path, break_lock=True).release()


def test_release_does_not_remove_someone_elses_lock(tmp_path: Path) -> None:
    lock = take(tmp_path)
    _plant(tmp_path, 4242, host="elsewhere.example")  # somebody broke ours and took it
    lock.release()
    assert lock.path.exists()


def test_released_on_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), take(tmp_path) as lock:
        raise RuntimeError("boom")
    assert not lock.path.exists()
