"""Keys of a simulated fleet: one ed25519 host key per host, one client key.

Each host has its own key so strict host-key checking means something (a test can
swap two hosts' ports and see it fail). ed25519 keys are cheap to make (1,000 in
well under a second) and are kept in DIR, so a restarted fleet shows the same keys.
Private key files are written 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

HOST_KEYS_FILE = "sim_host_keys"  # every host's private key, in host order
CLIENT_KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"


def write_private(path: Path, data: bytes | str) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def host_keys(directory: Path, count: int) -> list[asyncssh.SSHKey]:
    """``count`` host keys: those already in DIR first, new ones appended."""
    path = directory / HOST_KEYS_FILE
    keys: list[asyncssh.SSHKey] = []
    if path.exists():
        try:
            keys = list(asyncssh.read_private_key_list(str(path)))
        except (OSError, asyncssh.KeyImportError, ValueError):
            keys = []  # unreadable: start over; known_hosts is rewritten anyway
    if len(keys) < count:
        keys += [asyncssh.generate_private_key("ssh-ed25519") for _ in range(count - len(keys))]
        write_private(path, b"".join(k.export_private_key("openssh") for k in keys))
    return keys[:count]


def client_key(directory: Path) -> asyncssh.SSHKey:
    """The key the fleet accepts; written as DIR/id_ed25519 (0600) and .pub."""
    path = directory / CLIENT_KEY_FILE
    if path.exists():
        try:
            key = asyncssh.read_private_key(str(path))
            if key.algorithm == b"ssh-ed25519":
                return key
        except (OSError, asyncssh.KeyImportError, ValueError):
            pass
    key = asyncssh.generate_private_key("ssh-ed25519", comment="rolldeck-simfleet")
    write_private(path, key.export_private_key("openssh"))
    write_public(path.with_name(path.name + ".pub"), key.export_public_key("openssh").decode())
    return key


def known_hosts_text(address: str, entries: list[tuple[int, asyncssh.SSHKey]]) -> str:
    """known_hosts lines, ``[127.0.0.1]:PORT ssh-ed25519 AAAA...``."""
    lines = []
    for port, key in entries:
        public = key.export_public_key("openssh").decode().split()
        lines.append(f"[{address}]:{port} {public[0]} {public[1]}\n")
    return "".join(lines)
