"""The event loop the engine runs on: uvloop where it is installed, else asyncio's own.

A rollout's client-side work is mostly moving SSH packets: every command is a dozen of
them through asyncssh, each a socket send, a selector wake-up and a few callbacks.
uvloop (libuv under asyncio's API) does the socket and callback parts in C. On the
shared bench (``../shared/bench``, 50 hosts behind one real sshd, batches of 10, 2
cores shared with the sshd) the headless run went from 2.49 s to 2.16 s (median of
5, same run, tools alternating), the raw asyncssh loop taking 1.59 s there.

Only the engine's loop: a headless run (``run``, ``resume``, ``rollback``, the
headless demo) and the console's engine thread. Textual keeps its own loop in the
main thread. ``ROLLDECK_EVENT_LOOP=asyncio`` keeps the standard loop everywhere (a
bug report, a platform uvloop does not build on); without uvloop installed the
standard loop is used, with nothing said.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "ROLLDECK_EVENT_LOOP"


def loop_factory(
    environ: Mapping[str, str] | None = None,
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default loop."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """:func:`asyncio.run` on the engine's loop (see the module's docstring)."""
    factory = loop_factory()
    if factory is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
