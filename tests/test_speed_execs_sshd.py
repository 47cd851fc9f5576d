"""Execs per host, counted where a real OpenSSH sshd runs them: they must not regrow.

The test's sshd runs every session through a ``ForceCommand`` wrapper that appends
``$SSH_ORIGINAL_COMMAND`` to a file before running it (as tests/test_polls_sshd.py
does), so the file is the list of commands the server really executed. A rollout of
3 steps + health + ``current_version`` with host leases on must cost each host its
steps as execs and one kept-open shell: the lease take and the version read in one
command (preflight), no second read at deploy start (the lease held since the
preflight makes that read the "previous" version), the release and the "new" version
read in one, the health probes (gating and watch): all in the connection's shell. A
host with
``rolldeck_lease: none`` has no lease to vouch for it, so its "previous" version is read
again: one exec more, which shows the counting can fail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from console.core import events as ev
from console.engine.leases import LeaseOptions
from console.plan import make_plan
from console.runtime.rollout import Rollout
from console.runtime.session import build_engine
from console.spec import parse_spec
from tests.fixtures.audited_sshd import AuditedSSHD
from tests.fixtures.sshd import make_fleet

STEPS = 3
SPEC = """\
service: speedexecs-{tag}
version: "2.0"
batches: [2, 100%]
between_batches: auto
current_version: cat {{vars.root}}/current
steps:
  - {{name: drain,   run: "touch {{vars.root}}/drained"}}
  - {{name: install, run: "echo {{version}} > {{vars.root}}/next"}}
  - {{name: switch,  run: "mv {{vars.root}}/next {{vars.root}}/current && rm -f {{vars.root}}/drained"}}
health: {{run: "test $(cat {{vars.root}}/current) = {{version}}", every: 200ms, healthy_after: 1}}
lease: {{path: "{{vars.root}}/leases"}}
"""  # noqa: E501


async def _rollout(
    audited: AuditedSSHD, base: Path, tag: str, extra: dict[str, object]
) -> tuple[dict[str, list[str]], list[ev.Event], dict[str, Path]]:
    """Run a 4-host rollout to its end; each host's commands as sshd saw them (by the
    host's root, which every templated command and its lease name carry), the events."""
    audited.audit.unlink(missing_ok=True)
    fleet = make_fleet(audited.server, base, 4, extra_vars=extra)
    roots = {h.name: Path(str(h.vars["root"])) for h in fleet.hosts}
    for root in roots.values():
        (root / "current").write_text("1.0\n")
    spec = parse_spec(SPEC.format(tag=tag), str(base / "rollout.yaml"))
    names = [h.name for h in fleet.hosts]
    rollout = Rollout(spec, fleet.hosts, make_plan(names, spec.batches), "inventory.yaml")
    engine = build_engine(
        rollout,
        operator="t",
        journal=None,
        options=fleet.options,
        leases=LeaseOptions(operator="t"),
    )
    sub = engine.bus.subscribe()
    outcome = await asyncio.wait_for(engine.run(), 120)
    events = sub.drain()
    assert outcome == ev.Outcome.SUCCEEDED, [e for e in events if isinstance(e, ev.Notice)]
    by_host: dict[str, list[str]] = {n: [] for n in names}
    fleet_lock, other = [], []
    for command in audited.commands():
        mine = [n for n, root in roots.items() if f"{root}/" in command or f"@{n}" in command]
        if "read -r rolldeck_l" in command:  # a kept shell
            other.append(command)
        elif "rolldeck-lease" in command and not any(f"@{n}" in command for n in names):
            fleet_lock.append(command)  # the service's lock on the lock host
        elif len(mine) == 1:
            by_host[mine[0]].append(command)
        else:
            other.append(command)
    assert len(fleet_lock) == (2 if extra.get("rolldeck_lease") != "none" else 0), fleet_lock
    # A probe still running in a kept shell when the rollout ends is stopped, as every
    # cancelled command is: one kill exec (it names no root). A loaded machine makes
    # that likelier; it is not a poll.
    kills = [c for c in other if "echo KILL" in c]
    other = [c for c in other if c not in kills]
    assert len(kills) <= len(names), kills
    # nothing else but, at most, one kept-open monitor shell a host (it names no root),
    # which reads a prelude (the lease function) first
    assert len(other) <= len(names), other
    assert all("read -r rolldeck_p" in c for c in other), other
    return by_host, events, roots


def _versions(events: list[ev.Event], role: str) -> dict[str, str | None]:
    return {e.host: e.version for e in events if isinstance(e, ev.VersionRead) and e.role == role}


async def test_a_host_costs_at_most_steps_plus_two_execs(
    audited: AuditedSSHD, tmp_path: Path
) -> None:
    by_host, events, roots = await _rollout(audited, tmp_path, "shell", {})
    for name, commands in by_host.items():
        # the steps; one more only when the shell was busy with a poll at that moment
        assert STEPS <= len(commands) <= STEPS + 1, (name, len(commands), commands)
        assert sum("touch" in c and "drained" in c for c in commands) == 1, commands
    # the journal still has each host's previous and new version, and the leases are gone
    assert _versions(events, "previous") == dict.fromkeys(roots, "1.0")
    assert _versions(events, "new") == dict.fromkeys(roots, "2.0")
    for root in roots.values():
        assert (root / "current").read_text().strip() == "2.0"
        leases = root / "leases"
        assert not [p for p in leases.iterdir() if not p.name.endswith(".history")], leases
        history = next(leases.glob("*@*.history")).read_text()
        assert "taken by" in history and "released by" in history, history


async def test_without_a_lease_the_previous_version_is_read_again(
    audited: AuditedSSHD, tmp_path: Path
) -> None:
    """``rolldeck_lease: none``: nothing vouches that the host is unchanged since the
    preflight, so its "previous" version is read again before its first step."""
    by_host, events, roots = await _rollout(audited, tmp_path, "none", {"rolldeck_lease": "none"})
    for name, commands in by_host.items():
        reads = [c for c in commands if c.splitlines()[-1] == f"cat {roots[name]}/current"]
        assert len(reads) == 3, (name, commands)  # preflight, previous, new
        assert len(commands) == STEPS + 3, (name, commands)  # the bound above can fail
    assert _versions(events, "previous") == dict.fromkeys(roots, "1.0")
