"""The inventory package is pure data: importing it loads neither Textual nor asyncssh."""

from __future__ import annotations

import json
import subprocess
import sys


def test_inventory_imports_no_ui_and_no_ssh() -> None:
    code = (
        "import json, sys, inventory, inventory.loader, inventory.patterns;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(done.stdout)
    assert "inventory.loader" in modules  # the probe really imported the package
    for forbidden in ("textual", "screens", "asyncssh"):
        assert not [m for m in modules if m == forbidden or m.startswith(forbidden + ".")]
