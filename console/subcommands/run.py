"""``rolldeck run``: run a rollout, in the console or headless.

Loads and validates exactly what ``rolldeck check`` shows, takes the per-service lock,
opens the journal, then hands the engine to the Textual console or, with
``--headless`` (or when the console is not available), to the headless runner.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import IO, Protocol

from console.core.commands import default_operator, unix_user
from console.core.errors import EXIT_FAILED, InputError
from console.core.events import OUTCOME_EXIT_CODES, Outcome
from console.core.hints import flag_hint
from console.core.text import printable
from console.engine import Engine, new_rollout_id
from console.headless import Mode, choose_mode, run_headless
from console.lock_options import acquire_from_args, add_engine_arguments, lease_options
from console.resume import unfinished_hints
from console.runtime.limits import check_local
from console.runtime.session import build_engine, create_journal
from console.spec import RolloutSpec
from console.store.journal import resolve_state_dir
from console.subcommands.check import analyse
from console.transport import rollout_options
from console.transport.base import TransportOptions
from console.transport.cli_options import add_connect_timeout, connect_timeout

NAME = "run"
HELP = "run a rollout (in the console, or headless for CI)"
DESCRIPTION = """\
Run a rollout: preflight every targeted host, then deploy batch by batch with health
gating, the failure budget and the gates of the spec. In the console by default;
--headless prints rich progress on a terminal, plain lines otherwise, or JSON-lines
events with --json. Headless, manual gates pass only with --yes (else the run stops
paused at the first gate), Ctrl-C pauses (twice aborts) and SIGHUP pauses.

exit codes: 0 succeeded, 2 bad input, 3 failed and stopped (on_failure abort, or
preflight or the lock refused the start), 4 rolled back, 5 aborted by the operator,
6 paused (resumable)"""
ORDER = 10
UNREACHABLE_HINT = flag_hint(
    "run",
    "pass {0} to go ahead without them (they count against the failure budget)",
    "--allow-unreachable",
)

FEWER_HOSTS_HINT = flag_hint("run", "target fewer hosts at a time with {0}", "--targets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="rollout spec (YAML)")
    parser.add_argument(
        "--inventory",
        metavar="PATH",
        action="append",
        help="inventory file or directory (repeat to merge; default: the spec's)",
    )
    parser.add_argument(
        "--targets", metavar="PATTERN", help="host pattern, or @FILE (default: the spec's)"
    )
    parser.add_argument("--headless", action="store_true", help="no console: print progress")
    parser.add_argument("--json", action="store_true", help="headless: JSON-lines events on stdout")
    parser.add_argument("--yes", action="store_true", help="headless: pass manual gates")
    add_engine_arguments(parser, who="runs it")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="run in the background (headless, serving an attach socket); print its id",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--attach-group",
        metavar="GROUP",
        help="attach socket mode 0660 for this group (default 0600: only you)",
    )
    parser.add_argument(
        "--max-handshakes",
        metavar="N",
        type=int,
        default=10,
        help="concurrent SSH handshakes per server endpoint (default 10, OpenSSH's "
        "MaxStartups); at most 32 at once in all",
    )
    add_connect_timeout(parser)
    parser.add_argument(
        "--metrics-textfile",
        metavar="DIR",
        help="write the rollout's Prometheus text file there (node_exporter's textfile "
        "collector; default: the spec's metrics_out)",
    )
    parser.add_argument(
        "--commit", metavar="SHA", help="the commit deployed (journaled: history --dora)"
    )
    parser.add_argument(
        "--override-requires",
        action="store_true",
        help="start although the spec's requires (promotion) are not met; needs --reason, "
        "journaled",
    )
    parser.add_argument(
        "--commit-time",
        metavar="TIME",
        help="when that commit was made (ISO 8601 or Unix seconds): lead time in history --dora",
    )


def commit_header(args: argparse.Namespace) -> dict[str, object]:
    """``--commit``/``--commit-time`` for the journal header (``history --dora``)."""
    from console.store.dora import parse_time

    header: dict[str, object] = {}
    if args.commit:
        header["commit"] = args.commit
    if args.commit_time:
        header["commit_time"] = parse_time(args.commit_time, "--commit-time")
    return header


async def _headless_serving(
    engine: Engine, state_dir: Path, mode: Mode, yes: bool, group: str | None
) -> Outcome:
    """Headless with the attach socket beside it: an approval gate waits for `rolldeck
    approve` from another user, who needs the socket to reach it."""
    from console.attach.server import serve_engine

    server = serve_engine(engine, state_dir, group=group)
    try:
        return await run_headless(engine, mode=mode, yes=yes)
    finally:
        await server.close()


def check_requires(
    spec: RolloutSpec, state_dir: Path, args: argparse.Namespace, operator: str
) -> list[str] | None:
    """The spec's ``requires`` against the history: notices to journal, or None when
    refused (the reasons printed). ``--override-requires --reason`` goes on, journaled."""
    from console.store.promotion import judge, unmet

    verdicts = judge(spec, state_dir)
    missing = unmet(verdicts)
    notices = [f"requires met: {v.reason}" for v in verdicts if v.met_by is not None]
    if not missing:
        return notices
    if not args.override_requires:
        for reason in missing:
            print(printable(f"rolldeck: refused: {reason}"), file=sys.stderr)
        print(
            "rolldeck: promote it there first, or pass --override-requires --reason TEXT "
            "(journaled)",
            file=sys.stderr,
        )
        return None
    if not args.reason.strip():
        raise InputError("--override-requires needs --reason: why skip it", field="--reason")
    for reason in missing:
        notices.append(
            f"requires OVERRIDDEN by {operator} (unix {unix_user()}): {args.reason}; {reason}"
        )
    return notices


def run(args: argparse.Namespace) -> int:
    commit_header(args)  # a bad --commit-time is refused before anything starts
    if args.max_handshakes < 1:
        raise InputError("must be at least 1", field="--max-handshakes")
    timeout = connect_timeout(args)
    report = analyse(args.spec, inventory=args.inventory, targets=args.targets)
    spec = report.spec
    if not report.hosts:
        raise InputError("no hosts targeted", file=spec.path, field="targets")
    # Before the lock and any host: open-file limit (raised or refused), a user name.
    local_notices = check_local(
        report.hosts,
        # handshakes in flight: per endpoint, but never past the transport's total
        max_handshakes=max(args.max_handshakes, TransportOptions().max_handshakes_total),
        fewer_hosts=FEWER_HOSTS_HINT,
    )
    operator = args.operator or default_operator()
    err = sys.stderr
    state_dir = resolve_state_dir(args.state_dir)
    requires_notices = check_requires(spec, state_dir, args, operator)
    if requires_notices is None:
        return EXIT_FAILED
    if args.detach:
        from console.attach.detach import DetachError, spawn_detached

        try:
            pid, rid = spawn_detached(sys.argv[1:], state_dir)
        except DetachError as exc:
            print(printable(f"rolldeck: {exc}"), file=err)
            return EXIT_FAILED
        print(
            printable(
                f"rollout {rid} runs in the background (pid {pid}); log {state_dir / rid}.log"
            )
        )
        print(
            printable(f"attach: rolldeck attach {rid}   watch: rolldeck attach {rid} --read-only")
        )
        return 0
    run_console = None if (args.headless or args.json or args.serve) else console_runner()
    rollout_id = new_rollout_id(spec.service)
    for hint in unfinished_hints(state_dir, spec.service):
        print(printable(f"rolldeck: {hint}"), file=err)
    lock = acquire_from_args(
        args,
        state_dir,
        service=spec.service,
        inventory=report.inventory_path,
        rollout_id=rollout_id,
    )
    if lock is None:
        return EXIT_FAILED
    try:
        rollout = report.rollout
        journal = create_journal(state_dir, rollout_id, rollout, operator, commit_header(args))
        notices: list[str] = [*local_notices, *requires_notices]
        if args.accept_new_host_keys:
            notices.append("--accept-new-host-keys: unknown host keys are trusted on first use")
        engine = build_engine(
            rollout,
            operator=operator,
            journal=journal,
            rollout_id=rollout_id,
            options=rollout_options(
                len(rollout.hosts),
                accept_new_host_keys=args.accept_new_host_keys,
                max_handshakes=args.max_handshakes,
                connect_timeout=timeout,
            ),
            lock=lock,
            lock_reason=args.reason,
            allow_unreachable=args.allow_unreachable,
            exit_when_paused=run_console is None,
            notices=notices,
            leases=lease_options(args, operator),
            metrics_textfile=args.metrics_textfile,
        )
        engine.preflight_hint = str(UNREACHABLE_HINT)
        if run_console is not None:
            code = int(run_console(engine, serve_dir=state_dir))
        else:
            # Warnings (a signal that failed) already reach the output as Alert events;
            # only errors (a bug) also go to stderr.
            logging.basicConfig(level=logging.ERROR, format="rolldeck: %(name)s: %(message)s")
            mode = choose_mode(args.json, sys.stdout)
            if args.serve:
                from console.attach.detach import serve_headless

                outcome = asyncio.run(
                    serve_headless(
                        engine, state_dir, mode=mode, yes=args.yes, group=args.attach_group
                    )
                )
            elif spec.between_batches.kind == "approval":  # `rolldeck approve` reaches it
                outcome = asyncio.run(
                    _headless_serving(engine, state_dir, mode, args.yes, args.attach_group)
                )
            else:
                outcome = asyncio.run(run_headless(engine, mode=mode, yes=args.yes))
            code = OUTCOME_EXIT_CODES[outcome]
    finally:
        lock.release()
    print(printable(f"journal: {journal.path}"), file=err)
    if code == OUTCOME_EXIT_CODES[Outcome.PAUSED]:
        print(
            printable(f"rollout {rollout_id} is paused; its journal holds where every host is"),
            file=err,
        )
    return code


class ConsoleRunner(Protocol):
    """:func:`console.app.run_console`, as the subcommands call it."""

    def __call__(
        self,
        engine: Engine,
        *,
        serve_dir: str | os.PathLike[str] | None = None,
        resume_hint: bool = True,
    ) -> int: ...


def console_runner(
    err: IO[str] | None = None, *, need_terminal: bool = True
) -> ConsoleRunner | None:
    """The Textual console's entry point, or None (with a notice on ``err``) when it
    is unavailable: not a terminal (unless the caller checked), or Textual missing.
    Imported here, lazily, so a headless run never loads Textual."""
    err = err or sys.stderr
    if need_terminal and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("rolldeck: not a terminal; running headless", file=err)
        return None
    try:
        from console.app import run_console
    except ImportError as exc:
        print(
            printable(f"rolldeck: the console is unavailable ({exc}); running headless"), file=err
        )
        return None
    return run_console
