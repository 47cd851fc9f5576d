"""The rollout journal: one append-only JSON-lines file per rollout, fsync'd.

Layout: the first line is a header (``{"kind": "journal", "format": 1, ...}``), then
every durable event (console.core.events.to_json), one per line. The first event is
``RolloutStarted``: who ran it, the spec's hash and (redacted) text, the plan.

Durability without stalling the event loop: :meth:`Journal.append` only enqueues; a
writer task takes everything enqueued so far, writes it and fsyncs it in one go on a
worker thread (group commit), then hands the batch, in order, to ``on_commit`` (the
engine publishes it to its consumers there). So an event is on disk before anyone sees
it, and many events written during one fsync share the next one.

Files are created with mode 0600, ``O_EXCL | O_NOFOLLOW``, in a state directory that
passed :func:`console.core.safe_files.check_private_dir`; appends and reads never
follow a symlink (see ``safe_files``). The header records the Unix user (from the
process's effective uid) beside the ``who`` label the operator chose.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from console.core.commands import unix_user
from console.core.errors import RolldeckError
from console.core.events import EVENT_TYPES, Event, from_json, to_json
from console.core.safe_files import create_private, ensure_private_dir, open_append, read_private

FORMAT = 1
SUFFIX = ".jsonl"


class JournalError(RolldeckError):
    """A journal that cannot be written or read."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/rolldeck``, else ``~/.local/state/rolldeck``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "rolldeck"


def resolve_state_dir(
    override: str | os.PathLike[str] | None = None, *, shared: bool = False
) -> Path:
    """The state directory, resolved, created 0700 if missing, and refused (exit 2,
    naming the path, the mode and the fix) when it is not ours or is writable by group
    or others. ``shared``: only reading or attaching (``attach``, ``ps``, ``history``,
    ``show``), so a directory owned by another user is fine (same mode rule)."""
    path = Path(override) if override else default_state_dir()
    return ensure_private_dir(path, shared=shared)


def journal_path(state_dir: Path, rollout_id: str) -> Path:
    return state_dir / f"{rollout_id}{SUFFIX}"


class Journal:
    """An open journal file. Use :meth:`create`, then ``start()`` the writer inside a
    task group, ``append`` events, and ``await close()``."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._pending: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self.on_commit: Callable[[list[Event]], None] | None = None
        # Called once when a write fails; later events are handed on but not written.
        self.on_error: Callable[[Exception], None] | None = None
        self.error: Exception | None = None
        self.max_pending = 20_000  # ephemeral events beyond this wait are dropped
        self.dropped = 0
        self.commits = 0  # fsync calls (group commits), for tests and benchmarks
        self.events_written = 0

    @classmethod
    def create(
        cls, state_dir: Path, rollout_id: str, header: dict[str, Any] | None = None
    ) -> Journal:
        """Create ``<state_dir>/<rollout_id>.jsonl`` (0600, must not exist) and write
        and fsync the header line."""
        path = journal_path(state_dir, rollout_id)
        try:
            fd = create_private(path, append=True)
        except FileExistsError as exc:
            raise JournalError(f"journal {path} already exists") from exc
        except OSError as exc:
            raise JournalError(f"cannot create journal {path}: {exc.strerror}") from exc
        head: dict[str, Any] = {"kind": "journal", "format": FORMAT, "rollout_id": rollout_id}
        head["created"] = time.time()
        head.update(header or {})
        head["uid"] = os.geteuid()  # who ran it, from the kernel; "who" is a label
        head["user"] = unix_user()
        _write_all(fd, [json.dumps(head, separators=(",", ":"))])
        return cls(path, fd)

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> Journal:
        """Reopen a journal to append to it (``rolldeck resume``: one rollout, one file).
        A torn last line (the console died mid-write) is cut off first, so the next
        event starts on a line of its own."""
        try:
            fd = open_append(path, read=True)
        except OSError as exc:
            raise JournalError(f"cannot open journal {path}: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            if tail and not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else 0)
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"cannot repair journal {path}: {exc.strerror}") from exc
        return cls(Path(path), fd)

    # -- writing ------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the group-commit writer on the running loop."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name=f"journal:{self.path.name}")
        return self._writer

    def append(self, event: Event) -> None:
        """Enqueue an event; it is written, fsync'd, then passed to ``on_commit``."""
        if self._closing:
            raise JournalError("journal is closed")
        if not event.durable and len(self._pending) >= self.max_pending:
            self.dropped += 1  # live output while the disk is slow: the tail survives
            return
        self._pending.append(event)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Until everything appended so far is on disk and handed on."""
        if self._writer is None:
            self._commit_sync()
            return
        await self._idle.wait()

    async def close(self) -> None:
        """Flush, stop the writer and close the file. Safe to call twice."""
        if self._fd < 0:
            return
        await self.flush()
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        os.close(self._fd)
        self._fd = -1

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch = list(self._pending)
                self._pending.clear()
                if self.error is None:
                    try:
                        lines = [_dumps(e) for e in batch if e.durable]
                        if lines:
                            await asyncio.to_thread(_write_all, self._fd, lines)
                            self.commits += 1
                            self.events_written += len(lines)
                    except Exception as exc:  # disk full, I/O error: say so, keep going
                        self.error = exc
                        if self.on_error is not None:
                            self.on_error(exc)
                if self.on_commit is not None:
                    self.on_commit(batch)
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return

    def _commit_sync(self) -> None:
        batch = list(self._pending)
        self._pending.clear()
        lines = [_dumps(e) for e in batch if e.durable]
        if lines:
            _write_all(self._fd, lines)
            self.commits += 1
            self.events_written += len(lines)
        if self.on_commit is not None and batch:
            self.on_commit(batch)
        self._idle.set()


def _dumps(event: Event) -> str:
    return json.dumps(to_json(event), separators=(",", ":"), default=str)


def _write_all(fd: int, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)


def append_to(path: str | os.PathLike[str], events: list[Event]) -> None:
    """Append durable events to a closed journal (a drill's scorecard after the run),
    fsync'd. Blocking: call it off the event loop (``asyncio.to_thread``)."""
    lines = [_dumps(e) for e in events if e.durable]
    if not lines:
        return
    try:
        fd = open_append(path)
    except OSError as exc:
        raise JournalError(f"cannot append to journal {path}: {exc.strerror}") from exc
    try:
        _write_all(fd, lines)
    finally:
        os.close(fd)


# -- reading ----------------------------------------------------------------------


def read_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every JSON object in the file. A torn last line (a crash mid-write) is dropped;
    a bad line anywhere else is corruption and raises JournalError."""
    try:
        raw = read_private(path)
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from exc
    lines = raw.split(b"\n")
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "kind" not in obj:
                raise ValueError("not an object with a kind")
        except ValueError as exc:
            if i == len(lines) - 1:  # no newline after it: torn by a crash
                break
            raise JournalError(f"{path}:{i + 1}: corrupt journal line") from exc
        out.append(obj)
    return out


TAIL_BYTES = 64 * 1024  # where a journal's last line is looked for


def last_line(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The journal's last complete JSON object, read from its end only; None when it
    cannot be told that way (unreadable, torn, or a last line longer than
    ``TAIL_BYTES``): the caller then reads the whole journal."""
    try:
        raw = read_private(path, limit=TAIL_BYTES, tail=True)
    except OSError:
        return None
    lines = raw.rstrip(b"\n").rsplit(b"\n", 1)
    if len(lines) < 2 and len(raw) >= TAIL_BYTES:
        return None  # the line may have started before the bytes read
    if not raw.endswith(b"\n"):
        return None  # torn by a crash mid-write
    try:
        obj = json.loads(lines[-1])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and "kind" in obj else None


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    lines = read_lines(path)
    if not lines or lines[0].get("kind") != "journal":
        raise JournalError(f"{path}: not a rolldeck journal")
    return lines[0]


def read_journal(path: str | os.PathLike[str]) -> list[Event]:
    """The journal's events, in order (header and unknown kinds skipped)."""
    return [from_json(obj) for obj in read_lines(path) if obj["kind"] in EVENT_TYPES]


def list_journals(state_dir: str | os.PathLike[str]) -> list[Path]:
    """Journal files in the state directory, oldest first."""
    d = Path(state_dir)
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir() if p.suffix == SUFFIX and _regular(p)]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def _regular(path: Path) -> bool:
    """A regular file itself, not a symlink to one (not followed: it is not ours)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False
