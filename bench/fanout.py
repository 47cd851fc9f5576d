"""Fan-out overhead: rolldeck's engine vs a minimal hand-written asyncssh loop.

The same rolling deploy on the same real OpenSSH fleet (one local sshd, N logical
hosts each with its own deploy root): 4 short steps and one health check per host,
batches of 50. Both sides get the same handshake freedom: ``--max-handshakes N``
concurrent handshakes (default: the batch size, so that neither is held back; every
host here is one endpoint, 127.0.0.1 on the fixture's sshd). Runs alternate (engine,
loop, engine, loop, ...), each in a fresh child process that reports its wall time and
its own peak RSS, so neither side inherits the other's memory.

The engine does the work a user's ``rolldeck run`` does: journal fsync'd (to a temp
dir), host leases and the fleet lock, a ``current_version`` read before and after each
host, health gated every 0.2 s (as ``../shared/bench/rolldeck.sh``), and its monitors
(the post-deploy health watch, default vitals). The loop does what the shared bench's
``raw_asyncssh.py`` does: connect, run the commands, nothing else. For the end-to-end
figures (process start to exit, beside parallel-ssh) use ``../shared/bench``.

    python bench/fanout.py [--hosts 200] [--batch 50] [--rounds 3] [--max-handshakes N]

Prints both medians, the ratio (target: within 1.3x) and the engine's peak RSS
(target: under 150 MB at N=200).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inventory.model import Host

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STEPS = [
    "mkdir -p {root}/releases/{version}",
    "printf '%s\\n' {version} > {root}/releases/{version}/VERSION",
    "ln -sfn releases/{version} {root}/current",
    "test -L {root}/current",
]
HEALTH = "test -f {root}/current/VERSION"
VERSION_COMMAND = 'basename "$(readlink {root}/current)"'


def spec_text(version: str, batch: int) -> str:
    steps = "\n".join(
        f'  - {{name: s{i}, run: "{s.replace("{root}", "{vars.root}")}", timeout: 30s}}'
        for i, s in enumerate(STEPS)
    )
    return f"""service: bench
version: "{version}"
batches: [{batch}]
max_parallel: {batch}
max_failures: 0
on_failure: abort
between_batches: auto
current_version: '{VERSION_COMMAND.replace("{root}", "{vars.root}")}'
steps:
{steps}
health:
  run: "{HEALTH.replace("{root}", "{vars.root}")}"
  every: 0.2s
  healthy_after: 1
  deadline: 30s
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """This process's CPU time: steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_engine(
    work: Path, n: int, batch: int, version: str, handshakes: int
) -> dict[str, float]:
    from console.core.events import Outcome
    from console.engine.leases import LeaseOptions
    from console.plan import make_plan
    from console.runtime.session import Rollout, build_engine
    from console.spec import parse_spec
    from console.store.journal import Journal
    from console.transport import TransportOptions

    hosts = fleet_hosts(work, n)
    options = TransportOptions(
        ssh_config=[], max_connections=n + 8, max_handshakes=handshakes, connect_timeout=30
    )
    spec = parse_spec(spec_text(version, batch), str(work / "spec.yaml"))
    plan = make_plan([h.name for h in hosts], spec.batches)
    state = Path(tempfile.mkdtemp(dir=work))
    journal = Journal.create(state, f"bench-{version}")
    engine = build_engine(
        Rollout(spec, hosts, plan),
        operator="bench",
        journal=journal,
        options=options,
        monitors=True,
        leases=LeaseOptions(operator="bench"),
    )
    sub = engine.bus.subscribe()

    async def drain() -> None:
        async for _ in sub.batches():
            pass

    start, cpu0 = time.perf_counter(), cpu_seconds()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain())
        outcome = await engine.run()
    elapsed = time.perf_counter() - start
    if outcome != Outcome.SUCCEEDED:  # the run is over: reading its journal blocks nothing
        raise SystemExit(f"engine run failed: {outcome}: {_why(state)}")
    return {
        "seconds": elapsed,
        "cpu": cpu_seconds() - cpu0,
        "rss_mb": peak_rss_mb(),
        "fsyncs": journal.commits,
    }


async def run_loop(
    work: Path, n: int, batch: int, version: str, handshakes: int
) -> dict[str, float]:
    import asyncssh

    gate = asyncio.Semaphore(handshakes)
    conns: list[asyncssh.SSHClientConnection] = []

    async def deploy(host: Host) -> None:
        async with gate:
            conn = await asyncssh.connect(
                host.address,
                host.port,
                username=host.user,
                client_keys=[host.key],
                known_hosts=host.known_hosts,
                agent_path=None,
                config=[],
            )
        conns.append(conn)
        root = host.vars["root"]
        for step in STEPS:
            await conn.run(step.format(root=root, version=version), check=True, timeout=30)
        await conn.run(HEALTH.format(root=root), check=True, timeout=10)

    hosts = fleet_hosts(work, n)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    for i in range(0, len(hosts), batch):
        async with asyncio.TaskGroup() as tg:
            for host in hosts[i : i + batch]:
                tg.create_task(deploy(host))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return {"seconds": elapsed, "cpu": cpu_seconds() - cpu0, "rss_mb": peak_rss_mb()}


def _why(state: Path) -> str:
    """The journal's last notices and its end: why a run failed."""
    lines = [line for p in state.glob("*.jsonl") for line in p.read_text().splitlines()]
    why = [t for t in lines if '"rollout_finished"' in t or '"notice"' in t][-3:]
    return " | ".join(why)[-1500:]


def fleet_hosts(work: Path, n: int) -> list[Host]:
    """N logical hosts on the parent's sshd (described in work/server.json), each with
    its own deploy root under work/hosts/."""
    import getpass

    from inventory.model import Host

    server = json.loads((work / "server.json").read_text())
    hosts = []
    for i in range(1, n + 1):
        name = f"web-{i:03d}"
        root = work / "hosts" / name
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "current").is_symlink():  # a version to read before the first deploy
            (root / "releases" / "0").mkdir(parents=True, exist_ok=True)
            (root / "releases" / "0" / "VERSION").write_text("0\n")
            (root / "current").symlink_to("releases/0")
        hosts.append(
            Host(
                name=name,
                address="127.0.0.1",
                port=server["port"],
                user=getpass.getuser(),
                key=server["client_key"],
                known_hosts=server["known_hosts"],
                vars={"root": str(root)},
            )
        )
    return hosts


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    fn = run_engine if args.child == "engine" else run_loop
    handshakes = args.max_handshakes or args.batch
    result = asyncio.run(fn(work, args.hosts, args.batch, args.version, handshakes))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--max-handshakes",
        type=int,
        default=0,
        help="concurrent handshakes, for both sides alike (default: the batch size)",
    )
    parser.add_argument("--child", choices=("engine", "loop"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--version", default="1", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from tests.fixtures.sshd import start_sshd

    with tempfile.TemporaryDirectory(prefix="rolldeck-fanout-") as tmp:
        work = Path(tmp)
        server = start_sshd(work / "sshd", max_sessions=16)
        try:
            (work / "server.json").write_text(
                json.dumps(
                    {
                        "workdir": str(server.workdir),
                        "port": server.port,
                        "host_key": str(server.host_key),
                        "client_key": str(server.client_key),
                        "known_hosts": str(server.known_hosts),
                        "log": str(server.log),
                    }
                )
            )
            results: dict[str, list[dict[str, float]]] = {"engine": [], "loop": []}
            for r in range(args.rounds):
                for kind in ("engine", "loop"):
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            kind,
                            "--work",
                            str(work),
                            "--hosts",
                            str(args.hosts),
                            "--batch",
                            str(args.batch),
                            "--max-handshakes",
                            str(args.max_handshakes),
                            "--version",
                            f"{kind}-{r}",
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                        env={
                            **os.environ,
                            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                        },
                    )
                    if out.returncode != 0:
                        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    results[kind].append(res)
                    secs, cpu, mb = res["seconds"], res["cpu"], res["rss_mb"]
                    print(
                        f"round {r + 1} {kind:6}: {secs:.2f} s wall, {cpu:.2f} s CPU, "
                        f"peak RSS {mb:.0f} MB"
                    )
        finally:
            server.stop()
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
    cpu = {k: statistics.median(x["cpu"] for x in v) for k, v in results.items()}
    rss = max(x["rss_mb"] for x in results["engine"])
    print(
        f"N={args.hosts}, batches of {args.batch}, {len(STEPS)} steps + 1 health check per host, "
        f"{args.max_handshakes or args.batch} handshakes at once for both, "
        f"{args.rounds} alternating rounds"
    )
    print(f"median engine {med['engine']:.2f} s, minimal asyncssh loop {med['loop']:.2f} s")
    print(f"ratio engine/loop: {med['engine'] / med['loop']:.2f}x (target <= 1.3x)")
    print(
        f"client CPU (median): engine {cpu['engine']:.2f} s, loop {cpu['loop']:.2f} s "
        f"({cpu['engine'] / cpu['loop']:.2f}x)"
    )
    print(f"engine peak RSS: {rss:.0f} MB (target < 150 MB)")


if __name__ == "__main__":
    main()
