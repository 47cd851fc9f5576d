"""A corpus of hostile strings through every output path, as real subprocesses, with
the bytes written read back (issue 18, point 1).

The hostile text comes from an inventory (vars, a var's name, host names with Rich
markup) and from a command's output on the local transport (a step that prints the
corpus and fails, a version read that carries a clear-screen). No raw ESC, BEL, C1,
NUL, bare CR or bidi override may reach stdout or stderr; ``--json`` output is JSON,
whose own escaping applies (checked the same way: it writes ``\\u001b``)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

# Bytes that must never be written when they came from outside (UTF-8 for C1 / bidi).
RAW = {
    "ESC": b"\x1b",
    "BEL": b"\x07",
    "CSI (C1)": b"\xc2\x9b",
    "NUL": b"\x00",
    "CR": b"\r",
    "RLO": "\u202e".encode(),
}
# On a terminal (rich mode) Rich writes its own escapes: what must not appear there is
# the corpus's, or a hyperlink made from markup in remote text.
HOSTILE_SEQUENCES = {
    "OSC title": b"\x1b]0;pwned",
    "clear screen": b"\x1b[2J",
    "C1 CSI": b"\xc2\x9b",
    "BEL": b"\x07",
    "RLO": "\u202e".encode(),
    "hyperlink": b"\x1b]8;",
}

# YAML double-quoted escapes: \e ESC, \a BEL, \x9b C1 CSI, \r, \0, \u202e RLO.
INVENTORY = r"""
hosts:
  "h1[red]x[/red]":
    address: 127.0.0.1
    vars:
      rolldeck_connection: local
      note: "\e]0;pwned\a \e[2J \x9b31m \r forged \0 \u202eevil [bold red]x[/] [link=http://evil]y[/link]"
  "h2[link=http://evil]y[/link]":
    address: 127.0.0.1
    vars: {rolldeck_connection: local, "k\e[2J": v}
"""
# The step's output: OSC title, clear screen, C1 CSI (UTF-8), CR line forging, RLO,
# markup; printf's octal escapes so the spec itself stays printable.
OUTPUT = (
    r"out \033]0;pwned\007 \033[2J \302\23331m x\rforged \342\200\256evil "
    r"[bold red]x[/] [link=http://evil]y[/link] \033[31mred\033[0m"
)
SPEC = f"""
service: svc
version: "1.0"
inventory: inventory.yaml
batches: [100%]
max_failures: 5
between_batches: auto
current_version: >-
  printf '0.9\\033[2J\\007\\n'
steps:
  - name: boom
    run: >-
      printf '{OUTPUT}\\n'; exit 1
"""


def rolldeck(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        cwd=cwd,
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "", "HOME": str(cwd / "home")},
    )


def assert_clean(label: str, data: bytes) -> None:
    found = [name for name, raw in RAW.items() if raw in data]
    assert not found, f"{label}: raw {found} written: {data[:600]!r}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec and inventory, and one headless run journaled in ``state``."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "inventory.yaml").write_text(INVENTORY)
    (d / "spec.yaml").write_text(SPEC)
    (d / "home").mkdir()  # local hosts' leases live under HOME: never the user's own
    return d


def test_the_corpus_is_really_hostile(hostile: Path) -> None:
    """The step prints the raw bytes (so a clean output below is the sanitiser's)."""
    out = subprocess.run(
        ["sh", "-c", f"printf '{OUTPUT}\\n'"], capture_output=True, check=True
    ).stdout
    for raw in (b"\x1b]0;pwned\x07", b"\x1b[2J", b"\xc2\x9b", b"\r", "\u202e".encode()):
        assert raw in out


def test_inventory_table_and_json(hostile: Path) -> None:
    table = rolldeck("inventory", "inventory.yaml", cwd=hostile)
    assert table.returncode == 0, table.stderr
    assert_clean("inventory", table.stdout + table.stderr)
    assert b"h1[red]x[/red]" in table.stdout  # markup shown as written
    assert b"k\\x1b[2J" in table.stdout  # a var's name, escaped visibly
    js = rolldeck("inventory", "inventory.yaml", "--json", cwd=hostile)
    assert js.returncode == 0, js.stderr
    assert_clean("inventory --json", js.stdout)
    note = json.loads(js.stdout)[0]["vars"]["note"]
    assert note.startswith("\x1b]0;pwned\x07")  # JSON keeps the value, escaped as JSON


def test_check_text_and_json(hostile: Path) -> None:
    text = rolldeck("check", "spec.yaml", cwd=hostile)
    assert text.returncode == 0, text.stderr
    assert_clean("check", text.stdout + text.stderr)
    assert b"\\033]0;pwned" in text.stdout  # the command as written (octal escapes)
    assert b"h2[link=http://evil]y[/link]" in text.stdout
    js = rolldeck("check", "spec.yaml", "--json", cwd=hostile)
    assert js.returncode == 0, js.stderr
    assert_clean("check --json", js.stdout)
    json.loads(js.stdout)


def test_headless_plain_json_show_history(hostile: Path) -> None:
    state = hostile / "state"
    plain = rolldeck("run", "--headless", "--state-dir", str(state), "spec.yaml", cwd=hostile)
    assert plain.returncode == 0, plain.stderr  # both failed, within max_failures
    assert_clean("run --headless (plain)", plain.stdout + plain.stderr)
    out = plain.stdout.decode()
    assert "\\x1b]0;pwned\\x07" in out  # the step's output, shown visibly
    assert "\\u202eevil" in out
    assert "version 0.9\\x1b[2J\\x07" in out  # the version read
    js = rolldeck(
        "run", "--headless", "--json", "--state-dir", str(state), "spec.yaml", cwd=hostile
    )
    assert_clean("run --headless --json", js.stdout + js.stderr)
    tails = [
        e["output_tail"]
        for e in map(json.loads, js.stdout.splitlines())
        if e["kind"] == "step_finished"
    ]
    assert tails and "\x1b]0;pwned\x07" in tails[0][-1]  # JSON carries the text itself

    history = rolldeck("history", "--state-dir", str(state), cwd=hostile)
    assert history.returncode == 0, history.stderr
    assert_clean("history", history.stdout + history.stderr)
    assert b"0.9\\x1b[2J\\x07 -> 1.0" in history.stdout
    rid = json.loads(
        rolldeck("history", "--json", "--state-dir", str(state), cwd=hostile).stdout.splitlines()[0]
    )["rollout_id"]
    show = rolldeck("show", rid, "--state-dir", str(state), cwd=hostile)
    assert show.returncode == 0, show.stderr
    assert_clean("show", show.stdout + show.stderr)
    assert b"\\x1b]0;pwned\\x07" in show.stdout
    show_json = rolldeck("show", rid, "--json", "--state-dir", str(state), cwd=hostile)
    assert_clean("show --json", show_json.stdout)


STATE_RICH = ("--state-dir", "state-rich")


def test_headless_rich_on_a_terminal(hostile: Path) -> None:
    """Rich mode on a pseudo-terminal: Rich's own escapes only, none of the corpus."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "run", "--headless", *STATE_RICH, "spec.yaml"],
        cwd=hostile,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={
            **os.environ,
            "COLUMNS": "200",
            "LINES": "50",
            "TERM": "xterm-256color",
            "HOME": str(hostile / "home"),
        },
    )
    os.close(slave)
    data = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        assert ready, "no output from the rich run within 120s"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert b"\x1b[" in data, "rich mode was expected on a terminal"
    found = [name for name, raw in HOSTILE_SEQUENCES.items() if raw in data]
    assert not found, f"rich mode wrote {found}"
    assert b"h1[red]x[/red]" in data  # the host name as written, not styled


def test_error_messages(hostile: Path, tmp_path: Path) -> None:
    """The top-level error line: file contents and arguments are shown, not sent."""
    bad = tmp_path / "bad.yaml"
    bad.write_text('service: svc\nversion: "1"\nunknown\x1b]0;pwned\x07key: 1\n')
    for args in (
        ("check", str(bad)),
        ("show", "\x1b]0;pwned\x07\u202e", "--state-dir", str(hostile / "state")),
        ("inventory", str(tmp_path / "no\x1b[2Jsuch.yaml")),
    ):
        result = rolldeck(*args, cwd=hostile)
        assert result.returncode == 2, result
        assert_clean(f"rolldeck {args[0]} error", result.stdout + result.stderr)
        assert result.stderr.count(b"\n") == 1, result.stderr  # one line
