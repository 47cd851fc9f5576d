"""A rollout run in the console (not detached) serves an attach socket too, so the
on-call engineer can take it over from another terminal: their pause reaches the
engine and shows in the first console with their name."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from console.app import make_console
from console.attach.client import connect
from console.attach.protocol import socket_path_for
from console.core import events as ev
from console.core.commands import Command
from console.core.events import RolloutState
from tests.test_attach_console import until
from tests.test_engine_helpers import journal_in, make_engine, spec_from
from tests.test_tui_helpers import SIZE, _private_config  # noqa: F401
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_console_run_serves_an_attach_socket(tmp_path: Path) -> None:
    run = make_engine(
        spec_from("batches: [1, 2, 3]\nmax_parallel: 1\n"),
        6,
        journal=journal_in(tmp_path, "shop-cr"),
        rollout_id="shop-cr",
    )
    run.fake.on(r"^install", lines=["unpacking"], delay=0.3)
    app = make_console(
        run.engine,
        serve_dir=tmp_path,
        remember_theme=False,
        process_stats=lambda: (0.0, 0.0),
    )
    sock = socket_path_for(tmp_path, "shop-cr")
    async with app.run_test(size=SIZE):
        await until(lambda: sock.exists() and app.view.batch_index is not None)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        oncall = await connect(sock)
        oncall.start()
        oncall.controller.execute(
            Command("pause", operator="oncall", reason="taking over from another terminal")
        )
        await until(lambda: app.view.state == RolloutState.PAUSED)

        def paused() -> list[ev.OperatorCommand]:
            return [
                e
                for e in app.view.timeline
                if isinstance(e, ev.OperatorCommand) and e.command == "pause"
            ]

        await wait_until(paused, what="the pause command in the console's timeline")
        assert [e.operator for e in paused()] == ["oncall"]
        await oncall.close()
        app.exit()
    await until(lambda: not sock.exists())
