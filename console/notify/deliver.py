"""One delivery attempt of one notification: a POST to a webhook, or a local command.
Blocking, with a timeout: these run on the notifier's threads, never on an event loop.

An attempt answers ``(ok, status, detail, retry)``: ``retry`` False when trying again
cannot help (a webhook's 4xx other than 408 and 429)."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from console import __version__

OUTPUT_KEPT = 400  # characters of a failed command's output or an error body kept


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: str  # 'HTTP 200', 'exit 0', 'HTTP 500', 'timeout', 'error'
    detail: str = ""
    retry: bool = True


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text[-OUTPUT_KEPT:]


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Watch:
    """The deadline of one POST: at ``timeout`` a timer shuts the attempt's sockets, so
    a receiver that trickles its answer a byte at a time (each read within the
    socket's timeout) cannot hold a hook past it. A connect that completes after the
    deadline is closed at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.expired = False

    def connection(self, base: type[http.client.HTTPConnection]) -> Any:
        watch = self

        class Watched(base):  # type: ignore[valid-type,misc]
            def connect(self) -> None:
                super().connect()
                watch.add(self.sock)

        return Watched

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if not self.expired:
                return
        _shut(sock)
        raise TimeoutError("past the deadline")

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _opener(url: str, watch: _Watch) -> urllib.request.OpenerDirector:
    """urllib's opener with the watched connections; a proxy from the environment is
    used, except for a loopback receiver."""
    context = ssl.create_default_context()

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(watch.connection(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(watch.connection(http.client.HTTPSConnection), req, context=context)

    handlers: list[urllib.request.BaseHandler] = [HTTP(), HTTPS(context=context)]
    if _loopback(url):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def post(url: str, data: bytes, timeout: float) -> Attempt:
    """POST ``data`` (JSON) to ``url``; ``timeout`` bounds the whole attempt (connect,
    request, answer), not only each read. Only name resolution is the system
    resolver's to bound."""
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"rolldeck/{__version__}",
        },
    )
    watch = _Watch()
    timer = threading.Timer(timeout, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        attempt = _post(_opener(url, watch), request, timeout)
    finally:
        timer.cancel()
        timer.join()
    if watch.expired and not attempt.ok:
        return Attempt(False, "timeout", f"no full answer within {timeout:g}s")
    return attempt


def _post(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float
) -> Attempt:
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(1 << 16)
            return Attempt(True, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        try:
            said = _tail(exc.read(1 << 16))
        except (OSError, ValueError, http.client.HTTPException):
            said = ""
        retry = exc.code >= 500 or exc.code in (408, 429)
        return Attempt(False, f"HTTP {exc.code}", said or str(exc.reason), retry)
    except TimeoutError:
        return Attempt(False, "timeout", f"no answer within {timeout:g}s")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return Attempt(False, "timeout", f"no answer within {timeout:g}s")
        return Attempt(False, "error", str(exc.reason))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # a reset, a bad URL after ${VAR} expansion, a torn answer
        return Attempt(False, "error", f"{type(exc).__name__}: {exc}")


def run_command(
    command: str, stdin: bytes, env: Mapping[str, str], cwd: str, timeout: float
) -> Attempt:
    """``sh -c COMMAND`` in ``cwd``, the JSON on stdin; its process group is killed
    when it outlives ``timeout``."""
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        return Attempt(False, "error", f"cannot start: {exc.strerror or exc}")
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:  # a child that left the group may still hold the pipe: not waited for
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
        return Attempt(False, "timeout", f"still running after {timeout:g}s: killed")
    if proc.returncode == 0:
        return Attempt(True, "exit 0")
    return Attempt(False, f"exit {proc.returncode}", _tail(out))


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """KILL the command and everything it started (it leads a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
