"""The fleet's load generator: real HTTP requests through HAProxy's frontend.

While a ``load_balancer`` fleet runs, requests go out at a steady rate (real seconds,
not scaled time) to ``GET /`` on the frontend, each on its own connection and under a
timeout. Concurrency is bounded: a request that falls due while every slot is busy
is not sent and is counted as ``skipped``, so a stalled backend never piles up
requests. Every answer is counted by the version that served it (the ``X-Version``
header; "" for HAProxy's own answers, such as 503 with no server left) and status
(0: no HTTP answer at all), by host, and with the wall time of each version's first
and last answer: "requests served by the new version stopped N s after the alert" is
read from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT = 5.0  # seconds for one request, connect to last byte
CONCURRENCY = 32  # requests in flight at most
MAX_RATE = 200.0  # requests per second at most (the fleet's one Python process serves them)
MAX_ANSWER = 64 * 1024  # bytes read of one answer
TICK = 0.02  # seconds between two looks at what fell due


@dataclass
class TrafficCounts:
    """What the load generator saw, for tests, drills and ``simctl balancer``."""

    sent: int = 0
    skipped: int = 0  # fell due while CONCURRENCY requests were in flight
    answers: dict[str, dict[int, int]] = field(default_factory=dict)  # version -> status -> n
    hosts: dict[str, int] = field(default_factory=dict)  # host -> answers it gave
    first: dict[str, float] = field(default_factory=dict)  # version -> wall time
    last: dict[str, float] = field(default_factory=dict)

    def count(self, version: str, status: int, host: str, wall: float) -> None:
        by_status = self.answers.setdefault(version, {})
        by_status[status] = by_status.get(status, 0) + 1
        if host:
            self.hosts[host] = self.hosts.get(host, 0) + 1
        if version:
            self.first.setdefault(version, wall)
            self.last[version] = wall

    def served(self, version: str, status: int | None = None) -> int:
        """Answers ``version`` gave (with ``status``, or any)."""
        by_status = self.answers.get(version, {})
        return by_status.get(status, 0) if status is not None else sum(by_status.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "skipped": self.skipped,
            "answers": {v: {str(s): n for s, n in c.items()} for v, c in self.answers.items()},
            "hosts": dict(self.hosts),
            "first": dict(self.first),
            "last": dict(self.last),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrafficCounts:
        return cls(
            sent=int(data["sent"]),
            skipped=int(data["skipped"]),
            answers={
                str(v): {int(s): int(n) for s, n in c.items()} for v, c in data["answers"].items()
            },
            hosts={str(h): int(n) for h, n in data["hosts"].items()},
            first={str(v): float(t) for v, t in data["first"].items()},
            last={str(v): float(t) for v, t in data["last"].items()},
        )


def parse_answer(data: bytes) -> tuple[int, str, str]:
    """An HTTP answer -> (status, X-Version, X-Host); status 0 when it is not one."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return 0, "", ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers.get("x-version", ""), headers.get("x-host", "")


class LoadGenerator:
    """``rate`` requests per second to ``http://ADDRESS:PORT/`` until cancelled."""

    def __init__(
        self,
        address: str,
        port: int,
        rate: float,
        *,
        concurrency: int = CONCURRENCY,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.address = address
        self.port = port
        self.rate = min(max(rate, 0.0), MAX_RATE)
        self.concurrency = concurrency
        self.timeout = timeout
        self.counts = TrafficCounts()
        self._in_flight = 0

    async def run(self) -> None:
        """Send until cancelled; the requests in flight are cancelled with it."""
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        due, last = 0.0, loop.time()
        async with asyncio.TaskGroup() as tg:
            while True:
                await asyncio.sleep(TICK)
                now = loop.time()
                due += (now - last) * self.rate
                last = now
                while due >= 1.0:
                    due -= 1.0
                    if self._in_flight >= self.concurrency:
                        self.counts.skipped += 1
                        continue
                    self._in_flight += 1
                    self.counts.sent += 1
                    tg.create_task(self._one())

    async def _one(self) -> None:
        status, version, host = 0, "", ""
        try:
            async with asyncio.timeout(self.timeout):
                status, version, host = parse_answer(await self._request())
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # no HTTP answer: status 0
        finally:
            self._in_flight -= 1
        self.counts.count(version, status, host, time.time())

    async def _request(self) -> bytes:
        reader, writer = await asyncio.open_connection(self.address, self.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: simfleet\r\nConnection: close\r\n\r\n")
            await writer.drain()
            data = b""
            while len(data) < MAX_ANSWER and (chunk := await reader.read(MAX_ANSWER)):
                data += chunk
            return data
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
