"""``rolldeck`` entry point: argparse with one module per subcommand.

Each module in ``console/subcommands/`` defines ``NAME``, ``HELP``, ``ORDER``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are discovered, so adding a
subcommand never touches this file. Bad input (:class:`InputError`) becomes one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NoReturn

import console
import console.subcommands
from console import config, gc_policy
from console.core.errors import EXIT_BAD_INPUT, RolldeckError
from console.core.text import printable

# Where the chosen subcommand's ``run`` lands in the parsed namespace: a name no
# subcommand's option can take (a dash is not a valid ``dest`` from a flag).
HANDLER = "subcommand-run"


def _subcommand_modules(only: str | None = None) -> list[ModuleType]:
    """Import the subcommand modules: all of them, or only ``only`` (a module name).

    Importing just the chosen one keeps start-up fast: ``run`` pulls in the engine,
    asyncssh and more, which ``rolldeck inventory`` has no use for.
    """
    mods = []
    for info in pkgutil.iter_modules(console.subcommands.__path__):
        if info.name.startswith("_") or (only is not None and info.name != only):
            continue
        mod = importlib.import_module(f"console.subcommands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def _chosen_module(argv: Sequence[str]) -> str | None:
    """The module of the subcommand named in ``argv``, when there is one."""
    names = {i.name for i in pkgutil.iter_modules(console.subcommands.__path__)}
    for arg in argv:
        if arg.startswith("-"):
            continue
        name = arg.replace("-", "_")
        return name if name in names and not name.startswith("_") else None
    return None


class Parser(argparse.ArgumentParser):
    """argparse, keeping each subcommand's parser and each argument where the shell
    completion generator (``console.completion``) can read them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []  # before argparse adds --help
        self.commands: dict[str, Parser] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.arguments.append(action)
        return action


def build_parser(only: str | None = None, defaults: dict[str, object] | None = None) -> Parser:
    """The parser; ``defaults`` (from ``console.config``: the environment and the config
    file) replace the built-in defaults, so a flag on the command line still wins."""
    parser = Parser(
        prog="rolldeck",
        description=(
            "rolldeck: a terminal control console for rolling deployments over SSH.\n"
            "Deploys batch by batch, watches health, logs and error rates, and puts\n"
            "pause, abort and rollback one key away."
        ),
        epilog=(
            "exit codes: 0 succeeded, 2 bad input or usage, 3 failed and stopped,\n"
            "4 rolled back, 5 aborted by the operator, 6 paused (resumable)\n\n"
            "settings: flags > ROLLDECK_* variables > ~/.config/rolldeck/config.toml\n"
            "(see `rolldeck config`); shell completion: `rolldeck completion bash`\n"
            "docs: docs/README.md in the rolldeck source (getting started, the spec\n"
            "reference, console keys, headless and CI, the --json events, security)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rolldeck {console.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _subcommand_modules(only):
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.commands[mod.NAME] = p
        mod.add_arguments(p)
        p.set_defaults(**{HANDLER: mod.run}, **(defaults or {}))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:  # answered without importing every subcommand
        print(f"rolldeck {console.__version__}")
        return 0
    try:  # the environment and config file, as defaults under the flags
        defaults = config.argument_defaults(config.load())
    except RolldeckError as exc:
        if _chosen_module(argv) != "config":  # `rolldeck config` shows the error itself
            print(f"rolldeck: {printable(str(exc))}", file=sys.stderr)
            return EXIT_BAD_INPUT
        defaults = {}
    parser = build_parser(_chosen_module(argv), defaults)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, HANDLER, None)
    if handler is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    gc_policy.tune()
    try:
        return int(handler(args) or 0)
    except RolldeckError as exc:  # InputError too: one line, file contents made safe
        print(f"rolldeck: {printable(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `rolldeck check ... | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def entry() -> NoReturn:
    """The ``rolldeck`` command: :func:`main`, then out without the interpreter's
    teardown when nothing is left running.

    Freeing every module and object one at a time took 0.13-0.17 s after a 50-host
    rollout (``bench/speed_profile.py``), a twentieth of the whole run. By the time
    :func:`main` returns, the journal is fsync'd and closed, the fleet lock released,
    the connections closed and the console's terminal restored; what is left is
    flushing the standard streams and the logging handlers. A thread still running
    (nothing of ours leaves one) gets the normal exit, which waits for it.
    """
    code = main()
    if threading.active_count() > 1:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # the reader left, or it is closed
            stream.flush()
    os._exit(code & 0xFF)
