"""``rolldeck approve ID``: a second person's approval of a rollout waiting at an
approval gate (``between_batches: {gate: approval}``), sent over its attach socket."""

from __future__ import annotations

import argparse
import asyncio
import sys

from console.attach.answer import send_and_wait
from console.attach.client import connect
from console.attach.discovery import find_socket
from console.attach.protocol import ProtocolError
from console.core.commands import Command, default_operator
from console.core.errors import EXIT_FAILED, EXIT_OK
from console.core.text import printable
from console.store.journal import resolve_state_dir

NAME = "approve"
HELP = "approve a rollout waiting at an approval gate (as a second person)"
DESCRIPTION = """\
Approve the rollout ID (or the latest running one) at its approval gate. The approval
counts only from a Unix user other than the one running the rollout: the owner reads
who you are from the socket (SO_PEERCRED), not from --operator, which is a label. The
journal records your label, your Unix name and uid, and --reason.

exit codes: 0 approved, 2 bad input or nothing to approve, 3 refused (same user, no
approval gate waiting) or no answer"""
ORDER = 36


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", nargs="?", help="rollout id or unique prefix")
    parser.add_argument("--reason", metavar="TEXT", default="", help="why you approve")
    parser.add_argument("--operator", metavar="NAME", help="your name in the journal")
    parser.add_argument("--state-dir", metavar="DIR", help="journal and socket directory")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_approve(args))


async def _approve(args: argparse.Namespace) -> int:
    state_dir = resolve_state_dir(args.state_dir, shared=True)
    path = await find_socket(state_dir, args.id)
    try:
        remote = await connect(path)
    except (OSError, ProtocolError, TimeoutError) as exc:
        print(printable(f"rolldeck: cannot reach {path}: {exc}"), file=sys.stderr)
        return EXIT_FAILED
    operator = args.operator or default_operator()
    command = Command("approve", operator=operator, reason=args.reason)
    event = await send_and_wait(remote, command)
    if isinstance(event, str):
        print(printable(f"rolldeck: {event}"), file=sys.stderr)
        return EXIT_FAILED
    verdict = "approved" if event.accepted else "REFUSED"
    print(printable(f"{verdict} {remote.rollout_id}: {event.detail}"))
    return EXIT_OK if event.accepted else EXIT_FAILED
