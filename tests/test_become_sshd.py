"""become through real OpenSSH and real sudo: a non-root ``deployer`` login user with a
sudoers rule runs a root-only step (writing into a 0700 root directory).

The user is created here (useradd, a password set with chpasswd) and a rule is written
to /etc/sudoers.d/ for each test and removed after it; the sshd is this module's own,
in a directory the new user can read (its authorized_keys is read as that user).
Without root, useradd or sudo the tests skip with the reason; under REQUIRE_SSHD=1
(CI, which installs sudo) they fail instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.plan import make_plan
from console.spec import RolloutSpec, parse_spec
from console.store.journal import Journal
from console.transport import make_transport
from console.transport.base import TransportOptions
from inventory.model import Host
from tests.fixtures.sshd import SSHDServer, start_sshd, unique_sleep
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd

Install = Callable[[str], None]
TOOLS = ("useradd", "userdel", "chpasswd", "sudo", "visudo")


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_SSHD") == "1":
        pytest.fail(f"REQUIRE_SSHD=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class Deployer:
    name: str
    password: str


@pytest.fixture(scope="module")
def deployer() -> Iterator[Deployer]:
    if os.geteuid() != 0:
        _unavailable("become tests create a login user (useradd): run the suite as root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed (apt-get install sudo passwd)")
    name = f"rdkdep{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_urlsafe(12)
    home = Path(tempfile.mkdtemp(prefix=f"{name}-home-"))
    home.chmod(0o755)
    subprocess.run(
        ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    try:
        shutil.chown(home, user=name)
        # also unlocks the account: sshd refuses a locked one even with a key
        subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True
        )
        yield Deployer(name, password)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def server(deployer: Deployer) -> Iterator[SSHDServer]:
    base = Path(tempfile.mkdtemp(prefix="rolldeck-become-"))
    base.chmod(0o755)  # the deployer reads authorized_keys from here
    server = start_sshd(base / "sshd")
    (base / "sshd").chmod(0o755)
    (base / "sshd" / "authorized_keys").chmod(0o644)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sudoers(deployer: Deployer) -> Iterator[Install]:
    """``sudoers(rule)`` installs ``rule`` (checked with visudo) for this test only."""
    path = Path(f"/etc/sudoers.d/rolldeck-test-{deployer.name}")

    def install(rule: str) -> None:
        path.write_text(rule + "\n")
        path.chmod(0o440)
        check = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    yield install
    path.unlink(missing_ok=True)


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A directory only root may write into (0700, root's): the step's target."""
    path = Path(tempfile.mkdtemp(prefix="rolldeck-rootonly-"))
    assert path.stat().st_mode & 0o777 == 0o700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


SPEC = """
service: shop
version: "2.0"
batches: [1]
max_failures: 0
on_failure: abort
become: true
steps:
  - name: whoami
    run: id -un > {{vars.root}}/WHO
    timeout: 20s
  - name: install
    run: {install}
    timeout: {timeout}
  - name: plain
    run: id -un > /dev/null; echo plain-as-$(id -un)
    become: false
    timeout: 20s
{extra}
"""


def make_spec(
    install: str = "printf '%s\\n' {version} > {vars.root}/VERSION", **kw: str
) -> RolloutSpec:
    text = SPEC.format(install=install, timeout=kw.get("timeout", "20s"), extra=kw.get("extra", ""))
    return parse_spec(text, "become.yaml")


def host_for(server: SSHDServer, deployer: Deployer, root: Path, **extra: object) -> Host:
    return Host(
        name="web-01",
        address=server.address,
        port=server.port,
        user=deployer.name,
        key=str(server.client_key),
        known_hosts=str(server.known_hosts),
        vars={"root": str(root), **extra},
    )


def options(server: SSHDServer) -> TransportOptions:
    return TransportOptions(
        known_hosts=str(server.known_hosts),
        client_keys=[str(server.client_key)],
        ssh_config=[],
        connect_timeout=10.0,
    )


def engine_for(
    server: SSHDServer, spec: RolloutSpec, host: Host, journal: Journal | None = None
) -> Engine:
    return Engine(
        spec,
        [host],
        make_plan([host.name], spec.batches),
        make_transport(options(server)),
        journal=journal,
        operator="tester",
        monitors=False,
    )


async def drive(engine: Engine, timeout: float = 60.0) -> tuple[Outcome, list[Event]]:
    seen: list[Event] = []
    sub = engine.bus.subscribe()

    async def consume() -> None:
        async for batch in sub.batches():
            seen.extend(batch)

    async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        outcome = await engine.run()
    return outcome, seen


def lines_of(events: list[Event], step: str) -> list[str]:
    return [
        line
        for e in events
        if isinstance(e, ev.StepOutput) and e.step == step and e.stream == "stdout"
        for line in e.lines
    ]


async def test_nopasswd_rule_runs_a_root_only_step_as_root(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    sudoers(f"{deployer.name} ALL=(root) NOPASSWD: ALL")
    engine = engine_for(server, make_spec(), host_for(server, deployer, root_dir))
    outcome, events = await drive(engine)
    assert outcome == Outcome.SUCCEEDED, engine.recs["web-01"].detail
    assert (root_dir / "VERSION").read_text() == "2.0\n"
    assert (root_dir / "VERSION").stat().st_uid == 0
    assert (root_dir / "WHO").read_text() == "root\n"
    # become: false on the step: the login user; and no pid marker leaks into output
    assert lines_of(events, "plain") == [f"plain-as-{deployer.name}"]
    assert not any("rolldeck-become-pid" in repr(e) for e in events)


async def test_without_become_the_step_is_refused_by_the_os(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    """The control: the same step as the login user cannot write there."""
    sudoers(f"{deployer.name} ALL=(root) NOPASSWD: ALL")
    spec = dataclasses.replace(make_spec(), become=False)
    engine = engine_for(server, spec, host_for(server, deployer, root_dir))
    outcome, _ = await drive(engine)
    assert outcome != Outcome.SUCCEEDED
    assert "Permission denied" in engine.recs["web-01"].detail
    assert not (root_dir / "WHO").exists()


async def test_a_password_rule_without_a_password_fails_clearly(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    sudoers(f"{deployer.name} ALL=(root) ALL")
    engine = engine_for(server, make_spec(), host_for(server, deployer, root_dir))
    outcome, _ = await drive(engine)
    rec = engine.recs["web-01"]
    assert outcome != Outcome.SUCCEEDED and rec.state == HostState.FAILED
    detail = rec.detail
    assert "a password is required" in detail
    for word in ("web-01", deployer.name, "as root", "step whoami", "ROLLDECK_BECOME_PASSWORD"):
        assert word in detail, (word, detail)
    assert "NOPASSWD" in detail
    assert not (root_dir / "WHO").exists()


async def test_a_sudo_user_without_any_rule_is_told_which_rule(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    # sudo tells "not allowed" only after the password (sudo -n: "a password is required")
    sudoers(f"{deployer.name} ALL=(nobody) ALL")  # not as root
    host = host_for(server, deployer, root_dir, ansible_become_pass=deployer.password)
    engine = engine_for(server, make_spec(), host)
    await drive(engine)
    detail = engine.recs["web-01"].detail
    assert "no sudoers rule allows it" in detail, detail
    assert f"'{deployer.name} ALL=(root) NOPASSWD: ALL'" in detail


@pytest.mark.parametrize("source", ["host_var", "spec_var", "environment"])
async def test_a_password_rule_with_the_password_succeeds_and_it_is_never_shown(
    server: SSHDServer,
    deployer: Deployer,
    sudoers: Install,
    root_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    sudoers(f"{deployer.name} ALL=(root) ALL")
    host_vars: dict[str, object] = {}
    extra = ""
    if source == "host_var":
        host_vars["ansible_become_pass"] = deployer.password
    elif source == "spec_var":
        # a var named so that nothing would mask it by its name: become registers it
        extra = "become_password: '{vars.sudo_word}'\n"
        host_vars["sudo_word"] = deployer.password
    else:
        monkeypatch.setenv("ROLLDECK_BECOME_PASSWORD", deployer.password)
    # the step prints what it can read on stdin: sudo's password line must not be there
    spec = make_spec(
        install="cat; printf '%s\\n' {version} > {vars.root}/VERSION; echo done", extra=extra
    )
    journal = Journal.create(tmp_path, "become")
    engine = engine_for(server, spec, host_for(server, deployer, root_dir, **host_vars), journal)
    outcome, events = await drive(engine)
    assert outcome == Outcome.SUCCEEDED, engine.recs["web-01"].detail
    assert (root_dir / "VERSION").read_text() == "2.0\n"
    assert (root_dir / "WHO").read_text() == "root\n"
    assert lines_of(events, "install") == ["done"]
    secret = deployer.password.encode()
    assert secret not in journal.path.read_bytes()
    assert secret not in repr(events).encode()
    assert secret not in server.log.read_bytes()
    assert deployer.password not in engine.recs["web-01"].detail


async def test_a_wrong_password_fails_clearly(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    sudoers(f"{deployer.name} ALL=(root) ALL")
    host = host_for(server, deployer, root_dir, ansible_become_password="not-" + deployer.password)
    engine = engine_for(server, make_spec(), host)
    await drive(engine)
    detail = engine.recs["web-01"].detail
    assert "the become password was wrong (from ansible_become_password)" in detail, detail


def remote_processes(server: SSHDServer, deployer: Deployer, marker: str) -> list[str]:
    """``ps`` over SSH on the host: every live process whose command line has
    ``marker`` (the ps command itself does not name it)."""
    argv = [
        "ssh",
        "-p",
        str(server.port),
        "-i",
        str(server.client_key),
        "-o",
        f"UserKnownHostsFile={server.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-F",
        "/dev/null",
        f"{deployer.name}@{server.address}",
        "ps -A -o stat=,user=,args=",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    return [
        line for line in out.splitlines() if marker in line and not line.lstrip().startswith("Z")
    ]


def local_sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "username"]):
        if proc.info["cmdline"] == marker.split() and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.mark.parametrize("password", [False, True])
async def test_a_hung_step_under_become_is_killed_on_timeout(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path, password: bool
) -> None:
    sudoers(f"{deployer.name} ALL=(root) {'' if password else 'NOPASSWD: '}ALL")
    sleep = unique_sleep()
    extra = {"ansible_become_pass": deployer.password} if password else {}
    spec = make_spec(install=f"trap '' TERM HUP; {sleep}", timeout="3s")
    engine = engine_for(server, spec, host_for(server, deployer, root_dir, **extra))
    await drive(engine)
    rec = engine.recs["web-01"]
    assert rec.state == HostState.FAILED and rec.detail == "timeout in install", rec.detail
    await wait_until(lambda: not local_sleepers(sleep), what=f"{sleep} gone", interval=0.1)
    assert remote_processes(server, deployer, sleep) == []


async def test_a_hung_step_under_become_is_killed_on_abort(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    sudoers(f"{deployer.name} ALL=(root) NOPASSWD: ALL")
    sleep = unique_sleep()
    spec = make_spec(install=sleep, timeout="10m")
    engine = engine_for(server, spec, host_for(server, deployer, root_dir))
    running = asyncio.create_task(drive(engine))
    try:
        await wait_until(lambda: bool(local_sleepers(sleep)), what=f"{sleep} running")
        assert [p.info["username"] for p in local_sleepers(sleep)] == ["root"]
        assert remote_processes(server, deployer, sleep)  # ps over SSH sees it too
        engine.abort(reason="stop now")
        outcome, _ = await running
    finally:
        if not running.done():
            running.cancel()
    assert outcome == Outcome.ABORTED
    assert engine.recs["web-01"].detail == "aborted during install"
    await wait_until(lambda: not local_sleepers(sleep), what=f"{sleep} gone", interval=0.1)
    assert remote_processes(server, deployer, sleep) == []


async def test_preflight_reads_the_version_and_checks_under_become(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    """The version file and the check's target are root's only: preflight passes only if
    it runs them under become, as the deploy does (a per-step opt-out stays honoured)."""
    sudoers(f"{deployer.name} ALL=(root) NOPASSWD: ALL")
    (root_dir / "VERSION").write_text("1.0\n")
    extra = (
        "current_version: cat {vars.root}/VERSION\n"
        "preflight:\n"
        "  - name: writable\n"
        "    run: test -w {vars.root}\n"
        "  - name: as-login\n"
        '    run: test "$(id -un)" != root\n'
        "    become: false\n"
    )
    engine = engine_for(server, make_spec(extra=extra), host_for(server, deployer, root_dir))
    outcome, events = await drive(engine)
    assert outcome == Outcome.SUCCEEDED, engine.recs["web-01"].detail
    results = [e for e in events if isinstance(e, ev.PreflightResult)]
    assert [(r.ok, r.version) for r in results] == [(True, "1.0")], results
    assert (root_dir / "VERSION").read_text() == "2.0\n"


async def test_preflight_names_sudo_when_it_refuses_the_version_read(
    server: SSHDServer, deployer: Deployer, sudoers: Install, root_dir: Path
) -> None:
    sudoers(f"{deployer.name} ALL=(root) ALL")  # a password rule, none given
    (root_dir / "VERSION").write_text("1.0\n")
    spec = make_spec(extra="current_version: cat {vars.root}/VERSION\n")
    engine = engine_for(server, spec, host_for(server, deployer, root_dir))
    outcome, events = await drive(engine)
    assert outcome != Outcome.SUCCEEDED
    results = [e for e in events if isinstance(e, ev.PreflightResult)]
    assert len(results) == 1 and not results[0].ok
    assert "password" in results[0].error and "sudo" in results[0].error, results[0].error
