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
import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from console.core.events import HostState
from console.plan import make_plan
from console.runtime.rollout import Rollout
from console.runtime.session import build_engine
from console.spec import parse_spec
from tests.fixtures.sshd import SSHD, SSHDServer, free_port, make_fleet, require_sshd, write_keypair
from tests.waiting import wait_until

HEALTH = "echo health-probe"
VITALS_MARK = "/proc/loadavg"  # in the default VITALS_COMMAND, in no other command here


@dataclass
class AuditedSSHD:
    server: SSHDServer
    audit: Path

    def commands(self) -> list[str]:
        if not self.audit.exists():
            return []
        return [c for c in self.audit.read_text(errors="replace").split("\0") if c]

    def count(self, needle: str) -> int:
        return sum(1 for c in self.commands() if needle in c)


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "sshd exited at start"
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) == 0 and sock.recv(64).startswith(b"SSH-"):
                return
        time.sleep(0.05)  # polling a port at start-up, not a test's wait
    raise AssertionError("sshd did not start listening")


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedSSHD]:
    require_sshd()
    work = tmp_path_factory.mktemp("audited-sshd")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key, client_key = work / "host_ed25519", work / "client_ed25519"
    write_keypair(host_key)
    write_keypair(client_key)
    authorized = work / "authorized_keys"
    authorized.write_text(Path(str(client_key) + ".pub").read_text())
    home = work / "home"
    home.mkdir()
    audit = work / "commands.log"
    wrapper = work / "audit.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\0' \"$SSH_ORIGINAL_COMMAND\" >> {audit}\n"
        'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    wrapper.chmod(0o755)
    port = free_port()
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {host_key}",
                "PidFile none",
                f"AuthorizedKeysFile {authorized}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "UseDNS no",
                "PrintMotd no",
                "MaxStartups 400:30:800",
                "MaxSessions 64",
                f"SetEnv HOME={home}",
                f"ForceCommand {wrapper}",
            ]
        )
        + "\n"
    )
    process = subprocess.Popen(
        [SSHD, "-D", "-f", str(config), "-E", str(work / "sshd.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = SSHDServer(work, port, host_key, client_key, work / "known_hosts", process, work / "x")
    try:
        _wait_listening(process, port)
        server.known_hosts.write_text(server.known_hosts_line())
        yield AuditedSSHD(server, audit)
    finally:
        server.stop()


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
