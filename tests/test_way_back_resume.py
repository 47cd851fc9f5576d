"""Issue 18, a way back from every stop: a resume that preflight refuses leaves the
rollout paused and resumable, never finished.

Against a real OpenSSH sshd: ``rolldeck run --headless`` is killed (SIGKILL) during
the bake after batch 1 (web-01 on the new version, the rest on the old one). web-04
reaches the sshd through a TCP relay the test owns, on a port of its own: closing the
relay is a host that is down (connection refused), reopening it on the same port is
the host back, and the inventory never changes. The versions are read over SSH.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import sys
from pathlib import Path

import asyncssh
import pytest

from console.core import events as ev
from console.store.journal import list_journals, read_journal
from tests.fixtures.sshd import SSHDServer, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "console"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = ("web-01", "web-02", "web-03", "web-04")

SPEC = """\
service: ledger
version: "2.0"
inventory: inventory.yaml
batches: [1, 100%]
max_parallel: 4
max_failures: {max_failures}
on_failure: pause
between_batches: {{bake: 2s}}
current_version: cat {{vars.root}}/current/VERSION
# leases in the test's own tree: the session's sshd shares one HOME
lease: {{path: "{{vars.root}}/.leases"}}
steps:
  - name: install
    run: >-
      mkdir -p {{vars.root}}/releases/{{version}} &&
      printf '%s\\n' {{version}} > {{vars.root}}/releases/{{version}}/VERSION
    timeout: 10s
  - name: activate
    run: ln -sfn releases/{{version}} {{vars.root}}/current
    timeout: 10s
health:
  run: test -f {{vars.root}}/current/VERSION
  every: 0.1s
  healthy_after: 2
  deadline: 5s
rollback:
  steps:
    - {{name: restore, run: "ln -sfn releases/{{previous_version}} {{vars.root}}/current"}}
"""


class Relay:
    """A TCP relay 127.0.0.1:port -> the sshd: ``down()`` closes the port (and every
    connection through it), ``up()`` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.close()
            await self.server.wait_closed()
            self.server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(pipe(reader, up_writer))
                tg.create_task(pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}


def write_fleet(server: SSHDServer, where: Path, relay_port: int, max_failures: str) -> Path:
    """Four hosts on ``server`` (web-04 through the relay), each on 1.0; the spec."""
    public = Path(str(server.host_key) + ".pub").read_text().split()
    known = where / "known_hosts"
    known.write_text(
        server.known_hosts_line() + f"[127.0.0.1]:{relay_port} {public[0]} {public[1]}\n"
    )
    known.chmod(0o600)
    lines = [
        f"defaults: {{user: {getpass.getuser()}, key: {server.client_key}, known_hosts: {known}}}",
        "hosts:",
    ]
    for name in HOSTS:
        root = where / "hosts" / name
        (root / "releases" / "1.0").mkdir(parents=True)
        (root / "releases" / "1.0" / "VERSION").write_text("1.0\n")
        (root / "current").symlink_to("releases/1.0")
        port = relay_port if name == "web-04" else server.port
        lines.append(f"  {name}: {{address: 127.0.0.1, port: {port}, vars: {{root: {root}}}}}")
    (where / "inventory.yaml").write_text("\n".join(lines) + "\n")
    spec = where / "rollout.yaml"
    spec.write_text(SPEC.format(max_failures=max_failures))
    return spec


async def versions_over_ssh(server: SSHDServer, where: Path) -> dict[str, str]:
    """Each host's current version, read over SSH (``cat current/VERSION``)."""
    out: dict[str, str] = {}
    async with asyncssh.connect(
        "127.0.0.1",
        port=server.port,
        username=getpass.getuser(),
        client_keys=[str(server.client_key)],
        known_hosts=str(server.known_hosts),
        config=[],
    ) as conn:
        for name in HOSTS:
            result = await conn.run(f"cat {where / 'hosts' / name}/current/VERSION", check=True)
            out[name] = str(result.stdout).strip()
    return out


async def cli(*argv: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *argv,
        env={**os.environ, "PYTHONPATH": REPO},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def kill_in_the_bake(spec: Path, state: Path) -> str:
    """``rolldeck run --headless --yes``, SIGKILLed once the bake after batch 1 has
    started (journaled); the rollout id."""
    log = spec.parent / "run.log"
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        str(spec),
        "--headless",
        "--yes",
        "--state-dir",
        str(state),
        env={**os.environ, "PYTHONPATH": REPO},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=asyncio.subprocess.STDOUT,
    )

    def in_bake() -> bool:
        paths = list_journals(state)
        return proc.returncode is not None or bool(
            paths and b'"kind":"gate_waiting"' in paths[0].read_bytes()
        )

    try:
        await wait_until(in_bake, timeout=60, interval=0.005, what="the bake after batch 1")
        assert proc.returncode is None, "ended before the bake:\n" + log.read_text()
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    (path,) = list_journals(state)
    return path.stem


def journal(state: Path) -> list[ev.Event]:
    (path,) = list_journals(state)
    return read_journal(path)


async def test_a_refused_resume_stays_paused_and_a_later_resume_finishes(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    relay = Relay(sshd_server.port)
    await relay.up()
    try:
        spec = write_fleet(sshd_server, tmp_path, relay.port, max_failures="0")
        state = tmp_path / "state"
        rid = await kill_in_the_bake(spec, state)
        mixed = await versions_over_ssh(sshd_server, tmp_path)
        assert mixed == {"web-01": "2.0", "web-02": "1.0", "web-03": "1.0", "web-04": "1.0"}

        await relay.down()  # web-04 is down: its port refuses connections
        code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
        assert code == 6, out + err  # paused, not "failed"
        assert "preflight refused" in out + err and "web-04" in out + err
        assert "--allow-unreachable" in out + err
        assert f"rolldeck resume {rid}" in err
        events = journal(state)
        finished = [e for e in events if isinstance(e, ev.RolloutFinished)]
        assert finished and finished[-1].outcome == ev.Outcome.PAUSED
        # Nothing moved while it was refused.
        assert await versions_over_ssh(sshd_server, tmp_path) == mixed

        # Still the unfinished rollout `resume` finds (no ID given), again and again.
        code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
        assert code == 6, out + err

        await relay.up()  # web-04 is back, on the same port
        code, out, err = await cli("resume", "--headless", "--yes", "--state-dir", str(state))
        assert code == 0, out + err
        assert await versions_over_ssh(sshd_server, tmp_path) == dict.fromkeys(HOSTS, "2.0")
        events = journal(state)
        assert sum(isinstance(e, ev.RolloutStarted) for e in events) == 1
        last = [e for e in events if isinstance(e, ev.RolloutFinished)][-1]
        assert last.outcome == ev.Outcome.SUCCEEDED
        code, _, err = await cli("resume", "--headless", "--state-dir", str(state))
        assert code == 2 and "no unfinished rollout" in err
    finally:
        await relay.down()


async def test_resume_allow_unreachable_goes_ahead_within_the_budget(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    relay = Relay(sshd_server.port)
    await relay.up()
    try:
        spec = write_fleet(sshd_server, tmp_path, relay.port, max_failures="1")
        state = tmp_path / "state"
        await kill_in_the_bake(spec, state)
        await relay.down()
        code, out, err = await cli(
            "resume", "--headless", "--yes", "--allow-unreachable", "--state-dir", str(state)
        )
        assert code == 0, out + err  # succeeded, web-04 skipped within the budget of 1
        events = journal(state)
        last = [e for e in events if isinstance(e, ev.RolloutFinished)][-1]
        assert last.outcome == ev.Outcome.SUCCEEDED and "web-04" in last.reason
        skipped = [
            e
            for e in events
            if isinstance(e, ev.HostStateChanged)
            and e.host == "web-04"
            and e.state.value == "skipped"
        ]
        assert skipped and skipped[-1].detail.startswith("preflight")
        notices = [e.message for e in events if isinstance(e, ev.Notice)]
        assert any(m.startswith("--allow-unreachable") for m in notices)
        await relay.up()
        got = await versions_over_ssh(sshd_server, tmp_path)
        assert got == {"web-01": "2.0", "web-02": "2.0", "web-03": "2.0", "web-04": "1.0"}
    finally:
        await relay.down()
