"""become: running a host's commands as another user through ``sudo``.

Which commands: every step, preflight check and rollback step, and the host's version
reads (preflight's, and around its deploy and rollback: ``current_version`` /
``release_dir``), run under become when it applies to them. As the login user: health
gating, the monitor's polls (health, vitals, logs, metrics: under sudo every few
seconds they would fill the host's auth log) and the lease operations (a lease lives
in the login user's home). A command that needs root there says ``sudo -n`` itself.

Whether become applies, and as whom (most specific first):

- on/off: the step's own ``become`` > the host's ``ansible_become`` > the spec's
  ``become`` (default off). A host var overrides the spec-level default as Ansible's
  connection vars override play keywords; a step's explicit ``become: false`` always
  opts it out (Ansible would let the host var win there; an opt-out that a group var
  can undo is no opt-out).
- user: the step's ``become_user`` > ``ansible_become_user`` > the spec's
  ``become_user`` > ``root``.
- method: ``ansible_become_method`` > the spec's ``become_method``; only ``sudo``.
- password: ``ansible_become_password`` / ``ansible_become_pass`` > the spec's
  ``become_password`` (a template naming a var, rendered per host) > the environment
  variable ``ROLLDECK_BECOME_PASSWORD``. Without one, sudo runs non-interactively
  (``sudo -n``): a rule that wants a password fails at once with the fix. With one,
  ``sudo -S -p ''`` reads it as the first line of the command's stdin: it is never on
  a command line, in an event or in the journal (the redactor masks its value too).

The wrapped command (:func:`command_for`) runs ``/bin/sh -c COMMAND`` as the become
user, its stdin ``/dev/null`` (so a password sudo did not need is never read by the
command), after one line reporting that shell's pid: with sudo's ``use_pty`` the
command runs in a session of its own, so a stop kills that group as well as the login
shell's (:func:`kill_command`, run through sudo as the become user: the processes are
not the login user's to signal).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console.core.errors import InputError
from console.core.secrets import BECOME_PASSWORD_ENV
from console.templating import build_context, render

if TYPE_CHECKING:
    from console.spec.model import RolloutSpec, Step
    from inventory.model import Host

METHODS = ("sudo",)
DEFAULT_USER = "root"
PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass")
# Ansible become vars rolldeck reads; the others (exe, flags) are reported by check.
HONOURED_VARS = ("ansible_become", "ansible_become_user", "ansible_become_method", *PASSWORD_VARS)
PID_MARKER = "\x1erolldeck-become-pid "  # a record separator first: never real output
_USER = re.compile(r"(?:[A-Za-z0-9_.][A-Za-z0-9_.@-]*\$?|#\d+)")
_TRUE = frozenset({"true", "yes", "on", "1", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "n", ""})
# The inner shell: report its pid, then run the command with stdin from /dev/null.
_INNER = 'printf \'\\036rolldeck-become-pid %s\\n\' "$$"; exec /bin/sh -c "$1" </dev/null'


@dataclass(frozen=True, slots=True)
class Become:
    """How one command is run: as ``user`` through sudo; ``password`` (never shown)
    is written to sudo's stdin when set, else sudo runs with ``-n``."""

    user: str = DEFAULT_USER
    password: str | None = field(default=None, repr=False)
    password_from: str = ""  # where the password came from, for check (never the value)

    @property
    def stdin(self) -> bytes | None:
        """What to write to the command's stdin before EOF: the password line."""
        return None if self.password is None else (self.password + "\n").encode()

    def describe(self) -> str:
        how = f"password from {self.password_from}" if self.password is not None else "sudo -n"
        return f"as {self.user} ({how})"


def user_problem(user: str) -> str | None:
    """Why ``user`` cannot be a become user, or None."""
    if not _USER.fullmatch(user):
        return (
            f"become_user {user!r} is not a user name (letters, digits, '_', '.', '-', "
            "'@'; or #UID)"
        )
    return None


def _flag(host: Host, name: str) -> bool:
    value = host.vars[name]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"host {host.name}: {name} must be true or false, not {value!r}", field=name)


def _host_user(host: Host) -> str | None:
    value = host.vars.get("ansible_become_user")
    if value is None or value == "":
        return None
    user = str(value)
    problem = user_problem(user)
    if problem:
        raise InputError(f"host {host.name}: {problem}", field="ansible_become_user")
    return user


def _method(spec: RolloutSpec, host: Host) -> None:
    method = host.vars.get("ansible_become_method")
    if method is None:
        return  # the spec's own is checked when it is loaded
    if str(method) not in METHODS:
        raise InputError(
            f"host {host.name}: ansible_become_method {method!r} is not supported: rolldeck "
            f"becomes with {', '.join(METHODS)} only",
            field="ansible_become_method",
        )


def _password(
    spec: RolloutSpec, host: Host, environ: Mapping[str, str] | None
) -> tuple[str | None, str]:
    for name in PASSWORD_VARS:
        value = host.vars.get(name)
        if value is not None and value != "":
            return str(value), name
    if spec.become_password is not None:
        context = build_context(spec, host, None, environ=environ)
        return render(spec.become_password, context, raw=True), "become_password"
    env = os.environ if environ is None else environ
    value = env.get(BECOME_PASSWORD_ENV)
    if value:
        return value, BECOME_PASSWORD_ENV
    return None, ""


def become_for(
    spec: RolloutSpec,
    host: Host,
    step: Step | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Become | None:
    """How ``step`` (None: the version read) runs on ``host``: None as the login user.

    Raises InputError for a host var that cannot be honoured (a method other than sudo,
    a bad user, ``ansible_become: maybe``) and TemplateError for a ``become_password``
    that cannot be filled for this host.
    """
    enabled = spec.become
    if "ansible_become" in host.vars:
        enabled = _flag(host, "ansible_become")
    if step is not None and step.become is not None:
        enabled = step.become
    if not enabled:
        return None
    _method(spec, host)
    user = (step.become_user if step is not None else None) or _host_user(host)
    user = user or spec.become_user or DEFAULT_USER
    password, source = _password(spec, host, environ)
    return Become(user=user, password=password, password_from=source)


def validate(spec: RolloutSpec, hosts: Sequence[Host]) -> None:
    """Resolve become for every host and step once, so a bad host var is refused before
    anything connects (raises InputError or TemplateError, naming host and var)."""
    steps: list[Step | None] = [None, *spec.steps, *spec.rollback.steps]
    for host in hosts:
        for step in steps:
            become_for(spec, host, step)


def _sudo(become: Become, command: str) -> str:
    mode = "-S -p ''" if become.password is not None else "-n"
    return f"sudo -H {mode} -u {shlex.quote(become.user)} -- {command}"


def command_for(command: str, become: Become, *, report_pid: bool = True) -> str:
    """``command`` run by ``/bin/sh`` as the become user through sudo.

    ``report_pid``: its first stdout line is :data:`PID_MARKER` and the inner shell's
    pid (a transport that strips it; see :func:`parse_pid`)."""
    inner = _INNER if report_pid else 'exec /bin/sh -c "$1" </dev/null'
    return _sudo(become, f"/bin/sh -c {shlex.quote(inner)} rolldeck-become {shlex.quote(command)}")


def parse_pid(line: str) -> int | None:
    """The pid reported by :func:`command_for`'s inner shell, or None."""
    if not line.startswith(PID_MARKER):
        return None
    value = line[len(PID_MARKER) :].strip()
    return int(value) if value.isdigit() and int(value) > 1 else None


def kill_command(script: str, become: Become) -> str:
    """A kill script (:func:`console.transport.remote_kill.kill_script`) run through
    sudo as the become user: the command's processes are that user's (root's), not the
    login user's. Its stdin must carry :attr:`Become.stdin` when there is a password."""
    return _sudo(become, f"/bin/sh -c {shlex.quote(script)}")


# What sudo says (on stderr, starting "sudo: " or "Sorry") when it refused to run.
_REFUSALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"a password is required|a terminal is required|must have a tty"), "password"),
    (re.compile(r"incorrect password|no password was provided|try again"), "wrong"),
    (re.compile(r"is not in the sudoers file|is not allowed to|may not run sudo"), "rule"),
    (re.compile(r"unknown user"), "user"),
)


def refusal(
    lines: Sequence[str], exit_code: int | None, *, host: Host, become: Become, what: str
) -> str | None:
    """The host's failure, when sudo (not the command) refused ``what``; else None."""
    login = host.user or "the login user"
    said = [line for line in lines if line.startswith(("sudo:", "Sorry,", "sudo "))]
    if exit_code == 127 and any("sudo" in line and "not found" in line for line in lines):
        return f"sudo is not installed on {host.name}: {what} needs it to run as {become.user}"
    text = " ".join(said)
    for pattern, kind in _REFUSALS:
        if not pattern.search(text):
            continue
        head = f"sudo on {host.name} refused {what} for login user {login} as {become.user}"
        if kind == "password":
            return (
                f"{head}: a password is required; fix: a become password (become_password,"
                f" ansible_become_pass or {BECOME_PASSWORD_ENV}) or a NOPASSWD sudoers rule"
            )
        if kind == "wrong":
            return (
                f"{head}: the become password was wrong (from {become.password_from}); fix: "
                "the password of the login user, or a NOPASSWD sudoers rule"
            )
        if kind == "rule":
            return (
                f"{head}: no sudoers rule allows it; fix: a rule such as "
                f"'{login} ALL=({become.user}) NOPASSWD: ALL' in /etc/sudoers.d/, "
                "or become: false for this step"
            )
        return f"{head}: user {become.user} does not exist there; fix: become_user"
    return None


def unhonoured(vars: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``ansible_become*`` vars of a host that rolldeck does not act on: (var, why)."""
    return [
        (name, "not honoured by rolldeck (become runs sudo -H -u USER; flags are fixed)")
        for name in sorted(vars)
        if name.startswith("ansible_become") and name not in HONOURED_VARS
    ]


@dataclass(frozen=True, slots=True)
class BecomeGroup:
    """Hosts on which the same commands run as the same users (``rolldeck check``):
    ``runs`` is (who, the commands) in running order of first appearance."""

    hosts: tuple[str, ...]
    runs: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def applies(self) -> bool:
        return any(who != LOGIN for who, _ in self.runs)


LOGIN = "as the login user"


def plan(spec: RolloutSpec, hosts: Sequence[Host]) -> list[BecomeGroup]:
    """Who runs each command on each host, hosts with the same answer grouped (host
    order kept). Raises InputError/TemplateError as :func:`validate` does."""
    labelled: list[tuple[str, Step | None]] = []
    if spec.current_version:
        labelled.append(("current_version", None))
    labelled += [(f"step {s.name}", s) for s in spec.steps]
    labelled += [(f"rollback {s.name}", s) for s in spec.rollback.steps]
    groups: dict[tuple[tuple[str, tuple[str, ...]], ...], list[str]] = {}
    for host in hosts:
        runs: dict[str, list[str]] = {}
        for label, step in labelled:
            become = become_for(spec, host, step)
            who = LOGIN if become is None else f"sudo {become.describe()}"
            runs.setdefault(who, []).append(label)
        key = tuple((who, tuple(labels)) for who, labels in runs.items())
        groups.setdefault(key, []).append(host.name)
    return [BecomeGroup(tuple(names), key) for key, names in groups.items()]
