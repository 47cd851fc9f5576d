"""rolldeck beside the shared bench's raw asyncssh loop: wall, client CPU, server CPU.

    python bench/cpu_beside_raw.py FLEET_DIR B [--rounds 3]

FLEET_DIR is a fleet from ``../shared/bench/fleet.py start N DIR``. Each round runs the
raw loop (``../shared/bench/raw_asyncssh.py`` under ``$BENCH_PY``, default
``/tmp/benchv/bin/python``) and ``rolldeck run --headless --yes`` on the bench's spec
(``rolldeck.sh`` writes it once), alternating, and prints for each: the wall time, the
tool's own CPU (user+sys of the process and its children) and the CPU the fleet's sshd
reaped from the run's sessions, read after its sessions have ended. On the bench one
sshd shares the client's cores, so the sum of the two CPUs is what the wall time is made
of. Measurement only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

from speed_profile import settled_sshd_cpu  # this folder: scripts run from it

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "bench"


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def one(cmd: list[str], d: pathlib.Path) -> dict[str, float]:
    server0, client0, t0 = settled_sshd_cpu(d), children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:2]} failed ({done.returncode}): {done.stderr[-500:]}")
    client = children_cpu() - client0
    return {"wall": wall, "client": client, "sshd": settled_sshd_cpu(d) - server0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("fleet_dir")
    ap.add_argument("b", type=int)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    d = pathlib.Path(args.fleet_dir).resolve()
    bench_py = os.environ.get("BENCH_PY", "/tmp/benchv/bin/python")
    rolldeck = HERE.parent / ".venv" / "bin" / "rolldeck"
    for need in (pathlib.Path(bench_py), rolldeck, SHARED / "raw_asyncssh.py"):
        if not need.exists():
            raise SystemExit(f"{need}: missing (../shared/bench/setup_venv.sh, make demo)")
    # rolldeck.sh writes the native inventory and the spec; run once, it also warms up.
    subprocess.run(
        ["bash", str(SHARED / "rolldeck.sh"), str(d), str(args.b), "cpu-warmup"],
        check=True,
        capture_output=True,
        env={**os.environ, "ROLLDECK": str(rolldeck)},
    )
    runs: dict[str, list[dict[str, float]]] = {"raw": [], "rolldeck": []}
    for r in range(1, args.rounds + 1):
        for tool in ("raw", "rolldeck") if r % 2 else ("rolldeck", "raw"):
            version = f"cpu{int(time.time())}-{r}-{tool}"
            if tool == "raw":
                cmd = [bench_py, str(SHARED / "raw_asyncssh.py"), str(d), str(args.b), version]
            else:
                cmd = [str(rolldeck), "run", str(d / "rolldeck-spec.yaml")]
                cmd += ["--inventory", str(d / "native.yaml"), "--headless", "--yes"]
                cmd += ["--state-dir", str(d / "cpu-state")]
            result = one(cmd, d)
            runs[tool].append(result)
            figures = "  ".join(f"{k} {v:.2f}s" for k, v in result.items())
            print(f"round {r} {tool:<9} {figures}", flush=True)
    med = {t: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for t, rs in runs.items()}
    for tool, m in med.items():
        print(f"median {tool:<9} " + "  ".join(f"{k} {v:.2f}s" for k, v in m.items()))
    raw, rd = med["raw"], med["rolldeck"]
    print(
        f"rolldeck / raw: wall {rd['wall'] / raw['wall']:.2f}x  client CPU "
        f"{rd['client'] / raw['client']:.2f}x  sshd CPU {rd['sshd'] / raw['sshd']:.2f}x  "
        f"both CPUs {(rd['client'] + rd['sshd']) / (raw['client'] + raw['sshd']):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
