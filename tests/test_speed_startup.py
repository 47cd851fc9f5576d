"""How ``rolldeck`` leaves (issue 13): the exit that skips the interpreter's teardown
loses neither output nor the exit status."""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from console.cli import main

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; Python 3.10+ names it


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


def _leave_early(argv: list[str]) -> tuple[int, bytes]:
    """Run ``argv`` into a pipe made smaller than its output (Linux's F_SETPIPE_SZ),
    read 10 bytes and close it: the reader really leaves while the command still
    writes, so its next write fails (EPIPE). Buffered stdout (PYTHONUNBUFFERED would
    make CPython drop the rest of a partial write silently, never failing)."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    except OSError:
        os.close(read_end)
        os.close(write_end)
        pytest.skip("the pipe's size cannot be set here (not Linux)")
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(argv, stdout=write_end, stderr=subprocess.PIPE, env=env)
    os.close(write_end)
    try:
        assert len(os.read(read_end, 10)) == 10
    finally:
        os.close(read_end)
    assert proc.stderr is not None
    err = proc.stderr.read()
    return proc.wait(timeout=60), err


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    """``rolldeck completion bash | head -c 10``: exit 0, no traceback."""
    expected = io.StringIO()
    with redirect_stdout(expected):
        main(["completion", "bash"])
    assert len(expected.getvalue()) > 2 * 4096  # more than the pipe holds
    # The harness does break the pipe: a plain writer of as much dies of it.
    size = len(expected.getvalue())
    plain = [sys.executable, "-c", f"import sys; sys.stdout.write('x' * {size})"]
    code, err = _leave_early(plain)
    assert code != 0 and b"BrokenPipeError" in err, (code, err)
    code, err = _leave_early([sys.executable, "-m", "console", "completion", "bash"])
    assert code == 0, err
    assert b"Traceback" not in err, err
