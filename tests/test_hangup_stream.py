"""A terminal that hangs up before SIGHUP is handled: writes must not raise.

The kernel hangs the tty up first and the Python-level SIGHUP handler runs later; a
redraw in between gets EIO. console.hangup.TerminalLoss turns that write into the
same "terminal lost" as the signal, once. Run in a child whose stdout is a pty, so
the dead terminal is real and pytest's own stdout is never touched.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

from console.hangup import TerminalLoss

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    GO, BACK = int(sys.argv[1]), int(sys.argv[2])
    from console.hangup import TerminalLoss, terminal_fds

    async def main():
        calls = []
        loss = TerminalLoss(terminal_fds(), lambda: calls.append("lost"),
                            asyncio.get_running_loop())
        out = loss.guard(sys.stdout)
        assert out is not sys.stdout, "a terminal stdout is guarded"
        out.write("before\\n"); out.flush()
        os.write(GO, b"x")                     # tell the parent: close the master now
        assert os.read(BACK, 1) == b"y"           # the terminal is gone
        for _ in range(3):                      # EIO, then /dev/null: never raises
            out.write("after the hang-up\\n" * 200); out.flush()
        for _ in range(1000):                   # the report runs on the loop: let it
            if calls:
                break
            await asyncio.sleep(0)
        loss.lost()                             # the late SIGHUP: no second report
        # one loop turn runs what lost() queued (same thread: call_soon_threadsafe
        # puts it on the ready queue now); a second report would show below
        await asyncio.sleep(0)
        assert not os.isatty(1)
        print(calls, file=sys.stderr)

    asyncio.run(main())
    """
)


def test_write_to_hung_up_terminal_reports_loss_once() -> None:
    master, slave = pty.openpty()
    go_r, go_w = os.pipe()
    back_r, back_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(go_w), str(back_r)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        pass_fds=(go_w, back_r),
        start_new_session=True,
    )
    for fd in (slave, go_w, back_r):  # the child's ends: a dead child reads as EOF
        os.close(fd)
    try:
        ready, _, _ = select.select([go_r], [], [], 30)
        assert ready and os.read(go_r, 1) == b"x", proc.stderr.read().decode()  # type: ignore[union-attr]
        os.close(master)  # hang up (no controlling tty: no SIGHUP, only EIO)
        os.write(back_w, b"y")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in (go_r, back_w):
            os.close(fd)
    assert proc.returncode == 0, err.decode()
    assert err.decode().strip() == "['lost']"


def test_guard_leaves_non_terminals_alone(tmp_path: Path) -> None:
    loss = TerminalLoss([1, 2], lambda: None, asyncio.new_event_loop())
    try:
        with open(tmp_path / "f", "w") as f:
            assert loss.guard(f) is f  # its fd is not one of the terminal's
    finally:
        loss.loop.close()
