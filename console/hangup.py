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
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

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


@contextlib.contextmanager
def pause_on_hangup(on_hangup: Callable[[], None]) -> Iterator[None]:
    """While inside: SIGHUP detaches the dead terminal and calls ``on_hangup`` on the
    running event loop (or at once when there is none). Main thread only."""
    fds = terminal_fds()

    def handler(signum: int, frame: FrameType | None) -> None:
        detach_from_terminal(fds)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            on_hangup()
            return
        loop.call_soon_threadsafe(on_hangup)

    try:
        previous = signal.signal(signal.SIGHUP, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)
