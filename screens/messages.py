"""Messages between the console's widgets and screens."""

from __future__ import annotations

from textual.message import Message


class LogSourceChanged(Message):
    """The log panel now shows ``host`` (None: all hosts interleaved)."""

    def __init__(self, host: str | None) -> None:
        super().__init__()
        self.host = host


class OpenHostDetail(Message):
    """The operator asked for a host's detail screen."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host
