"""One command sent to a running rollout over its socket, and the owner's verdict on
it (``attach --send``, ``approve``): the journaled ``OperatorCommand`` that answers
it, or why none came."""

from __future__ import annotations

import asyncio
import os

from console.attach.client import RemoteRollout
from console.core import events as ev
from console.core.commands import Command

ANSWER_TIMEOUT = 10.0  # seconds the owner has to journal its verdict


def _answers(event: ev.Event, command: Command) -> bool:
    """Ours: same command and label, and our uid when the journal has one (someone
    else may send the same command under the same label meanwhile)."""
    return (
        isinstance(event, ev.OperatorCommand)
        and event.command == command.name
        and event.operator == command.operator
        and event.uid in (None, os.geteuid())
    )


async def send_and_wait(
    remote: RemoteRollout, command: Command, timeout: float = ANSWER_TIMEOUT
) -> ev.OperatorCommand | str:
    """Send ``command``; the verdict, or why there is none (refused by the socket, no
    answer in time, the rollout ended). Closes ``remote``."""
    remote.start()
    remote.controller.execute(command)
    try:
        async with asyncio.timeout(timeout):
            async for batch in remote.subscription.batches():
                for event in batch:
                    if _answers(event, command):
                        assert isinstance(event, ev.OperatorCommand)
                        return event
                    if isinstance(event, ev.Notice) and remote.refusals:
                        return remote.refusals[-1]
    except TimeoutError:
        return f"no answer from the rollout's owner within {timeout:g}s"
    finally:
        await remote.close()
    return "the rollout ended before answering"
