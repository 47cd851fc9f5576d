"""The core never imports the UI: proved in a fresh interpreter, as Harlequin does.

Modules are checked as they land (importlib.util.find_spec), so the test grows with
the project instead of being edited by every engineer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Every module of the core packages, found by walking them, except the one bridge.
UI_BRIDGES = {"console.app", "console.__main__"}


def core_modules() -> list[str]:
    import pkgutil

    import console
    import inventory

    names = ["inventory", "console"]
    for pkg in (console, inventory):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
            if info.name not in UI_BRIDGES:
                names.append(info.name)
    return names


CORE_MODULES = tuple(core_modules())

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
