"""A preflight of thousands of hosts through real OpenSSH sshds (issue 13).

    python bench/preflight_scale.py [--hosts 5000] [--per-sshd 250] [--base-port 2700]

Starts ``ceil(hosts / per-sshd)`` fleets of ``../shared/bench/fleet.py`` (one real sshd
each, on its own port, serving ``per-sshd`` loopback addresses), merges their
inventories into one (each host keeps its fleet's key; one known_hosts for all), and
runs ``rolldeck run --headless --yes --json`` on a one-step rollout of every host in
one batch (``max_parallel`` 200). Prints the preflight's time (start of the process
to the rollout running), the whole run's, rolldeck's user+sys CPU, its peak RSS and
peak open descriptors (sampled from /proc every 0.2 s), and the open-file limits it
ran with. Every sshd shares the machine with the client: a pessimistic figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLEET = ROOT.parent / "shared" / "bench" / "fleet.py"
ROLLDECK = ROOT / ".venv" / "bin" / "rolldeck"

SPEC = """service: scalesvc
version: "{version}"
targets: all
batches: [{hosts}]
max_parallel: 200
max_failures: 0
on_failure: abort
current_version: basename "$(readlink {{vars.deploy_root}}/current)"
steps:
  - {{name: touch, run: "touch {{vars.deploy_root}}/scale-{version}"}}
"""


def start_fleets(base: pathlib.Path, hosts: int, per: int, port: int) -> list[pathlib.Path]:
    dirs = []
    for i in range(math.ceil(hosts / per)):
        n = min(per, hosts - i * per)
        d = base / f"fleet-{i:02d}"
        subprocess.run(
            [sys.executable, str(FLEET), "start", str(n), str(d), "--port", str(port + i)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        dirs.append(d)
    return dirs


def merge(base: pathlib.Path, dirs: list[pathlib.Path]) -> pathlib.Path:
    known = base / "known_hosts"
    lines = ["defaults:", "  user: root", f"  known_hosts: {known}", "hosts:"]
    known_text = []
    for i, d in enumerate(dirs):
        known_text.append((d / "known_hosts").read_text())
        for h in json.loads((d / "inventory.json").read_text())["hosts"]:
            lines.append(
                f"  f{i:02d}-{h['name']}: {{address: {h['address']}, port: {h['port']}, "
                f"key: {d / 'client_ed25519'}, "
                f"vars: {{deploy_root: {h['vars']['deploy_root']}}}}}"
            )
    known.write_text("".join(known_text))
    known.chmod(0o600)
    inventory = base / "inventory.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    return inventory


def sample(pid: int, peaks: dict[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
            rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM"))
        except (OSError, StopIteration):
            return
        peaks["fds"] = max(peaks["fds"], fds)
        peaks["rss_kb"] = max(peaks["rss_kb"], rss)
        stop.wait(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--per-sshd", type=int, default=250)
    ap.add_argument("--base-port", type=int, default=2700)
    args = ap.parse_args()
    if not FLEET.exists() or not ROLLDECK.exists():
        print(f"needs {FLEET} and {ROLLDECK} (make test installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="preflight-scale-") as tmp:
        base = pathlib.Path(tmp)
        t0 = time.perf_counter()
        dirs = start_fleets(base, args.hosts, args.per_sshd, args.base_port)
        try:
            print(f"{len(dirs)} sshds, {args.hosts} hosts, up in {time.perf_counter() - t0:.1f} s")
            inventory = merge(base, dirs)
            version = f"s{int(time.time())}"
            spec = base / "spec.yaml"
            spec.write_text(SPEC.format(version=version, hosts=args.hosts))
            events = base / "events.jsonl"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.time()
            with events.open("wb") as out:
                proc = subprocess.Popen(
                    [str(ROLLDECK), "run", str(spec), "--inventory", str(inventory),
                     "--headless", "--yes", "--json", "--state-dir", str(base / "state")],
                    stdout=out,
                    stderr=subprocess.PIPE,
                )  # fmt: skip
                peaks = {"fds": 0, "rss_kb": 0}
                stop = threading.Event()
                sampler = threading.Thread(target=sample, args=(proc.pid, peaks, stop))
                sampler.start()
                _, err = proc.communicate()
                stop.set()
                sampler.join()
            ended = time.time()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rows = [json.loads(line) for line in events.read_text().splitlines() if line]
            running = next(
                (
                    r["ts"]
                    for r in rows
                    if r.get("kind") == "rollout_state" and r.get("state") == "running"
                ),
                None,
            )
            passed = sum(1 for r in rows if r.get("kind") == "preflight_result" and r.get("ok"))
            notes = [r["message"] for r in rows if r.get("kind") == "notice"][:3]
            print(f"rolldeck exit {proc.returncode}; preflight passed on {passed}/{args.hosts}")
            if running is not None:
                print(f"preflight (process start to running): {running - started:.1f} s")
            print(f"whole run: {ended - started:.1f} s; rolldeck CPU {cpu:.1f} s (user+sys)")
            print(f"peak RSS {peaks['rss_kb'] / 1024:.0f} MB; peak open descriptors {peaks['fds']}")
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            print(f"open-file limit of the caller: soft {soft}, hard {hard}; notices: {notes}")
            if proc.returncode != 0:
                print(err.decode(errors="replace")[-2000:], file=sys.stderr)
            return proc.returncode
        finally:
            for d in dirs:
                subprocess.run(
                    [sys.executable, str(FLEET), "stop", str(d)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )


if __name__ == "__main__":
    sys.exit(main())
