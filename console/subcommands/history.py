"""``rolldeck history``: past rollouts from the journals in the state directory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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
machine, else 'interrupted'. See one in full with `rolldeck show ID`.

--dora: per service and environment over --since (default 30d; --environment ENV
keeps one): deployment frequency (succeeded rollouts a day), lead time (commit time
from `rolldeck run --commit SHA --commit-time T` to the end of the rollout), change
failure rate (failed or rolled back over rollouts that ended) and time to restore (a
failed or rolled-back rollout's end to the next success's end in the same
environment); a table, or --json."""
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", metavar="S", help="only this service")
    parser.add_argument("--state-dir", metavar="DIR", help="journal directory")
    parser.add_argument("--limit", metavar="N", type=int, help="at most N rollouts")
    parser.add_argument("--json", action="store_true", help="JSON-lines: one rollout a line")
    parser.add_argument(
        "--dora", action="store_true", help="DORA figures per service and environment"
    )
    parser.add_argument(
        "--since", metavar="DURATION", default="30d", help="with --dora: the window (30d)"
    )
    parser.add_argument(
        "--environment", metavar="ENV", help="with --dora: only rollouts to this environment"
    )


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InputError("must be at least 1", field="--limit")
    state_dir = resolve_state_dir(args.state_dir, shared=True)
    if args.dora:
        return _dora(args, state_dir)
    if args.environment is not None:
        raise InputError("goes with --dora", field="--environment")
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


def _dora(args: argparse.Namespace, state_dir: Path) -> int:
    from console.spec.load import parse_duration
    from console.store.dora import deployments, dora, dumps, render_dora

    window = parse_duration(args.since)
    if window is None or window <= 0:
        raise InputError(f"{args.since!r} is not a duration like 30d or 12h", field="--since")
    now = time.time()
    deps = deployments(state_dir, args.service, args.environment)
    rows = dora(deps, since=now - window, now=now)
    if args.json:
        sys.stdout.write(dumps(rows) + "\n")
    else:  # service and environment names come from journal files: no escapes
        sys.stdout.write(printable(render_dora(rows), multiline=True) + "\n")
    return 0
