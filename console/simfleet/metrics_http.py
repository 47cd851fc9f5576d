"""Each simulated host's HTTP server on 127.0.0.1: its Prometheus page (``GET /metrics``),
so a real Prometheus can scrape the fleet as it would scrape real hosts, and its
application (``GET /``), which the fleet's HAProxy balances over.

The application answers after the running version's latency: 200 with ``HOST
VERSION``, 500 with the version's ``error_rate``, 503 while the process is down or
warming up (:meth:`SimHost.answer`); ``X-Host`` and ``X-Version`` headers name who
answered. Behind the load balancer each answered request is what the host's counters
count (:meth:`SimHost.served`).

The page is the host's own exposition (:meth:`SimHost.metrics_text`: request and
error counters and the latency histogram, driven by the scenario), the same text
``svc metrics`` prints over SSH. A host whose process is down answers 503 (the
scrape fails, as a real exporter's would); an unreachable host (killed by the
scenario) closes the connection without an answer. The server is a few lines of
asyncio streams, not a framework: one request per connection, its head bounded in
size and time, so a stuck scraper cannot hold a host's page.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from console.simfleet.host import SimHost

HEAD_LIMIT = 16 * 1024  # bytes of request line and headers
HEAD_TIMEOUT = 5.0  # seconds to send them
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsPage:
    """One host's HTTP listener for its metrics page."""

    def __init__(self, host: SimHost, address: str = "127.0.0.1") -> None:
        self.host = host
        self.address = address
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()  # connections being answered
        self.scrapes = 0

    async def listen(self, port: int = 0) -> int:
        """Listen on ``port`` (a busy one falls back to any free port)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.address, port))
            except OSError:
                if port == 0:
                    raise
                sock.bind((self.address, 0))
            self._server = await asyncio.start_server(self._serve, sock=sock, backlog=128)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        handlers = tuple(self._handlers)  # requests still waiting out their latency
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > HEAD_LIMIT:
                return
            if not self.host.reachable:
                return  # a dead host: the connection just ends
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(line) < 2 or line[0] not in ("GET", "HEAD"):
                writer.write(_answer(405, "method not allowed\n"))
            elif line[1].split("?", 1)[0] == "/":
                await self._app(writer, head_only=line[0] == "HEAD")
            elif line[1].split("?", 1)[0] != "/metrics":
                writer.write(_answer(404, "the pages are / and /metrics\n"))
            else:
                text = self.host.metrics_text()
                if text is None:
                    writer.write(_answer(503, "the service is down\n"))
                else:
                    self.scrapes += 1
                    writer.write(_answer(200, text, head_only=line[0] == "HEAD"))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            # The page is closing: the connection ends unanswered. Ending the handler
            # normally, because asyncio's stream server logs a cancelled handler.
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _app(self, writer: asyncio.StreamWriter, *, head_only: bool) -> None:
        answer = self.host.answer()
        if answer.latency > 0:
            await asyncio.sleep(answer.latency)
        if not self.host.reachable:
            return  # it died while answering: the connection just ends
        headers = {"X-Host": self.host.name}
        if answer.version:
            headers["X-Version"] = answer.version
        writer.write(
            _answer(answer.status, answer.body, head_only=head_only, headers=headers, app=True)
        )
        self.host.served(answer)


def _answer(
    status: int,
    body: str,
    *,
    head_only: bool = False,
    headers: dict[str, str] | None = None,
    app: bool = False,
) -> bytes:
    reason = {
        200: "OK",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
        503: "Unavailable",
    }
    data = body.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    kind = "text/plain; charset=utf-8" if app else CONTENT_TYPE
    head = (
        f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {kind}\r\n{extra}"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + (b"" if head_only else data)
