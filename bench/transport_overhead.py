"""Transport overhead on a real OpenSSH sshd: handshakes and per-command cost.

Prints, for the SSH transport, the median and p95 of: a handshake (a fresh
connection, through to authentication), a command on a reused connection (rolldeck's
``Connection.run`` next to a bare ``asyncssh`` ``conn.run`` on the same sshd, so the
wrapper's cost is visible), 20 commands at once on one connection, a burst of N hosts
connecting at once behind a stock ``MaxStartups 10:30:100`` sshd; and the local
transport's per-command cost. Not a test: nothing is asserted.

    python bench/transport_overhead.py [--rounds 200] [--hosts 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.transport.local import LocalTransport
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import make_fleet, start_sshd


async def timed(rounds: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    print(
        f"{label:<48} median {statistics.median(ordered) * 1000:7.2f} ms   "
        f"p95 {p95 * 1000:7.2f} ms   (n={len(ordered)})"
    )


async def main(rounds: int, hosts: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="rolldeck-bench-"))
    server = start_sshd(base / "sshd")
    stock = start_sshd(
        base / "stock", max_startups=None, host_key=server.host_key, client_key=server.client_key
    )
    try:
        fleet = make_fleet(server, base, 1)
        host = fleet.hosts[0]

        async def handshake() -> None:
            transport = SSHTransport(fleet.options)
            await transport.connect(host)
            await transport.close()

        report("handshake (connect + auth, fresh transport)", await timed(rounds // 4, handshake))

        transport = SSHTransport(fleet.options)
        conn = await transport.connect(host)
        raw = await asyncssh.connect(
            server.address,
            server.port,
            username=host.user,
            client_keys=[str(server.client_key)],
            known_hosts=str(server.known_hosts),
            config=[],
        )
        await timed(10, lambda: conn.run("true", timeout=10))  # warm up both
        await timed(10, lambda: raw.run("true"))
        report(
            "bare asyncssh conn.run('true'), reused", await timed(rounds, lambda: raw.run("true"))
        )
        report(
            "rolldeck Connection.run('true'), reused",
            await timed(rounds, lambda: conn.run("true", timeout=10)),
        )
        report(
            "rolldeck run, 20 lines of output streamed",
            await timed(
                rounds, lambda: conn.run("seq 1 20", timeout=10, on_line=lambda stream, line: None)
            ),
        )

        async def twenty_at_once() -> None:
            await asyncio.gather(*(conn.run("true", timeout=30) for _ in range(20)))

        report(
            "20 concurrent commands on one connection", await timed(rounds // 10, twenty_at_once)
        )
        raw.close()
        await transport.close()

        burst = make_fleet(stock, base / "burst", hosts)

        async def connect_burst() -> None:
            transport = SSHTransport(burst.options)
            await asyncio.gather(*(transport.connect(h) for h in burst.hosts))
            retries.append(transport.handshake_retries)
            await transport.close()

        retries: list[int] = []
        report(f"{hosts} hosts at once, stock MaxStartups 10:30:100", await timed(5, connect_burst))
        print(f"{'':<48} handshake retries per burst: {retries}")

        local = LocalTransport()
        here = await local.connect(Host(name="localhost", address="localhost"))
        report(
            "local Connection.run('true')",
            await timed(rounds, lambda: here.run("true", timeout=10)),
        )
    finally:
        server.stop()
        stock.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.hosts))
