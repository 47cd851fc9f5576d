"""Hostile text through the output paths ``test_sanitise_outputs.py`` left: the state
``resume`` and ``rollback`` print (host names, versions read over the transport),
their "paused"/"not rolled back" lines, and the overdue-wait watchdog's line.

As there, the hostile strings come from outside (a version read by ``current_version``
on the local transport, host names and vars from the inventory) and the bytes
written by real ``rolldeck`` subprocesses are read back: no raw ESC, BEL, C1, NUL,
bare CR or bidi override may reach stdout or stderr.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.transport.deadlines import WATCHDOG, Deadlines
from tests.waiting import wait_until_sync

RAW = {
    "ESC": b"\x1b",
    "BEL": b"\x07",
    "CSI (C1)": b"\xc2\x9b",
    "NUL": b"\x00",
    "CR": b"\r",
    "RLO": "\u202e".encode(),
}

INVENTORY = r"""
hosts:
  "h1[red]x[/red]":
    address: 127.0.0.1
    vars: {rolldeck_connection: local, note: "\e]0;pwned\a \e[2J \x9b31m \r forged \u202eevil"}
  "h2[link=http://evil]y[/link]":
    address: 127.0.0.1
    vars: {rolldeck_connection: local, note: plain}
"""
# The version read carries an OSC title change, a clear screen and a C1 CSI; the
# deploy step fails, so the rollout stops paused with both hosts changed.
SPEC = r"""
service: svc
version: "1.0"
inventory: inventory.yaml
batches: [100%]
max_failures: 0
on_failure: pause
between_batches: auto
current_version: >-
  printf '0.9\033]0;pwned\007\033[2J\302\233x\342\200\256\n'
steps:
  - name: deploy
    run: >-
      printf '{vars.note}\n'; exit 1
rollback:
  steps:
    - name: back
      run: "true"
"""


def rolldeck(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    (cwd / "home").mkdir(exist_ok=True)  # local hosts' leases live in ~/.rolldeck: ours
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "", "HOME": str(cwd / "home")},
    )


def assert_clean(label: str, data: bytes) -> None:
    found = [name for name, raw in RAW.items() if raw in data]
    assert not found, f"{label}: raw {found} written: {data[:800]!r}"


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A rollout stopped paused after its deploy step failed on both hosts."""
    d = tmp_path_factory.mktemp("hostile-more")
    (d / "inventory.yaml").write_text(INVENTORY)
    (d / "spec.yaml").write_text(SPEC)
    run = rolldeck("run", "--headless", "--state-dir", "state", "spec.yaml", cwd=d)
    assert run.returncode == 6, run.stdout + run.stderr  # paused: the budget is spent
    assert_clean("run", run.stdout + run.stderr)
    rows = rolldeck("history", "--json", "--state-dir", "state", cwd=d).stdout.splitlines()
    return d, json.loads(rows[0])["rollout_id"]


def test_resume_prints_the_reconciled_state_escaped(paused: tuple[Path, str]) -> None:
    d, rid = paused
    resumed = rolldeck("resume", rid, "--headless", "--state-dir", "state", cwd=d)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 6, out  # without --yes it stops paused again
    assert_clean("resume", out)
    text = out.decode()
    assert "0.9\\x1b]0;pwned\\x07\\x1b[2J\\x9bx\\u202e" in text, text  # shown, not sent
    assert "h1[red]x[/red]" in text  # the host name as written
    assert f"`rolldeck resume {rid}` to continue" in text


def test_rollback_prints_the_state_and_refusal_escaped(paused: tuple[Path, str]) -> None:
    d, rid = paused
    refused = rolldeck("rollback", rid, "--headless", "--state-dir", "state", cwd=d)
    out = refused.stdout + refused.stderr
    assert refused.returncode == 2, out  # no terminal to ask on, no --yes
    assert_clean("rollback", out)
    text = out.decode()
    assert "\\x1b]0;pwned\\x07" in text, text
    assert f"rollout {rid} not rolled back" in text


def test_overdue_wait_line_is_escaped() -> None:
    """The watchdog (ROLLDECK_DEBUG_DEADLINES) names the host of an overdue wait."""
    registry = Deadlines()
    out = io.StringIO()
    watchdog = type(WATCHDOG)()  # a fresh one: the process-wide one may be running
    host = "web\x1b]0;pwned\x07\x1b[2J\u202e"
    token = registry.begin(host, "reading\x9b31m output", 0.0)
    try:
        assert watchdog.start(registry, out, every=0.05)
        wait_until_sync(lambda: "overdue wait" in out.getvalue(), timeout=30, what="the line")
    finally:
        registry.end(token)
    line = out.getvalue()
    assert_clean("watchdog", line.encode())
    assert "web\\x1b]0;pwned\\x07\\x1b[2J\\u202e: reading\\x9b31m output" in line, line
