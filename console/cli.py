"""``rolldeck`` entry point: argparse with one module per subcommand.

Each module in ``console/subcommands/`` defines ``NAME``, ``HELP``, ``ORDER``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are discovered, so adding a
subcommand never touches this file. Bad input (:class:`InputError`) becomes one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import console
import console.subcommands
from console.errors import EXIT_BAD_INPUT, InputError, RolldeckError


def _subcommand_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(console.subcommands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"console.subcommands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rolldeck",
        description=(
            "rolldeck: a terminal control console for rolling deployments over SSH.\n"
            "Deploys batch by batch, watches health, logs and error rates, and puts\n"
            "pause, abort and rollback one key away."
        ),
        epilog=(
            "exit codes: 0 succeeded, 2 bad input or usage, 3 failed and stopped,\n"
            "4 rolled back, 5 aborted by the operator, 6 paused (resumable)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rolldeck {console.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _subcommand_modules():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"rolldeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RolldeckError as exc:
        print(f"rolldeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
