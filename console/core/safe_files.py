"""Files in the state directory that nobody else can redirect.

rolldeck often runs as root, and its state directory (journals, lock files and their
heartbeat, attach sockets, detached logs) is a place where a symlink planted by
another user would turn a routine write into an overwrite of any file on the machine.
Two rules close that, as OpenSSH does for ``~/.ssh``:

- **The directory is trusted or refused.** :func:`ensure_private_dir` creates a
  missing one 0700 and refuses one that is not owned by the effective user, or is
  writable by group or others, or sits below a directory another user could rename
  it out of (a parent owned by someone other than root or the user, or writable by
  group or others without the sticky bit, as ``/tmp`` has). The error names the
  path, the mode and the fix. Group *read and search* (0750) are allowed: that is
  how ``--attach-group`` shares a rollout's socket (0660) with a team; group *write*
  is not. A reader (``attach``, ``ps``, ``history``, ``show``) may use a directory
  owned by another user (``shared=True``), under the same mode rule.
- **No write follows a name.** Files are created with ``O_CREAT | O_EXCL |
  O_NOFOLLOW`` (:func:`create_private`), rewritten through a fresh temporary file
  made the same way and renamed over the old one (:func:`write_atomic`), appended to
  with ``O_NOFOLLOW`` only when they are regular files of ours (:func:`open_append`),
  and read with ``O_NOFOLLOW`` (:func:`read_private`). A symlink or a file left from
  when the directory was loose is never written through; it makes the operation fail
  with an error naming it.

Every function here is blocking (a few syscalls): call them off an event loop where
that matters (the journal's writer does).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import stat
from pathlib import Path

from console.core.errors import InputError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDirectory(InputError):
    """A state or config directory rolldeck refuses to write in (exit 2)."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _writable_by(mode: int) -> str:
    who = [w for bit, w in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if mode & bit]
    return " and ".join(who)


def check_private_dir(path: Path, *, shared: bool = False, what: str = "state directory") -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` (an existing, resolved
    directory) is safe to write in: owned by us (any owner when ``shared``: reading
    another user's rollouts), not writable by group or others, and every parent owned
    by root, by us (or by the directory's owner) and writable by nobody else unless
    sticky."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory", field="--state-dir")
    me = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    if not shared and st.st_uid != me:
        raise UnsafeDirectory(
            f"{what} {path} is owned by {_owner(st.st_uid)}, not by you ({_owner(me)}): "
            f"its owner could redirect what rolldeck writes there; use a directory of "
            f"your own (--state-dir), or fix: chown {_owner_name(me)} {path} && "
            f"chmod 700 {path}",
            field="--state-dir",
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDirectory(
            f"{what} {path} is mode {mode:04o}, writable by {_writable_by(mode)}: anyone "
            f"there could plant a symlink for rolldeck to write through; fix: chmod 700 "
            f"{path} (or chmod 750 to share attach sockets with a group: --attach-group)",
            field="--state-dir",
        )
    trusted = {0, me, st.st_uid}
    parent = path.parent
    while True:
        pst = os.stat(parent)
        pmode = stat.S_IMODE(pst.st_mode)
        if pst.st_uid not in trusted:
            raise UnsafeDirectory(
                f"{what} {path} is inside {parent}, owned by {_owner(pst.st_uid)}, who "
                f"could move it and put another in its place; use a directory outside "
                f"it (--state-dir)",
                field="--state-dir",
            )
        if pmode & (stat.S_IWGRP | stat.S_IWOTH) and not pmode & stat.S_ISVTX:
            raise UnsafeDirectory(
                f"{what} {path} is inside {parent}, mode {pmode:04o}, writable by "
                f"{_writable_by(pmode)} without the sticky bit: they could move it and "
                f"put another in its place; fix: chmod go-w {parent}",
                field="--state-dir",
            )
        if parent.parent == parent:
            return
        parent = parent.parent


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def ensure_private_dir(
    path: str | os.PathLike[str], *, shared: bool = False, what: str = "state directory"
) -> Path:
    """The directory, resolved (no symlink left in its name), created 0700 when
    missing, and checked by :func:`check_private_dir`."""
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    except OSError as exc:
        raise UnsafeDirectory(
            f"cannot create {what} {p}: {exc.strerror}", field="--state-dir"
        ) from None
    resolved = Path(os.path.realpath(p))
    check_private_dir(resolved, shared=shared, what=what)
    return resolved


def create_private(path: Path, *, append: bool = False) -> int:
    """A new file, 0600, that did not exist (not even as a symlink): its descriptor.
    ``FileExistsError`` when anything is at that name."""
    return os.open(path, _CREATE | (os.O_APPEND if append else 0), PRIVATE_FILE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path``'s content in one step: a fresh temporary file with an
    unguessable name in the same directory (O_EXCL | O_NOFOLLOW, 0600), written,
    fsync'd and renamed over ``path`` (a rename replaces a symlink at ``path``, it
    never writes through it)."""
    for _ in range(8):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = create_private(tmp)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _check_ours(fd: int, path: str | os.PathLike[str]) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise PermissionError(errno.EPERM, "not a regular file", str(path))
    if st.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, f"owned by {_owner(st.st_uid)}, not by you", str(path))


def open_append(path: str | os.PathLike[str], *, read: bool = False) -> int:
    """An existing file of ours opened to append (``read``: and read), never through a
    symlink (``ELOOP``) and never another user's file or a non-regular one."""
    flags = (os.O_RDWR if read else os.O_WRONLY) | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags | os.O_NONBLOCK)  # a planted FIFO must not block the open
    try:
        _check_ours(fd, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(
    path: str | os.PathLike[str], *, limit: int | None = None, tail: bool = False
) -> bytes:
    """A regular file's bytes (up to ``limit``; ``tail``: its last ``limit`` bytes),
    never through a symlink (``ELOOP``): a planted link to a file only rolldeck's user
    can read is not read, nor shown."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(errno.EPERM, "not a regular file", str(path))
        os.set_blocking(fd, True)
        if tail and limit is not None and st.st_size > limit:
            os.lseek(fd, st.st_size - limit, os.SEEK_SET)
        chunks: list[bytes] = []
        left = limit
        while left is None or left > 0:
            chunk = os.read(fd, 1 << 20 if left is None else min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            if left is not None:
                left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "UnsafeDirectory",
    "check_private_dir",
    "create_private",
    "ensure_private_dir",
    "open_append",
    "read_private",
    "write_atomic",
]
