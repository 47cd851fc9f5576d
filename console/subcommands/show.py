"""``rolldeck show``: the decision timeline of one rollout."""

from __future__ import annotations

import argparse
import json
import sys

from console.core.events import stream_header
from console.core.text import printable
from console.store.history import render_timeline, resolve_id, timeline
from console.store.journal import JournalError, resolve_state_dir

NAME = "show"
HELP = "the timeline of one rollout: batches, alerts, gates, decisions and why it stopped"
DESCRIPTION = """\
Print the timeline of one rollout from its journal: every batch, gate, alert and
operator decision (who, why), each with the rollout state and the host counts at that
moment, then why it stopped: the outcome, and the rules that fired with their numbers.
ID may be any unique prefix of a rollout id (see `rolldeck history`)."""
ORDER = 41


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="rollout id, or a unique prefix of one")
    parser.add_argument("--state-dir", metavar="DIR", help="journal directory")
    parser.add_argument(
        "--json", action="store_true", help="JSON lines: the stream header, then the timeline"
    )


def run(args: argparse.Namespace) -> int:
    path = resolve_id(resolve_state_dir(args.state_dir, shared=True), args.id)
    try:
        t = timeline(path)
    except JournalError as exc:
        print(f"rolldeck: {printable(str(exc))}", file=sys.stderr)
        return 3
    if args.json:  # JSON lines: the stream's header, then the timeline as one line
        sys.stdout.write(json.dumps(stream_header(), separators=(",", ":")) + "\n")
        sys.stdout.write(json.dumps(t.to_json(), default=str) + "\n")
    else:
        # render_timeline sanitises each line; this keeps the whole page safe too
        sys.stdout.write(printable(render_timeline(t), multiline=True) + "\n")
    return 0
