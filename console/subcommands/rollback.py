"""``rolldeck rollback ID``: take back exactly the hosts a stopped or ended rollout
changed, each to the version its journal recorded before the deploy.

The way back from every stop (issue 18): a rollout that failed, was aborted, stopped
paused, lost its console, had its rollback cut short, or succeeded and turned out bad
later. It is the engine's own rollback, entered through the same
:class:`~console.engine.context.RestorePoint` as ``resume`` (``console.resume``), with
``rolling_back`` set: the rollback steps run on the changed hosts, newest batch
first (or the spec's ``rollback.batches``), each host health-gated on the version it
goes back to, and the same console, headless output and attach socket.

It appends to the rollout's own journal (one rollout id, one file, as ``resume``
does): an ``OperatorCommand`` ``rollback`` names who asked, then the reconciliation
and the rollback's events, and a ``RolloutFinished`` with the rollback's outcome
(``show``/``history`` then tell the whole story; the earlier ``RolloutFinished``
stays in the journal above it). A rollback cut short (killed, or paused by a refused
preflight) is continued by ``rolldeck rollback ID`` (a paused one by ``resume`` too).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys

from console.core import events as ev
from console.core.commands import default_operator
from console.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, InputError
from console.core.events import OUTCOME_EXIT_CODES, HostState, Outcome
from console.core.hints import flag_hint
from console.core.text import printable
from console.headless import choose_mode, run_headless
from console.lock_options import acquire_from_args, add_engine_arguments, lease_options
from console.plan import Plan
from console.reconcile import Observation
from console.resume import (
    ResumeState,
    changed_hosts,
    describe_state,
    find_for_rollback,
    load_resumed_spec,
    observe,
    reconcile,
    resumed_hosts,
    rollback_targets,
)
from console.runtime.limits import check_local
from console.runtime.rollout import balancer_of
from console.runtime.session import Rollout, build_engine
from console.store.journal import Journal, resolve_state_dir
from console.subcommands.run import console_runner
from console.transport import make_transport, rollout_options
from console.transport.cli_options import add_connect_timeout, connect_timeout

NAME = "rollback"
HELP = "roll back the hosts a failed, aborted, stopped or succeeded rollout changed"
DESCRIPTION = """\
Roll back, from its journal, exactly the hosts rollout ID changed (a deploy step ran
on them), each to the version the journal recorded before its deploy: the spec's
rollback steps, newest batch first, each host health-gated on the version it goes
back to. Works on a rollout that failed, was aborted, stopped paused, lost its
console, whose rollback was cut short, or that succeeded (a release that turned out
bad later). Every host is first re-read over SSH and the plan printed; in the console
the rollback starts paused (resume it there); headless it asks for confirmation on a
terminal, and needs --yes otherwise. The rollback is appended to the rollout's own
journal; if it is cut short, this command continues it.

exit codes: 2 bad input or nothing to roll back, 3 the rollback failed on a host or
the lock refused, 4 rolled back, 5 aborted, 6 paused (resumable)"""
ORDER = 16

UNREACHABLE_HINT = flag_hint(
    "rollback",
    "the rollback stays paused: run it again once they are back, or with {0} to go ahead "
    "without them (their rollback counts as failed)",
    "--allow-unreachable",
)
YES_HINT = flag_hint("rollback", "nothing changed; pass {0} to roll back headless", "--yes")
ALLOW_NOTICE = (
    "--allow-unreachable: hosts that fail preflight are skipped and count against the budget"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="rollout id or a unique prefix")
    parser.add_argument("--headless", action="store_true", help="no console: print progress")
    parser.add_argument("--json", action="store_true", help="headless: JSON-lines events on stdout")
    parser.add_argument("--yes", action="store_true", help="headless: roll back without asking")
    add_engine_arguments(parser, who="rolls back")
    add_connect_timeout(parser)


def run(args: argparse.Namespace) -> int:
    timeout = connect_timeout(args)
    state_dir = resolve_state_dir(args.state_dir)
    r = find_for_rollback(state_dir, args.id)
    spec = load_resumed_spec(r)
    if not spec.rollback.steps:
        raise InputError(
            "the spec has no rollback steps: nothing to roll back with",
            file=r.spec_path,
            field="rollback",
        )
    changed = changed_hosts(r, spec)
    if not changed:
        raise InputError(
            f"rollout {r.rollout_id} changed no host: nothing to roll back", field="ID"
        )
    targets = rollback_targets(r, spec, requested=True)
    batches = [tuple(n for n in b if n in set(changed)) for b in r.view.batches]
    hosts = resumed_hosts(r, [b for b in batches if b])
    operator = args.operator or default_operator()
    local_notices = check_local(hosts)  # before the lock and any host (runtime/limits.py)
    headless = args.headless or args.json
    run_console = None if headless else console_runner()
    err = sys.stderr
    lock = acquire_from_args(
        args,
        state_dir,
        service=spec.service,
        inventory=r.inventory_path,
        rollout_id=r.rollout_id,
        resume_of=r.rollout_id,
    )
    if lock is None:
        return EXIT_FAILED
    try:
        options = rollout_options(
            len(hosts), accept_new_host_keys=args.accept_new_host_keys, connect_timeout=timeout
        )
        mode = choose_mode(args.json, sys.stdout)
        logging.basicConfig(level=logging.ERROR, format="rolldeck: %(name)s: %(message)s")

        async def look() -> dict[str, Observation]:
            transport = make_transport(options)  # bound to this loop: the console has its own
            try:
                return await observe(spec, hosts, transport, targets)
            finally:
                await transport.close()

        state = reconcile(r, spec, asyncio.run(look()), operator, roll_back=True)
        out = err if mode == "json" else sys.stdout
        for line in describe_state(state):
            print(printable(line), file=out, flush=True)  # host names, versions
        left = [n for n, d in state.decisions.items() if d.state != HostState.ROLLED_BACK]
        if not left:
            raise InputError(
                f"every host rollout {r.rollout_id} changed is rolled back already", field="ID"
            )
        if run_console is None and not args.yes and not _confirmed(state, len(left)):
            said = f"rolldeck: rollout {r.rollout_id} not rolled back: {YES_HINT}"
            print(printable(said), file=err)
            return EXIT_BAD_INPUT
        again = f"rolldeck rollback {shlex.quote(r.rollout_id)}"  # takes a stale lease over
        engine = build_engine(
            Rollout(
                spec,
                hosts,
                Plan(batches=tuple(b for b in batches if b)),
                r.inventory_path,
                balancer=balancer_of(spec, r.inventory_path),
            ),
            operator=operator,
            journal=Journal.open_existing(r.path),
            rollout_id=r.rollout_id,
            options=options,
            lock=lock,
            lock_reason=args.reason,
            leases=lease_options(args, operator, command=again),
            allow_unreachable=args.allow_unreachable,
            exit_when_paused=run_console is None,
            resume=state.restore_point(),
            notices=[*local_notices, *([ALLOW_NOTICE] if args.allow_unreachable else [])],
        )
        engine.preflight_hint = str(UNREACHABLE_HINT)
        was = r.view.outcome.value if r.view.outcome is not None else "interrupted"
        # Journaled first among the run's commands: a rollback cut short from here on
        # is a rollback in the journal, and `resume` continues it as one.
        engine.emit(
            ev.OperatorCommand(
                command="rollback",
                operator=operator,
                reason=args.reason,
                accepted=True,
                detail=f"rolldeck rollback of the {was} rollout: {len(left)} changed hosts",
            )
        )
        if run_console is None:
            engine.resume(reason=args.reason or "rollback confirmed, headless")
            outcome = asyncio.run(run_headless(engine, mode=mode, yes=True))
            code = OUTCOME_EXIT_CODES[outcome]
        else:
            code = int(run_console(engine, serve_dir=state_dir))
    finally:
        lock.release()
    print(printable(f"journal: {r.path}"), file=err)
    if code == OUTCOME_EXIT_CODES[Outcome.PAUSED]:
        rid = printable(r.rollout_id)  # read from a journal file
        print(
            f"the rollback of rollout {rid} is paused: `rolldeck rollback {rid}` (or resume) "
            "continues it",
            file=err,
        )
    return code


def _confirmed(state: ResumeState, count: int) -> bool:
    """Ask on a terminal; never without one (the caller then asks for --yes)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    r = state.replay
    was = r.view.outcome.value if r.view.outcome is not None else "interrupted"
    warn = " It succeeded: this undoes a finished release." if was == "succeeded" else ""
    rid = printable(r.rollout_id)
    prompt = f"Roll back {count} hosts of the {was} rollout {rid}?{warn} [y/N] "
    print(prompt, end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")
