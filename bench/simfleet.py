"""Benchmark the simulated fleet at scale (a script, not a test: it prints figures).

    python bench/simfleet.py [--hosts 1000] [--seconds 10] [--log-rate 5]

1. In-process start: ``SimFleet(n).start()`` time and this process's RSS growth.
2. As ``rolldeck sim-fleet`` in a child process: time to the ready line, its RSS.
3. A client (this process) opens one SSH connection per host, follows
   ``svc logs --follow`` on every host and polls ``svc health`` on every host every
   2 s (what a rollout's monitors do), for a bounded time; prints lines/s received,
   health checks/s, and the fleet's RSS and CPU while serving.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.simfleet import SimFleet, start_fleet_process


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


async def in_process_start(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        before = rss_mb()
        t0 = time.perf_counter()
        fleet = SimFleet(n=n, directory=d)
        await fleet.start()
        first = time.perf_counter() - t0
        grown = rss_mb() - before
        await fleet.stop()
        t0 = time.perf_counter()
        fleet = SimFleet(n=n, directory=d)  # keys now cached in DIR
        await fleet.start()
        again = time.perf_counter() - t0
        await fleet.stop()
    print(
        f"in-process start, {n} hosts: {first:.2f} s (keys generated), {again:.2f} s (keys reused)"
    )
    print(f"in-process RSS growth: {grown:.0f} MB")


async def follow_all(fleet_dir: Path, ports: dict[str, int], seconds: float, pid: int) -> None:
    key = asyncssh.read_private_key(str(fleet_dir / "id_ed25519"))
    known = asyncssh.read_known_hosts(str(fleet_dir / "known_hosts"))
    gate = asyncio.Semaphore(20)  # concurrent handshakes
    conns: list[asyncssh.SSHClientConnection] = []

    async def connect(port: int) -> None:
        async with gate:
            conns.append(
                await asyncssh.connect(
                    "127.0.0.1",
                    port,
                    username="deploy",
                    client_keys=[key],
                    known_hosts=known,
                    config=[],
                    agent_path=None,
                )
            )

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for port in ports.values():
            tg.create_task(connect(port))
    connect_s = time.perf_counter() - t0
    print(
        f"client: {len(conns)} SSH connections in {connect_s:.1f} s "
        f"({len(conns) / connect_s:.0f} handshakes/s); fleet RSS {rss_mb(pid):.0f} MB"
    )

    lines = 0
    health_ok = health_total = 0
    stop = asyncio.Event()
    flowing = asyncio.Event()

    class Counter(asyncssh.SSHClientSession[str]):
        """Counts lines in data callbacks: a streams reader per host would make this
        client, not the fleet, the bottleneck."""

        def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
            nonlocal lines
            lines += data.count("\n")
            if lines >= len(conns):
                flowing.set()

    async def follow(conn: asyncssh.SSHClientConnection) -> None:
        chan, _ = await conn.create_session(Counter, "svc logs --follow")
        try:
            await stop.wait()
        finally:
            chan.close()

    polls = asyncio.Semaphore(50)  # a rollout's monitors poll with bounded concurrency

    async def health(conn: asyncssh.SSHClientConnection) -> None:
        nonlocal health_ok, health_total
        while not stop.is_set():
            async with polls:
                r = await conn.run("svc health")
            health_total += 1
            health_ok += r.exit_status == 0
            await asyncio.sleep(2.0)

    fleet_proc = psutil.Process(pid)
    tasks = [asyncio.create_task(follow(c)) for c in conns]
    await flowing.wait()  # as many lines as followers: they are attached
    tasks += [asyncio.create_task(health(c)) for c in conns]
    await asyncio.sleep(2.0)
    start_lines, start_health = lines, health_total
    fleet_proc.cpu_percent(None)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    got, checks = lines - start_lines, health_total - start_health
    cpu = fleet_proc.cpu_percent(None)
    print(
        f"log lines received: {got / elapsed:,.0f} lines/s over {elapsed:.0f} s "
        f"({got / elapsed / len(conns):.1f} per host per s)"
    )
    print(f"health checks: {checks / elapsed:,.0f}/s ({health_ok}/{health_total} passed)")
    print(f"fleet while serving: RSS {rss_mb(pid):.0f} MB, CPU {cpu:.0f}% of one core")
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in conns:
        c.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--log-rate", type=float, default=5.0, help="lines per second per host")
    args = parser.parse_args()

    asyncio.run(in_process_start(args.hosts))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        fleet = start_fleet_process(args.hosts, d, log_rate=args.log_rate, ready_timeout=120)
        ready = time.perf_counter() - t0
        try:
            print(
                f"sim-fleet process: ready in {ready:.2f} s (interpreter start included), "
                f"RSS {rss_mb(fleet.pid):.0f} MB"
            )
            print(
                f"log rate asked: {args.log_rate:g} lines/s/host = "
                f"{args.log_rate * args.hosts:,.0f} lines/s"
            )
            asyncio.run(follow_all(Path(d), fleet.hosts, args.seconds, fleet.pid))
        finally:
            code = fleet.stop()
            problems = [
                x
                for x in (Path(d) / "sim-fleet.log").read_text().splitlines()
                if "stopped" not in x
            ]
            if problems:
                print("sim-fleet log:", *problems[-10:], sep="\n  ")
        print(f"sim-fleet process exited {code}")


if __name__ == "__main__":
    main()
