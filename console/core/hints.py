"""Hints that name a command-line flag, built by one helper.

A hint that suggests a flag the command does not accept is worse than none (issue 18:
a refused ``resume`` advised ``--allow-unreachable``, which ``resume`` did not take).
Every such hint is a :class:`FlagHint` made by :func:`flag_hint` at import time, naming
the subcommand whose flags they are; ``tests/test_way_back_hints.py`` checks each one
against that subcommand's real argparse parser (and scans the sources for flags
named in plain strings).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REGISTRY", "FlagHint", "flag_hint"]


@dataclass(frozen=True, slots=True)
class FlagHint:
    """``template`` with the flags as ``{0}``, ``{1}``... and other values by name."""

    command: str  # the subcommand whose parser must accept every flag
    template: str
    flags: tuple[str, ...]

    def text(self, **values: object) -> str:
        return self.template.format(*self.flags, **values)

    def __str__(self) -> str:
        return self.text()


REGISTRY: list[FlagHint] = []


def flag_hint(command: str, template: str, *flags: str) -> FlagHint:
    """A hint naming ``flags`` of ``rolldeck COMMAND`` (registered for the test)."""
    if not flags or not all(f.startswith("--") for f in flags):
        raise ValueError(f"a flag hint names at least one --flag: {flags!r}")
    hint = FlagHint(command, template, tuple(flags))
    REGISTRY.append(hint)
    return hint
