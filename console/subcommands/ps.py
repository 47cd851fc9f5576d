"""``rolldeck ps``: the rollouts running on this machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from console.attach.discovery import running_rollouts
from console.core.describe import ROLLOUT_WORDS
from console.core.events import RolloutState
from console.store.history import fmt_time
from console.store.journal import resolve_state_dir

NAME = "ps"
HELP = "list the rollouts running on this machine: state, owner, pid, batch"
DESCRIPTION = """\
List the rollouts running on this machine from the state directory: those serving an
attach socket (detached, or started with a console) and those holding a live lock.
Attach to one with `rolldeck attach ID`."""
ORDER = 42


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", help="journal and lock directory")
    parser.add_argument("--json", action="store_true", help="JSON-lines: one rollout a line")


def run(args: argparse.Namespace) -> int:
    rows = asyncio.run(running_rollouts(resolve_state_dir(args.state_dir, shared=True)))
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return 0
    if not rows:
        print("no rollouts running")
        return 0
    head = ("ID", "SERVICE", "VERSION", "STATE", "OWNER", "PID", "STARTED", "BATCH", "ATTACH")
    table: list[tuple[str, ...]] = [head]
    table += [_row(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _row(r: dict[str, Any]) -> tuple[str, ...]:
    batch = f"{r['batch']}/{r['batches']}" if r.get("batch") else f"-/{r.get('batches') or '?'}"
    attach = f"socket ({r['clients']} attached)" if r.get("socket") else "no socket"
    return (
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


def _state(value: object) -> str:
    """A rollout state in the describer's words (as the console and `show` say it)."""
    try:
        return ROLLOUT_WORDS[RolloutState(str(value))]
    except ValueError:
        return str(value or "")
