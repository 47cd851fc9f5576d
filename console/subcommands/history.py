"""``rolldeck history``: past rollouts from the journals in the state directory."""

from __future__ import annotations

import argparse
import json
import sys

from console.core.errors import InputError
from console.core.text import printable
from console.store.history import history, render_history
from console.store.journal import resolve_state_dir

NAME = "history"
HELP = "list past rollouts (who, when, versions, outcome, failures), newest first"
DESCRIPTION = """\
List the rollouts journaled in the state directory, newest first: id, service,
previous -> new version, who ran it, when, outcome, how long it took, hosts changed
and failures. A rollout without an end is 'running' when its owner is alive on this
machine, else 'interrupted'. See one in full with `rolldeck show ID`."""
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", metavar="S", help="only this service")
    parser.add_argument("--state-dir", metavar="DIR", help="journal directory")
    parser.add_argument("--limit", metavar="N", type=int, help="at most N rollouts")
    parser.add_argument("--json", action="store_true", help="JSON-lines: one rollout a line")


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InputError("must be at least 1", field="--limit")
    state_dir = resolve_state_dir(args.state_dir, shared=True)
    rows = history(state_dir, service=args.service, limit=args.limit)
    out = sys.stdout
    if args.json:
        for row in rows:
            out.write(json.dumps(row.to_json(), default=str) + "\n")
    else:
        out.write(render_history(rows) + "\n")
        for row in rows:  # how to pick up what is not over (issue 7)
            rid = printable(row.rollout_id)  # read from a journal file
            if row.outcome in ("paused", "interrupted"):
                out.write(f"{rid} is {row.outcome}: rolldeck resume {rid}\n")
            elif row.outcome == "running":
                out.write(f"{rid} is running: rolldeck attach {rid}\n")
    return 0
