"""The fleet's one log pump: a single task feeds every `svc logs --follow`.

One timer for the whole fleet rather than one task per follower: with 1,000 hosts
followed, each tick is one pass over the followed hosts and one channel write per
follower (many lines per write), instead of 1,000 tasks waking per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from console.simfleet.host import LineSink, SimHost

log = logging.getLogger(__name__)

TICK = 0.2  # seconds between deliveries; lines are timestamped within the tick


class LogPump:
    """Generates log lines for followed hosts and hands them to their followers."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        self._hosts: set[SimHost] = set()
        self._task: asyncio.Task[None] | None = None
        self.lines_generated = 0

    def follow(self, host: SimHost, sink: LineSink) -> None:
        if not host.followers:
            host.generate_logs()  # a new follower sees lines from now on, not a backlog
        host.followers.add(sink)
        self._hosts.add(host)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="simfleet-logs")

    def unfollow(self, host: SimHost, sink: LineSink) -> None:
        host.followers.discard(sink)
        if not host.followers:
            self._hosts.discard(host)

    async def _run(self) -> None:
        while self._hosts:
            await asyncio.sleep(self.tick)
            for host in tuple(self._hosts):
                lines = host.generate_logs()
                self.lines_generated += len(lines)
                try:
                    host.emit(lines)
                except Exception:  # one bad follower must not silence the fleet
                    log.exception("%s: delivering log lines failed", host.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._hosts.clear()
