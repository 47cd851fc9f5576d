"""``rolldeck rollback ID`` end to end against a real OpenSSH sshd: after a failed
rollout it takes back exactly the hosts the rollout changed, each to its recorded
previous version (read back over SSH), appended to the rollout's own journal; the
refusals are one line and exit 2, and nothing is journaled without a confirmation."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from console.core import events as ev
from console.store.journal import list_journals
from tests.fixtures.sshd import SSHDServer
from tests.test_way_back_resume import HOSTS, cli, journal, kill_in_the_bake, versions_over_ssh
from tests.test_way_back_resume import write_fleet as write_relay_fleet

pytestmark = pytest.mark.slow

# web-03's 2.0 is bad (its health fails), max_failures 0 and on_failure abort: the
# rollout fails in batch 2 with web-01..03 changed and web-04 never started
# (max_parallel 1).
SPEC = """\
service: ledger
version: "2.0"
inventory: inventory.yaml
batches: [1, 100%]
max_parallel: 1
max_failures: 0
on_failure: abort
between_batches: auto
current_version: cat {vars.root}/current/VERSION
# leases in the test's own tree: the session's sshd shares one HOME
lease: {path: "{vars.root}/.leases"}
steps:
  - name: install
    run: >-
      mkdir -p {vars.root}/releases/{version} &&
      printf '%s\\n' {version} > {vars.root}/releases/{version}/VERSION &&
      if [ {vars.bad} = 1 ]; then touch {vars.root}/releases/{version}/BROKEN; fi
    timeout: 10s
  - name: activate
    run: ln -sfn releases/{version} {vars.root}/current
    timeout: 10s
health:
  run: test -f {vars.root}/current/VERSION && test ! -e {vars.root}/current/BROKEN
  every: 0.1s
  healthy_after: 2
  deadline: 1s
rollback:
  steps:
    - {name: restore, run: "ln -sfn releases/{previous_version} {vars.root}/current"}
"""


def write_fleet(server: SSHDServer, where: Path) -> Path:
    lines = [
        f"defaults: {{user: {getpass.getuser()}, port: {server.port}, "
        f"key: {server.client_key}, known_hosts: {server.known_hosts}}}",
        "hosts:",
    ]
    for name in HOSTS:
        root = where / "hosts" / name
        (root / "releases" / "1.0").mkdir(parents=True)
        (root / "releases" / "1.0" / "VERSION").write_text("1.0\n")
        (root / "current").symlink_to("releases/1.0")
        bad = 1 if name == "web-03" else 0
        lines.append(f"  {name}: {{address: 127.0.0.1, vars: {{root: {root}, bad: {bad}}}}}")
    (where / "inventory.yaml").write_text("\n".join(lines) + "\n")
    spec = where / "rollout.yaml"
    spec.write_text(SPEC)
    return spec


async def test_rollback_after_a_failed_rollout_restores_every_changed_host(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    spec = write_fleet(sshd_server, tmp_path)
    state = tmp_path / "state"
    code, out, err = await cli("run", str(spec), "--headless", "--state-dir", str(state))
    assert code == 3, out + err  # failed
    (path,) = list_journals(state)
    rid = path.stem
    before = await versions_over_ssh(sshd_server, tmp_path)
    assert before == {"web-01": "2.0", "web-02": "2.0", "web-03": "2.0", "web-04": "1.0"}

    # Headless without --yes and no terminal to ask on: refused, nothing journaled.
    size = path.stat().st_size
    code, out, err = await cli("rollback", rid, "--headless", "--state-dir", str(state))
    assert code == 2, out + err
    assert "not rolled back" in err and "--yes" in err
    assert path.stat().st_size == size

    code, out, err = await cli("rollback", rid, "--headless", "--yes", "--state-dir", str(state))
    assert code == 4, out + err  # rolled back
    assert "web-04" not in out.split("reconciled:")[0]  # only the changed hosts take part
    after = await versions_over_ssh(sshd_server, tmp_path)
    assert after == dict.fromkeys(HOSTS, "1.0")

    events = journal(state)
    assert len(list_journals(state)) == 1  # appended to the rollout's own journal
    assert sum(isinstance(e, ev.RolloutStarted) for e in events) == 1
    cmd = [e for e in events if isinstance(e, ev.OperatorCommand) and e.command == "rollback"]
    assert cmd and cmd[-1].accepted and "failed rollout" in cmd[-1].detail
    rolled = {e.host for e in events if isinstance(e, ev.StepStarted) and e.rollback}
    assert rolled == {"web-01", "web-02", "web-03"}
    back = {
        e.host: e.detail
        for e in events
        if isinstance(e, ev.HostStateChanged) and e.state == ev.HostState.ROLLED_BACK
    }
    assert back == dict.fromkeys(("web-01", "web-02", "web-03"), "on 1.0")
    outcomes = [e.outcome for e in events if isinstance(e, ev.RolloutFinished)]
    assert outcomes == [ev.Outcome.FAILED, ev.Outcome.ROLLED_BACK]

    code, out, _ = await cli("history", "--state-dir", str(state))
    assert code == 0 and out.count(rid) == 1 and "rolled" in out
    code, out, _ = await cli("show", rid, "--state-dir", str(state))
    assert code == 0 and "rolled back" in out

    code, _, err = await cli("rollback", rid, "--headless", "--yes", "--state-dir", str(state))
    assert code == 2 and "already ended rolled_back: nothing to roll back" in err
    assert len(err.strip().splitlines()) == 1


async def test_rollback_refusals_are_one_line_exit_2(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    code, _, err = await cli("rollback", "nope", "--headless", "--state-dir", str(state))
    assert code == 2 and "no rollout 'nope'" in err and len(err.strip().splitlines()) == 1

    # A rollout refused by the preflight changed nothing: nothing to roll back.
    spec = write_fleet(sshd_server, tmp_path)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        inventory.read_text().replace("address: 127.0.0.1", "address: 127.0.0.2", 1)
    )
    code, out, err = await cli("run", str(spec), "--headless", "--state-dir", str(state))
    assert code == 3, out + err
    (path,) = list_journals(state)
    code, _, err = await cli(
        "rollback", path.stem, "--headless", "--yes", "--state-dir", str(state)
    )
    assert code == 2 and "changed no host: nothing to roll back" in err
    assert len(err.strip().splitlines()) == 1


async def test_a_resume_refused_then_rolled_back_instead(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    """The issue's stranded fleet, taken back instead of forward: killed in the bake
    after batch 1, a resume refused while web-04 is down (paused), then
    ``rolldeck rollback`` puts web-01 back on 1.0; web-04, never changed, is not
    needed for that."""
    from tests.test_way_back_resume import Relay

    relay = Relay(sshd_server.port)
    await relay.up()
    try:
        spec = write_relay_fleet(sshd_server, tmp_path, relay.port, max_failures="0")
        state = tmp_path / "state"
        rid = await kill_in_the_bake(spec, state)
        await relay.down()
        code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
        assert code == 6, out + err
        code, out, err = await cli(
            "rollback", rid[:-2], "--headless", "--yes", "--state-dir", str(state)
        )
        assert code == 4, out + err
        await relay.up()
        assert await versions_over_ssh(sshd_server, tmp_path) == dict.fromkeys(HOSTS, "1.0")
        code, _, err = await cli("resume", "--headless", "--state-dir", str(state))
        assert code == 2 and "no unfinished rollout" in err
    finally:
        await relay.down()
