"""The core never imports the UI: proved in a fresh interpreter, as Harlequin does.

Modules are checked as they land (importlib.util.find_spec), so the test grows with
the project instead of being edited by every engineer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CORE_MODULES = (
    "inventory",
    "console.errors",
    "console.spec",
    "console.plan",
    "console.templating",
    "console.events",
    "console.state",
    "console.bus",
    "console.commands",
    "console.engine",
    "console.journal",
    "console.health",
    "console.transport.base",
    "console.transport.ssh",
    "console.transport.local",
    "console.headless",
    "console.simfleet",
    "console.cli",
)

PROBE = """
import importlib, importlib.util, json, sys
found, imported = [], []
for name in json.loads(sys.argv[1]):
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        continue
    found.append(name)
    importlib.import_module(name)
    imported.append(name)
ui = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "screens"))
print(json.dumps({"imported": imported, "ui": ui}))
"""


def test_core_imports_no_textual_or_screens() -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CORE_MODULES)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"inventory", "console.spec", "console.plan", "console.templating"} <= set(
        report["imported"]
    )
    assert report["ui"] == [], f"the core pulled in UI modules: {report['ui']}"


def test_the_probe_would_notice_textual() -> None:
    """The check itself can fail: importing textual is seen."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["textual"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "textual" in json.loads(result.stdout.strip().splitlines()[-1])["ui"]
