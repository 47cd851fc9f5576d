"""The attach wire format: JSON objects, one per line, over a Unix stream socket.

Versioned hello both ways, then the server sends the snapshot (the events so far,
framed by ``snapshot`` / ``snapshot_end``), then the live stream; the client sends
commands. Who the client is comes from the kernel (:func:`peer_uid`), never from
the wire: the server journals that Unix user with every command, beside the
``operator`` label the client sent, and tells the client in its hello ("user").
Every line is bounded (:data:`MAX_LINE`), so a peer cannot make the other
buffer without limit.

Client -> server::

    {"type": "hello", "version": 1, "read_only": false, "mode": "attach" | "probe"}
    {"type": "command", "command": {...console.core.commands.Command.to_json()...}}

Server -> client::

    {"type": "hello", "version": 1, "rollout_id": ..., "read_only": ..., "pid": ...,
     "user": ..., "summary": {...}}          # probe: the hello is all, then bye
    {"type": "snapshot", "count": N}  N x {"type": "event", "event": {...}}
    {"type": "snapshot_end"}
    {"type": "event", "event": {...}}        # live
    {"type": "stats", "open_connections": n, "clients": k, "dropped": d}
    {"type": "refused", "command": name, "message": why}
    {"type": "error", "message": why}        # then the server hangs up
    {"type": "bye", "reason": "finished" | "overflow" | "shutdown" | "probe"}
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from console.core.errors import RolldeckError

VERSION = 1
MAX_LINE = 8 * 1024 * 1024  # server -> client: RolloutStarted carries the spec and hosts
MAX_CLIENT_LINE = 64 * 1024  # client -> server: hellos and commands are small
HELLO_TIMEOUT = 5.0
SOCKET_SUFFIX = ".sock"
SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes with the NUL; keep a margin


# Peer credentials of a Unix socket: SO_PEERCRED (Linux: struct ucred, pid/uid/gid),
# LOCAL_PEERCRED (macOS/FreeBSD: struct xucred, version/uid/ngroups/groups[16], level
# SOL_LOCAL = 0). Python's stdlib has no getpeereid(); a platform with neither cannot
# say who connected (the attach server then refuses to share its socket with a group).
_UCRED = "3i"
_XUCRED = "IIh16I"
_SOL_LOCAL = 0
PEER_CREDENTIALS = hasattr(socket, "SO_PEERCRED") or hasattr(socket, "LOCAL_PEERCRED")


def peer_uid(sock: socket.socket | Any) -> int | None:
    """The effective uid of the process at the other end of a connected Unix socket,
    as the kernel recorded it at connect(); None where the platform cannot say."""
    if hasattr(socket, "SO_PEERCRED"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(_UCRED))
        _pid, uid, _gid = struct.unpack(_UCRED, raw)
        return int(uid)
    local = getattr(socket, "LOCAL_PEERCRED", None)
    if local is not None:  # not exercised on Linux, where SO_PEERCRED answers
        raw = sock.getsockopt(_SOL_LOCAL, local, struct.calcsize(_XUCRED))
        _version, uid = struct.unpack_from("II", raw)
        return int(uid)
    return None


class ProtocolError(RolldeckError):
    """The peer sent something that is not this protocol (or too much of it)."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at end of stream."""
    try:
        line = await reader.readline()
    except ValueError as exc:  # asyncio's limit overrun
        raise ProtocolError("line too long") from exc
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # torn by a hang-up
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ProtocolError("not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("not a message object")
    return obj


def check_hello(obj: dict[str, Any] | None) -> dict[str, Any]:
    if obj is None:
        raise ProtocolError("the peer hung up before its hello")
    if obj.get("type") == "error":
        raise ProtocolError(str(obj.get("message") or "refused"))
    if obj.get("type") != "hello":
        raise ProtocolError(f"expected a hello, got {obj.get('type')!r}")
    if obj.get("version") != VERSION:
        raise ProtocolError(
            f"protocol version {obj.get('version')!r} is not supported (this is {VERSION})"
        )
    return obj


def socket_path_for(state_dir: str | os.PathLike[str], rollout_id: str) -> Path:
    """``<state_dir>/<rollout_id>.sock``."""
    return Path(state_dir) / f"{rollout_id}{SOCKET_SUFFIX}"


def proc_fd_available() -> bool:
    """Linux: a directory can be named through an ``O_PATH`` handle in /proc/self/fd."""
    return hasattr(os, "O_PATH") and os.path.isdir("/proc/self/fd")


@contextlib.contextmanager
def addressable(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in a ``sockaddr_un`` (108 bytes on Linux, 104 on
    macOS): the path itself when short, else, on Linux, ``/proc/self/fd/N/<name>``
    through an open handle on its directory (deep pytest or XDG state directories
    exceed the limit); elsewhere (macOS, the BSDs: no ``O_PATH``, no /proc) through a
    symlink to the directory in a fresh private directory under /tmp. A name too long
    even so is an OSError saying to choose a shorter state directory."""
    text = str(path)
    if len(os.fsencode(text)) < SUN_PATH_MAX:
        yield text
        return
    if proc_fd_available():
        fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}/{path.name}"
        finally:
            os.close(fd)
        return
    base = "/tmp" if os.access("/tmp", os.W_OK | os.X_OK) else None
    short = tempfile.mkdtemp(prefix="rd", dir=base)  # 0700: no one else can swap the link
    link = os.path.join(short, "d")
    try:
        os.symlink(path.parent, link)
        name = f"{link}/{path.name}"
        if len(os.fsencode(name)) >= SUN_PATH_MAX:
            raise OSError(
                errno.ENAMETOOLONG,
                f"the attach socket name {path.name!r} is too long for a Unix socket "
                f"address on this system (at most {SUN_PATH_MAX} bytes); use a shorter "
                "rollout id, or a shorter ROLLDECK_STATE_DIR (--state-dir)",
            )
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(link)
        with contextlib.suppress(OSError):
            os.rmdir(short)


def socket_alive(path: Path, timeout: float = 0.5) -> bool:
    """Something accepts connections on this Unix socket right now."""
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        with addressable(path) as name:
            s.connect(name)
    except OSError:
        return False
    finally:
        s.close()
    return True
