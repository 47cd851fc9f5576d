"""Shared helpers for the TUI tests (no tests here).

:class:`RecordingController` stands in for the engine the way an attached console
sees one: it records every Command and publishes what an engine would answer
(``OperatorCommand``, then the state change) on the bus the app drains.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from console.app import RolldeckApp
from console.core import events as ev
from console.core.bus import EventBus
from console.core.commands import Command
from console.core.events import HostState, RolloutState
from console.core.state import RolloutView, fold
from console.spec import ErrorRateSpec, LogsSpec, RolloutSpec
from tests.fixtures.synthetic import SyntheticRollout

SIZE = (120, 40)

SPEC = RolloutSpec(
    path="rollout.yaml",
    text="",
    service="checkout-api",
    version="2.4.1",
    inventory=None,
    logs=LogsSpec(run="svc logs --follow", error_pattern=r"\b(ERROR|CRITICAL)\b"),
    error_rate=ErrorRateSpec(window=60, max=0.02, max_vs_baseline=2.0),
)

_STATE_AFTER = {
    "pause": RolloutState.PAUSED,
    "resume": RolloutState.RUNNING,
    "continue": RolloutState.RUNNING,
    "rollback": RolloutState.ROLLING_BACK,
    "abort": RolloutState.ABORTED,
}


class RecordingController:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.commands: list[Command] = []
        self.connections = 7

    def execute(self, command: Command) -> None:
        self.commands.append(command)
        self.bus.publish(
            ev.OperatorCommand(
                command=command.name,
                operator=command.operator,
                reason=command.reason,
                args=dict(command.args),
            )
        )
        state = _STATE_AFTER.get(command.name)
        if state is not None:
            self.bus.publish(
                ev.RolloutStateChanged(state=state, reason=f"operator {command.operator}")
            )
        if command.name == "skip":
            self.bus.publish(
                ev.HostStateChanged(host=command.args["host"], state=HostState.SKIPPED)
            )

    def open_connections(self) -> int:
        return self.connections

    def names(self) -> list[str]:
        return [c.name for c in self.commands]


def make_app(
    stage: str = "running",
    *,
    hosts: int = 24,
    read_only: bool = False,
    theme: str = "rolldeck-dark",
    **kw: Any,
) -> tuple[RolldeckApp, RecordingController, EventBus, SyntheticRollout]:
    """An app over a fixed synthetic history ending in ``stage``; fixed clock."""
    rollout = SyntheticRollout(hosts)
    view: RolloutView = fold(rollout.scenario(stage))
    bus = EventBus()
    ctl = RecordingController(bus)
    app = RolldeckApp(
        bus.subscribe(),
        ctl,
        spec=SPEC,
        initial_view=view,
        read_only=read_only,
        clock=lambda: rollout.t + 5.0,
        theme=theme,
        remember_theme=False,
        process_stats=lambda: (4.0, 61.0),
        **kw,
    )
    return app, ctl, bus, rollout


@pytest.fixture(autouse=True)
def _private_config(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Never read or write the real user's theme choice."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def utc_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC (the snapshots show clock times)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
