"""Settings a team sets once: ``config.toml`` and ``ROLLDECK_*`` variables.

Precedence: a command-line flag > a ``ROLLDECK_*`` environment variable > the config
file > the built-in default. The file is ``$XDG_CONFIG_HOME/rolldeck/config.toml``
(``~/.config`` when unset; ``ROLLDECK_CONFIG`` names another file), read with
:mod:`tomllib`. The CLI turns the environment and file values into argparse defaults
(:func:`argument_defaults`), so a flag still wins and every subcommand sees one value;
``rolldeck config`` shows each value and where it came from.

Bad input is refused like a bad spec: an unknown key or a wrong value names the file,
the line and the key (or the variable), exit 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.core.errors import InputError, did_you_mean
from console.core.files import read_limited

MAX_CONFIG_BYTES = 256 * 1024
CONFIG_ENV = "ROLLDECK_CONFIG"
KEYMAP = "keymap"


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected non-empty text")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be one line without control characters")
    return value


def _path(value: Any, where: str) -> str:
    return os.path.expanduser(_text(value, where))


def _count(value: Any, where: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


# A binding id -> its keys, as Textual writes them ("space", "ctrl+p", "n,escape").
_BINDING_ID = re.compile(r"[a-z][a-z0-9-]*")
_KEYS = re.compile(r"[A-Za-z0-9_+\-]+(\s*,\s*[A-Za-z0-9_+\-]+)*")


def _keymap(value: Any, where: str) -> dict[str, str]:
    """``{binding id: keys}`` from the file's ``[keymap]`` table, or the variable's
    ``id=keys;id=keys``."""
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in value.split(";"))):
            bid, sep, keys = item.partition("=")
            if not sep:
                raise ValueError(f"expected id=keys;id=keys, got {item!r}")
            pairs[bid.strip()] = keys.strip()
        value = pairs
    if not isinstance(value, dict):
        raise ValueError("expected a table of binding id = keys")
    out = {}
    for bid, keys in value.items():
        if not _BINDING_ID.fullmatch(bid):
            raise ValueError(f"{bid!r} is not a binding id (see `rolldeck config --keys`)")
        if not isinstance(keys, str) or not _KEYS.fullmatch(keys.strip()):
            raise ValueError(f"{bid}: expected keys like 'space' or 'ctrl+p,f5', got {keys!r}")
        out[bid] = ",".join(k.strip() for k in keys.split(","))
    return out


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # the file's key
    env: str  # the environment variable
    parse: Callable[[Any, str], Any]
    default: Any
    dest: str | None  # the argparse dest it fills, when a flag exists
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "state_dir",
        "ROLLDECK_STATE_DIR",
        _path,
        None,
        "state_dir",
        "journals, locks and attach sockets (default $XDG_STATE_HOME/rolldeck)",
    ),
    Setting("operator", "ROLLDECK_OPERATOR", _text, None, "operator", "your name in the journal"),
    Setting(
        "max_handshakes",
        "ROLLDECK_MAX_HANDSHAKES",
        _count,
        10,
        "max_handshakes",
        "concurrent SSH handshakes per server endpoint",
    ),
    Setting(
        "accept_new_host_keys",
        "ROLLDECK_ACCEPT_NEW_HOST_KEYS",
        _flag,
        False,
        "accept_new_host_keys",
        "trust unknown host keys on first use (changed keys are always refused)",
    ),
    Setting(
        "attach_group",
        "ROLLDECK_ATTACH_GROUP",
        _text,
        None,
        "attach_group",
        "the group whose members may attach to your rollouts (socket mode 0660)",
    ),
    Setting(
        "theme",
        "ROLLDECK_THEME",
        _text,
        None,
        None,
        "the console's theme (default: the last one chosen with t)",
    ),
    Setting(
        KEYMAP,
        "ROLLDECK_KEYMAP",
        _keymap,
        {},
        None,
        "console keys remapped: binding id = keys ([keymap] table)",
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Value:
    value: Any
    source: str  # "default", "env ROLLDECK_X", "/path/config.toml:3"
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    values: Mapping[str, Value]
    keymap_where: Mapping[str, Value]  # binding id -> where its keys were set

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def keymap_error(self, binding_id: str, message: str) -> InputError:
        """An error about one keymap entry, at the file line or variable that set it."""
        where = self.keymap_where.get(binding_id)
        if where is not None and where.file is not None:
            return InputError(
                message, file=where.file, line=where.line, field=f"keymap.{binding_id}"
            )
        return InputError(message, field=f"ROLLDECK_KEYMAP {binding_id}")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(os.path.expanduser(env[CONFIG_ENV]))
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "rolldeck" / "config.toml"


def _key_lines(text: str) -> dict[str, int]:
    """``table.key`` (``key`` at the top) -> its 1-based line, for error messages."""
    out: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$", line)
        if header:
            table = header.group(1).strip("\"' ")
            out.setdefault(table, number)
            continue
        key = re.match(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=", line)
        if key:
            name = key.group(1).strip("\"'")
            out.setdefault(f"{table}.{name}" if table else name, number)
    return out


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        raw = read_limited(str(path), MAX_CONFIG_BYTES, "a config file")
    except FileNotFoundError:
        return {}, {}
    except OSError as exc:
        raise InputError(f"cannot read config: {exc.strerror or exc}", file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    import tomllib  # here: 8 ms of every start, and most machines have no config file

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        line = int(found.group(1)) if found else None
        raise InputError(f"not valid TOML: {message}", file=str(path), line=line) from None
    return data, _key_lines(text)


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The settings from the environment and the config file (flags come later, from
    argparse); raises :class:`InputError` naming the file and line, or the variable."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    data, lines = _read_file(path)
    for key in data:
        if key not in BY_NAME:
            raise InputError(
                f"unknown key {key!r}{did_you_mean(key, tuple(BY_NAME))}",
                file=str(path),
                line=lines.get(key),
                field=key,
            )
    values: dict[str, Value] = {}
    keymap_where: dict[str, Value] = {}
    for s in SETTINGS:
        value = Value(s.default, "default")
        if s.name in data:
            line = lines.get(s.name)
            try:
                parsed = s.parse(data[s.name], s.name)
                if s.parse is _path and not os.path.isabs(parsed):
                    raise ValueError(f"must be absolute (or start with ~/), not {parsed!r}")
            except ValueError as exc:
                raise InputError(str(exc), file=str(path), line=line, field=s.name) from None
            value = Value(parsed, f"{path}:{line}" if line else str(path), str(path), line)
            if s.name == KEYMAP:
                for bid in parsed:
                    at = lines.get(f"{KEYMAP}.{bid}", line)
                    keymap_where[bid] = Value(parsed[bid], f"{path}:{at}", str(path), at)
        if env.get(s.env):  # set and not empty
            try:
                parsed = s.parse(env[s.env], s.env)
            except ValueError as exc:
                raise InputError(str(exc), field=s.env) from None
            if s.name == KEYMAP:  # the variable adds to (and overrides) the file's table
                parsed = {**(value.value or {}), **parsed}
                for bid in parsed:
                    if bid in _keymap(env[s.env], s.env):
                        keymap_where[bid] = Value(parsed[bid], f"env {s.env}")
            value = Value(parsed, f"env {s.env}")
        values[s.name] = value
    return Config(path, values, keymap_where)


def argument_defaults(config: Config) -> dict[str, Any]:
    """argparse defaults from the settings not at their built-in default: a flag given
    on the command line still wins over them."""
    return {
        s.dest: config.values[s.name].value
        for s in SETTINGS
        if s.dest is not None and config.values[s.name].source != "default"
    }
