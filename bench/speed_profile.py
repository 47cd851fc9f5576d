"""Where one headless rollout's time goes, on the shared bench's real OpenSSH fleet.

    python bench/speed_profile.py FLEET_DIR B [--root DIR] [--cprofile OUT] [-- RUN_ARGS...]

FLEET_DIR is a fleet started by ``../shared/bench/fleet.py start N DIR``. The rollout is
the bench's (``../shared/bench/rolldeck.sh``: drain, install, switch, health every 0.2s,
``current_version``), run in this process as ``rolldeck run --headless --yes --json``
(``--root`` puts another checkout of rolldeck first on ``sys.path``: a prototype, or
the previous tree for an A/B; whichever tree runs is compiled first).
Prints, from the client side (every exec counted where asyncssh opens it, so no sshd
log is needed): wall, user+sys CPU, peak RSS, handshakes, execs per host by kind, the
SSH packets sent by message type, and the ``--json`` timeline (preflight, each batch,
step and health durations).
Measurement only: the product's code is not changed, only wrapped.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import json
import os
import pathlib
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

SPEC = """service: benchsvc
version: "{version}"
targets: fleet
batches: [{b}]
max_parallel: {b}
max_failures: 0
on_failure: abort
between_batches: auto
current_version: basename "$(readlink {{vars.deploy_root}}/current)"
steps:
  - {{name: drain,   run: "touch {{vars.deploy_root}}/drained"}}
  - {{name: install, run: "mkdir -p {{vars.deploy_root}}/releases/{{version}} && echo {{version}} > {{vars.deploy_root}}/releases/{{version}}/VERSION"}}
  - {{name: switch,  run: "ln -sfn {{vars.deploy_root}}/releases/{{version}} {{vars.deploy_root}}/current && rm -f {{vars.deploy_root}}/drained"}}
health:
  run: test "$(cat {{vars.deploy_root}}/current/VERSION)" = {{version}}
  every: {every}
  healthy_after: 1
  deadline: 10s
"""  # noqa: E501 (the shared bench's spec, line for line)

# What an exec is, from its command text (first match wins).
KINDS = [
    ("shell", re.compile(r"read -r rolldeck_l")),  # a kept shell: its prelude holds the lease
    ("lease", re.compile(r"umask 077\nop=|rolldeck-lease|rolldeck_lease_folded ")),
    ("kill", re.compile(r"kill -TERM -\$P")),
    ("version", re.compile(r"readlink")),
    ("health", re.compile(r"current/VERSION\)")),
    ("step:switch", re.compile(r"ln -sfn")),
    ("step:install", re.compile(r"mkdir -p")),
    ("step:drain", re.compile(r"touch .*/drained")),
    ("vitals", re.compile(r"/proc/loadavg|/proc/meminfo|vitals")),
    ("shell", re.compile(r"^(exec )?/bin/sh|^sh\b|^exec sh")),
]


def kind_of(command: str) -> str:
    body = command.split("\n", 1)[1] if "rolldeck-pid %s" in command else command
    for name, pattern in KINDS:
        if pattern.search(body):
            return name
    return "other"


def read_sshd_cpu(d: pathlib.Path) -> float:
    """CPU seconds the fleet's sshd has reaped from its sessions (and their shells):
    the server side of a run, far less noisy than wall time on a shared machine.
    Raises OSError or ValueError when the fleet in ``d`` has no running sshd."""
    pid = int((d / "sshd.pid").read_text().split()[0])
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime + cstime


def sshd_cpu(d: pathlib.Path) -> float | None:
    """:func:`read_sshd_cpu`, or None when it cannot be read (the figure is left out)."""
    try:
        return read_sshd_cpu(d)
    except (OSError, ValueError, IndexError):
        return None


def settled_sshd_cpu(d: pathlib.Path, quiet: float = 1.0, limit: float = 15.0) -> float:
    """The sshd's reaped CPU once it stopped growing for ``quiet`` seconds: a session's
    processes are counted only when the sshd has reaped them, after the client left."""
    end = time.monotonic() + limit
    last = read_sshd_cpu(d)
    while time.monotonic() < end:
        time.sleep(quiet)
        now = read_sshd_cpu(d)
        if now == last:
            return now
        last = now
    return last


def write_inputs(
    d: pathlib.Path, b: int, version: str, every: str, extra_vars: list[str]
) -> tuple[str, str]:
    hosts = json.loads((d / "inventory.json").read_text())["hosts"]
    lines = [
        "defaults:",
        "  user: root",
        f"  key: {d / 'client_ed25519'}",
        f"  known_hosts: {d / 'known_hosts'}",
        "groups:",
        "  fleet:",
        "    hosts: [" + ", ".join(h["name"] for h in hosts) + "]",
        "hosts:",
    ]
    for h in hosts:
        root = h["vars"]["deploy_root"]
        more = "".join(f", {k}: {v}" for k, _, v in (x.partition("=") for x in extra_vars))
        lines.append(
            f"  {h['name']}: {{address: {h['address']}, port: {h['port']}, "
            f"vars: {{deploy_root: {root}{more}}}}}"
        )
    inv = d / "native.yaml"
    inv.write_text("\n".join(lines) + "\n")
    spec = d / "profile-spec.yaml"
    spec.write_text(SPEC.format(version=version, b=b, every=every))
    return str(spec), str(inv)


def instrument() -> tuple[dict[str, collections.Counter[str]], dict[str, Any]]:
    """Count execs (per host, per kind) and handshakes where asyncssh does them."""
    import asyncssh

    execs: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    stats: dict[str, Any] = {"handshakes": 0, "handshake_s": [], "first_exec": {}, "examples": {}}
    original_cp = asyncssh.SSHClientConnection.create_process
    original_connect = asyncssh.connect

    async def create_process(self: Any, command: Any = None, *args: Any, **kwargs: Any) -> Any:
        host = str(self.get_extra_info("peername", ("?",))[0])
        kind = kind_of(str(command))
        execs[host][kind] += 1
        stats["examples"].setdefault(kind, str(command)[:300])
        stats["first_exec"].setdefault(host, time.monotonic())
        return await original_cp(self, command, *args, **kwargs)

    async def connect(*args: Any, **kwargs: Any) -> Any:
        stats["handshakes"] += 1
        t0 = time.monotonic()
        try:
            return await original_connect(*args, **kwargs)
        finally:
            stats["handshake_s"].append(time.monotonic() - t0)

    asyncssh.SSHClientConnection.create_process = create_process  # type: ignore[method-assign,assignment]
    asyncssh.connect = connect  # type: ignore[assignment]

    # Commands in the kept shell (no exec of their own): counted by kind too.
    from console.transport.ssh_shell import PersistentShell

    original_run = PersistentShell._run
    shell: collections.Counter[str] = collections.Counter()
    stats["shell"] = shell

    async def shell_run(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        shell[kind_of(command)] += 1
        return await original_run(self, command, *args, **kwargs)

    PersistentShell._run = shell_run  # type: ignore[method-assign]

    # SSH packets sent, by message type: what each side parses, encrypts and wakes for.
    import asyncssh.constants

    names = {
        v: k[4:]
        for k, v in vars(asyncssh.constants).items()
        if k.startswith("MSG_") and isinstance(v, int) and not k.endswith(("_FIRST", "_LAST"))
    }
    packets: collections.Counter[str] = collections.Counter()
    stats["packets"] = packets
    # Counted as asyncssh logs each packet it has written (after any it chose not to
    # send: console/transport/asyncssh_tuning.py drops needless ignore packets).
    from asyncssh.packet import SSHPacketLogger

    original_sent = SSHPacketLogger.log_sent_packet

    def log_sent_packet(self: Any, pkttype: int, *args: Any, **kwargs: Any) -> None:
        # 30-49: the key exchange method's own messages (ECDH_INIT and the like)
        name = "KEX_METHOD" if 30 <= pkttype <= 49 else f"type {pkttype}"
        packets[names.get(pkttype, name)] += 1
        original_sent(self, pkttype, *args, **kwargs)

    SSHPacketLogger.log_sent_packet = log_sent_packet  # type: ignore[method-assign]
    return execs, stats


def timeline(path: pathlib.Path, t0_wall: float) -> list[str]:
    """Summarise the --json event stream: phases, batches, step and health times."""
    out: list[str] = []
    events = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("kind") != "header":  # the stream's format line: no time
                events.append(event)
    if not events:
        return ["no --json events"]

    def ts(e: dict[str, Any]) -> float:
        return float(e.get("ts") or 0.0)

    first = ts(events[0])
    kinds = collections.Counter(e.get("kind", "?") for e in events)
    out.append(f"events: {len(events)}: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    out.append(f"first event {first - t0_wall:+.3f}s after process start")
    pre = [ts(e) for e in events if e.get("kind") == "preflight_result"]
    if pre:
        out.append(f"preflight: results from {min(pre) - first:.3f}s to {max(pre) - first:.3f}s")
    for e in events:
        kind = e.get("kind")
        if kind in ("batch_started", "batch_finished", "rollout_finished", "rollout_state"):
            out.append(f"  {ts(e) - first:7.3f}s {kind} {e.get('index', e.get('state', ''))}")
    durations: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("kind") == "step_finished" and e.get("duration") is not None:
            durations[e["step"]].append(float(e["duration"]))
    for step, ds in durations.items():
        ds.sort()
        out.append(
            f"step {step}: n={len(ds)} median {statistics.median(ds) * 1000:.0f} ms, "
            f"p90 {ds[int(len(ds) * 0.9)] * 1000:.0f} ms"
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("fleet_dir")
    ap.add_argument("b", type=int)
    ap.add_argument("--root", help="a rolldeck checkout to import instead of this one")
    ap.add_argument("--cprofile", help="write cProfile stats here and print the top 25")
    ap.add_argument("--every", default="0.2s", help="health interval (bench default 0.2s)")
    ap.add_argument("--var", action="append", default=[], help="K=V added to every host's vars")
    args, more = ap.parse_known_args()
    args.run_args = [a for a in more if a != "--"]  # more `rolldeck run` options
    # The tree imported is compiled first (in a child, so its CPU is not this run's):
    # under PYTHONDONTWRITEBYTECODE an uncompiled or stale tree compiles its modules at
    # every start (0.13 s of CPU for all ~100), which would be charged to the run.
    root = os.path.abspath(args.root or pathlib.Path(__file__).resolve().parent.parent)
    names = ("console", "screens", "inventory", "themes")
    packages = [os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))]
    if not os.path.isdir(os.path.join(root, "console")):
        raise SystemExit(f"{root}: not a rolldeck checkout (no console/)")
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)
    if args.root:
        sys.path.insert(0, root)
    d = pathlib.Path(args.fleet_dir).resolve()
    # settled before the clock starts: the sessions of an earlier run still being reaped
    server_before = None if sshd_cpu(d) is None else settled_sshd_cpu(d)
    t0_wall, t0 = time.time(), time.monotonic()
    version = f"vprof{int(t0_wall)}"
    spec, inv = write_inputs(d, args.b, version, args.every, args.var)
    execs, stats = instrument()
    from console.cli import main as rolldeck_main

    state = d / "profile-state"
    if state.exists():
        import shutil

        shutil.rmtree(state)
    out_path = d / "profile-events.jsonl"
    argv = ["run", spec, "--inventory", inv, "--headless", "--yes", "--json"]
    argv += ["--state-dir", str(state), *args.run_args]
    profiler = cProfile.Profile() if args.cprofile else None
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if profiler is not None:
            profiler.enable()
        try:
            rc = rolldeck_main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        finally:
            if profiler is not None:
                profiler.disable()
    wall = time.monotonic() - t0
    server_after = None if server_before is None else settled_sshd_cpu(d)
    out_path.write_text(buf.getvalue())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    import console

    print(f"rolldeck from {pathlib.Path(console.__file__).parent.parent}; rc={rc}")
    print(
        f"wall {wall:.2f}s  cpu user {ru.ru_utime:.2f}s sys {ru.ru_stime:.2f}s "
        f"(user+sys {ru.ru_utime + ru.ru_stime:.2f}s)  peak RSS {ru.ru_maxrss / 1024:.0f} MB"
    )
    if server_before is not None and server_after is not None:
        print(f"sshd cpu {server_after - server_before:.2f}s (its sessions and their shells)")
    hs = sorted(stats["handshake_s"])
    if hs:
        print(
            f"handshakes {stats['handshakes']}: median {statistics.median(hs) * 1000:.0f} ms, "
            f"max {hs[-1] * 1000:.0f} ms"
        )
    total: collections.Counter[str] = collections.Counter()
    for c in execs.values():
        total.update(c)
    n = max(1, len(execs))
    per_host = sum(total.values()) / n
    print(f"execs: {sum(total.values())} on {len(execs)} hosts = {per_host:.2f} a host")
    for kind, count in total.most_common():
        print(f"  {kind:14s} {count:6d}  ({count / n:.2f} a host)")
    in_shell = stats["shell"]
    count_in = sum(in_shell.values())
    print(f"commands in the kept shells: {count_in} = {count_in / n:.2f} a host")
    for kind, count in in_shell.most_common():
        print(f"  {kind:14s} {count:6d}  ({count / n:.2f} a host)")
    sent = stats["packets"]
    print(f"ssh packets sent: {sum(sent.values())} = {sum(sent.values()) / n:.1f} a host")
    print("  " + ", ".join(f"{name} {count}" for name, count in sent.most_common()))
    if os.environ.get("SPEED_EXAMPLES"):
        for kind, text in stats["examples"].items():
            print(f"  example {kind}: {text!r}")
    for line in timeline(out_path, t0_wall):
        print(line)
    if profiler is not None:
        profiler.dump_stats(args.cprofile)
        s = io.StringIO()
        pstats.Stats(profiler, stream=s).sort_stats("tottime").print_stats(25)
        print(s.getvalue())
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
