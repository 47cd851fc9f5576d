"""``rolldeck resume``: continue a rollout whose console died (or that stopped paused).

Replays the journal, re-reads every host's version and health over SSH, reconciles
(see :mod:`console.reconcile`), prints the reconciled state and the plan for the rest,
then continues paused, appending to the same journal under the same rollout id.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys

from console.core.commands import default_operator
from console.core.errors import EXIT_FAILED, InputError
from console.core.events import OUTCOME_EXIT_CODES, Outcome
from console.core.hints import flag_hint
from console.core.text import printable
from console.engine import Engine
from console.headless import choose_mode, run_headless
from console.lock_options import acquire_from_args, add_engine_arguments, lease_options
from console.plan import Plan
from console.reconcile import Observation
from console.resume import (
    describe_state,
    find_rollout,
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

NAME = "resume"
HELP = "resume a rollout whose console died or that stopped paused"
DESCRIPTION = """\
Replay the rollout's journal, re-read every host's current version and health over SSH,
reconcile them (a host cut mid-deploy re-runs its idempotent steps; a `once: true` step
that was in flight is never re-run: the host is flagged for the operator), print the
reconciled state and the plan, and continue paused in the console. Headless, the run
continues only with --yes (else it stops paused again: exit 6). ID defaults to the
latest unfinished rollout (of --service); a unique prefix works.

exit codes as for `rolldeck run`: 0 succeeded, 2 bad input, 3 failed, 4 rolled back,
5 aborted, 6 paused"""
ORDER = 15
# A refused preflight leaves the rollout paused (it may have changed hosts already).
UNREACHABLE_HINT = flag_hint(
    "resume",
    "the rollout stays paused: resume once they are back, or with {0} to go ahead "
    "without them (they count against the failure budget)",
    "--allow-unreachable",
)
ALLOW_NOTICE = (
    "--allow-unreachable: hosts that fail preflight are skipped and count against the budget"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", nargs="?", help="rollout id or a unique prefix")
    parser.add_argument("--service", metavar="NAME", help="the latest unfinished of this service")
    parser.add_argument("--headless", action="store_true", help="no console: print progress")
    parser.add_argument("--json", action="store_true", help="headless: JSON-lines events on stdout")
    parser.add_argument("--yes", action="store_true", help="headless: continue, pass manual gates")
    add_engine_arguments(parser, who="resumes it")
    add_connect_timeout(parser)


def run(args: argparse.Namespace) -> int:
    timeout = connect_timeout(args)
    state_dir = resolve_state_dir(args.state_dir)
    r = find_rollout(state_dir, args.id, args.service)
    spec = load_resumed_spec(r)
    facts_batches = [tuple(b) for b in r.view.batches]
    if not facts_batches:
        raise InputError(f"rollout {r.rollout_id} has no planned hosts", field="ID")
    hosts = resumed_hosts(r, facts_batches)
    operator = args.operator or default_operator()
    local_notices = check_local(hosts)  # before the lock and any host (runtime/limits.py)
    run_console = None if (args.headless or args.json) else console_runner()
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
        allow = args.allow_unreachable or bool(r.started.settings.get("allow_unreachable"))
        mode = choose_mode(args.json, sys.stdout)
        logging.basicConfig(level=logging.ERROR, format="rolldeck: %(name)s: %(message)s")

        async def look() -> dict[str, Observation]:
            transport = make_transport(options)  # bound to this loop: the console has its own
            try:
                return await observe(spec, hosts, transport, rollback_targets(r, spec))
            finally:
                await transport.close()

        again = f"rolldeck resume {shlex.quote(r.rollout_id)}"  # takes a stale lease over

        def prepare(observed: dict[str, Observation]) -> Engine:
            state = reconcile(r, spec, observed, operator)
            out = err if mode == "json" else sys.stdout
            for line in describe_state(state):
                print(printable(line), file=out, flush=True)  # host names, versions
            engine = build_engine(
                Rollout(
                    spec,
                    hosts,
                    Plan(batches=tuple(facts_batches)),
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
                allow_unreachable=allow,
                exit_when_paused=run_console is None,
                resume=state.restore_point(),
                notices=[*local_notices, *([ALLOW_NOTICE] if args.allow_unreachable else [])],
            )
            engine.preflight_hint = str(UNREACHABLE_HINT)
            # --yes continues, unless the budget is spent and the spec says pause then:
            # that decision is the operator's, not the flag's.
            held = engine.budget.exceeded and spec.on_failure == "pause"
            if run_console is None and args.yes and not held:
                engine.resume(reason=args.reason or "resume --yes (headless)")
            return engine

        engine = prepare(asyncio.run(look()))
        if run_console is not None:
            code = int(run_console(engine, serve_dir=state_dir))
        else:
            outcome = asyncio.run(run_headless(engine, mode=mode, yes=args.yes))
            code = OUTCOME_EXIT_CODES[outcome]
    finally:
        lock.release()
    print(printable(f"journal: {r.path}"), file=err)
    if code == OUTCOME_EXIT_CODES[Outcome.PAUSED]:
        rid = printable(r.rollout_id)  # read from a journal file
        print(f"rollout {rid} is paused: `rolldeck resume {rid}` to continue", file=err)
    return code
