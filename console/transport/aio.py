"""Two asyncio idioms both real transports need when stopping remote work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_shielded(stop: Coroutine[Any, Any, T]) -> T:
    """Run ``stop`` to completion even if the calling task is cancelled meanwhile.

    Used to stop remote work on the way out of a timeout or a cancellation: the
    caller waits until the kill is done (``stop`` bounds itself), and a cancellation
    that arrived meanwhile is re-raised afterwards rather than cutting the kill short.
    """
    task = asyncio.ensure_future(stop)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


async def first_error(awaitable: Awaitable[T]) -> T:
    """Await a TaskGroup-based coroutine, re-raising its first failure unwrapped.

    A lost connection fails both output pumps at once, and a buggy ``on_line``
    callback fails one: either way the caller should see the exception itself (a
    ``ConnectionLost``, the callback's error), not an ExceptionGroup it does not expect.
    """
    try:
        return await awaitable
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup):
            inner = inner.exceptions[0]
        raise inner from None
