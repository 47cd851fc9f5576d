"""Multi-line scripts in the kept shell (console.transport.ssh_shell.script_line): a
lease operation folded with a version read runs there, with what an exec would give."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from console.transport.ssh import SSHConnection, SSHTransport
from console.transport.ssh_shell import script_line
from tests.fixtures.sshd import SSHFleet

MULTI_LINE = "\n".join(
    [
        "set -u",
        "a='it'\"'\"'s'",
        'if [ "$a" = "it\'s" ]; then',
        "  printf '%s|%s\\n' \"$a\" 'back\\\\slash \\c %s'",
        "fi",
        "cat <<EOF",
        "here $a \\$HOME",
        "EOF",
        "echo err >&2",
        "exit 3",
    ]
)


@pytest.fixture
async def conn(sshd_fleet: Callable[..., SSHFleet]) -> AsyncIterator[SSHConnection]:
    fleet = sshd_fleet(1)
    transport = SSHTransport(fleet.options)
    try:
        yield await transport.connect(fleet.hosts[0])
    finally:
        await transport.close()


@pytest.mark.sshd
async def test_a_multi_line_script_runs_in_the_shell_as_on_its_own_exec(
    conn: SSHConnection,
) -> None:
    alone = await conn.run(MULTI_LINE, timeout=10)
    shell = conn.persistent_shell()
    assert shell is not None and shell is conn.persistent_shell()  # one per connection
    try:
        kept = await shell.run(MULTI_LINE, timeout=10)
        assert (kept.exit_code, kept.stdout_tail, kept.stderr_tail) == (
            alone.exit_code,
            alone.stdout_tail,
            alone.stderr_tail,
        )
        assert kept.exit_code == 3
        assert kept.stdout_tail == ("it's|back\\\\slash \\c %s", "here it's $HOME")
        assert shell.started == 1  # in the kept shell, not on an exec of its own
        again = await shell.run("echo after", timeout=10)
        assert again.stdout_tail == ("after",) and shell.started == 1
    finally:
        await shell.close()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
@example("\n")
@example("a\\nb\r\n'\\\\c%s\n\n")
@settings(max_examples=60, deadline=None)
def test_script_line_gives_printf_back_the_exact_text(text: str) -> None:
    line = script_line(text, "pgroup")
    assert line is not None and "\n" not in line and "\r" not in line
    if line == text:
        return  # one line already: as it is
    assert script_line(text, "signal") is None  # the simulated shell: an exec of its own
    inner = line.removeprefix('eval "$(').removesuffix(')"')
    out = subprocess.run(["/bin/sh", "-c", inner], capture_output=True, check=True).stdout
    assert out.decode() == text  # (the eval's $(...) then drops trailing newlines only)
