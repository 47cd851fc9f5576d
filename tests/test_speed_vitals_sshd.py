"""Default vitals only where someone looks (issue 13), counted at a real OpenSSH sshd.

A spec without a ``vitals`` key polls the default vitals only while a console shows
the rollout; a headless run (``build_engine(exit_when_paused=True)``, what ``run
--headless``/``--json`` build) never runs them. An explicit ``vitals`` section polls in
every mode. The sshd of tests/test_polls_sshd.py records every command it executes
(the hosts say ``rolldeck_shell: none``: one exec per poll); the watched run is the
control that shows the counting can fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from console.core.events import HostState
from console.plan import make_plan
from console.runtime.rollout import Rollout
from console.runtime.session import build_engine
from console.signals.polls import ONLY_WITH_CONSOLE, planned_polls, vitals_of
from console.spec import parse_spec
from tests.fixtures.audited_sshd import AuditedSSHD
from tests.fixtures.sshd import make_fleet
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd

HEALTH = "echo speed-health"
VITALS_MARK = "/proc/loadavg"  # in the default VITALS_COMMAND, in no other command here

# Host 1 deploys and is watched; host 2 waits in its step for a file the test never
# makes, so the rollout stays in flight (monitors polling) until the test aborts it.
SPEC = f"""\
service: speed
version: "2.0"
batches: [1, 100%]
steps: ["while [ ! -e {{vars.root}}/go ]; do sleep 0.05; done"]
health: {{run: "{HEALTH}", every: 200ms, watch_every: 200ms, healthy_after: 1, timeout: 5s}}
"""


async def _in_flight(
    server: AuditedSSHD,
    tmp_path: Path,
    spec_text: str,
    *,
    headless: bool,
    until: Callable[[], bool],
) -> None:
    server.audit.unlink(missing_ok=True)
    fleet = make_fleet(server.server, tmp_path, 2, extra_vars={"rolldeck_shell": "none"})
    (fleet.root(fleet.hosts[0].name) / "go").touch()
    spec = parse_spec(spec_text, str(tmp_path / "rollout.yaml"))
    names = [h.name for h in fleet.hosts]
    rollout = Rollout(spec, fleet.hosts, make_plan(names, spec.batches), "inventory.yaml")
    engine = build_engine(
        rollout, operator="t", journal=None, options=fleet.options, exit_when_paused=headless
    )
    task = asyncio.create_task(engine.run())
    try:
        await wait_until(
            lambda: engine.recs[names[0]].state == HostState.HEALTHY or task.done(),
            what="host 1 deployed",
            timeout=60,
        )
        assert not task.done(), task.result()
        await wait_until(until, what="the polls to be seen by sshd", timeout=60)
        assert not task.done(), task.result()
    finally:
        engine.abort("test over")
        await asyncio.wait_for(task, 60)


async def test_headless_without_the_key_polls_no_vitals(audited: AuditedSSHD, tmp_path) -> None:
    # 35 watch probes at 200 ms: 7 s of monitoring, past both hosts' first default
    # vitals poll (at most 5 s after the monitors start) had a console been there.
    await _in_flight(
        audited, tmp_path, SPEC, headless=True, until=lambda: audited.count(HEALTH) >= 35
    )
    assert audited.count(VITALS_MARK) == 0, audited.commands()[:20]
    assert audited.count(HEALTH) >= 35


async def test_with_a_console_the_default_vitals_are_polled(audited: AuditedSSHD, tmp_path) -> None:
    """The control: same rollout, a console watching: the counting above can fail."""
    await _in_flight(
        audited, tmp_path, SPEC, headless=False, until=lambda: audited.count(VITALS_MARK) >= 2
    )


async def test_headless_with_a_vitals_section_polls_them(audited: AuditedSSHD, tmp_path) -> None:
    spec = SPEC + "vitals: {every: 300ms}\n"
    await _in_flight(
        audited, tmp_path, spec, headless=True, until=lambda: audited.count(VITALS_MARK) >= 4
    )


def test_polls_say_when_the_default_vitals_run() -> None:
    base = 'service: s\nversion: "2"\nsteps: ["true"]\n'
    default = parse_spec(base, "r.yaml")
    assert not default.vitals_given
    assert vitals_of(default, console=True) is not None
    assert vitals_of(default, console=False) is None
    (poll,) = planned_polls(default)
    assert poll.signal == "vitals" and poll.when == ONLY_WITH_CONSOLE
    assert "only while a console shows them" in poll.describe()
    assert planned_polls(default, console=False) == ()
    for given in ("vitals: true\n", "vitals: {every: 9s}\n", "vitals: cat /proc/loadavg\n"):
        spec = parse_spec(base + given, "r.yaml")
        assert spec.vitals_given and vitals_of(spec, console=False) is not None, given
        (poll,) = planned_polls(spec, console=False)
        assert "only while" not in poll.describe(), given
    off = parse_spec(base + "vitals: false\n", "r.yaml")
    assert vitals_of(off, console=True) is None and planned_polls(off) == ()
