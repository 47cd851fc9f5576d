"""A real HAProxy in front of the simulated fleet: its config, its process, its socket.

The fleet of a ``load_balancer`` scenario starts Debian's ``haproxy`` (found at
``/usr/sbin/haproxy`` or on PATH) in the foreground (``-db``): one HTTP frontend on a
free loopback port, backend ``app`` with one server per host (named as the host,
pointing at the host's HTTP port), no health checks (what sends traffic to a server is
its administrative state, which rolldeck sets), and the runtime API on a unix socket
(``stats socket PATH mode 600 level admin``) and on a loopback TCP port. The process
gets SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a killed fleet leaves no
HAProxy behind; :meth:`HAProxyProcess.stop` ends it on the fleet's stop.

A unix socket path holds at most 107 bytes, and HAProxy takes 97 of them (it binds a
temporary name beside it first): the socket sits in the fleet directory when that is
short enough, else in a temporary directory of its own.

``tests/fixtures/haproxy.py`` starts its HAProxy with the same config and helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from console.core.errors import RolldeckError
from console.traffic.haproxy import parse_servers_state

HAPROXY = "/usr/sbin/haproxy"
BACKEND = "app"
FRONTEND = "fe"
CONFIG_FILE = "haproxy.cfg"
LOG_FILE = "haproxy.log"
SOCKET_FILE = "haproxy.sock"
# sockaddr_un.sun_path holds 107 bytes; HAProxy binds PATH.PID.tmp then renames it,
# and refuses a path over 97.
MAX_SOCKET_PATH = 97
START_TIMEOUT = 15.0  # seconds for the admin socket to answer
ASK_TIMEOUT = 5.0  # seconds for one runtime API command
MISSING = f"HAProxy not installed: no {HAPROXY} nor haproxy on PATH (apt-get install haproxy)"


class BalancerError(RolldeckError):
    """HAProxy is missing, would not start, or its runtime API would not answer."""


def find_haproxy() -> str | None:
    """The haproxy binary: Debian's path first, then PATH."""
    if os.access(HAPROXY, os.X_OK):
        return HAPROXY
    return shutil.which("haproxy")


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(address: str = "127.0.0.1") -> int:
    """A port free now on ``address`` (the kernel's pick; HAProxy binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def haproxy_config(
    sock: str,
    port: int,
    api_port: int,
    servers: dict[str, int],
    *,
    address: str = "127.0.0.1",
    backend: str = BACKEND,
) -> str:
    """The config: admin socket (unix and TCP), frontend on ``port``, one server per
    ``servers`` item (name -> HTTP port on ``address``)."""
    lines = [
        "global",
        f"    stats socket {sock} mode 600 level admin",
        f"    stats socket ipv4@{address}:{api_port} level admin",
        "    maxconn 512",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        f"frontend {FRONTEND}",
        f"    bind {address}:{port}",
        f"    default_backend {backend}",
        f"backend {backend}",
        "    balance roundrobin",
    ]
    lines += [f"    server {name} {address}:{p}" for name, p in servers.items()]
    return "\n".join(lines) + "\n"


def ask_blocking(sock: str, command: str, timeout: float = ASK_TIMEOUT) -> str:
    """One runtime API command on the unix socket, answered whole (blocking)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(command.encode() + b"\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()


async def ask(sock: str, command: str, timeout: float = ASK_TIMEOUT) -> str:
    """One runtime API command on the unix socket, answered whole."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(sock)
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            data = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return data.decode(errors="replace")


def socket_path(directory: Path) -> tuple[str, str | None]:
    """Where the admin socket goes: (path, a temporary directory to remove or None)."""
    path = str(directory / SOCKET_FILE)
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path, None
    # $TMPDIR may be long too (a test's): then /tmp, which is short everywhere.
    room = MAX_SOCKET_PATH - len(f"/rolldeck-hap-XXXXXXXX/{SOCKET_FILE}")
    base = tempfile.gettempdir()
    short = tempfile.mkdtemp(prefix="rolldeck-hap-", dir=base if len(base) <= room else "/tmp")
    return os.path.join(short, SOCKET_FILE), short


@dataclass
class HAProxyProcess:
    """One HAProxy in front of ``servers`` (name -> HTTP port), its files in
    ``directory``. ``await start()``, then ``ask``; ``await stop()`` is idempotent."""

    directory: Path
    servers: dict[str, int]
    address: str = "127.0.0.1"
    backend: str = BACKEND
    socket: str = ""
    port: int = 0  # the frontend
    api_port: int = 0  # the runtime API on TCP
    _process: asyncio.subprocess.Process | None = None
    _tempdir: str | None = None

    @property
    def api(self) -> str:
        return f"{self.address}:{self.api_port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        binary = find_haproxy()
        if binary is None:
            raise BalancerError(MISSING)
        self.socket, self._tempdir = socket_path(self.directory)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # a previous run's, on a restarted fleet
        self.port, self.api_port = free_port(self.address), free_port(self.address)
        text = haproxy_config(
            self.socket,
            self.port,
            self.api_port,
            self.servers,
            address=self.address,
            backend=self.backend,
        )
        await asyncio.to_thread(self.config_path.write_text, text, encoding="utf-8")
        log = await asyncio.to_thread(self.log_path.open, "ab")
        try:
            # Started from the event loop's thread: PDEATHSIG follows the thread that
            # forked, and a worker thread of asyncio.to_thread would end before us.
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "-db",
                "-f",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        try:
            await self._ready()
        except BaseException:
            await self.stop()
            raise

    async def _ready(self) -> None:
        """Wait until the admin socket answers ``show info`` (a condition, not a sleep)."""
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            if self._process.returncode is not None:
                break
            with contextlib.suppress(OSError, TimeoutError):
                if "Name: HAProxy" in await ask(self.socket, "show info", timeout=1.0):
                    return
            await asyncio.sleep(0.02)
        tail = await asyncio.to_thread(self._log_tail)
        raise BalancerError(f"haproxy did not start ({self.config_path}): {tail}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-5:]) or "no output"

    async def ask(self, command: str) -> str:
        """One runtime API command; BalancerError when the socket does not answer."""
        try:
            return await ask(self.socket, command)
        except (OSError, TimeoutError) as exc:
            raise BalancerError(f"HAProxy's admin socket {self.socket}: {exc}") from None

    async def set_state(self, server: str, state: str) -> None:
        answer = (await self.ask(f"set server {self.backend}/{server} state {state}")).strip()
        if answer:
            raise BalancerError(f"set server {server} state {state}: {answer}")

    async def server_states(self) -> dict[str, tuple[str, int]]:
        """Server -> (ready|drain|maint, weight), as HAProxy reports them now."""
        return parse_servers_state(await self.ask(f"show servers state {self.backend}"))

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self.socket:  # HAProxy leaves its socket file behind
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.unlink, self.socket)
        if self._tempdir is not None:
            await asyncio.to_thread(shutil.rmtree, self._tempdir, True)
            self._tempdir = None
