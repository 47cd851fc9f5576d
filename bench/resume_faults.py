"""The resume fault test at a larger scale (a script, not a test: it prints figures).

    python bench/resume_faults.py [--sim-runs 60] [--sshd-runs 10] [--hosts 4] [--seed 0]

Each run: a fresh fleet, ``rolldeck run --headless --yes`` killed with SIGKILL at a
seeded point of its journal, then ``rolldeck resume --headless --yes`` (itself killed
now and then) until the rollout ends; then, on the host side, every host's version,
how many times it ran its ``once`` step, and whether it was skipped. Same harness as
tests/test_resume_faults.py.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.simfleet import SimFleet
from tests.test_resume_faults import Figures, sim_runs, sshd_runs


async def main(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="rolldeck-resume-faults-"))
    fleets: list[SimFleet] = []

    async def make(**kw: object) -> SimFleet:
        fleet = SimFleet(**kw)  # type: ignore[arg-type]
        await fleet.start()
        fleets.append(fleet)
        return fleet

    total = Figures()
    try:
        t0 = time.perf_counter()
        sim = await sim_runs(range(args.seed, args.seed + args.sim_runs), make, base, args.hosts)
        for fleet in fleets:
            await fleet.stop()
        print(sim.line("simulated fleet") + f" ({time.perf_counter() - t0:.1f}s)")
        total.add(sim)
        if args.sshd_runs:
            if not args.have_sshd:
                print("OpenSSH sshd fleet: skipped (no /usr/sbin/sshd)")
            else:
                from tests.fixtures.sshd import make_fleet, start_sshd

                server = start_sshd(base / "sshd")
                try:
                    t0 = time.perf_counter()
                    seeds = range(args.seed + 1000, args.seed + 1000 + args.sshd_runs)
                    real = await sshd_runs(
                        seeds, lambda n, where: make_fleet(server, where, n), base
                    )
                finally:
                    server.stop()
                print(real.line("OpenSSH sshd fleet") + f" ({time.perf_counter() - t0:.1f}s)")
                total.add(real)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(total.line("total"))
    for m in total.mismatches:
        print("  " + m)
    return 1 if total.mismatches else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-runs", type=int, default=60)
    parser.add_argument("--sshd-runs", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    options.have_sshd = Path("/usr/sbin/sshd").exists()
    raise SystemExit(asyncio.run(main(options)))
