"""``rolldeck demo``: a rollout against a simulated fleet, in one command.

Also home of :func:`rehearse`, the run that ``rolldeck drill`` shares: start the
fleet in a child process (in a temp dir), run the fleet's own rollout.yaml through
the real engine and SSH transport (console, or headless), optionally score it, and on
every way out stop the fleet and remove the temp dir, so only the journal remains.

The fleet child is started with SIGINT and SIGHUP blocked (the mask is inherited
across exec): Ctrl-C at a terminal goes to the whole process group, and must pause
the rollout, not kill the hosts under it. The parent stops the child with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Literal

from console.core.errors import EXIT_FAILED, EXIT_PAUSED, InputError, RolldeckError
from console.core.text import printable

if TYPE_CHECKING:
    from console.core.events import DrillScorecard, Outcome
    from console.engine import Engine
    from console.simfleet.process import FleetProcess
    from console.spec import RolloutSpec
    from console.store.journal import Journal
    from console.subcommands.check import CheckReport
    from console.subcommands.run import ConsoleRunner

NAME = "demo"
HELP = "see rolldeck work: a rollout against a simulated fleet on this machine"
DESCRIPTION = """\
Starts a simulated fleet of SSH hosts on 127.0.0.1 in a child process and opens the
console on a rollout to it. In the default scenario the canary passes, a later batch
reaches a host whose disk is full, its install fails, and the failure budget pauses
the rollout: try resume (or rollback) from there. Headless with --headless or when
not on a terminal. On exit the fleet stops and its temp dir is removed; the journal
stays in the state directory (rolldeck history).

exit codes: those of run (0 succeeded, 3 failed, 4 rolled back, 5 aborted, 6 paused)"""
ORDER = 20

Policy = Literal["auto", "operator"]
UNREADABLE = "unreadable"  # a host's final version when the fleet cannot be asked


def add_fleet_arguments(parser: argparse.ArgumentParser, *, hosts: int = 24) -> None:
    """The options demo and drill share."""
    parser.add_argument(
        "--hosts",
        type=int,
        default=hosts,
        metavar="N",
        help=f"hosts in the simulated fleet (default {hosts})",
    )
    parser.add_argument("--seed", type=int, default=1, help="same seed, same run (default 1)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="F",
        help="multiply every simulated duration (0.1: ten times faster; default the scenario's)",
    )
    parser.add_argument("--headless", action="store_true", help="no console: print progress")
    parser.add_argument(
        "--json", action="store_true", help="headless, with JSON-lines events on stdout"
    )
    parser.add_argument("--state-dir", metavar="DIR", help="where the journal goes")
    parser.add_argument(
        "--keep-fleet-dir",
        action="store_true",
        help="keep the fleet's temp dir (inventory, rollout.yaml, keys, its log) afterwards",
    )
    parser.add_argument("--operator", metavar="NAME", help="who runs it (default: $USER)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", default="demo", metavar="NAME|FILE", help="fleet behaviour (default: demo)"
    )
    add_fleet_arguments(parser)


def run(args: argparse.Namespace) -> int:
    result = rehearse(
        RehearsalOptions(
            scenario=args.scenario,
            hosts=args.hosts,
            seed=args.seed,
            time_scale=args.time_scale,
            headless=args.headless,
            json=args.json,
            state_dir=args.state_dir,
            keep_fleet_dir=args.keep_fleet_dir,
            operator=args.operator,
            kind="demo",
        )
    )
    if result.exit_code == EXIT_PAUSED:
        print(
            "demo over: the fleet is gone, so this paused rollout cannot be resumed; "
            "rerun rolldeck demo to try resume or rollback in the console",
            file=sys.stderr,
        )
    return result.exit_code


# -- the rehearsal ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RehearsalOptions:
    scenario: str  # a built-in name or a scenario YAML file
    hosts: int = 24
    seed: int = 1
    time_scale: float | None = None
    headless: bool = False
    json: bool = False
    policy: Policy = "auto"
    state_dir: str | None = None
    keep_fleet_dir: bool = False
    operator: str | None = None
    kind: str = "demo"  # 'demo' | 'drill': names the temp dir, journaled
    score: bool = False  # compute, journal and print the drill scorecard
    prometheus: bool = False  # judge through a real Prometheus scraping the fleet


@dataclass(slots=True)
class RehearsalResult:
    exit_code: int
    outcome: Outcome | None = None
    journal: Path | None = None
    scorecard: DrillScorecard | None = None
    fleet_dir: Path | None = None


def rehearse(
    opts: RehearsalOptions, *, out: IO[str] | None = None, err: IO[str] | None = None
) -> RehearsalResult:
    """Run one demo or drill end to end; see the module doc."""
    out, err = out or sys.stdout, err or sys.stderr
    if opts.hosts < 1:
        raise InputError("must be at least 1", field="--hosts")
    if opts.time_scale is not None and opts.time_scale <= 0:
        raise InputError("must be greater than 0", field="--time-scale")
    if not _scenario_exists(opts.scenario):
        from console.simfleet.scenario import load_scenario

        load_scenario(opts.scenario)  # raises the InputError, with a did-you-mean
    console_wanted = not (opts.headless or opts.json)
    if console_wanted and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("rolldeck: not a terminal; running headless", file=err)
        console_wanted = False
    # Said before any heavy import: the simulated fleet's package loads asyncssh.
    print(
        f"rolldeck {opts.kind}: starting {opts.hosts} simulated hosts on 127.0.0.1 "
        f"(scenario {opts.scenario}, seed {opts.seed})...",
        file=err,
        flush=True,
    )
    from console.drill import scenario_faults
    from console.simfleet.layout import host_slots
    from console.simfleet.scenario import builtin_names, load_scenario

    scenario = load_scenario(opts.scenario)  # bad input fails before anything starts
    if scenario.load_balancer is not None:
        from console.simfleet.haproxy import MISSING, find_haproxy

        if find_haproxy() is None:  # said before any host starts
            print(f"rolldeck: scenario {scenario.name} runs through HAProxy: {MISSING}", file=err)
            return RehearsalResult(EXIT_FAILED)
    names = [s.name for s in host_slots(opts.hosts)]
    faults = scenario_faults(scenario, names)
    if scenario.hosts and not any(r.matches(n) for r in scenario.hosts for n in names):
        print(
            f"rolldeck: note: scenario {scenario.name}'s host rules match none of the "
            f"{opts.hosts} hosts; try more --hosts",
            file=err,
        )
    scenario_arg = opts.scenario
    if opts.scenario not in builtin_names():  # a file: the child needs its full path
        scenario_arg = str(Path(opts.scenario).resolve())
    fleet_dir = Path(tempfile.mkdtemp(prefix=f"rolldeck-{opts.kind}-"))
    fleet: FleetProcess | None = None
    try:
        with _sigterm_exits():
            fleet = _start_fleet(opts, scenario_arg, fleet_dir, console_wanted)
            print(f"rolldeck {opts.kind}: {fleet.ready_line}", file=err, flush=True)
            return _run_on(fleet, opts, scenario.name, faults, console_wanted, out, err)
    except _Failed as exc:
        print(printable(f"rolldeck: {exc}", multiline=True), file=err)  # the fleet's words
        return RehearsalResult(EXIT_FAILED)
    finally:
        if fleet is not None:
            fleet.stop()
        if opts.keep_fleet_dir:
            print(f"rolldeck {opts.kind}: fleet files kept in {fleet_dir}", file=err)
        else:
            shutil.rmtree(fleet_dir, ignore_errors=True)


def _scenario_exists(name: str) -> bool:
    """A cheap check (no import of the fleet) that the scenario is there to load."""
    builtin = Path(__file__).resolve().parents[1] / "simfleet" / "scenarios" / f"{name}.yaml"
    return builtin.is_file() or Path(name).is_file()


def _start_fleet(
    opts: RehearsalOptions, scenario: str, directory: Path, console_wanted: bool
) -> FleetProcess:
    """Start the fleet child on a worker thread while this thread imports what the run
    needs (the engine, the transport, the console), so the two overlap."""
    from console.simfleet.process import FleetStartError, start_fleet_process

    def spawn() -> FleetProcess:
        # Per-thread mask, inherited by the child across fork and exec.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGHUP})
        return start_fleet_process(
            opts.hosts,
            directory,
            scenario=scenario,
            seed=opts.seed,
            time_scale=opts.time_scale,
        )

    pool = ThreadPoolExecutor(1, thread_name_prefix="sim-fleet-start")
    future = pool.submit(spawn)
    try:
        _warm_imports(console_wanted)
        return future.result()
    except FleetStartError as exc:
        raise _Failed(str(exc)) from None
    except BaseException:
        # Interrupted while the child starts: wait for it, then stop it, so no fleet
        # outlives us and nothing writes into the temp dir once it is removed.
        with contextlib.suppress(Exception):
            future.result().stop()
        raise
    finally:
        pool.shutdown(wait=False)


def _warm_imports(console_wanted: bool) -> None:
    import console.headless
    import console.runtime.session
    import console.subcommands.check

    if console_wanted:
        with contextlib.suppress(ImportError):
            import console.app  # noqa: F401


class _Failed(Exception):
    """The rehearsal could not run (fleet did not start, lock held): exit 3."""


def _run_on(
    fleet: FleetProcess,
    opts: RehearsalOptions,
    scenario_name: str,
    faults: dict[str, str],
    console_wanted: bool,
    out: IO[str],
    err: IO[str],
) -> RehearsalResult:
    with contextlib.ExitStack() as stack:  # --prometheus: stopped on every way out
        if opts.prometheus:
            _judge_through_prometheus(fleet, opts, stack, err)
        return _run_checked(fleet, opts, scenario_name, faults, console_wanted, out, err)


def _judge_through_prometheus(
    fleet: FleetProcess, opts: RehearsalOptions, stack: contextlib.ExitStack, err: IO[str]
) -> None:
    """``--prometheus``: a real Prometheus (found on PATH) scrapes every host's page,
    and the fleet's spec judges the new version through it (error ratio, p95)."""
    from console.simfleet.layout import FLEET_FILE, balancer_layout, rollout_yaml
    from console.simfleet.prometheus import (
        PrometheusServer,
        PrometheusStartError,
        fleet_targets,
        wait_scraped,
    )
    from console.simfleet.scenario import load_scenario

    targets = fleet_targets(fleet.directory)
    server = PrometheusServer(fleet.directory / "prometheus", targets)
    try:
        server.start()
    except PrometheusStartError as exc:
        raise _Failed(str(exc)) from None
    stack.callback(server.stop)
    print(f"rolldeck {opts.kind}: Prometheus on {server.url}, scraping every 1s", file=err)
    if not wait_scraped(server, len(targets)):
        raise _Failed(f"Prometheus at {server.url} did not scrape the fleet's {len(targets)} pages")
    scenario = load_scenario(opts.scenario)
    scale = scenario.time_scale if opts.time_scale is None else opts.time_scale
    header = f"rolldeck {opts.kind}: judged through the Prometheus at {server.url}"
    fleet_json = json.loads((fleet.directory / FLEET_FILE).read_text(encoding="utf-8"))
    balancer = balancer_layout(fleet_json)
    text = rollout_yaml(
        scenario, opts.hosts, scale, header, prometheus_url=server.url, balancer=balancer
    )
    fleet.spec_path.write_text(text, encoding="utf-8")


def _run_checked(
    fleet: FleetProcess,
    opts: RehearsalOptions,
    scenario_name: str,
    faults: dict[str, str],
    console_wanted: bool,
    out: IO[str],
    err: IO[str],
) -> RehearsalResult:
    from console.core.commands import default_operator
    from console.engine import new_rollout_id
    from console.runtime.session import create_journal
    from console.store.journal import resolve_state_dir
    from console.store.lock import LockHeld, RolloutLock
    from console.subcommands.check import analyse

    if opts.policy == "operator":
        _leave_failures_to_the_operator(fleet.spec_path)
    report = analyse(str(fleet.spec_path))
    operator = opts.operator or default_operator()
    state_dir = resolve_state_dir(opts.state_dir)
    rollout_id = new_rollout_id(report.spec.service)
    try:
        lock = RolloutLock.acquire(
            state_dir,
            service=report.spec.service,
            inventory=report.inventory_path,
            rollout_id=rollout_id,
        )
    except LockHeld as exc:
        raise _Failed(str(exc)) from None
    try:
        journal = create_journal(
            state_dir,
            rollout_id,
            report.rollout,
            operator,
            {
                opts.kind: {
                    "scenario": scenario_name,
                    "hosts": opts.hosts,
                    "seed": opts.seed,
                    "time_scale": opts.time_scale,
                    "policy": opts.policy,
                },
            },
        )
        result = _run_engine(fleet, opts, report, journal, operator, console_wanted, out, err)
        result.journal = journal.path
        if report.spec.load_balancer is not None:
            _say_balancer(fleet, opts, err)
        if opts.score:
            result.scorecard = _score(
                fleet, opts, scenario_name, faults, report.spec, journal.path, err
            )
            from console.drill import print_scorecard

            print_scorecard(result.scorecard, out, as_json=opts.json)
    finally:
        lock.release()
    print(printable(f"journal: {journal.path}"), file=err)
    return result


def _run_engine(
    fleet: FleetProcess,
    opts: RehearsalOptions,
    report: CheckReport,
    journal: Journal,
    operator: str,
    console_wanted: bool,
    out: IO[str],
    err: IO[str],
) -> RehearsalResult:
    from console.runtime.session import build_engine
    from console.transport import rollout_options

    run_console = _console(err) if console_wanted else None
    engine = build_engine(
        report.rollout,
        operator=operator,
        journal=journal,
        rollout_id=journal.path.stem,
        options=rollout_options(
            len(report.hosts),
            max_handshakes=10,
            ssh_config=[],  # the fleet is self-contained: ignore ~/.ssh/config
        ),
        exit_when_paused=run_console is None,
        notices=[
            f"rolldeck {opts.kind} on a simulated fleet: scenario {opts.scenario}, "
            f"{opts.hosts} hosts, seed {opts.seed}, policy {opts.policy}"
        ],
    )
    if run_console is not None:
        code = int(run_console(engine, resume_hint=False))  # the fleet dies with the demo
    else:
        code = asyncio.run(_headless(engine, opts, out, err))
    return RehearsalResult(code, engine.outcome, fleet_dir=fleet.directory)


def _say_balancer(fleet: FleetProcess, opts: RehearsalOptions, err: IO[str]) -> None:
    """Where the traffic ended, as HAProxy says, and what the requests got back."""
    from console.drill import balancer_lines

    try:
        report = asyncio.run(fleet.balancer())
    except RolldeckError as exc:
        print(printable(f"rolldeck: cannot read the load balancer's state: {exc}"), file=err)
        return
    for line in balancer_lines(report):
        print(printable(f"rolldeck {opts.kind}: {line}"), file=err)


def _score(
    fleet: FleetProcess,
    opts: RehearsalOptions,
    scenario_name: str,
    faults: dict[str, str],
    spec: RolloutSpec,
    journal_path: Path,
    err: IO[str],
) -> DrillScorecard:
    """Score the finished run: the journal, plus every host's true active version read
    back from the fleet over SSH; the scorecard is appended to the journal."""
    from console.drill import DrillInfo, append_event, live_step, score
    from console.store.journal import read_journal

    try:
        truth = {h: s.active for h, s in asyncio.run(fleet.host_states()).items()}
    except RolldeckError as exc:  # the fleet died: no host's version can be vouched for
        print(printable(f"rolldeck: cannot read the hosts' final versions: {exc}"), file=err)
        truth = dict.fromkeys(fleet.hosts, UNREADABLE)
    info = DrillInfo(scenario_name, opts.seed, opts.policy, faults, live_step(spec))
    card = score(read_journal(journal_path), info, truth)
    append_event(journal_path, card)
    return card


async def _headless(engine: Engine, opts: RehearsalOptions, out: IO[str], err: IO[str]) -> int:
    from console.core.events import OUTCOME_EXIT_CODES
    from console.headless import choose_mode, run_headless

    loop = asyncio.get_running_loop()
    mode = choose_mode(opts.json, out)
    try:  # SIGTERM: abort (in-flight commands stopped), then unwind and clean up
        loop.add_signal_handler(signal.SIGTERM, lambda: engine.abort(reason="SIGTERM"))
    except (RuntimeError, ValueError):  # not the main thread
        return OUTCOME_EXIT_CODES[
            await run_headless(engine, mode=mode, yes=True, out=out, err=err, handle_signals=False)
        ]
    try:
        outcome = await run_headless(engine, mode=mode, yes=True, out=out, err=err)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_exit)
    return OUTCOME_EXIT_CODES[outcome]


def _console(err: IO[str]) -> ConsoleRunner | None:
    """The console's entry point (the terminal was checked before the fleet started)."""
    from console.subcommands.run import console_runner

    return console_runner(err, need_terminal=False)


_ON_FAILURE = re.compile(r"^on_failure:.*$", re.MULTILINE)


def _leave_failures_to_the_operator(spec_path: Path) -> None:
    """``--policy operator``: the engine only pauses when a rule trips; rolling back
    or aborting is the operator's call (and what the drill times)."""
    text = spec_path.read_text(encoding="utf-8")
    line = "on_failure: pause  # rolldeck drill --policy operator: the operator decides"
    text, n = _ON_FAILURE.subn(line, text, count=1)
    spec_path.write_text(text if n else text + line + "\n", encoding="utf-8")


def _raise_exit(signum: int, frame: FrameType | None) -> Any:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM unwinds (so the fleet is stopped and the temp dir removed) instead of
    killing this process where it stands."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_exit)
    except ValueError:  # not the main thread (a test's worker): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
