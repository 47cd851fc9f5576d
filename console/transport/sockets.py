"""One request to a socket a host can reach, its whole answer back (HAProxy's runtime API).

A target is an absolute path (a unix socket on the host) or ``HOST:PORT`` (TCP from the
host). Each transport opens the stream its own way (SSH: a direct stream-local or
TCP forward on the connection it already holds, no ``socat`` on the host; local: the
socket itself); this module holds what they share: the target's syntax and the
conversation, bounded in time and size.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from console.transport.base import TransportError

MAX_REPLY = 4 * 1024 * 1024  # bytes: a runtime API answer (show stat of a big backend)


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


def split_target(target: str) -> tuple[str | None, str, int]:
    """``(path, "", 0)`` for a unix socket, ``(None, host, port)`` for TCP; ValueError
    for anything else."""
    if target.startswith("/"):
        return target, "", 0
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a socket path or HOST:PORT: {target!r}")
    return None, host.strip("[]"), int(port)


async def converse(
    host: str, target: str, reader: _Reader, writer: _Writer, request: bytes, timeout: float
) -> bytes:
    """Write ``request``, read until the peer closes; TransportError past ``timeout``
    seconds or :data:`MAX_REPLY` bytes. The stream is closed either way."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            writer.write(request)
            while chunk := await reader.read(65536):
                size += len(chunk)
                if size > MAX_REPLY:
                    raise TransportError(host, f"{target} answered more than {MAX_REPLY} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise TransportError(host, f"{target} did not answer within {timeout:g} s") from None
    except (OSError, EOFError) as exc:
        raise TransportError(host, f"{target}: {exc}") from exc
    finally:
        writer.close()
    return b"".join(chunks)
