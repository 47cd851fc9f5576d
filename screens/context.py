"""What screens need from the app, as a protocol (screens never import console.app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from console.core.commands import Command
from console.core.state import RolloutView
from console.spec import RolloutSpec


class ConsoleContext(Protocol):
    view: RolloutView
    spec: RolloutSpec | None
    read_only: bool
    clock: Callable[[], float]

    def send(self, command: Command) -> bool:
        """Hand a command to the controller; False (and says why) in read-only mode."""
        ...
