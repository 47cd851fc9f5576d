"""A client of HAProxy's runtime API (the admin socket), over a host's connection.

Each call is one request on a fresh stream (HAProxy's non-interactive mode: one
command, the answer, the close), sent through :meth:`Connection.exchange`: a unix
socket on the load balancer host, or its TCP stats socket, forwarded by the SSH
connection rolldeck already holds (no ``socat`` there). Every call runs under
``timeout``; ``set server ... state`` and ``weight`` are idempotent, so a repeated or
resumed move is harmless.

Parsing: ``show servers state BACKEND`` gives the administrative state
(``srv_admin_state`` bits: forced or inherited maintenance, drain) and the user
weight; ``show stat`` gives the current sessions (``scur``) and the status HAProxy
shows (UP, DOWN, DRAIN, MAINT, ``no check``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from console.transport.base import Connection, TransportError

API_TIMEOUT = 5.0  # seconds for one runtime API request
STATES = ("ready", "drain", "maint")
# srv_admin_state bits (HAProxy's enum srv_admin): maintenance forced, inherited,
# from the configuration, from a resolution or a tracked server; drain forced or inherited.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
MAX_WEIGHT = 256


class HAProxyError(Exception):
    """The runtime API could not be reached, or refused a command; ``str`` says which."""


@dataclass(frozen=True, slots=True)
class ServerState:
    """One server of a backend, as HAProxy reports it now."""

    name: str
    admin: str  # ready | drain | maint: what rolldeck (or an operator) set
    status: str  # what HAProxy shows: UP, DOWN, DRAIN, MAINT, no check...
    weight: int
    sessions: int  # current sessions (scur)


def admin_state(bits: int) -> str:
    """``srv_admin_state`` as the word ``set server ... state`` takes."""
    if bits & _MAINT_BITS:
        return "maint"
    if bits & _DRAIN_BITS:
        return "drain"
    return "ready"


def check_name(name: str, what: str) -> str:
    """A backend or server name goes into a command line: no spaces, no separators."""
    if not _NAME.fullmatch(name):
        raise HAProxyError(f"{what} {name!r} is not a HAProxy name (letters, digits, - _ . :)")
    return name


class HAProxy:
    """The runtime API at ``target`` (a socket path or HOST:PORT) as seen from ``conn``."""

    def __init__(self, conn: Connection, target: str, *, timeout: float = API_TIMEOUT) -> None:
        self.conn = conn
        self.target = target
        self.timeout = timeout

    async def command(self, line: str) -> str:
        """Send one command; its answer (HAProxyError when the socket cannot be reached)."""
        if "\n" in line or ";" in line:
            raise HAProxyError(f"one command per request: {line!r}")
        try:
            answer = await self.conn.exchange(
                self.target, line.encode() + b"\n", timeout=self.timeout
            )
        except TransportError as exc:
            raise HAProxyError(f"HAProxy runtime API at {exc.message}") from exc
        return answer.decode("utf-8", "replace")

    async def _set(self, line: str) -> None:
        answer = (await self.command(line)).strip()
        if answer:  # a successful `set server` answers nothing
            raise HAProxyError(f"{line}: {answer.splitlines()[0]}")

    async def set_state(self, backend: str, server: str, state: str) -> None:
        """``set server BACKEND/SERVER state ready|drain|maint`` (idempotent)."""
        if state not in STATES:
            raise HAProxyError(f"unknown server state {state!r} (one of {', '.join(STATES)})")
        where = f"{check_name(backend, 'backend')}/{check_name(server, 'server')}"
        await self._set(f"set server {where} state {state}")

    async def set_weight(self, backend: str, server: str, weight: int) -> None:
        """``set server BACKEND/SERVER weight N`` (0-256; idempotent)."""
        if not 0 <= weight <= MAX_WEIGHT:
            raise HAProxyError(f"weight {weight} is out of 0-{MAX_WEIGHT}")
        where = f"{check_name(backend, 'backend')}/{check_name(server, 'server')}"
        await self._set(f"set server {where} weight {weight}")

    async def servers(self, backend: str) -> dict[str, ServerState]:
        """Every server of ``backend``: admin state, weight, status and sessions."""
        check_name(backend, "backend")
        states = parse_servers_state(await self.command(f"show servers state {backend}"))
        if not states:
            raise HAProxyError(f"no backend {backend!r} with servers in HAProxy")
        stats = parse_stat(await self.command("show stat"), backend)
        out: dict[str, ServerState] = {}
        for name, (admin, weight) in states.items():
            status, sessions = stats.get(name, ("", 0))
            out[name] = ServerState(name, admin, status, weight, sessions)
        return out

    async def server(self, backend: str, server: str) -> ServerState:
        """One server (HAProxyError when the backend has no such server)."""
        found = (await self.servers(backend)).get(server)
        if found is None:
            raise HAProxyError(f"backend {backend} has no server {server!r}")
        return found


def parse_servers_state(text: str) -> dict[str, tuple[str, int]]:
    """``show servers state``: server name -> (admin state, user weight)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header: list[str] = []
    out: dict[str, tuple[str, int]] = {}
    for line in lines:
        if line.startswith("#"):
            header = line.lstrip("#").split()
            continue
        if not header:
            continue  # the format version line ("1")
        row = dict(zip(header, line.split(), strict=False))
        try:
            bits = int(row["srv_admin_state"])
            weight = int(row["srv_uweight"])
            name = row["srv_name"]
        except (KeyError, ValueError):
            continue
        out[name] = (admin_state(bits), weight)
    return out


def parse_stat(text: str, backend: str) -> dict[str, tuple[str, int]]:
    """``show stat`` (CSV): for each server of ``backend``, (status, current sessions)."""
    columns: list[str] = []
    out: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            columns = line[2:].split(",")
            continue
        if not columns or not line.strip():
            continue
        row = dict(zip(columns, line.split(","), strict=False))
        name = row.get("svname", "")
        if row.get("pxname") != backend or name in ("FRONTEND", "BACKEND"):
            continue
        scur = row.get("scur", "")
        out[name] = (row.get("status", ""), int(scur) if scur.isdigit() else 0)
    return out
