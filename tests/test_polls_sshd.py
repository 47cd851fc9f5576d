"""``vitals: false`` means no vitals polls, proven on what a real OpenSSH sshd ran.

The test's sshd runs every session through a ``ForceCommand`` wrapper that appends
``$SSH_ORIGINAL_COMMAND`` to a file before running it, so the file is the list of
commands the server really executed. The hosts say ``rolldeck_shell: none``: every
poll is an exec of its own (in a kept-open shell the polls would be lines written to
one shell, invisible to sshd). The same rollout without the ``vitals`` key must show
the default vitals command in that file, so the counting can fail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from console.core.events import HostState
from console.plan import make_plan
from console.runtime.rollout import Rollout
from console.runtime.session import build_engine
from console.spec import parse_spec
from tests.fixtures.audited_sshd import AuditedSSHD
from tests.fixtures.sshd import make_fleet
from tests.waiting import wait_until

HEALTH = "echo health-probe"
VITALS_MARK = "/proc/loadavg"  # in the default VITALS_COMMAND, in no other command here


SPEC = f"""\
service: polls
version: "2.0"
batches: [1, 100%]
between_batches: manual
steps: ["true"]
health: {{run: "{HEALTH}", every: 200ms, watch_every: 200ms, healthy_after: 1, timeout: 5s}}
"""


async def _watch_at_the_gate(audited: AuditedSSHD, tmp_path: Path, spec_text: str, until) -> None:  # type: ignore[no-untyped-def]
    """Run a 2-host rollout to its manual gate (host 1 deployed and watched, the
    monitors of both polling) and keep it there until ``until()``; then abort."""
    audited.audit.unlink(missing_ok=True)
    fleet = make_fleet(audited.server, tmp_path, 2, extra_vars={"rolldeck_shell": "none"})
    spec = parse_spec(spec_text, str(tmp_path / "rollout.yaml"))
    names = [h.name for h in fleet.hosts]
    rollout = Rollout(spec, fleet.hosts, make_plan(names, spec.batches), "inventory.yaml")
    engine = build_engine(rollout, operator="t", journal=None, options=fleet.options)
    task = asyncio.create_task(engine.run())
    try:
        await wait_until(
            lambda: engine.recs[names[0]].state == HostState.HEALTHY or task.done(),
            what="host 1 deployed",
            timeout=60,
        )
        assert not task.done(), task.result()
        await wait_until(until, what="the polls to be seen by sshd", timeout=60)
    finally:
        engine.abort("test over")
        await asyncio.wait_for(task, 60)


async def test_vitals_false_runs_no_vitals_command(audited: AuditedSSHD, tmp_path: Path) -> None:
    # 40 health polls at 200 ms: the monitors ran well past the default vitals' first
    # poll (at most 5 s after they start), on both hosts.
    await _watch_at_the_gate(
        audited,
        tmp_path,
        SPEC + "vitals: false\n",
        lambda: audited.count(HEALTH) >= 40,
    )
    commands = audited.commands()
    assert not [c for c in commands if VITALS_MARK in c], commands[:20]
    assert audited.count(HEALTH) >= 40


async def test_without_the_key_vitals_are_polled(audited: AuditedSSHD, tmp_path: Path) -> None:
    """The default is on (the dashboard shows vitals): the counting above can fail."""
    await _watch_at_the_gate(audited, tmp_path, SPEC, lambda: audited.count(VITALS_MARK) >= 2)
    assert audited.count(VITALS_MARK) >= 2
