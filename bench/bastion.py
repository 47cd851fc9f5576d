"""Hosts behind one ProxyJump bastion: one shared jump connection vs one per host.

Two real OpenSSH servers on loopback: a bastion with OpenSSH's stock
``MaxStartups 10:30:100`` (as a real one has) and a target serving N logical hosts.
Every host's ~/.ssh/config entry says ``ProxyJump bastion``. Connects all N with the
engine's transport (at most 10 handshakes at once, its default), runs ``true`` on
each, closes, twice: sharing the jump connection (rolldeck's default) and with
``share_jumps`` off (asyncssh's own ProxyJump: a jump connection per host).

    python bench/bastion.py [--hosts 200]

Prints, for each: wall time to connect and run, TCP connections this process held
to the bastion, handshakes the bastion's sshd dropped (retried), and the CPU the
bastion's sshd processes used (its per-connection children, reaped at close).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console import gc_policy
from console.transport.base import TransportOptions
from console.transport.ssh import SSHTransport
from inventory.model import Host
from tests.fixtures.sshd import SSHDServer, start_sshd


def sshd_cpu(server: SSHDServer) -> float:
    """CPU seconds of the listener and of its reaped per-connection children."""
    t = psutil.Process(server.process.pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


async def run_once(hosts: int, config: Path, known: Path, bastion: SSHDServer, share: bool):
    options = TransportOptions(
        ssh_config=[str(config)],
        known_hosts=str(known),
        max_connections=hosts + 8,
        extra={"share_jumps": share},
    )
    transport = SSHTransport(options)
    cpu0 = sshd_cpu(bastion)
    t0 = time.perf_counter()
    peak = 0
    try:
        names = [Host(name=f"h{i:04d}", address="inner") for i in range(hosts)]
        conns = await asyncio.gather(*(transport.connect(h) for h in names))
        results = await asyncio.gather(*(c.run("true", timeout=30) for c in conns))
        wall = time.perf_counter() - t0
        assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
        peak = sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == bastion.port and c.status == "ESTABLISHED"
        )
    finally:
        await transport.close()
    await asyncio.sleep(1.0)  # the bastion's children exit and are reaped
    return wall, peak, transport.handshake_retries, sshd_cpu(bastion) - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    args = parser.parse_args()
    gc_policy.tune()
    with tempfile.TemporaryDirectory(prefix="rolldeck-bastion-") as tmp:
        work = Path(tmp)
        target = start_sshd(work / "target", max_sessions=16)
        bastion = start_sshd(work / "bastion", max_startups=None, client_key=target.client_key)
        try:
            known = work / "known_hosts"
            known.write_text(target.known_hosts_line() + bastion.known_hosts_line())
            config = work / "config"
            user, key = getpass.getuser(), target.client_key
            config.write_text(
                f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n  User {user}\n"
                f"  IdentityFile {key}\n  UserKnownHostsFile {known}\n"
                f"Host inner\n  HostName 127.0.0.1\n  Port {target.port}\n  User {user}\n"
                f"  IdentityFile {key}\n  ProxyJump bastion\n"
            )
            print(f"{args.hosts} hosts behind one bastion (stock MaxStartups 10:30:100)")
            for share in (True, False):
                wall, peak, retries, cpu = asyncio.run(
                    run_once(args.hosts, config, known, bastion, share)
                )
                label = "shared jump (default)" if share else "a jump per host     "
                print(
                    f"  {label}: {wall:5.2f} s to connect and run, {peak:4d} TCP "
                    f"connections to the bastion, {retries:3d} dropped handshakes retried, "
                    f"bastion sshd CPU {cpu:5.2f} s"
                )
        finally:
            bastion.stop()
            target.stop()


if __name__ == "__main__":
    main()
