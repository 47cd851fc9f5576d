"""Operator commands into the engine, as serialisable values.

The engine's methods (``pause()``, ``rollback()``...) are thin wrappers that build a
:class:`Command` and hand it to :meth:`Engine.execute`; an attached console sends the
same JSON over a socket. Every command is idempotent (safe to send twice) and carries
the operator's name (a label the operator chose), the Unix user who issued it (from
the kernel: this process's effective uid, or the attach socket's peer credentials,
set by the attach server and never read from the wire) and an optional reason, all
journaled.
"""

from __future__ import annotations

import getpass
import os
import pwd
from dataclasses import dataclass, field
from typing import Any, Protocol

COMMAND_NAMES = (
    "pause",  # no new host starts; moving hosts finish steps and health gating
    "freeze",  # additionally no new step starts anywhere
    "resume",
    "abort",  # cancel in-flight remote commands; hosts left as they are
    "rollback",  # pause, then roll back exactly the changed hosts, newest batch first
    "continue",  # pass a manual gate (at an approval gate: approve)
    "approve",  # approve at an approval gate: must come from another Unix user
    "skip",  # args: host
    "retry",  # args: host
    "set_batch_size",  # args: size (int or "N%")
)


def default_operator() -> str:
    """``$LOGNAME``/``$USER``, else the uid's passwd entry, else ``uid N``."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return unix_user(os.getuid())


def unix_user(uid: int | None = None) -> str:
    """The Unix user name of ``uid`` (default: this process's effective uid), from the
    password database, not the environment; ``uid N`` when it has no entry."""
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    operator: str = field(default_factory=default_operator)
    reason: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    user: str = field(default_factory=unix_user)  # who, per the kernel; not serialised
    uid: int = field(default_factory=os.geteuid)  # the same, as a number; not serialised

    def __post_init__(self) -> None:
        if self.name not in COMMAND_NAMES:
            raise ValueError(f"unknown command {self.name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "operator": self.operator,
            "reason": self.reason,
            "args": dict(self.args),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Command:
        return cls(
            name=str(data["name"]),
            operator=str(data.get("operator") or default_operator()),
            reason=str(data.get("reason") or ""),
            args=dict(data.get("args") or {}),
        )


class Controller(Protocol):
    """What a front end drives: the engine in-process, or a remote one over a socket."""

    def execute(self, command: Command) -> None:
        """Apply a command; never blocks; the result shows up as events."""
        ...

    def open_connections(self) -> int:
        """Open SSH connections right now (for the status line)."""
        ...
