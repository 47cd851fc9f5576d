"""The options ``rolldeck run``, ``resume`` and ``rollback`` share (the commands that
own an engine with the lock): where the state is, who acts, what the lock says to
whoever finds it, how long to wait for it, why it was broken, and how host keys and
unreachable hosts are treated. One helper adds them to all three, so they stay in
step (``tests/test_way_back_hints.py`` checks every hint against these parsers)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from console.core.commands import default_operator
from console.core.errors import InputError
from console.engine.leases import LeaseOptions
from console.spec import parse_duration
from console.store.lock import LockHeld, RolloutLock


def add_engine_arguments(parser: argparse.ArgumentParser, *, who: str) -> None:
    """``--state-dir``, ``--operator``, ``--break-lock``, the lock arguments,
    ``--accept-new-host-keys`` and ``--allow-unreachable``: the options every command
    that runs an engine takes. ``who``: the verb in ``--operator``'s help ("runs it")."""
    parser.add_argument("--state-dir", metavar="DIR", help="journal and lock directory")
    parser.add_argument("--operator", metavar="NAME", help=f"who {who} (default: $USER)")
    parser.add_argument(
        "--break-lock",
        action="store_true",
        help="break another rollout's stale lock and host leases (journaled; needs --reason)",
    )
    add_lock_arguments(parser)
    parser.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="trust unknown host keys on first use (journaled); changed keys are still refused",
    )
    parser.add_argument(
        "--allow-unreachable",
        action="store_true",
        help="go ahead even if hosts fail preflight; they count against the failure budget",
    )


def add_lock_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lock-message``, ``--lock-wait`` and ``--reason`` (``--break-lock`` is the
    caller's: it predates these)."""
    parser.add_argument(
        "--lock-message",
        metavar="TEXT",
        default="",
        help="left in the lock for whoever finds it (e.g. a ticket)",
    )
    parser.add_argument(
        "--lock-wait",
        metavar="DURATION",
        help="wait this long (30s, 5m) for the lock's holder to let go",
    )
    parser.add_argument(
        "--reason", metavar="TEXT", default="", help="why (journaled with --break-lock)"
    )


def lock_wait(args: argparse.Namespace) -> float:
    text = getattr(args, "lock_wait", None)
    if not text:
        return 0.0
    seconds = parse_duration(text)
    if seconds is None or seconds < 0:
        raise InputError(f"not a duration: {text!r} (e.g. 30s, 5m)", field="--lock-wait")
    return seconds


def say_waiting(exc: LockHeld) -> None:
    print(f"rolldeck: waiting for the lock: {exc}", file=sys.stderr, flush=True)


def broke_lock_notice(operator: str, broken_describe: str, reason: str, *, own: bool) -> str:
    what = "took over its own stale lock" if own else "broke the stale lock"
    why = f"; reason: {reason}" if reason else "; no reason given"
    return f"{operator} {what} of {broken_describe}{why}"


def acquire_from_args(
    args: argparse.Namespace,
    state_dir: Path,
    *,
    service: str,
    inventory: str,
    rollout_id: str,
    resume_of: str | None = None,
) -> RolloutLock | None:
    """Take the lock as the command line asks (break, message, wait); None, after
    saying who holds it, when it is held. ``--break-lock`` needs ``--reason``: it is
    journaled here and on every host whose lease it breaks."""
    if args.break_lock and not args.reason.strip():
        raise InputError(
            "--break-lock needs --reason TEXT (journaled locally and on the hosts)",
            field="--reason",
        )
    try:
        return RolloutLock.acquire(
            state_dir,
            service=service,
            inventory=inventory,
            rollout_id=rollout_id,
            break_lock=args.break_lock,
            resume_of=resume_of,
            message=args.lock_message,
            wait=lock_wait(args),
            on_wait=say_waiting,
            operator=getattr(args, "operator", None) or default_operator(),
        )
    except LockHeld as exc:
        print(f"rolldeck: {exc}", file=sys.stderr)
        return None


def lease_options(args: argparse.Namespace, operator: str, *, command: str = "") -> LeaseOptions:
    """The fleet lock and host leases as the command line asks (who, break, why).

    ``command``: the command line that takes a stale lease over (``rolldeck resume
    ID``), named in the refusal before ``--break-lock --reason TEXT``; empty for
    ``rolldeck run SPEC`` (the leases word that one themselves)."""
    return LeaseOptions(
        operator=operator, break_lock=args.break_lock, reason=args.reason, command=command
    )
