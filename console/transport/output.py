"""Turning a command's byte stream into lines, with bounded memory.

Both real transports read raw chunks (never ``readline``, whose buffer grows with the
longest line) and split them here, so a command printing a gigabyte without a newline
costs at most ``MAX_LINE`` bytes of buffer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from console.transport.base import LineCallback, RunResult

MAX_LINE = 16 * 1024  # a longer line is delivered in pieces of this size
READ_CHUNK = 64 * 1024


class LineSplitter:
    """Splits a byte stream into decoded lines; a partial line is capped at ``max_line``."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes. A line longer than ``max_line`` comes in pieces
        of ``max_line`` (then the rest, maybe empty) however the bytes were chunked:
        whether a pipe delivered it at once or in parts must not change the lines."""
        self._buf += data
        lines: list[str] = []
        max_line = self._max_line
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            start = 0
            while end - start >= max_line:
                lines.append(_decode(self._buf[start : start + max_line]))
                start += max_line
            lines.append(_decode(self._buf[start:end]))
            del self._buf[: end + 1]
        while len(self._buf) >= self._max_line:
            lines.append(_decode(self._buf[: self._max_line]))
            del self._buf[: self._max_line]
        return lines

    def flush(self) -> list[str]:
        """The unterminated last line, if any (at end of stream)."""
        if not self._buf:
            return []
        line = _decode(self._buf)
        self._buf.clear()
        return [line]


def _decode(raw: bytes | bytearray) -> str:
    return bytes(raw).decode("utf-8", errors="replace").removesuffix("\r")


class OutputSink:
    """Receives a command's lines: keeps bounded tails and forwards to ``on_line``."""

    def __init__(self, tail_lines: int, on_line: LineCallback | None) -> None:
        self.stdout: deque[str] = deque(maxlen=max(tail_lines, 0))
        self.stderr: deque[str] = deque(maxlen=max(tail_lines, 0))
        self._on_line = on_line

    def emit(self, stream: str, line: str) -> None:
        (self.stdout if stream == "stdout" else self.stderr).append(line)
        if self._on_line is not None:
            self._on_line(stream, line)

    def result(
        self, status: str, exit_code: int | None, duration: float, signal: str | None = None
    ) -> RunResult:
        return RunResult(
            status=status,
            exit_code=exit_code,
            duration=duration,
            stdout_tail=tuple(self.stdout),
            stderr_tail=tuple(self.stderr),
            signal=signal,
        )


async def pump(
    read: Callable[[int], Awaitable[bytes]],
    deliver: Callable[[str], None],
) -> None:
    """Read chunks until EOF, delivering each complete line as soon as it arrives."""
    splitter = LineSplitter()
    while True:
        chunk = await read(READ_CHUNK)
        if not chunk:
            break
        for line in splitter.feed(chunk):
            deliver(line)
    for line in splitter.flush():
        deliver(line)
