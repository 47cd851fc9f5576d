"""Waiting on conditions, never on the wall clock (no tests here).

A test that sleeps a fixed time and then asserts is a race with the machine's load:
on a busy machine the thing it waits for has not happened yet. These helpers poll a
condition instead, with a generous ``timeout`` that only matters when something is
broken (then the failure names what did not happen).

- :func:`wait_until` / :func:`wait_until_sync`: poll a predicate (async code / threads).
- :func:`frame_applied`: the console has drained its event source, folded it into its
  view and run one whole frame tick after that.
- :func:`settled`: that, plus the expected screen active and mounted, and Textual at
  rest: no pending layout, repaint, recompose or scroll, no dirty widget, no scheduled
  animation, every widget's region the same over two consecutive checks.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.geometry import Offset, Region, Size
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget

from console.core.events import Event
from screens.dashboard import DashboardScreen

TIMEOUT = 30.0  # only reached when the awaited thing never happens
POLL = 0.01

Predicate = Callable[[], object] | Callable[[], Awaitable[object]]


async def wait_until(
    predicate: Predicate,
    *,
    timeout: float = TIMEOUT,
    what: str,
    interval: float = POLL,
) -> None:
    """Poll ``predicate`` (a plain or async callable) until it is true; fail naming
    ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], object],
    *,
    timeout: float = TIMEOUT,
    what: str,
    interval: float = POLL,
) -> None:
    """:func:`wait_until` for code that runs without an event loop (threads, processes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# -- the console ------------------------------------------------------------------------


class CountingSource:
    """Wraps the app's event source and counts ``drain`` calls: the frame tick calls it
    exactly once, first thing, so a count that moved means a whole tick has run (the
    tick is synchronous: the test sees the count only after the tick returned)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ticks = 0

    def drain(self, max_items: int | None = None) -> list[Event]:
        self.ticks += 1
        return list(self.inner.drain(max_items))

    def pending(self) -> int:
        pending = getattr(self.inner, "pending", None)  # not part of EventSource
        return int(pending()) if pending is not None else 0

    @property
    def dropped(self) -> int:
        return int(self.inner.dropped)

    def __getattr__(self, name: str) -> Any:  # overflowed, close, ...
        return getattr(self.inner, name)


def counting_source(app: Any) -> CountingSource:
    """The app's event source, wrapped (once) to count frame ticks. The tick reads
    ``app.subscription`` on every call, so this works before or after mount."""
    source = app.subscription
    if not isinstance(source, CountingSource):
        source = CountingSource(source)
        app.subscription = source
    return source


def _ticked(source: CountingSource) -> Callable[[], bool]:
    seen = source.ticks
    return lambda: source.ticks > seen


async def frame_applied(pilot: Pilot[Any], *, timeout: float = TIMEOUT) -> None:
    """Until the app's event source is empty and one whole frame tick has run after that
    with the dashboard up (so every published event is folded into the view and drawn;
    the first tick with the dashboard up also draws the header and progress bar)."""
    app: Any = pilot.app
    source = counting_source(app)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await wait_until(
            lambda: not source.pending(),
            timeout=max(0.0, deadline - loop.time()),
            what="the frame tick to drain the event source",
        )
        await wait_until(
            _ticked(source),
            timeout=max(0.0, deadline - loop.time()),
            what="a frame tick after the event source was drained",
        )
        dash = next((s for s in app.screen_stack if isinstance(s, DashboardScreen)), None)
        drawn = dash is not None and dash.ready and app.frames > 0
        if drawn and not source.pending():
            return
        if loop.time() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for a frame tick with the dashboard up"
            )


def _refresh_pending(screen: Screen[Any]) -> list[str]:
    """What on ``screen`` still waits to be laid out, repainted, recomposed or scrolled."""
    flags = (
        "_layout_required",
        "_repaint_required",
        "_recompose_required",
        "_scroll_required",
        "_refresh_styles_required",
    )
    out: list[str] = []
    for node in screen.walk_children(with_self=True):
        for flag in flags:
            if getattr(node, flag, False):
                out.append(f"{node!r}.{flag}")
    if screen._dirty_widgets:
        out.append(f"{len(screen._dirty_widgets)} dirty widgets on {screen!r}")
    if screen._callbacks:
        out.append(f"{len(screen._callbacks)} after-refresh callbacks on {screen!r}")
    if screen.app._batch_count:
        out.append("the app is batching updates")
    return out


def _layout(screen: Screen[Any]) -> tuple[Size, tuple[tuple[int, Region, Size, Offset], ...]]:
    widgets = screen.walk_children(Widget, with_self=True)
    return screen.app.size, tuple((id(w), w.region, w.size, w.scroll_offset) for w in widgets)


async def settled(
    pilot: Pilot[Any],
    screen: type[Screen[Any]] | None = None,
    *,
    timeout: float = TIMEOUT,
    events: bool = True,
) -> None:
    """Until the console is at rest and can be asserted on or photographed:

    - ``events``: every published event folded into the view and drawn
      (:func:`frame_applied`);
    - ``screen``: that screen type is the active screen, and mounted;
    - Textual at rest: scheduled animations done, no node with a pending layout,
      repaint, recompose or scroll, no dirty widget or after-refresh callback, and the
      layout (terminal size, every widget's region, size and scroll offset) the same
      over two consecutive checks.
    """
    app: Any = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> float:
        return max(0.0, deadline - loop.time())

    if events:
        await frame_applied(pilot, timeout=left())
    if screen is not None:
        await wait_until(
            lambda: isinstance(app.screen, screen) and app.screen.is_mounted,
            timeout=left(),
            what=f"{screen.__name__} to be the active, mounted screen",
        )
    previous: object = None
    while True:
        # message queues processed, animations done, then pending layout/repaint applied
        await pilot.wait_for_scheduled_animations()
        pending = _refresh_pending(app.screen)
        layout = _layout(app.screen)
        if not pending and layout == previous:
            return
        if loop.time() >= deadline:
            why = ", ".join(pending) or "the layout still changes"
            raise AssertionError(f"timed out after {timeout:g}s waiting to settle: {why}")
        previous = layout
