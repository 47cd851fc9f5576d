"""Detach for real: a background owner process (new session, log file, socket), found
by ``ps``, driven by ``rolldeck attach --send`` from other processes, watched by a
headless ``rolldeck attach --json``, then audited by ``history`` and ``show``.

The owner is the real engine and the real :func:`serve_headless` over the in-memory
FakeTransport (run.py's ``--serve`` wiring is the coordinator's; this drives the same
entry point it will call)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.attach.detach import DetachError, detached_command, spawn_detached
from console.attach.protocol import socket_path_for
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

OWNER = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from console.attach.detach import serve_headless
from console.store.journal import Journal
from console.transport.fake import Reply
from tests.test_engine_helpers import make_engine, spec_from

state_dir, rid = Path(sys.argv[1]), sys.argv[2]
journal = Journal.create(state_dir, rid, {"who": "owner", "pid": __import__("os").getpid()})
# the install's timeout outlasts a held host (below) on a loaded machine
STEPS = (
    "steps:\\n"
    '  - {name: install, run: "install {version}", timeout: 120s}\\n'
    '  - {name: activate, run: "activate {version}", timeout: 5s}\\n'
)
run = make_engine(
    spec_from("batches: [1, 2, 3]\\nmax_parallel: 1\\n" + STEPS),
    6,
    journal=journal,
    rollout_id=rid,
)
run.fake.on(r"^install", lines=["unpacking"], delay=1.0)  # 6 s in all
go = asyncio.Event()
if sys.argv[4:] == ["hold"]:  # the last host waits for a GO file: the test's commands
    # (each a new interpreter, slow on a loaded machine) find the rollout running
    run.fake.on(r"^install", Reply(lines=["unpacking"], wait=go), hosts=["h06"])


async def main():
    async def watch():
        while not (state_dir / "GO").exists():
            await asyncio.sleep(0.05)
        go.set()

    watcher = asyncio.create_task(watch())
    try:
        return await serve_headless(run.engine, state_dir, mode="plain")
    finally:
        watcher.cancel()


outcome = asyncio.run(main())
print("owner done:", outcome.value)
"""


def rolldeck(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # our own child: reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still running")


def journaled_state(journal: Path) -> str | None:
    """The last rollout state the owner's journal holds (a line being written is
    skipped)."""
    state = None
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") == "rollout_state":
            state = record.get("state")
    return state


def test_detached_owner_attach_send_ps_history_show(tmp_path: Path) -> None:
    sd = str(tmp_path)
    cmd = [sys.executable, "-c", OWNER, sd, "shop-d1", str(ROOT), "hold"]
    pid, rid = spawn_detached(["run", "x"], tmp_path, command=cmd)
    assert rid == "shop-d1" and pid != os.getpid()
    sock = socket_path_for(tmp_path, rid)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    log = tmp_path / f"{rid}.log"
    journal = tmp_path / f"{rid}.jsonl"
    assert log.exists() and stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert os.getsid(pid) == pid  # its own session: the terminal going away cannot hit it

    watcher = subprocess.Popen(
        [sys.executable, "-m", "console", "attach", "--state-dir", sd, "--json", "--read-only"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ps = rolldeck("ps", "--state-dir", sd, "--json")
        assert ps.returncode == 0, ps.stderr
        rows = [json.loads(line) for line in ps.stdout.splitlines()]
        assert [(r["rollout_id"], r["pid"]) for r in rows] == [(rid, pid)]
        assert rows[0]["operator"] == "tester" and rows[0]["batches"] == 3

        paused = rolldeck(
            "attach", "shop-d", "--state-dir", sd, "--send", "pause",
            "--operator", "alice", "--reason", "error spike",
        )  # fmt: skip
        assert paused.returncode == 0, paused.stderr
        assert "pause accepted" in paused.stdout

        bad = rolldeck("attach", rid, "--state-dir", sd, "--send", "pause", "--read-only")
        assert bad.returncode == 2 and "--read-only" in bad.stderr
        unknown = rolldeck("attach", "nope", "--state-dir", sd, "--headless")
        assert unknown.returncode == 2 and "no running rollout 'nope'" in unknown.stderr

        wait_until_sync(
            lambda: journaled_state(journal) == "paused",
            what="the owner's journal to show the rollout paused",
        )
        resumed = rolldeck(
            "attach", rid, "--state-dir", sd, "--send", "resume", "--operator", "bob"
        )
        assert resumed.returncode == 0, resumed.stderr
        (tmp_path / "GO").touch()  # the last host may finish now
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    header, *events = [json.loads(line) for line in out.splitlines()]
    assert header["kind"] == "header" and header["format"] == 1
    assert events[0]["kind"] == "rollout_started"
    assert events[-1]["kind"] == "rollout_finished" and events[-1]["outcome"] == "succeeded"
    cmds = [(e["command"], e["operator"]) for e in events if e["kind"] == "operator_command"]
    assert ("pause", "alice") in cmds and ("resume", "bob") in cmds
    wait_gone(pid)
    assert not sock.exists()
    assert "owner done: succeeded" in log.read_text()

    hist = rolldeck("history", "--state-dir", sd, "--json")
    row = json.loads(hist.stdout.splitlines()[0])
    assert (row["rollout_id"], row["outcome"], row["hosts_changed"]) == (rid, "succeeded", 6)
    show = rolldeck("show", "shop-d1", "--state-dir", sd, "--json")
    doc = json.loads(show.stdout.splitlines()[1])  # after the header
    pause = next(e for e in doc["timeline"] if e["kind"] == "operator_command")
    assert pause["operator"] == "alice" and pause["reason"] == "error spike"
    states = [e for e in doc["timeline"] if e["kind"] == "rollout_state"]
    assert any(e["state"] == "paused" and "alice" in (e["reason"] or "") for e in states)
    decisions = doc["stopped"]["decisions"]
    assert decisions[0]["command"] == "pause" and decisions[0]["operator"] == "alice"


def test_spawn_reports_an_owner_that_dies_before_serving(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('bad spec: no hosts'); sys.exit(2)"]
    with pytest.raises(DetachError, match="exited with 2") as info:
        spawn_detached(["run", "x"], tmp_path, command=cmd)
    assert "bad spec: no hosts" in str(info.value)


def test_detached_command_line() -> None:
    cmd = detached_command(["run", "spec.yaml", "--detach", "--yes"], "/srv/state")
    assert cmd[:3] == [sys.executable, "-m", "console"]
    assert cmd[3:] == [
        "run", "spec.yaml", "--yes", "--headless", "--serve", "--state-dir", "/srv/state",
    ]  # fmt: skip


def test_killed_owner_shows_as_interrupted_and_watchers_exit_3(tmp_path: Path) -> None:
    sd = str(tmp_path)
    cmd = [sys.executable, "-c", OWNER, sd, "shop-k1", str(ROOT)]
    pid, rid = spawn_detached(["run", "x"], tmp_path, command=cmd)
    # a file, not a pipe: the test polls it for the watcher's first line without blocking
    watched = tmp_path / "watcher.out"
    with watched.open("w") as stdout:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "console", "attach", rid, "--state-dir", sd, "--headless"],
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        # the watcher prints (and flushes) the snapshot once attached, then follows
        wait_until_sync(
            lambda: watched.read_text().strip() or watcher.poll() is not None,
            what="the watcher's first line (attached)",
        )
        assert watcher.poll() is None, watcher.communicate()[1]
        running = json.loads(rolldeck("history", "--state-dir", sd, "--json").stdout)
        assert running["outcome"] == "running" and running["pid"] == pid
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        _, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    out = watched.read_text()
    assert watcher.returncode == 3, err
    assert "lost the rollout" in out
    row = json.loads(rolldeck("history", "--state-dir", sd, "--json").stdout)
    assert row["rollout_id"] == rid and row["outcome"] == "interrupted"
    ps = rolldeck("ps", "--state-dir", sd, "--json")
    assert ps.returncode == 0 and ps.stdout == ""  # its stale socket is not a rollout


def test_sigterm_pauses_the_detached_owner_and_it_exits_resumable(tmp_path: Path) -> None:
    sd = str(tmp_path)
    cmd = [sys.executable, "-c", OWNER, sd, "shop-t1", str(ROOT)]
    pid, rid = spawn_detached(["run", "x"], tmp_path, command=cmd)
    journal = tmp_path / f"{rid}.jsonl"
    wait_until_sync(  # mid-rollout: a host is moving
        lambda: '"step_started"' in journal.read_text(),
        timeout=20,
        what="a step started in the owner's journal",
    )
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    row = json.loads(rolldeck("history", "--state-dir", sd, "--json").stdout)
    assert row["rollout_id"] == rid and row["outcome"] == "paused"
    assert 0 < row["hosts_changed"] < 6  # the moving host finished; no new one started
    assert "SIGTERM" in row["reason"]
    assert "owner done: paused" in (tmp_path / f"{rid}.log").read_text()
    assert not socket_path_for(tmp_path, rid).exists()
