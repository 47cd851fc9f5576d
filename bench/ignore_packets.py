"""What asyncssh's empty ignore packets cost, on the shared bench's real OpenSSH fleet.

    python bench/ignore_packets.py FLEET_DIR [--rounds 6] [--execs 10] [--batch 10]

FLEET_DIR is a fleet from ``../shared/bench/fleet.py start N DIR``. Each run, in a fresh
child process, connects to every host (``--batch`` at a time, AES-GCM) and runs
``true`` ``--execs`` times on each connection: the exec-heavy traffic of a rollout,
without rolldeck. Runs alternate between asyncssh as shipped ("plain": an empty
``MSG_IGNORE`` before every packet once encrypted, a countermeasure for CBC ciphers)
and with those packets dropped ("patched": every ``MSG_IGNORE``, in that child only).
Both run with rolldeck's packet-logging fix (``console/transport/asyncssh_tuning.py``),
as the transport does. Prints each run and the medians: wall, the client's CPU, and
the CPU the fleet's sshd reaped from its sessions. Measurement only.

Why it exists: the packets were 45% of what rolldeck sent at 50 hosts, and dropping
them first looked like a gain; measured here, the client's CPU, the sshd's and the
wall are the same within noise, so asyncssh is left as shipped (``bench/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import subprocess
import sys
import time

from speed_profile import read_sshd_cpu  # this folder: scripts run from it


async def child(d: pathlib.Path, patched: bool, execs: int, batch: int) -> dict[str, float]:
    import asyncssh

    from console.transport.asyncssh_tuning import skip_unlogged_packets

    skip_unlogged_packets()  # both sides as rolldeck runs asyncssh: packet logging cheap
    if patched:
        from asyncssh.connection import SSHConnection
        from asyncssh.constants import MSG_IGNORE

        send = SSHConnection.send_packet

        def send_packet(self: SSHConnection, pkttype: int, *a: bytes, **kw: object) -> None:
            if pkttype != MSG_IGNORE:
                send(self, pkttype, *a, **kw)  # type: ignore[arg-type]

        SSHConnection.send_packet = send_packet  # type: ignore[method-assign]
    hosts = json.loads((d / "inventory.json").read_text())["hosts"]
    keys = [asyncssh.read_private_key(str(d / "client_ed25519"))]
    known = asyncssh.read_known_hosts(str(d / "known_hosts"))

    async def one(h: dict[str, object]) -> None:
        async with asyncssh.connect(
            str(h["address"]),
            port=int(str(h["port"])),
            username="root",
            client_keys=keys,
            known_hosts=known,
            config=[],
            agent_path=None,
            encryption_algs=["aes128-gcm@openssh.com"],
        ) as conn:
            for _ in range(execs):
                await conn.run("true", check=True)

    s0, c0, t0 = read_sshd_cpu(d), time.process_time(), time.perf_counter()
    for i in range(0, len(hosts), batch):
        await asyncio.gather(*(one(h) for h in hosts[i : i + batch]))
    c1, t1 = time.process_time(), time.perf_counter()
    await asyncio.sleep(1.5)  # the sshd reaps its sessions' processes
    return {"wall": t1 - t0, "client": c1 - c0, "sshd": read_sshd_cpu(d) - s0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("fleet_dir")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--execs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--child", choices=("plain", "patched"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    d = pathlib.Path(args.fleet_dir).resolve()
    if args.child:
        result = asyncio.run(child(d, args.child == "patched", args.execs, args.batch))
        print(json.dumps(result))
        return 0
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "patched": []}
    for r in range(1, args.rounds + 1):
        for kind in ("plain", "patched") if r % 2 else ("patched", "plain"):
            cmd = [sys.executable, __file__, str(d), "--child", kind]
            cmd += ["--execs", str(args.execs), "--batch", str(args.batch)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            one = json.loads(out.strip().splitlines()[-1])
            runs[kind].append(one)
            figures = "  ".join(f"{k} {v:.2f}s" for k, v in one.items())
            print(f"round {r} {kind:<8} {figures}", flush=True)
    for kind, rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) for k in ("wall", "client", "sshd")}
        print(f"median {kind:<8} " + "  ".join(f"{k} {v:.2f}s" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
