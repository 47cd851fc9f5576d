"""``rolldeck drill SCENARIO``: rehearse a failure against a simulated fleet, scored.

The run is :func:`console.subcommands.demo.rehearse` with the scenario of the
operator's choosing; at the end the scorecard (:mod:`console.drill`) is appended to
the rollout's journal and printed.
"""

from __future__ import annotations

import argparse
import sys

from console.subcommands.demo import Policy, RehearsalOptions, add_fleet_arguments, rehearse

NAME = "drill"
HELP = "rehearse a failure scenario against a simulated fleet and score the response"
DESCRIPTION = """\
Starts a simulated fleet with a fault (a built-in scenario or a scenario YAML file),
runs its rollout in the console (or headless), then scores the response: time from
the fault to the first alert, from the alert to the first pause, rollback or abort,
the hosts that ran the bad version (blast radius), whether the rollback completed,
and whether every host ended on a known version (read back over SSH). The scorecard
is printed (JSON with --json) and appended to the rollout's journal.

--policy auto (the default headless) lets the engine's thresholds act, for CI drills;
--policy operator (the default in the console) only pauses on a tripped rule and
leaves rollback or abort to you, and times your response.

--prometheus starts a real Prometheus (on PATH) scraping each simulated host's
metrics page over HTTP, and the rollout judges the new version through it (error
ratio and p95 latency against the baseline hosts) instead of scraping over SSH;
slow-canary (latency only) is caught this way.

blue-green-bad runs through a real HAProxy (haproxy on PATH) in front of the simulated
hosts' HTTP servers, with a load generator sending requests through it: green is
deployed idle, takes the traffic, errs, and is switched back to blue; the end shows
where HAProxy holds each server and which version answered the requests.

built-in scenarios: healthy, bad-canary, slow-canary, host-dies-mid-batch, hung-install,
flapping-health, slow-rollout, demo, blue-green-bad

exit codes: those of run (0 succeeded, 2 bad input, 3 failed, 4 rolled back,
5 aborted, 6 paused)"""
ORDER = 21


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO", help="a built-in name or a YAML file")
    add_fleet_arguments(parser)
    parser.add_argument(
        "--policy",
        choices=("auto", "operator"),
        default=None,
        help="who acts on a tripped rule (default: auto headless, operator in the console)",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="judge through a real Prometheus (found on PATH) scraping every host's "
        "metrics page over HTTP: error ratio and p95 latency, new cohort vs baseline",
    )


def run(args: argparse.Namespace) -> int:
    on_terminal = sys.stdin.isatty() and sys.stdout.isatty()
    headless = args.headless or args.json or not on_terminal
    policy: Policy = args.policy or ("auto" if headless else "operator")  # someone at the keys?
    result = rehearse(
        RehearsalOptions(
            scenario=args.scenario,
            hosts=args.hosts,
            seed=args.seed,
            time_scale=args.time_scale,
            headless=headless,
            json=args.json,
            policy=policy,
            state_dir=args.state_dir,
            keep_fleet_dir=args.keep_fleet_dir,
            operator=args.operator,
            kind="drill",
            score=True,
            prometheus=args.prometheus,
        )
    )
    return result.exit_code
