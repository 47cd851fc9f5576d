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
from console.core.text import printable
from inventory import load_inventory, select
from inventory.model import Host, Inventory
from inventory.patterns import read_limit_file
from inventory.varload import check_expansion

NAME = "inventory"
HELP = "show the hosts of an inventory (native YAML, Ansible YAML or INI; file or directory)"
DESCRIPTION = """\
Load an inventory (format detected: rolldeck's native YAML, Ansible YAML, Ansible
INI; a directory is every inventory file in it, as Ansible reads it; several are
merged in order), apply group_vars/ and host_vars/, resolve groups and variable
precedence, and print every host (or those a --targets pattern selects) with its
address, port, user, groups and vars, then the vars files read and anything found
but not read. --json prints a list of objects with exactly the keys name, address,
port, user, groups and vars (the vars files go to stderr). Exit code 0, or 2 for a
bad inventory or a pattern matching nothing. At most 100,000 hosts
($ROLLDECK_MAX_HOSTS changes it).

patterns (Ansible's): web   web:api (union, also web,api)   web:&eu (intersection)
  web:!web-07 (exclusion)   web-0* (glob)   ~web-0[1-3] (regex)   web[0] (position)"""
ORDER = 70

COLUMNS = ("name", "address", "port", "user", "groups", "vars")
# Rich lays a table out cell by cell (about 1 ms a row); past this many hosts the
# table is printed as plain aligned columns instead.
RICH_TABLE_MAX_ROWS = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="PATH", nargs="+", help="inventory file or directory (several: merged)"
    )
    parser.add_argument(
        "--targets",
        metavar="PATTERN",
        default="all",
        help="host pattern selecting the hosts to show (default: all; @FILE: one a line)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--verbose", action="store_true", help="list every vars file read (default: a count)"
    )


def run(args: argparse.Namespace) -> int:
    inv = load_inventory(args.file)
    if args.targets.startswith("@"):
        where = args.targets[1:]
        hosts = select(inv, read_limit_file(where), file=where, field="--targets")
    else:
        hosts = select(inv, args.targets, field="--targets")
    # Every host's vars are written in full: refuse up front an inherited structure
    # that would make the answer gigabytes (inventory.varload).
    check_expansion(inv, hosts, what="rolldeck inventory", hint="select fewer hosts with --targets")
    report = sources_report(inv, verbose=args.verbose)
    if args.json:
        if report:
            sys.stderr.write("".join(f"rolldeck: {line}\n" for line in report))
        # One host per line: readable, and each line is written by json's C encoder
        # (``indent=`` would switch to the pure-Python one, 5x slower on 10,000 hosts).
        memo: dict[int, tuple[Any, Any]] = {}
        lines = (
            json.dumps({**host.to_json(), "vars": _masked(host.vars, memo)}, default=str)
            for host in hosts
        )
        sys.stdout.write("[\n" + ",\n".join(lines) + "\n]\n")
        return 0
    title = printable(f"{inv.path} ({inv.format}, {len(hosts)} hosts)")
    masks: dict[int, tuple[Any, Any]] = {}
    rows = [_cells(host, masks) for host in hosts]
    if len(rows) <= RICH_TABLE_MAX_ROWS:
        Console(file=sys.stdout, highlight=False).print(_rich_table(title, rows))
    else:
        sys.stdout.write(_plain_table(title, rows))
    sys.stdout.write("".join(line + "\n" for line in report))
    return 0


def sources_report(inv: Inventory, *, verbose: bool) -> list[str]:
    """What was read besides the inventory files: the vars files (a count, or a line
    each with ``verbose``), and a line for each thing found but not read."""
    lines: list[str] = []
    if len(inv.files) > 1:
        lines.append(f"inventory files read: {len(inv.files)}")
        if verbose:
            lines += [f"  {printable(f)}" for f in inv.files]
    if inv.vars_files:
        count = len(inv.vars_files)
        lines.append(f"vars files read: {count} ({_vars_summary(inv.vars_files)})")
        if verbose:
            lines += [f"  {printable(f)}" for f in inv.vars_files]
    lines += [f"note: {printable(note)}" for note in inv.notes]
    return lines


def _vars_summary(files: tuple[str, ...]) -> str:
    groups = sum(1 for f in files if "/group_vars/" in f or f.startswith("group_vars/"))
    return f"{groups} in group_vars, {len(files) - groups} in host_vars"


def _cells(host: Host, memo: dict[int, tuple[Any, Any]]) -> tuple[list[str], list[str]]:
    """The first five columns, and the vars as ``key=value`` items.

    Every cell through the one sanitiser (values are JSON, which escapes too): no
    terminal escape from a name, an address, a group or a var reaches the terminal.
    """
    fixed = [
        printable(host.name),
        printable(host.address),
        "" if host.port is None else str(host.port),
        printable(host.user or ""),
        printable(",".join(host.groups)),
    ]
    items = [
        printable(f"{k}={json.dumps(v, default=str)}") for k, v in _masked(host.vars, memo).items()
    ]
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


def _masked(value: Any, done: dict[int, tuple[Any, Any]]) -> Any:
    """``value`` with every secret-named key's value replaced by the mask, at any depth.

    A mapping or list with nothing to mask is returned as is, and one shared by many
    hosts (an inherited group var) is masked once (``done``, by identity)."""
    if not isinstance(value, dict | list):
        return value
    key = id(value)
    if key in done:
        return done[key][1]
    out: Any
    if isinstance(value, dict):
        items = {k: MASK if _is_secret(str(k)) else _masked(v, done) for k, v in value.items()}
        same = all(items[k] is v for k, v in value.items())
        out = value if same else items
    else:
        masked = [_masked(v, done) for v in value]
        out = value if all(m is v for m, v in zip(masked, value, strict=True)) else masked
    done[key] = (value, out)  # the original kept alive: its id stays its own
    return out


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    return is_secret_name(name)  # cached: the same var names recur on every host
