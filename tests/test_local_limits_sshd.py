"""Local limits against a real OpenSSH sshd: descriptors per host measured, 2,000 hosts
under a 1,024 hard limit refused before any connection, a low soft limit raised and
the rollout run, and a missing local user name refused once (never a host failure)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.runtime.limits import FDS_PER_SSH_HOST
from console.transport import make_transport
from tests.fixtures.sshd import SSHDServer, make_fleet

CLI = [sys.executable, "-m", "console"]
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
SPEC = """\
service: limits
version: "2.0"
inventory: inventory.yaml
batches: [100%]
max_parallel: 50
vitals: false
steps:
  - name: mark
    run: "touch {vars.root}/deployed"
"""


def fds() -> set[str]:
    """What this process's descriptors point at (``socket:[inode]``, paths): a
    descriptor an earlier test leaves closing meanwhile is not one of ours, and a
    number reused for a new one still counts as new."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
    return out


async def test_one_descriptor_per_host_measured(sshd_fleet) -> None:  # type: ignore[no-untyped-def]
    """What limits.FDS_PER_SSH_HOST says, counted: a connection per host, with a
    command run, a poll in the kept-open shell and a log tail running on each."""
    fleet = sshd_fleet(40)
    transport = make_transport(fleet.options)
    before = fds()
    try:
        conns = [await transport.connect(h) for h in fleet.hosts]
        await asyncio.gather(*(c.run("true", timeout=20) for c in conns))
        shells = [c.persistent_shell() for c in conns]
        await asyncio.gather(*(s.run("echo x", timeout=20) for s in shells if s is not None))
        streams = [c.stream("echo up; sleep 30") for c in conns]
        assert await asyncio.gather(*(anext(s) for s in streams)) == ["up"] * 40
        held = len(fds() - before)
        for stream in streams:
            await stream.aclose()
        for shell in shells:
            if shell is not None:
                await shell.close()
    finally:
        await transport.close()
    assert 40 * FDS_PER_SSH_HOST <= held <= 40 * FDS_PER_SSH_HOST + 4, held


def write_checkout(where: Path, server: SSHDServer, hosts: int, roots: Path) -> Path:
    """A spec and a native inventory of ``hosts`` logical hosts on ``server``."""
    lines = [
        f"defaults: {{user: {os.environ.get('USER') or 'root'}, port: {server.port}, "
        f"key: {server.client_key}, known_hosts: {server.known_hosts}}}",
        "hosts:",
    ]
    for i in range(hosts):
        root = roots / f"h{i:04d}"
        lines.append(f"  h{i:04d}: {{address: 127.0.0.1, vars: {{root: {root}}}}}")
    (where / "inventory.yaml").write_text("\n".join(lines) + "\n")
    spec = where / "rollout.yaml"
    spec.write_text(SPEC)
    return spec


def connections_seen(server: SSHDServer) -> int:
    text = server.log.read_text(errors="replace") if server.log.exists() else ""
    return text.count("Connection from")


@pytest.fixture(scope="module")
def verbose_sshd(sshd_factory) -> SSHDServer:  # type: ignore[no-untyped-def]
    """An sshd that logs every TCP connection ("Connection from ...")."""
    return sshd_factory(log_level="VERBOSE")  # type: ignore[no-any-return]


def rolldeck(
    *argv: str, nofile: str | None = None, env: dict[str, str] | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    prefix = ["prlimit", f"--nofile={nofile}", "--"] if nofile else []
    return subprocess.run(
        [*prefix, *CLI, *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        **kw,  # type: ignore[arg-type]
    )


needs_prlimit = pytest.mark.skipif(
    shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed"
)


@needs_prlimit
def test_two_thousand_hosts_under_a_1024_hard_limit_refused_before_connecting(
    verbose_sshd: SSHDServer, tmp_path: Path
) -> None:
    spec = write_checkout(tmp_path, verbose_sshd, 2000, tmp_path / "roots")
    seen = connections_seen(verbose_sshd)
    done = rolldeck(
        "run", str(spec), "--headless", "--state-dir", str(tmp_path / "state"), nofile="1024:1024"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr
    assert "RLIMIT_NOFILE: 2000 hosts need about 2096 open files" in err, err
    assert "hard limit is 1024" in err and "ulimit -n 2096" in err and "--targets" in err
    assert "no host was contacted" in err and "unreachable" not in done.stdout + err
    assert connections_seen(verbose_sshd) == seen  # not one TCP connection reached sshd
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").glob("*.jsonl"))


@needs_prlimit
def test_low_soft_limit_is_raised_and_the_rollout_runs(
    verbose_sshd: SSHDServer, tmp_path: Path
) -> None:
    """100 hosts under a soft limit of 80 (what 2,000 hosts under 1,024 are, scaled to
    what one test sshd holds): without the raise they would fail with EMFILE."""
    roots = tmp_path / "roots"
    spec = write_checkout(tmp_path, verbose_sshd, 100, roots)
    for i in range(100):
        (roots / f"h{i:04d}").mkdir(parents=True)
    done = rolldeck(
        "run",
        str(spec),
        "--headless",
        "--state-dir",
        str(tmp_path / "state"),
        nofile=f"80:{HARD if HARD != resource.RLIM_INFINITY else 65536}",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "open-file limit raised from 80 to" in out
    assert "Too many open files" not in out
    assert all((roots / f"h{i:04d}" / "deployed").exists() for i in range(100))


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory a uid without a passwd entry can read (tmp_path's parents are 0700)."""
    where = Path(tempfile.mkdtemp(prefix="rolldeck-nouser-"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


NO_PASSWD_UID = 4242


def _readable_by(uid: int, directory: Path) -> bool:
    """Whether ``uid`` (no groups) can list ``directory``: asked of a child that
    becomes it (root cannot tell from the modes alone, ACLs included)."""
    probe = (
        f"import os; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); "
        f"os.listdir({str(directory)!r})"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def test_without_user_and_logname_the_uid_entry_is_used(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    fleet = make_fleet(sshd_server, tmp_path, 2)
    spec = write_checkout(tmp_path, sshd_server, 2, tmp_path / "hosts")
    for i in range(2):
        (tmp_path / "hosts" / f"h{i:04d}").mkdir(parents=True, exist_ok=True)
    assert fleet.hosts
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    done = rolldeck("run", str(spec), "--headless", "--state-dir", str(tmp_path / "state"), env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-2000:]
    assert "Unknown local username" not in out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as a uid with no passwd entry")
def test_no_local_user_name_is_refused_once_before_connecting(
    verbose_sshd: SSHDServer, open_dir: Path
) -> None:
    import pwd

    try:
        pwd.getpwuid(NO_PASSWD_UID)
        pytest.skip(f"uid {NO_PASSWD_UID} has a passwd entry here")
    except KeyError:
        pass
    package = Path(__file__).resolve().parent.parent / "console" / "store"
    if not _readable_by(NO_PASSWD_UID, package):
        # `run` imports parts of rolldeck as it goes (lazily): a uid that cannot read
        # the checkout (a clone in a 0700 directory) cannot run it at all, as no real
        # install would be
        pytest.skip(f"this checkout ({package.parent.parent}) is unreadable to uid {NO_PASSWD_UID}")
    spec = write_checkout(open_dir, verbose_sshd, 3, open_dir / "roots")
    for path in open_dir.iterdir():
        path.chmod(0o644)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("USER", "LOGNAME", "LNAME", "USERNAME", "XDG_STATE_HOME")
    }
    env["HOME"] = str(open_dir)
    seen = connections_seen(verbose_sshd)
    state = str(open_dir / "state")
    # The venv lives under /root (unreadable to that uid): start as root, import what
    # `run` needs, then drop to the uid, as a container's process without an entry is.
    as_nobody = (
        "import os, sys, console.cli, console.subcommands.run, console.subcommands.check, "
        "console.runtime.limits, encodings.utf_8_sig, getpass, pwd; "
        f"os.setgid({NO_PASSWD_UID}); os.setgroups([]); os.setuid({NO_PASSWD_UID}); "
        "sys.exit(console.cli.main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", as_nobody, "run", str(spec), "--headless", "--state-dir", state],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=str(open_dir),
    )
    err = done.stderr
    assert done.returncode == 2, done.stdout + err
    assert f"no local user name: uid {NO_PASSWD_UID} has no passwd entry" in err
    assert err.count("no local user name") == 1 and "Unknown local username" not in err
    assert "unreachable" not in done.stdout + err
    assert connections_seen(verbose_sshd) == seen
