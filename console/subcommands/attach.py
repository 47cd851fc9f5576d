"""``rolldeck attach``: open the console on a rollout another process owns."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import IO

from console.attach.answer import send_and_wait
from console.attach.client import RemoteRollout, connect
from console.attach.discovery import find_socket
from console.attach.protocol import ProtocolError
from console.core import events as ev
from console.core.commands import COMMAND_NAMES, Command, default_operator
from console.core.errors import EXIT_FAILED, EXIT_OK, InputError
from console.core.events import OUTCOME_EXIT_CODES, Event
from console.core.text import printable
from console.store.journal import resolve_state_dir

NAME = "attach"
HELP = "attach a console to a running rollout (several may attach; --read-only to watch)"
DESCRIPTION = """\
Attach to a rollout running on this machine (started with `rolldeck run --detach`, or
serving its socket): the console first shows the current state, then follows it live;
its keys drive the rollout exactly as the owner's would, journaled under your name.
--read-only observes: control keys are disabled, and the owner refuses commands too.
Quitting detaches; the rollout goes on. ID defaults to the latest running rollout.

--headless prints the stream instead (plain lines, or JSON-lines with --json) until
the rollout ends; --send NAME sends one command and prints the owner's verdict.

exit codes: the rollout's own when it ended while attached (0, 3, 4, 5, 6), 0 when you
detached first, 2 bad input or nothing to attach to, 3 the connection was lost"""
ORDER = 35


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", nargs="?", help="rollout id or unique prefix")
    parser.add_argument("--read-only", action="store_true", help="observe: no commands")
    parser.add_argument("--state-dir", metavar="DIR", help="journal and socket directory")
    parser.add_argument("--operator", metavar="NAME", help="your name in the journal")
    parser.add_argument("--headless", action="store_true", help="print the stream, no console")
    parser.add_argument("--json", action="store_true", help="headless: JSON-lines events")
    parser.add_argument(
        "--send", metavar="NAME", choices=COMMAND_NAMES, help="send one command and exit"
    )
    parser.add_argument("--reason", metavar="TEXT", default="", help="with --send: why")
    parser.add_argument(
        "--arg", metavar="KEY=VALUE", action="append", default=[], help="with --send"
    )


def run(args: argparse.Namespace) -> int:
    if args.send and args.read_only:
        raise InputError("--send cannot be used with --read-only", field="--send")
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    state_dir = resolve_state_dir(args.state_dir, shared=True)
    path = await find_socket(state_dir, args.id)
    try:
        remote = await connect(path, read_only=args.read_only)
    except (OSError, ProtocolError, TimeoutError) as exc:
        print(printable(f"rolldeck: cannot attach to {path}: {exc}"), file=sys.stderr)
        return EXIT_FAILED
    remote.controller.operator = args.operator
    if args.send:
        return await _send(remote, args)
    if args.headless or args.json:
        return await _stream(remote, sys.stdout, as_json=args.json)
    return await _console(remote)


def _exit_code(view_outcome: ev.Outcome | None) -> int:
    """The rollout's own exit code, or 3 when the stream ended without its end (the
    owner died, shut the server down, or dropped us for not keeping up)."""
    return OUTCOME_EXIT_CODES[view_outcome] if view_outcome is not None else EXIT_FAILED


async def _stream(remote: RemoteRollout, out: IO[str], *, as_json: bool) -> int:
    from console.headless import plain_line  # the same lines as `run --headless`

    view = remote.view()

    def show(event: Event) -> None:
        if as_json:
            out.write(json.dumps(ev.to_json(event), separators=(",", ":"), default=str) + "\n")
            return
        line = plain_line(event)
        if line is not None:
            out.write(line + "\n")

    if as_json:
        out.write(json.dumps(ev.stream_header(), separators=(",", ":")) + "\n")
    for event in remote.snapshot:
        show(event)
    out.flush()
    remote.start()
    async for batch in remote.subscription.batches():
        for event in batch:
            view.apply(event)
            show(event)
        out.flush()
    return _exit_code(view.outcome)


async def _send(remote: RemoteRollout, args: argparse.Namespace) -> int:
    cmd_args: dict[str, object] = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got {item!r}", field="--arg")
        cmd_args[key] = value
    operator = remote.controller.operator or default_operator()
    command = Command(args.send, operator=operator, reason=args.reason, args=cmd_args)
    event = await send_and_wait(remote, command)
    if isinstance(event, str):
        print(printable(f"rolldeck: {event}"), file=sys.stderr)
        return EXIT_FAILED
    verdict = "accepted" if event.accepted else "REFUSED"
    detail = f": {event.detail}" if event.detail else ""
    # The owner's words: outside text, shown escaped.
    print(printable(f"{command.name} {verdict} by {remote.rollout_id}{detail}"))
    print(printable(f"journaled as {event.operator} (unix {event.user})"))
    return EXIT_OK if event.accepted else EXIT_FAILED


async def _console(remote: RemoteRollout) -> int:
    try:
        from console.app import RolldeckApp, console_settings
    except ImportError as exc:
        print(
            printable(f"rolldeck: the console is unavailable ({exc}); use --headless"),
            file=sys.stderr,
        )
        await remote.close()
        return EXIT_FAILED
    try:
        settings = console_settings()  # theme and keymap: config.toml / ROLLDECK_*
    except InputError:
        await remote.close()
        raise
    from console.spec import parse_spec

    view = remote.view()
    spec = None
    started = next((e for e in remote.snapshot if isinstance(e, ev.RolloutStarted)), None)
    if started is not None:
        try:
            spec = parse_spec(started.spec_text, started.spec_path)
        except Exception:  # a redacted or newer spec still attaches, without spec details
            spec = None
    app = RolldeckApp(
        remote.subscription,
        remote.controller,
        spec=spec,
        initial_view=view,
        read_only=remote.read_only,
        pause_on_quit=False,
        **settings,
    )
    remote.start()
    try:
        await app.run_async()
    finally:
        await remote.close()
    if app.view.outcome is not None:
        return OUTCOME_EXIT_CODES[app.view.outcome]
    if remote.bye is None and remote.error is None:
        rid = remote.rollout_id
        print(
            printable(
                f"rolldeck: detached from {rid}; it goes on. Attach again: rolldeck attach {rid}"
            )
        )
        return EXIT_OK
    return EXIT_FAILED
