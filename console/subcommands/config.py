"""``rolldeck config``: each setting's value and where it came from."""

from __future__ import annotations

import argparse
import json
import sys

from console import config
from console.core.text import printable

NAME = "config"
HELP = "show the settings (config.toml, ROLLDECK_* variables) and where each came from"
DESCRIPTION = """\
Show every setting a team sets once, its value and its source. Precedence: a flag on
the command line > a ROLLDECK_* environment variable > the config file > the default.
The file is $XDG_CONFIG_HOME/rolldeck/config.toml (~/.config when unset), or the
file ROLLDECK_CONFIG names. Example:

  state_dir = "/srv/rolldeck/state"
  operator = "alice"
  max_handshakes = 10
  accept_new_host_keys = false
  attach_group = "deployers"
  theme = "rolldeck-light"

  [keymap]            # binding id = keys (rolldeck config --keys lists the ids)
  pause = "space"
  rollback = "R"

An unknown key or a bad value is an error naming the file and line (exit 2)."""
ORDER = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="one JSON object: name -> value, source"
    )
    parser.add_argument("--path", action="store_true", help="print the config file's path only")
    parser.add_argument(
        "--keys", action="store_true", help="list the console's binding ids and their keys"
    )


def run(args: argparse.Namespace) -> int:
    if args.path:
        print(config.config_path())
        return 0
    if args.keys:
        return _keys()
    cfg = config.load()  # an InputError here: file:line, exit 2
    if args.json:
        out = {name: {"value": v.value, "source": v.source} for name, v in cfg.values.items()}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    exists = "" if cfg.path.exists() else " (not there: defaults and environment only)"
    print(printable(f"config file: {cfg.path}{exists}"))
    width = max(len(s.name) for s in config.SETTINGS)
    for s in config.SETTINGS:
        v = cfg.values[s.name]
        if s.name == config.KEYMAP:
            shown = ", ".join(f"{k}={keys}" for k, keys in v.value.items()) or "(none)"
        else:
            shown = "(unset)" if v.value is None else json.dumps(v.value)
        print(printable(f"{s.name:<{width}}  {shown}  [{v.source}]  {s.env}"))
    return 0


def _keys() -> int:
    """The console's bindings, from the console itself (Textual is loaded here only)."""
    try:
        from console.app import keymap_rows
    except ImportError as exc:
        print(printable(f"rolldeck: the console is unavailable ({exc})"), file=sys.stderr)
        return 3
    cfg = config.load()
    for section, bid, keys, what in keymap_rows(cfg[config.KEYMAP]):
        print(printable(f"{section:<22} {bid:<18} {keys:<14} {what}"))
    return 0
