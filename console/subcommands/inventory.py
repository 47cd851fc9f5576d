"""``rolldeck inventory``: show the hosts an inventory resolves to, as a table or JSON.

The quickest way to check that rolldeck reads an existing Ansible inventory the way
Ansible does (groups, children, var precedence, connection settings) and what a
``targets`` pattern selects, before any spec refers to it. Secret-looking vars
(passwords, tokens) are masked in both outputs.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from console.core.secrets import MASK, is_secret_name
from inventory import load_inventory, select
from inventory.model import Host

NAME = "inventory"
HELP = "show the hosts of an inventory (native YAML, Ansible YAML or INI)"
DESCRIPTION = """\
Load an inventory (format detected: rolldeck's native YAML, Ansible YAML, Ansible
INI), resolve groups and variable precedence, and print every host (or those a
--targets pattern selects) with its address, port, user, groups and vars.
--json prints a list of objects with exactly the keys name, address, port, user,
groups and vars. Exit code 0, or 2 for a bad inventory or a pattern matching nothing.

patterns (Ansible's): web   web:api (union, also web,api)   web:&eu (intersection)
  web:!web-07 (exclusion)   web-0* (glob)   ~web-0[1-3] (regex)   web[0] (position)"""
ORDER = 70

COLUMNS = ("name", "address", "port", "user", "groups", "vars")
# Rich lays a table out cell by cell (about 1 ms a row); past this many hosts the
# table is printed as plain aligned columns instead.
RICH_TABLE_MAX_ROWS = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="inventory file")
    parser.add_argument(
        "--targets",
        metavar="PATTERN",
        default="all",
        help="host pattern selecting the hosts to show (default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    inv = load_inventory(args.file)
    hosts = select(inv, args.targets, field="--targets")
    if args.json:
        # One host per line: readable, and each line is written by json's C encoder
        # (``indent=`` would switch to the pure-Python one, 5x slower on 10,000 hosts).
        lines = (
            json.dumps({**host.to_json(), "vars": _masked(host.vars)}, default=str)
            for host in hosts
        )
        sys.stdout.write("[\n" + ",\n".join(lines) + "\n]\n")
        return 0
    title = f"{inv.path} ({inv.format}, {len(hosts)} hosts)"
    rows = [_cells(host) for host in hosts]
    if len(rows) <= RICH_TABLE_MAX_ROWS:
        Console(file=sys.stdout, highlight=False).print(_rich_table(title, rows))
    else:
        sys.stdout.write(_plain_table(title, rows))
    return 0


def _cells(host: Host) -> tuple[list[str], list[str]]:
    """The first five columns, and the vars as ``key=value`` items.

    json.dumps escapes control characters in values; names are validated on load.
    """
    fixed = [
        host.name,
        host.address,
        "" if host.port is None else str(host.port),
        host.user or "",
        ",".join(host.groups),
    ]
    items = [f"{k}={json.dumps(v, default=str)}" for k, v in _masked(host.vars).items()]
    return fixed, items


def _rich_table(title: str, rows: list[tuple[list[str], list[str]]]) -> Table:
    table = Table(title=Text(title), title_justify="left")
    for column in COLUMNS[:4]:
        table.add_column(column, no_wrap=True)  # names stay whole; groups and vars wrap
    table.add_column("groups", overflow="fold")
    table.add_column("vars", overflow="fold")
    for fixed, items in rows:
        *head, groups = fixed
        cells = [*head, groups.replace(",", ", "), "\n".join(items)]
        table.add_row(*(Text(cell) for cell in cells))  # Text: no markup from user data
    return table


def _plain_table(title: str, rows: list[tuple[list[str], list[str]]]) -> str:
    """Aligned columns, one line per host, vars last and unwrapped (greppable)."""
    lines = [[*fixed, " ".join(items)] for fixed, items in rows]
    widths = [max(len(c), *(len(cells[i]) for cells in lines)) for i, c in enumerate(COLUMNS)]
    widths[-1] = 0  # the last column is not padded

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [title, line(list(COLUMNS)), line(["-" * max(w, 4) for w in widths])]
    out += [line(cells) for cells in lines]
    return "\n".join(out) + "\n"


def _masked(value: Any) -> Any:
    """``value`` with every secret-named key's value replaced by the mask, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if _is_secret(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    return is_secret_name(name)  # cached: the same var names recur on every host
