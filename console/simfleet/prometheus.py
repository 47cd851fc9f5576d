"""A real Prometheus server scraping the simulated fleet's HTTP pages (drills, tests).

Prometheus is found on PATH (Debian's ``prometheus`` package puts it in /usr/bin); it
runs on a free loopback port with a generated config, its own TSDB directory and a
short scrape interval, and targets come from a ``file_sd`` file, so one server can be
pointed at another fleet by rewriting that file (:meth:`PrometheusServer.set_targets`).
It is ready when ``/-/ready`` answers 200; a server that exits or never gets ready
within the bound is an error carrying the end of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from console.simfleet.haproxy import free_port

READY_TIMEOUT = 30.0
JOB = "simfleet"


class PrometheusStartError(Exception):
    """Prometheus is missing, exited, or never became ready."""


def find_prometheus() -> str | None:
    """The ``prometheus`` binary on PATH (else /usr/bin/prometheus), or None."""
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def config_yaml(targets_file: Path, scrape_interval: float) -> str:
    every = f"{max(1, round(scrape_interval * 1000))}ms"
    return (
        "global:\n"
        f"  scrape_interval: {every}\n"
        f"  scrape_timeout: {every}\n"
        f"  evaluation_interval: {every}\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    file_sd_configs:\n"
        f"      - files: [{json.dumps(str(targets_file))}]\n"
        "        refresh_interval: 1s\n"
    )


class PrometheusServer:
    """One Prometheus child process; a context manager (stops it on exit)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        targets: Iterable[str] = (),
        *,
        scrape_interval: float = 1.0,
        binary: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.scrape_interval = scrape_interval
        self.binary = binary or find_prometheus()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._targets = list(targets)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_file(self) -> Path:
        return self.directory / "targets.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    def set_targets(self, targets: Iterable[str]) -> None:
        """Scrape these ``HOST:PORT`` targets from now on (written atomically)."""
        self._targets = list(targets)
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": self._targets, "labels": {}}]), encoding="utf-8")
        os.replace(tmp, self.targets_file)

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        if self.binary is None:
            raise PrometheusStartError(
                "prometheus is not installed (not on PATH; apt-get install prometheus)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.set_targets(self._targets)
        config = self.directory / "prometheus.yml"
        config.write_text(config_yaml(self.targets_file, self.scrape_interval), encoding="utf-8")
        for _attempt in range(3):  # a free port can be taken before Prometheus binds it
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1h",
                        "--log.level=warn",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_ready(timeout):
                return
            if self.proc.poll() is None:
                self.stop()
                break
        raise PrometheusStartError(f"Prometheus did not become ready: {self._log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-800:].strip()
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def fleet_targets(fleet_dir: str | os.PathLike[str]) -> list[str]:
    """The ``127.0.0.1:PORT`` of every host's metrics page, from the fleet's fleet.json."""
    data = json.loads((Path(fleet_dir) / "fleet.json").read_text(encoding="utf-8"))
    address = data.get("address", "127.0.0.1")
    return [f"{address}:{port}" for port in data.get("metrics_ports", {}).values()]


def wait_scraped(server: PrometheusServer, count: int, timeout: float = READY_TIMEOUT) -> bool:
    """Until ``count`` targets are up with two scrapes each (what ``rate()`` needs)."""
    up = f'up{{job="{JOB}"}}'
    query = f"count((count_over_time({up}[1m]) >= 2) and ({up} == 1))"
    url = f"{server.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                result = json.loads(answer.read())["data"]["result"]
            if result and float(result[0]["value"][1]) >= count:
                return True
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.2)
    return False
