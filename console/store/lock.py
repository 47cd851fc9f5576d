"""One rollout at a time per (service, inventory): a lock file in the state directory.

The file is created atomically with ``O_CREAT | O_EXCL`` (mode 0600) and holds JSON:
pid, user (the Unix account), operator (``--operator``), host, start time, rollout id,
service, inventory. It is the fast path on one machine and what ``rolldeck ps`` reads:
the fleet lock and the host leases (:mod:`console.engine.leases`) are what two
consoles on two machines, or with two inventory paths, see of each other. A second rollout finds it
and is refused with a message naming the holder. A lock whose pid is dead on this
machine is *stale*: it is reported as such and only removed when the operator passes
``--break-lock`` (the engine journals that). A lock held by a live process on this
machine is never broken. Release is idempotent and only removes our own lock.

Locks are for people as much as for processes: the holder may leave a message
(``--lock-message``), and rewrites the file's ``heartbeat`` every few seconds from a
daemon thread. A lock is also stale when its heartbeat stopped for a few intervals,
which is the only signal for a lock taken on another machine (a shared state
directory). ``--lock-wait`` waits for a live holder to let go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from console.core.commands import default_operator
from console.core.errors import RolldeckError
from console.core.safe_files import create_private, read_private, write_atomic
from console.core.text import printable

LOCK_POLL = 1.0  # seconds between two looks at a held lock while --lock-wait waits
HEARTBEAT_EVERY = 5.0  # seconds between two rewrites of a held lock
STALE_AFTER_BEATS = 4  # missed intervals before a lock counts as stale


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
    message: str = ""  # --lock-message: what the holder is doing, for whoever finds it
    heartbeat: float = 0.0  # rewritten every HEARTBEAT_EVERY s while held; 0: never
    operator: str = ""  # --operator (the Unix account when not given)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        beat = ""
        if self.heartbeat:
            beat = f", last heartbeat {max(0.0, time.time() - self.heartbeat):.0f}s ago"
        said = f', message "{self.message}"' if self.message else ""
        who = self.user if self.operator in ("", self.user) else f"{self.operator} ({self.user})"
        # A lock file is written by whoever holds it (maybe another user): its words
        # reach the terminal escaped, wherever this description is printed.
        return printable(
            f"rollout {self.rollout_id} by {who} on {self.host} "
            f"(pid {self.pid}, started {when}{beat}{said})"
        )

    def stale_since(self) -> str:
        """When the holder stopped beating (or started, with no heartbeat), UTC."""
        at = self.heartbeat or self.started
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else "unknown"

    @property
    def heartbeat_lost(self) -> bool:
        """No heartbeat for STALE_AFTER_BEATS intervals (the owner's machine or process
        is gone, or hung): the only staleness signal for a lock from another machine."""
        return bool(self.heartbeat) and (
            time.time() - self.heartbeat > HEARTBEAT_EVERY * STALE_AFTER_BEATS
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
            message=str(data.get("message", "")),
            heartbeat=float(data.get("heartbeat", 0.0) or 0.0),
            operator=str(data.get("operator", "") or ""),
        )


def lock_path(state_dir: Path, service: str, inventory: str) -> Path:
    """``lock-<service>-<hash of the inventory's absolute path>.lock``."""
    inv = os.path.abspath(inventory) if inventory else ""
    digest = hashlib.sha256(inv.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", service)[:64]
    return state_dir / f"lock-{safe}-{digest}.lock"


def lock_files(state_dir: Path) -> list[Path]:
    """Every lock file of the state directory (see :func:`lock_path`), sorted."""
    try:
        return sorted(p for p in state_dir.glob("lock-*.lock") if not p.is_symlink())
    except OSError:
        return []


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
        return LockInfo.from_json(json.loads(read_private(path, limit=1 << 16)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(info: LockInfo | None, path: Path) -> bool:
    """Dead pid on this machine, or a torn file older than a few seconds."""
    if info is None:
        try:
            return time.time() - path.lstat().st_mtime > 5.0  # a planted link: its own age
        except FileNotFoundError:
            return True
    if info.heartbeat_lost:
        return True
    return info.host == socket.gethostname() and not _pid_alive(info.pid)


class RolloutLock:
    """Held by this process; ``release()`` on every exit path (or use ``with``)."""

    def __init__(self, path: Path, info: LockInfo, broken: LockInfo | None) -> None:
        self.path = path
        self.info = info
        self.broken = broken  # the stale lock we broke, to be journaled
        self._held = True
        self._stop_beat = threading.Event()
        self._beat: threading.Thread | None = None

    def start_heartbeat(self, every: float = HEARTBEAT_EVERY) -> None:
        """Rewrite the lock's heartbeat every ``every`` seconds until release(), on a
        daemon thread: independent of whichever event loop (headless, the console's
        engine thread) runs the rollout, and never on one."""
        if self._beat is not None or not self._held:
            return
        self._beat = threading.Thread(
            target=self._beating, args=(every,), name="rolldeck-lock-heartbeat", daemon=True
        )
        self._beat.start()

    def _beating(self, every: float) -> None:
        while not self._stop_beat.wait(every):
            if not self.beat():
                return

    def beat(self) -> bool:
        """Rewrite the heartbeat now (atomically: temp file, then rename). False when
        the lock is no longer ours (broken and taken): then it is left alone."""
        current = read_lock(self.path)
        if current is None or (current.pid, current.rollout_id) != (
            self.info.pid,
            self.info.rollout_id,
        ):
            return False
        self.info = replace(self.info, heartbeat=time.time())
        with contextlib.suppress(OSError):  # fresh O_EXCL|O_NOFOLLOW temp file, renamed
            write_atomic(self.path, json.dumps(asdict(self.info)).encode())
        return True

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
        message: str = "",
        wait: float = 0.0,
        on_wait: Callable[[LockHeld], None] | None = None,
        heartbeat: bool = True,
        operator: str = "",
    ) -> RolloutLock:
        """``resume_of``: the rollout being resumed; its own stale lock (its console
        died) is taken over without ``--break-lock`` (``broken`` says so, to journal).
        ``wait``: seconds to wait for a live holder to let go (``--lock-wait``),
        ``on_wait`` told once what it waits for; a stale lock is never waited for.
        ``heartbeat``: keep the lock's heartbeat fresh until release()."""
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                lock = cls._acquire(
                    state_dir,
                    service=service,
                    inventory=inventory,
                    rollout_id=rollout_id,
                    break_lock=break_lock,
                    resume_of=resume_of,
                    message=message,
                    operator=operator,
                )
            except LockHeld as exc:
                left = deadline - time.monotonic()
                if exc.stale or left <= 0:
                    raise
                if on_wait is not None and not told:
                    on_wait(exc)
                    told = True
                time.sleep(min(LOCK_POLL, left))
                continue
            if heartbeat:
                lock.start_heartbeat()
            return lock

    @classmethod
    def _acquire(
        cls,
        state_dir: Path,
        *,
        service: str,
        inventory: str,
        rollout_id: str,
        break_lock: bool,
        resume_of: str | None,
        message: str,
        operator: str = "",
    ) -> RolloutLock:
        path = lock_path(state_dir, service, inventory)
        info = LockInfo(
            pid=os.getpid(),
            user=default_operator(),
            host=socket.gethostname(),
            started=time.time(),
            rollout_id=rollout_id,
            service=service,
            inventory=os.path.abspath(inventory) if inventory else "",
            message=message,
            heartbeat=time.time(),
            operator=operator or default_operator(),
        )
        broken: LockInfo | None = None
        for _ in range(3):
            try:
                fd = create_private(path)  # O_EXCL | O_NOFOLLOW, 0600
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
                    since = f", stale since {holder.stale_since()}" if holder else ""
                    raise LockHeld(
                        f"stale lock on {service}: {who} is gone{since}; "
                        "rolldeck run, resume and rollback take it over with --break-lock "
                        f"--reason TEXT (lock file {path})",
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
        self._stop_beat.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
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
