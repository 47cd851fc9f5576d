"""``rolldeck ps``: the rollouts running on this machine, and the stale locks of
those that are not running any more (a console killed with ``kill -9``, a crash)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from console.attach.discovery import running_rollouts
from console.core.describe import ROLLOUT_WORDS
from console.core.events import RolloutState
from console.core.text import printable
from console.store.history import fmt_time, summary_of
from console.store.journal import JournalError, journal_path, read_header, resolve_state_dir
from console.store.lock import is_stale, lock_files, read_lock

NAME = "ps"
HELP = "list the rollouts running on this machine: state, owner, pid, batch"
DESCRIPTION = """\
List the rollouts running on this machine from the state directory: those serving an
attach socket (detached, or started with a console) and those holding a live lock.
Attach to one with `rolldeck attach ID`. Then the stale locks: locks whose holder is
gone (its pid is dead on this machine, or its heartbeat stopped), each with who held
it, since when, and the commands that take it over (`rolldeck resume ID` for an
unfinished rollout, which re-takes its own lock and host leases; or a new
`rolldeck run SPEC --break-lock --reason TEXT`). Such a rollout's leases on the
fleet go stale the same way and are taken over by the same commands."""
ORDER = 42


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", help="journal and lock directory")
    parser.add_argument("--json", action="store_true", help="JSON-lines: one rollout a line")


def run(args: argparse.Namespace) -> int:
    state_dir = resolve_state_dir(args.state_dir, shared=True)
    rows = asyncio.run(running_rollouts(state_dir))
    running = {str(r.get("rollout_id")) for r in rows}
    stale = stale_locks(state_dir, running, args.state_dir)
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps({**row, "stale": False}, default=str) + "\n")
        for row in stale:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return 0
    if not rows:
        print("no rollouts running")
    else:
        head = ("ID", "SERVICE", "VERSION", "STATE", "OWNER", "PID", "STARTED", "BATCH", "ATTACH")
        _print_table([head, *(_row(r) for r in rows)])
    if stale:
        print()
        print(f"stale locks ({len(stale)}): their holder is gone")
        for s in stale:
            print(printable(f"  {s['service']}: rollout {s['rollout_id']} ({s['outcome']})"))
            print(printable(f"    held by {s['holder']}, stale since {s['stale_since']}"))
            if s["resume"]:
                print(printable(f"    resume it:   {s['resume']}"))
            print(printable(f"    take it over: {s['break']}"))
            print(printable(f"    lock file    {s['lock_file']}"))
        print(
            "  a stale rollout's leases on its hosts go stale too: the same commands take "
            "them over (journaled on each host)"
        )
    return 0


def stale_locks(state_dir: Path, running: set[str], state_arg: str | None) -> list[dict[str, Any]]:
    """One dict per stale lock of ``state_dir`` (not of a rollout in ``running``):
    whose, since when, and the commands that take it over."""
    out: list[dict[str, Any]] = []
    where = f" --state-dir {shlex.quote(state_arg)}" if state_arg else ""
    for path in lock_files(state_dir):
        info = read_lock(path)
        if info is None or info.rollout_id in running or not is_stale(info, path):
            continue  # a torn file is being written (or is garbage): not a holder to name
        journal = journal_path(state_dir, info.rollout_id)
        outcome, spec = "no journal here", ""
        if journal.is_file():
            try:
                outcome = summary_of(journal).outcome
                spec = str(read_header(journal).get("spec_path") or "")
            except (JournalError, KeyError, TypeError, ValueError):
                outcome = "unreadable journal"
        unfinished = outcome in ("running", "interrupted")
        rid = shlex.quote(info.rollout_id)
        run_spec = shlex.quote(spec) if spec else "SPEC"
        out.append(
            {
                "rollout_id": info.rollout_id,
                "service": info.service,
                "stale": True,
                "outcome": "interrupted" if outcome == "running" else outcome,
                "holder": info.describe(),
                "operator": info.operator or info.user,
                "pid": info.pid,
                "machine": info.host,
                "started": info.started,
                "stale_since": info.stale_since(),
                "lock_file": str(path),
                "resume": f"rolldeck resume {rid}{where}" if unfinished else "",
                "break": f"rolldeck run {run_spec}{where} --break-lock --reason TEXT",
            }
        )
    return out


def _print_table(table: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _row(r: dict[str, Any]) -> tuple[str, ...]:
    batch = f"{r['batch']}/{r['batches']}" if r.get("batch") else f"-/{r.get('batches') or '?'}"
    attach = f"socket ({r['clients']} attached)" if r.get("socket") else "no socket"
    cells = (
        str(r["rollout_id"]),
        str(r.get("service") or ""),
        str(r.get("version") or ""),
        _state(r.get("state")),
        str(r.get("operator") or ""),
        str(r.get("pid") or ""),
        fmt_time(r.get("started")),
        batch,
        attach,
    )
    return tuple(printable(c) for c in cells)  # a journal's words are outside text


def _state(value: object) -> str:
    """A rollout state in the describer's words (as the console and `show` say it)."""
    try:
        return ROLLOUT_WORDS[RolloutState(str(value))]
    except ValueError:
        return str(value or "")
