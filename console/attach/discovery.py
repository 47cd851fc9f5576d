"""Finding the rollouts running on this machine: live attach sockets and live locks."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from console.attach.client import probe
from console.attach.protocol import SOCKET_SUFFIX, ProtocolError
from console.core.errors import InputError
from console.store.history import live_owners, summary_of
from console.store.journal import JournalError, journal_path

PROBE_TIMEOUT = 2.0


async def _probe(path: Path) -> dict[str, Any] | None:
    try:
        inode = (await asyncio.to_thread(path.stat)).st_ino
        async with asyncio.timeout(PROBE_TIMEOUT):
            hello = await probe(path)
    except ConnectionRefusedError:
        # Nobody listens: its owner died (kill -9) without unlinking it. A live owner's
        # socket is linked into place only once listening, so this one is garbage,
        # unless a new owner has replaced it since (the inode says).
        await asyncio.to_thread(_unlink_if_same, path, inode)
        return None
    except (OSError, ProtocolError, TimeoutError):
        return None  # a socket left by a dead owner, or not ours
    row = dict(hello.get("summary") or {})
    row.setdefault("rollout_id", hello.get("rollout_id"))
    row["socket"] = str(path)
    return row


def _unlink_if_same(path: Path, inode: int) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()


async def running_rollouts(state_dir: Path) -> list[dict[str, Any]]:
    """One dict per running rollout (newest first): the owner's own summary when it
    serves a socket, else what its journal says (for a live lock without a socket)."""
    socks = await asyncio.to_thread(lambda: sorted(state_dir.glob(f"*{SOCKET_SUFFIX}")))
    probed = await asyncio.gather(*(_probe(p) for p in socks))
    rows = [r for r in probed if r is not None]
    seen = {r["rollout_id"] for r in rows}
    rows += await asyncio.to_thread(_locked_without_socket, state_dir, seen)
    rows.sort(key=lambda r: r.get("started") or 0.0, reverse=True)
    return rows


def _locked_without_socket(state_dir: Path, seen: set[str]) -> list[dict[str, Any]]:
    """Rollouts holding a live lock but serving no socket, as their journals say."""
    rows: list[dict[str, Any]] = []
    for rid, pid in live_owners(state_dir).items():
        if rid in seen:
            continue
        row: dict[str, Any] = {"rollout_id": rid, "pid": pid, "socket": None, "clients": 0}
        path = journal_path(state_dir, rid)
        try:
            s = summary_of(path, {rid: pid})
        except (JournalError, KeyError, TypeError, ValueError):
            pass
        else:
            row.update(
                service=s.service,
                version=s.version,
                operator=s.operator,
                state=s.state,
                started=s.started,
                batch=s.batch,
                batches=s.batches,
            )
        rows.append(row)
    return rows


async def find_socket(state_dir: Path, rollout_id: str | None) -> Path:
    """The socket of rollout ``rollout_id`` (a unique prefix will do), or of the only
    (else the latest) running one. InputError when there is none or it is ambiguous."""
    rows = [r for r in await running_rollouts(state_dir) if r.get("socket")]
    if rollout_id is None:
        if not rows:
            raise InputError(f"no attachable rollout is running (state dir {state_dir})")
        return Path(rows[0]["socket"])  # newest first
    exact = [r for r in rows if r["rollout_id"] == rollout_id]
    matches = exact or [r for r in rows if str(r["rollout_id"]).startswith(rollout_id)]
    if not matches:
        hint = ""
        if await asyncio.to_thread(_journaled, state_dir, rollout_id):
            hint = " (it is not running: see `rolldeck show` or `rolldeck resume`)"
        raise InputError(f"no running rollout {rollout_id!r} to attach to{hint}", field="ID")
    if len(matches) > 1:
        ids = ", ".join(str(r["rollout_id"]) for r in matches)
        raise InputError(f"{rollout_id!r} is ambiguous: {ids}", field="ID")
    return Path(matches[0]["socket"])


def _journaled(state_dir: Path, prefix: str) -> bool:
    return any(p.stem.startswith(prefix) for p in state_dir.glob("*.jsonl"))
