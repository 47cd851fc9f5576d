"""Shell completion for bash, zsh and fish, generated from the argparse parser.

shtab writes the scripts (subcommands, options, choices) from :func:`console.cli.
build_parser`; this module only says what each positional completes to: spec files
(``*.yaml``/``*.yml``), scenario files, and rollout ids, which the script asks
``rolldeck completion --ids running|all`` for, so the state directory is found the
way every command finds it (``--state-dir`` aside: flag > ROLLDECK_STATE_DIR >
config.toml > default).
"""

from __future__ import annotations

import asyncio
from typing import Any

import shtab

from console.cli import Parser, build_parser

SHELLS = ("bash", "zsh", "fish")
YAML = shtab.glob("*.yaml", "*.yml")
# attach needs a live owner; the others read journals (any rollout in the directory).
RUNNING_IDS = shtab.cmd("rolldeck completion --ids running 2>/dev/null")
ALL_IDS = shtab.cmd("rolldeck completion --ids all 2>/dev/null")
ID_SOURCE = {"attach": RUNNING_IDS, "approve": RUNNING_IDS}


def _mark(parser: Parser) -> None:
    """Attach shtab's ``complete`` to the positionals and path options."""
    for name, sub in parser.commands.items():
        for action in sub.arguments:
            metavar = action.metavar if isinstance(action.metavar, str) else ""
            completer: Any = None
            if metavar in ("SPEC", "SCENARIO") or action.dest in ("spec", "scenario"):
                completer = YAML
            elif metavar == "ID" and not action.option_strings:
                completer = ID_SOURCE.get(name, ALL_IDS)
            elif action.dest in ("inventory", "known_hosts", "ssh_config"):
                completer = shtab.FILE
            elif action.dest == "state_dir":
                completer = shtab.DIRECTORY
            if completer is not None:
                action.complete = completer  # type: ignore[attr-defined]


def script(shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    parser = build_parser()
    _mark(parser)
    return shtab.complete(parser, shell=shell)


def rollout_ids(which: str, state_dir: str | None) -> list[str]:
    """Rollout ids in the state directory: ``running`` (serving an attach socket, the
    ones ``attach`` takes) or ``all`` (every journal), newest first."""
    from console.store.journal import list_journals, resolve_state_dir

    directory = resolve_state_dir(state_dir, shared=True)
    if which == "running":
        from console.attach.discovery import running_rollouts

        rows = asyncio.run(running_rollouts(directory))
        return [str(r["rollout_id"]) for r in rows if r.get("socket")]
    return [p.stem for p in reversed(list_journals(directory))]
