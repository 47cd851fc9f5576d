"""How ``rolldeck`` leaves (issue 13): the exit that skips the interpreter's teardown
loses neither output nor the exit status."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

from console.cli import main

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _command(*argv: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "console", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=ENV,
        timeout=60,
        check=False,
    )


def test_the_command_leaves_with_all_its_output_and_its_status(tmp_path: Path) -> None:
    # A long output (the bash completion script) arrives whole through a pipe...
    done = _command("completion", "bash")
    assert done.returncode == 0, done.stderr
    expected = io.StringIO()
    with redirect_stdout(expected):
        assert main(["completion", "bash"]) == 0
    assert done.stdout.decode() == expected.getvalue()
    # ...and into a file; an error's status and its message on stderr too.
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        done = _command("completion", "bash", stdout=sink.fileno())
    assert out.read_text() == expected.getvalue()
    bad = tmp_path / "bad.yaml"
    bad.write_text("service: [unclosed\n")
    done = _command("check", str(bad))
    assert done.returncode == 2
    assert b"bad.yaml" in done.stderr


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "completion", "bash"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # `rolldeck ... | head -c 10`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err, err
