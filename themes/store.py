"""Remembering the operator's theme: a small JSON file, written 0600.

Lives at ``$XDG_CONFIG_HOME/rolldeck/console.json`` (``~/.config`` when unset). A
missing or unreadable file is not an error: the console starts with the default theme
and reports the problem as a notification rather than refusing to start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from console.core.safe_files import (
    UnsafeDirectory,
    ensure_private_dir,
    read_private,
    write_atomic,
)

# The file holds a theme name; anything larger is not ours (or an attack).
MAX_CONFIG_BYTES = 64 * 1024


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rolldeck" / "console.json"


def load_theme_choice(known: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Return ``(theme, problem)``: the remembered theme if valid, and why not if not."""
    path = config_path()
    try:
        data = _read(path)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"ignored {path}: {exc}"
    theme = data.get("theme") if isinstance(data, dict) else None
    if theme is None:
        return None, None
    if theme not in known:
        return None, f"ignored {path}: unknown theme {theme!r}"
    return str(theme), None


def save_theme_choice(theme: str) -> Path:
    """Write the choice atomically (a fresh O_EXCL | O_NOFOLLOW temp file, renamed),
    mode 0600, in a directory created 0700 and refused (PermissionError) when it is
    not ours or is writable by group or others (console.core.safe_files)."""
    path = config_path()
    try:
        path = ensure_private_dir(path.parent, what="config directory") / path.name
    except UnsafeDirectory as exc:
        raise PermissionError(str(exc)) from None
    data: dict[str, object] = {}
    try:
        loaded = _read(path)
        if isinstance(loaded, dict):
            data = loaded
    except (OSError, ValueError):
        pass
    data["theme"] = theme
    write_atomic(path, json.dumps(data).encode())
    return path


def _read(path: Path) -> object:
    """The file's JSON: read bounded (refused past MAX_CONFIG_BYTES, ValueError) and
    never through a symlink or from a non-regular file (OSError)."""
    raw = read_private(path, limit=MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"larger than {MAX_CONFIG_BYTES:,} bytes: not a rolldeck config")
    return json.loads(raw.decode("utf-8"))
