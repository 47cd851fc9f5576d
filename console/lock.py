"""One rollout at a time per (service, inventory): a lock file in the state directory.

The file is created atomically with ``O_CREAT | O_EXCL`` (mode 0600) and holds JSON:
pid, user, host, start time, rollout id, service, inventory. A second rollout finds it
and is refused with a message naming the holder. A lock whose pid is dead on this
machine is *stale*: it is reported as such and only removed when the operator passes
``--break-lock`` (the engine journals that). A lock held by a live process on this
machine is never broken. Release is idempotent and only removes our own lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from console.commands import default_operator
from console.errors import RolldeckError


class LockHeld(RolldeckError):
    """Another rollout holds the lock (or a stale one is in the way)."""

    def __init__(self, message: str, info: LockInfo | None, *, stale: bool) -> None:
        super().__init__(message)
        self.info = info
        self.stale = stale


@dataclass(frozen=True, slots=True)
class LockInfo:
    pid: int
    user: str
    host: str
    started: float
    rollout_id: str
    service: str
    inventory: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (
            f"rollout {self.rollout_id} by {self.user} on {self.host} "
            f"(pid {self.pid}, started {when})"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LockInfo:
        return cls(
            pid=int(data["pid"]),
            user=str(data.get("user", "?")),
            host=str(data.get("host", "?")),
            started=float(data.get("started", 0.0)),
            rollout_id=str(data.get("rollout_id", "?")),
            service=str(data.get("service", "?")),
            inventory=str(data.get("inventory", "")),
        )


def lock_path(state_dir: Path, service: str, inventory: str) -> Path:
    """``lock-<service>-<hash of the inventory's absolute path>.lock``."""
    inv = os.path.abspath(inventory) if inventory else ""
    digest = hashlib.sha256(inv.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", service)[:64]
    return state_dir / f"lock-{safe}-{digest}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_lock(path: Path) -> LockInfo | None:
    """The holder, or None when the file is missing or unreadable (torn by a crash)."""
    try:
        return LockInfo.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(info: LockInfo | None, path: Path) -> bool:
    """Dead pid on this machine, or a torn file older than a few seconds."""
    if info is None:
        try:
            return time.time() - path.stat().st_mtime > 5.0
        except FileNotFoundError:
            return True
    return info.host == socket.gethostname() and not _pid_alive(info.pid)


class RolloutLock:
    """Held by this process; ``release()`` on every exit path (or use ``with``)."""

    def __init__(self, path: Path, info: LockInfo, broken: LockInfo | None) -> None:
        self.path = path
        self.info = info
        self.broken = broken  # the stale lock we broke, to be journaled
        self._held = True

    @classmethod
    def acquire(
        cls,
        state_dir: Path,
        *,
        service: str,
        inventory: str,
        rollout_id: str,
        break_lock: bool = False,
        resume_of: str | None = None,
    ) -> RolloutLock:
        """``resume_of``: the rollout being resumed; its own stale lock (its console
        died) is taken over without ``--break-lock`` (``broken`` says so, to journal)."""
        path = lock_path(state_dir, service, inventory)
        info = LockInfo(
            pid=os.getpid(),
            user=default_operator(),
            host=socket.gethostname(),
            started=time.time(),
            rollout_id=rollout_id,
            service=service,
            inventory=os.path.abspath(inventory) if inventory else "",
        )
        broken: LockInfo | None = None
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = read_lock(path)
                stale = is_stale(holder, path)
                who = holder.describe() if holder else "an unreadable lock file"
                if not stale and not (break_lock and holder and holder.host != info.host):
                    raise LockHeld(
                        f"{service} is locked by {who}; lock file {path}",
                        holder,
                        stale=False,
                    ) from None
                own = (
                    resume_of is not None
                    and holder is not None
                    and (holder.rollout_id == resume_of)
                )
                if not (break_lock or own):
                    raise LockHeld(
                        f"stale lock on {service}: {who} is gone; "
                        f"pass --break-lock to break it (lock file {path})",
                        holder,
                        stale=True,
                    ) from None
                broken = holder
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            try:
                os.write(fd, json.dumps(asdict(info)).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            return cls(path, info, broken)
        raise LockHeld(f"could not take the lock {path}: contended", None, stale=False)

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Remove the lock file if it is still ours. Idempotent."""
        if not self._held:
            return
        self._held = False
        current = read_lock(self.path)
        if current is not None and (
            current.pid != self.info.pid or current.rollout_id != self.info.rollout_id
        ):
            return  # someone broke ours and took it: not ours to remove
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> RolloutLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
