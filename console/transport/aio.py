"""Two asyncio idioms both real transports need when stopping remote work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_shielded(stop: Coroutine[Any, Any, object]) -> None:
    """Run ``stop`` to completion even if the calling task is cancelled again meanwhile.

    Used on the way out of a cancelled command: the caller's CancelledError is
    re-raised afterwards, but the kill must still happen. ``stop`` bounds itself.
    """
    task = asyncio.ensure_future(stop)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(task)


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
