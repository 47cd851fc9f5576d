"""known_hosts files: loaded once and shared, matched in memory, appended on TOFU.

asyncssh would re-read and re-parse the known_hosts file inside every connection's
``connection_made`` (blocking the event loop, once per host). Here each file set is
parsed once in a worker thread and reloaded only when a file's mtime or size changes,
and the parsed :class:`asyncssh.SSHKnownHosts` is handed to every connection.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True, slots=True)
class HostKeyVerdict:
    """What the host-key check decided for one handshake, for the error message."""

    lookup: str  # the name matched against known_hosts, with its port: "[127.0.0.1]:2222"
    presented: str  # "ssh-ed25519 SHA256:..."
    known: tuple[str, ...]  # fingerprints known_hosts holds for this host (empty: unknown)
    accepted: bool = False


def fingerprint(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint()}"


def lookup_name(host: str, port: int | None) -> str:
    """The name known_hosts files use: ``host``, or ``[host]:port`` off port 22."""
    return host if port in (None, 22) else f"[{host}]:{port}"


def entry_line(host: str, port: int | None, key: asyncssh.SSHKey) -> str:
    public = key.export_public_key("openssh").decode("ascii").split()
    return f"{lookup_name(host, port)} {public[0]} {public[1]}\n"


def trusted_keys(
    known: asyncssh.SSHKnownHosts, host: str, addr: str, port: int | None
) -> list[asyncssh.SSHKey]:
    """The plain host keys ``known`` trusts for this host (CA and revoked entries aside)."""
    return list(asyncssh.match_known_hosts(known, host, addr, port)[0])


def append_entry(path: str, line: str) -> None:
    """Append one known_hosts line; a new file (and directory) is private to the user."""
    target = Path(path).expanduser()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


class KnownHostsCache:
    """Parsed known_hosts per file set; blocking methods, call them via ``to_thread``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[tuple[tuple[int, int], ...], object]] = {}

    def load(self, paths: tuple[str, ...]) -> asyncssh.SSHKnownHosts:
        """The parsed union of ``paths``; a missing file counts as empty."""
        signature = tuple(_stat(p) for p in paths)
        with self._lock:
            cached = self._cache.get(paths)
            if cached is not None and cached[0] == signature:
                return cached[1]  # type: ignore[return-value]
        existing = [p for p, sig in zip(paths, signature, strict=True) if sig != (-1, -1)]
        known = asyncssh.read_known_hosts(existing) if existing else asyncssh.SSHKnownHosts()
        with self._lock:
            self._cache[paths] = (signature, known)
        return known


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


def resolve_paths(paths: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Expanded paths; the user's default file when none are given."""
    chosen = [p for p in (paths or []) if p and p.lower() != "none"]
    if not chosen:
        chosen = [DEFAULT_KNOWN_HOSTS]
    return tuple(str(Path(p).expanduser()) for p in chosen)
