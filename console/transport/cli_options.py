"""The transport's command-line options, shared by the subcommands that reach hosts
(``run``, ``resume``, ``rollback``): one spelling, one check, one help text."""

from __future__ import annotations

import argparse

from console.core.errors import InputError
from console.spec.load import parse_duration
from console.transport.base import DEFAULT_CONNECT_TIMEOUT

FLAG = "--connect-timeout"
MAX_CONNECT_TIMEOUT = 3600.0


def add_connect_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        FLAG,
        metavar="DURATION",
        default=None,
        help=(
            "seconds (or 500ms, 1m) to connect and log in to a host, and for a connected "
            "host to answer a request; a host that does not is failed "
            f"(default: ConnectTimeout from ~/.ssh/config, else {DEFAULT_CONNECT_TIMEOUT:g}s)"
        ),
    )


def connect_timeout(args: argparse.Namespace) -> float | None:
    """The flag's value in seconds; None when not given (the ssh config or the default
    decides per host). Raises InputError naming the flag."""
    text = getattr(args, "connect_timeout", None)
    if text is None:
        return None
    seconds = parse_duration(str(text))
    if seconds is None:
        raise InputError(f"not a duration: {text!r} (e.g. 10s, 500ms, 1m)", field=FLAG)
    if not 0 < seconds <= MAX_CONNECT_TIMEOUT:
        raise InputError(
            f"must be more than 0 and at most {MAX_CONNECT_TIMEOUT:g}s, not {text!r}", field=FLAG
        )
    return seconds
