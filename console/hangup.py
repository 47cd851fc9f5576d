"""Losing the terminal: SIGHUP pauses the rollout instead of killing it mid-step.

A hung-up terminal fails every write (EIO) and reads as end-of-file; left alone, the
first redraw or log line would raise and take the process, and the hosts in flight,
down with it. So on SIGHUP the standard fds that were a terminal and no longer are
(hung up) have their output pointed at /dev/null. Input is left alone: a hung-up
terminal reads as end-of-file, which lets Textual's input thread see its exit (a
quiet pipe in its place would block that thread's read, and the process with it,
forever). The caller's
``on_hangup`` then pauses the rollout (journaled as "terminal lost (SIGHUP)"): hosts
in flight finish, the run ends paused (exit 6) and ``rolldeck resume`` continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import IO, Any

TERMINAL_LOST = "terminal lost (SIGHUP)"


def isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def terminal_fds() -> list[int]:
    """The standard fds that are a terminal now (call at start, before any hangup)."""
    return [fd for fd in (0, 1, 2) if isatty(fd)]


def detach_from_terminal(fds: list[int]) -> None:
    """Point those output fds (1, 2) of ``fds`` whose terminal hung up at /dev/null."""
    dead = [fd for fd in fds if fd in (1, 2) and not isatty(fd)]
    if not dead:
        return  # `kill -HUP` with the terminal still there: keep talking to it
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in dead:
            os.dup2(null, fd)
    finally:
        os.close(null)


class TerminalLoss:
    """Reports the loss of the terminal once, whichever sees it first: SIGHUP, or a
    write that failed with EIO because the terminal hung up before the signal was
    handled (the kernel hangs up the tty first; the Python-level handler runs later,
    and an output thread may write in between). Thread-safe: ``lost`` may be called
    from an output thread; ``on_lost`` runs on ``loop`` (bound when known, else the
    loop running in the caller's thread, else at once)."""

    def __init__(
        self,
        fds: list[int],
        on_lost: Callable[[], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.fds, self.on_lost, self.loop = fds, on_lost, loop
        # Re-entrant: SIGHUP's handler may run on a thread already inside lost() (a
        # shell re-sends SIGHUP to its jobs; an output write failed first).
        self._lock = threading.RLock()
        self.happened = False

    def lost(self) -> None:
        with self._lock:
            detach_from_terminal(self.fds)
            if self.happened:
                return
            self.happened = True
        loop = self.loop
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        if loop is None:
            self.on_lost()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to pause
            loop.call_soon_threadsafe(self.on_lost)

    def guard(self, stream: IO[str]) -> IO[str]:
        """``stream`` made to survive the hang-up (unchanged when it is no terminal)."""
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):
            return stream
        if fd not in self.fds:
            return stream
        return _TerminalStream(stream, self)  # type: ignore[return-value]


class _TerminalStream:
    """A text stream on a terminal whose writes, once it hangs up, go nowhere (the fd
    is pointed at /dev/null) instead of raising EIO into the rollout."""

    def __init__(self, stream: IO[str], loss: TerminalLoss) -> None:
        self._stream, self._loss = stream, loss

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._hung_up(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._hung_up(exc)

    def _hung_up(self, exc: OSError) -> None:
        """EIO from a terminal that is gone is its loss; anything else (EIO from a
        terminal still there: a background process group) is raised."""
        if exc.errno != errno.EIO or isatty(self._stream.fileno()):
            raise exc
        self._loss.lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def pause_on_hangup(on_hangup: Callable[[], None]) -> Iterator[TerminalLoss]:
    """While inside: SIGHUP detaches the dead terminal and calls ``on_hangup`` on the
    running event loop (or at once when there is none). Main thread only. Yields the
    :class:`TerminalLoss`, for output streams to :meth:`~TerminalLoss.guard`."""
    loss = TerminalLoss(terminal_fds(), on_hangup)

    def handler(signum: int, frame: FrameType | None) -> None:
        loss.lost()

    try:
        previous = signal.signal(signal.SIGHUP, handler)
    except ValueError:  # not the main thread
        yield loss
        return
    try:
        yield loss
    finally:
        signal.signal(signal.SIGHUP, previous)
