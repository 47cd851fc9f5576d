"""``rolldeck sim-fleet``: serve the embedded simulated fleet until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from console.core.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    from console.simfleet.fleet import SimFleet

NAME = "sim-fleet"
HELP = "serve a simulated fleet of SSH hosts on 127.0.0.1 (for demos, drills, tests)"
DESCRIPTION = """\
Starts N simulated hosts, each an SSH server on its own 127.0.0.1 port running one
simulated service, and writes into DIR: inventory.yaml, rollout.yaml (ready to run),
known_hosts, the client key id_ed25519 and fleet.json. Prints one line when ready and
serves until SIGINT or SIGTERM.

scenarios: healthy, bad-canary, host-dies-mid-batch, hung-install, flapping-health,
slow-rollout, demo, blue-green-bad, or a scenario YAML file (format: pydoc
console.simfleet.scenario). A scenario with load_balancer: also starts a real HAProxy
(haproxy on PATH) in front of the hosts, the SSH host lb-01 through which its admin
socket is reached, and a load generator sending requests through it.

Every host answers `ssh -i DIR/id_ed25519 -p PORT deploy@127.0.0.1 'svc status'`; the
user simctl drives the whole fleet: state [HOST...], kill HOST, revive HOST,
disk-full HOST on|off, balancer (HAProxy's servers and the requests' answers, JSON)."""
ORDER = 70


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", type=int, default=24, metavar="N", help="hosts (default 24)")
    parser.add_argument("--dir", required=True, metavar="DIR", help="where to write the files")
    parser.add_argument(
        "--scenario", default="healthy", metavar="NAME|FILE", help="default: healthy"
    )
    parser.add_argument("--seed", type=int, default=1, help="same seed, same behaviour")
    parser.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help=argparse.SUPPRESS,  # used by demo/drill: stop when that process is gone
    )
    parser.add_argument(
        "--log-rate",
        type=_rate,
        default=None,
        metavar="LINES_PER_SEC_PER_HOST",
        help="log lines per second per host (default: the scenario's, 5)",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive_float,
        default=None,
        metavar="F",
        help="multiply every simulated duration (0.1: ten times faster)",
    )


def run(args: argparse.Namespace) -> int:
    if args.hosts < 1:
        raise InputError("must be at least 1", field="--hosts")
    directory = Path(args.dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".sim-fleet-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"cannot write there: {exc.strerror}", file=args.dir, field="--dir"
        ) from None
    from console.simfleet.fleet import SimFleet  # asyncssh loads only when needed

    fleet = SimFleet(
        n=args.hosts,
        directory=args.dir,
        scenario=args.scenario,
        seed=args.seed,
        log_rate=args.log_rate,
        time_scale=args.time_scale,
    )
    return asyncio.run(_serve(fleet, parent=args.exit_with_parent))


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """Stop when the process that started us is gone (we were re-parented)."""
    while not stop.is_set():
        if os.getppid() != pid:
            print("sim-fleet: parent process gone, stopping", file=sys.stderr, flush=True)
            stop.set()
            return
        await asyncio.sleep(1.0)


async def _serve(fleet: SimFleet, *, parent: int | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        print(fleet.ready_line(), flush=True)
        watcher = asyncio.create_task(_watch_parent(parent, stop)) if parent else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
    print(f"sim-fleet stopped: {fleet.n} hosts", file=sys.stderr, flush=True)
    return EXIT_OK
