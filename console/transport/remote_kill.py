"""Stopping a remote command for real: the two mechanisms a host can select.

OpenSSH 9.2 refuses the SSH ``signal`` channel request (sshd logs "session
signalling requires privilege separation") and, without a pty, closing the channel
only closes the command's pipes: ``sleep 300`` survives both. What does work is the
process group: for a command without a pty, sshd's session child calls ``setsid()``
before exec'ing the user's shell, so the shell's pid is its process group id and
every child it starts shares it. So in ``pgroup`` mode (the default) each command is
prefixed with one ``printf`` that reports ``$$`` on the first stdout line, and
stopping it means a second exec on the same connection that sends TERM to the whole
group, waits a grace period, then KILLs whatever is left.

``signal`` mode (host var ``rolldeck_kill: signal``) runs the command verbatim and
stops it with the ``signal`` request and a channel close. It is for servers without a
shell that honour those, such as the embedded simulated fleet.
"""

from __future__ import annotations

import shlex

from console.core.errors import InputError
from inventory.model import Host

KILL_MODES = ("pgroup", "signal")
SHELL_KINDS = ("sh", "none")
KILL_GRACE = 2.0  # seconds between TERM and KILL
PID_MARKER = "\x1erolldeck-pid "  # starts with an ASCII record separator: never real output


def kill_mode(host: Host) -> str:
    """The host's ``rolldeck_kill`` var, validated; ``pgroup`` when unset."""
    mode = str(host.vars.get("rolldeck_kill", "pgroup"))
    if mode not in KILL_MODES:
        raise InputError(
            f"host {host.name}: rolldeck_kill must be one of {', '.join(KILL_MODES)}, not {mode!r}",
            field="rolldeck_kill",
        )
    return mode


def shell_kind(host: Host) -> str:
    """The host's ``rolldeck_shell`` var, validated: ``sh`` (the default) when its
    commands run in a shell that chains ``a && b || c; d`` and reads a script from
    stdin (any POSIX sh; the simulated fleet's), ``none`` for a server without one:
    the monitor then runs every poll as its own command."""
    kind = str(host.vars.get("rolldeck_shell", "sh"))
    if kind not in SHELL_KINDS:
        raise InputError(
            f"host {host.name}: rolldeck_shell must be one of {', '.join(SHELL_KINDS)}, "
            f"not {kind!r}",
            field="rolldeck_shell",
        )
    return kind


def wrap_pgroup(command: str) -> str:
    """Prefix ``command`` with a line reporting the shell's pid (its process group)."""
    return f"printf '\\036rolldeck-pid %s\\n' \"$$\"\n{command}"


def parse_pid(line: str) -> int | None:
    """The pid reported by :func:`wrap_pgroup`'s first line, or ``None``."""
    if not line.startswith(PID_MARKER):
        return None
    value = line[len(PID_MARKER) :].strip()
    return int(value) if value.isdigit() and int(value) > 1 else None


def kill_script(pid: int, grace: float = KILL_GRACE, *, also: tuple[int, ...] = ()) -> str:
    """A command that stops process group ``pid``: TERM, wait up to ``grace``, KILL.

    It prints the signal that ended the group (``TERM`` or ``KILL``). ``kill -SIG -P``
    is the spelling both dash and bash accept (dash has no ``--``). "Alive" means a
    group member that is not a zombie (``ps``; ``kill -0`` where ps is missing): in a
    container whose init does not reap, killed orphans linger as zombies. If ``pid``
    is not a group leader (a server that did not ``setsid``), no group ``pid`` exists
    and only the process itself is signalled, so an unrelated group is never hit.
    ``also``: more groups stopped the same way, together (a command run under sudo
    with ``use_pty`` has a session of its own; console/become.py).
    """
    groups = (pid, *(g for g in also if g != pid))
    if any(g <= 1 for g in groups):
        raise ValueError(f"refusing to signal pid {min(groups)}")
    rounds = max(1, round(grace / 0.1))
    script = (
        f"P={pid}; G='{' '.join(map(str, groups))}'; "
        "one() { kill -$1 -$2 2>/dev/null || kill -$1 $2 2>/dev/null; }; "
        'each() { r=1; for g in $G; do one "$1" "$g" && r=0; done; return $r; }; '
        "if ps -A -o pgid= -o stat= >/dev/null 2>&1; then "
        "alive() { ps -A -o pgid= -o stat= | "
        'awk -v g=" $G " \'index(g, " " $1 " ") && $2 !~ /^Z/ { f = 1 } END { exit !f }\'; }; '
        "else alive() { each 0; }; fi; "
        # kill -0 is a builtin (no fork, cheap under load) but also sees zombies, so
        # the ps-based check runs only when it says "still there", every 3rd round.
        "there() { each 0; }; "
        "each TERM; i=0; "
        f'while [ "$i" -lt {rounds} ] && there; do '
        "if [ $((i % 3)) -eq 1 ] && ! alive; then break; fi; "
        "sleep 0.1; i=$((i+1)); done; "
        "if alive; then each KILL; echo KILL; else echo TERM; fi"
    )
    return "exec /bin/sh -c " + shlex.quote(script)
