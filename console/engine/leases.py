"""Leases on the fleet itself: no two rollouts touch one host, or run one service, at once.

The local lock (:mod:`console.store.lock`) only sees rollouts started from the same
state directory and inventory path. Two laptops, two accounts on a bastion or two
checkouts of the inventory do not share it; the hosts do. So, as Kamal and Deployer
do, the lock also lives on the servers:

* **the fleet lock** of a service on its ``lock_host`` (the spec's, default the plan's
  first host), taken at the start of the preflight, before any host is checked, and
  held until the rollout ends: a second console is refused before it touches a host;
* **a host lease** on every host rolldeck may change, taken by the preflight (a host
  whose lease another rollout holds fails it, the holder named; a rollback taken
  later re-takes it before its first step) and released when that host is done,
  failed or rolled back, and at the end of the rollout (success, failure, abort).
  Held from the preflight on, it makes the preflight's version read the host's
  "previous" version: no other rolldeck can have changed the host since.

On a host, a lease is a directory ``<lease.path>/<name>`` made with ``mkdir`` (atomic:
exactly one of two racing consoles creates it) holding ``owner`` (one JSON line:
service, rollout, operator, Unix user, machine, pid, start time), ``rollout`` (its id)
and ``beat`` (the host's own ``date +%s``, rewritten every ``lease.every`` seconds; empty
when written at the take, whose time is then the file's own mtime: either way the
age is measured on one clock, the host's). ``<name>.history`` beside it keeps one
line per take, re-take, break and release, and survives the release. ``name`` is the
service (fleet lock) or ``service@host`` (the inventory's host name: one machine named
twice in two inventories is two leases). A lease is *stale* when its heartbeat is older
than ``lease.stale_after`` (default 60 s), or at once when its machine is this one and
its pid is dead. A stale lease is never taken silently: ``--break-lock --reason TEXT``
takes it over (journaled on the host, in the history, and locally as a notice); a live
one is never broken. A rollout re-takes its own leases (``resume``: same rollout id).

Every remote command is one exec under :data:`LEASE_TIMEOUT`, with every value
shell-quoted (``shlex.quote``, as :mod:`console.templating` quotes): a POSIX ``sh -c``
script with the values as its arguments, or, on hosts without a POSIX shell (the
simulated fleet: ``rolldeck_kill: signal``), the same arguments to a ``rolldeck-lease``
command the host provides. ``rolldeck_lease: shell|command|none`` in a host's vars
chooses; ``none`` holds no lease on that host (and says so in the journal).
The heartbeat of every held lease of a host is one command per interval for that host
(none for a host whose leases were written less than an interval ago).

Folded execs: on a ``shell`` host, a lease operation and the command after it (the
version read) share one exec (:func:`folded_command`): the operation runs under ``sh``
with its stderr joined to its stdout, then prints a marker line with a fresh random
token and its exit status, then the login shell runs the command exactly as it would
alone (the exec's exit status is the command's). The preflight takes the lease and
reads the version in one exec; after health gating the release and the "new" version
read share one. ``command`` hosts (whose shell is unknown) and version reads under
``become`` (sudo: another user, another way to run) keep separate execs. In the
connection's kept shell, which defines the folded operation as a function at its start
(:data:`PRELUDE`, given to the transport as ``TransportOptions.shell_prelude``), the
operation is one line calling it (:func:`folded_call`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from console.core import events as ev
from console.core.commands import default_operator
from console.core.text import shorten
from console.spec.model import RolloutSpec
from console.templating import TemplateError, build_context, render
from console.transport.base import Connection, RunResult, Transport, TransportError
from inventory.model import Host

log = logging.getLogger(__name__)
LEASE_TIMEOUT = 15.0  # one lease command on one host
BEAT_CONCURRENCY = 32  # hosts refreshed at once
HISTORY_KEEP = 500  # history lines kept (checked on one take in five: `wc` is a fork)
MODES = ("shell", "command", "none")
STALE_HINT = "--break-lock --reason TEXT takes it over"

# $1 op, $2 lease directory, then the op's arguments. Prints one status word first.
SCRIPT = r"""umask 077
op=$1; d=$2; shift 2
case $d in "~/"*) d=$HOME/${d#"~/"};; esac
t=
stamp() { [ -n "$t" ] || t=$(date +%s); }
held() {
  stamp; echo HELD; echo "$t"
  b=; { read -r b < "$1/beat"; } 2>/dev/null
  case $b in ''|*[!0-9]*) b=$(stat -c %Y "$1/beat" 2>/dev/null ||
    stat -f %m "$1/beat" 2>/dev/null || stat -c %Y "$1" 2>/dev/null) || b=0 ;; esac
  echo "${b:-0}"
  o=; { read -r o < "$1/owner"; } 2>/dev/null; echo "$o"
}
note() {
  [ -n "$rolldeck_now" ] || { stamp; rolldeck_now=$t; }
  printf '%s %s\n' "$rolldeck_now" "$2" >> "$1.history"
}
write() {
  if [ -n "$4" ]; then printf '%s\n' "$2" > "$1/owner"
  else printf '%s\n' "$2" > "$1/owner.tmp" && mv -f "$1/owner.tmp" "$1/owner"; fi &&
  printf '%s\n' "$3" > "$1/rollout" && : > "$1/beat"
}
ours() { r=; { read -r r < "$1/rollout"; } 2>/dev/null; [ -n "$r" ] && [ "$r" = "$2" ]; }
case $op in
take)
  l=$d/$1; [ -d "$d" ] || mkdir -p "$d" || exit 3
  case $$ in *[05]) if [ -f "$l.history" ] && [ "$(wc -l < "$l.history")" -gt 500 ]; then
    tail -n 250 "$l.history" > "$l.history.tmp" && mv -f "$l.history.tmp" "$l.history"
  fi ;; esac
  if mkdir "$l" 2>/dev/null; then write "$l" "$3" "$2" new || exit 3; note "$l" "$4"; echo TAKEN
  else held "$l"; fi ;;
takeover)
  l=$d/$1
  if mkdir "$l" 2>/dev/null || ours "$l" "$2"; then
    write "$l" "$4" "$3" || exit 3; note "$l" "$5"; echo TAKEN
  else held "$l"; fi ;;
read)
  l=$d/$1
  if [ -d "$l" ]; then held "$l"; else echo FREE; fi ;;
beat)
  r0=$1; shift; stamp
  for n in "$@"; do
    if ours "$d/$n" "$r0" && echo "$t" > "$d/$n/beat.tmp" && mv -f "$d/$n/beat.tmp" "$d/$n/beat"
    then echo "OK $n"; else echo "LOST $n"; fi
  done ;;
release)
  l=$d/$1
  if ours "$l" "$2" && mv "$l" "$l.gone.$$"; then
    rm -rf "$l.gone.$$"; note "$l" "$3"; echo RELEASED
  else echo NOTOURS; fi ;;
*) echo "rolldeck-lease: unknown operation $op" >&2; exit 2 ;;
esac
"""


# The folded form: the lease operation (its stderr joined to its stdout) in a subshell,
# then one marker line with this exec's random token and the operation's exit status;
# the command after it (the version read) runs next in the login shell, as it would
# alone. $1 token, $2 the console's time (the history line's stamp: no `date` run for
# it), then the operation's own arguments.
MARKER = "ROLLDECK-LEASE-END"
FOLDED = "m=$1; rolldeck_now=$2; shift 2\n(\n" + SCRIPT + ') 2>&1\necho "' + MARKER + ' $m $?"\n'
FOLD_MODES = ("shell",)  # `command` hosts: no known shell to chain in; separate execs

# The folded operation as a function the kept shell defines once, at its start
# (TransportOptions.shell_prelude): a call is one short line, where the script inline
# is ~2 KB the host parses each time, carried through a `printf` of its own. Take
# plus release, each with its version read, cost a host 9.6-9.8 ms of CPU this way
# against 12.6-13.3 ms inline (200 of each under the real eval loop, alternating).
FUNCTION = "rolldeck_lease_folded"
PRELUDE = FUNCTION + "() {\n" + FOLDED + "}\n"


class LeaseError(Exception):
    """A lease command failed (not a holder: the command itself)."""


class LeaseRefused(Exception):
    """The lease is held by another rollout (live, or stale without --break-lock)."""

    def __init__(self, detail: str, holder: LeaseRecord | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.holder = holder


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_name(service: str, host: str | None = None) -> str:
    """The remote directory's name: ``service`` (fleet lock) or ``service@host``."""

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:80]

    return safe(service) if host is None else f"{safe(service)}@{safe(host)}"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A held lease as read from a host. ``age``: seconds since its heartbeat, on the
    host's clock. ``torn``: the directory exists without an owner (being taken, or a
    crash between ``mkdir`` and the owner's write)."""

    service: str
    rollout_id: str
    operator: str
    user: str
    machine: str
    pid: int
    started: float
    age: float
    torn: bool = False

    @classmethod
    def parse(cls, lines: Sequence[str]) -> LeaseRecord:
        """From ``HELD``, the host's now, the heartbeat, the owner's JSON line."""
        if not lines or lines[0].strip() != "HELD" or len(lines) < 3:
            raise LeaseError(f"unexpected lease answer: {' | '.join(lines)[:200]!r}")
        try:
            now, beat = float(lines[1].strip()), float(lines[2].strip() or 0)
        except ValueError as exc:
            raise LeaseError(f"unexpected lease times: {lines[1:3]!r}") from exc
        age = max(0.0, now - beat) if beat > 0 else float("inf")
        raw = lines[3].strip() if len(lines) > 3 else ""
        try:
            data: dict[str, Any] = json.loads(raw) if raw else {}
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            data = {}
        if not data:
            return cls("?", "", "?", "?", "?", 0, 0.0, age, torn=True)
        try:
            return cls(
                service=str(data.get("service", "?")),
                rollout_id=str(data.get("rollout_id", "")),
                operator=str(data.get("operator", "?")),
                user=str(data.get("user", "?")),
                machine=str(data.get("machine", "?")),
                pid=int(data.get("pid", 0)),
                started=float(data.get("started", 0.0)),
                age=age,
            )
        except (TypeError, ValueError):
            return cls("?", "", "?", "?", "?", 0, 0.0, age, torn=True)

    def stale(
        self,
        stale_after: float,
        machine: str | None = None,
        alive: Callable[[int], bool] = pid_alive,
    ) -> bool:
        """No heartbeat for ``stale_after`` s, or its process is dead on this machine."""
        if self.age > stale_after:
            return True
        here = socket.gethostname() if machine is None else machine
        return not self.torn and self.machine == here and not alive(self.pid)

    def describe(self) -> str:
        if self.torn:
            return "an unfinished lease (no owner written)"
        since = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.started))
        return (
            f"rollout {self.rollout_id} (operator {self.operator}, {self.user}@{self.machine} "
            f"pid {self.pid}, since {since})"
        )

    def beat_text(self) -> str:
        return "never" if self.age == float("inf") else f"{self.age:.0f}s ago"

    def stale_since(self, now: float | None = None) -> str:
        """When its heartbeat stopped, on this machine's clock (the age is the host's
        own measure); the start of a lease that never beat; ``unknown`` for neither."""
        if self.age != float("inf"):
            at = (time.time() if now is None else now) - self.age
        elif self.started > 0:
            at = self.started
        else:
            return "unknown"
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True, slots=True)
class LeaseOptions:
    """Who takes the leases, and whether a stale one may be broken (and why)."""

    operator: str
    break_lock: bool = False
    reason: str = ""
    # The command that takes a stale lease over, named in the refusal with
    # ``--break-lock --reason TEXT`` (resume: ``rolldeck resume ID``, rollback:
    # ``rolldeck rollback ID``); empty: ``rolldeck run SPEC``.
    command: str = ""


def lease_mode(host: Host) -> str:
    """``rolldeck_lease`` of the host, else ``command`` for a host without a POSIX shell
    (``rolldeck_kill: signal``), else ``shell``."""
    value = host.vars.get("rolldeck_lease")
    if value is None:
        kill = str(host.vars.get("rolldeck_kill", "")).strip().lower()
        return "command" if kill == "signal" else "shell"
    mode = str(value).strip().lower()
    if mode not in MODES:
        raise LeaseError(f"rolldeck_lease must be one of {', '.join(MODES)}, not {value!r}")
    return mode


def remote_command(mode: str, op: str, directory: str, *args: str) -> str:
    """The command line for one lease operation; every value shell-quoted."""
    argv = shlex.join(("rolldeck-lease", op, directory, *args))
    if mode == "command":
        return argv
    return f"sh -c {shlex.quote('rolldeck_now=' + chr(10) + SCRIPT)} {argv}"


def folded_command(token: str, op: str, directory: str, *args: str, then: str) -> str:
    """One exec: the lease operation (POSIX ``sh``), a marker line carrying ``token`` and
    its exit status, then ``then`` run by the login shell exactly as it would run alone
    (its exit status is the exec's)."""
    argv = shlex.join(("rolldeck-lease", token, _now(), op, directory, *args))
    return f"sh -c {shlex.quote(FOLDED)} {argv}; {then}"


def folded_in_sh(token: str, op: str, directory: str, *args: str, then: str) -> str:
    """:func:`folded_command` for a shell that is POSIX ``sh`` already (the kept
    shell): the same script and arguments, without starting another ``sh`` for it."""
    argv = shlex.join((token, _now(), op, directory, *args))
    return f"set -- {argv}\n{FOLDED}{then}"


def folded_call(token: str, op: str, directory: str, *args: str, then: str) -> str:
    """:func:`folded_in_sh` for a kept shell that defines :data:`FUNCTION`: the same
    arguments to the same script, called by name."""
    argv = shlex.join((token, _now(), op, directory, *args))
    return f"{FUNCTION} {argv}; {then}"


def _now() -> str:
    """The console's clock, whole seconds: the stamp of a folded operation's history
    line (no ``date`` started on the host for it; ages are still the host's clock)."""
    return str(int(time.time()))


@dataclass(frozen=True, slots=True)
class Folded:
    """A folded exec split at its marker: the lease operation's answer lines (its
    stderr joined in) and exit status, and the result of the command after it."""

    lease: list[str]
    code: int | None
    then: RunResult


def split_folded(result: RunResult, token: str, op: str) -> Folded:
    """Split a folded exec's output at the marker line of ``token`` (a command's own
    output cannot forge it: the token is fresh and random for each exec). No marker:
    the lease part never finished (timeout, no ``sh``) or the output after it ran past
    the kept tail; LeaseError says which."""
    lines = result.stdout_tail
    mark = f"{MARKER} {token} "
    at = next((i for i, line in enumerate(lines) if line.startswith(mark)), None)
    if at is None:
        if result.status == "timeout":
            raise LeaseError(f"lease {op}: no answer in {result.duration:.0f}s")
        err = next((x for x in (*result.stderr_tail, *lines) if x.strip()), "")
        code = result.exit_code if result.exit_code is not None else result.signal
        raise LeaseError(
            _one_line(f"lease {op}: no answer (exit {code}){': ' + err if err else ''}")
        )
    word = lines[at][len(mark) :].strip()
    lease = [line for line in lines[:at] if line.strip()]
    then = replace(result, stdout_tail=lines[at + 1 :])
    return Folded(lease, int(word) if word.isdigit() else None, then)


def _one_line(text: str, limit: int = 300) -> str:
    return shorten(" ".join(text.split()), limit)


class Leases:
    """The leases one rollout holds: take, check, heartbeat, release."""

    def __init__(
        self,
        spec: RolloutSpec,
        hosts: Sequence[Host],
        options: LeaseOptions,
        rollout_id: str,
        transport: Transport,
        emit: Callable[[ev.Event], None],
        on_lost: Callable[[str, str], None],
    ) -> None:
        self.spec = spec
        self.hosts = list(hosts)
        self.options = options
        self.rollout_id = rollout_id
        self.transport = transport
        self.emit = emit
        self.on_lost = on_lost  # (host, detail): a lease we held is no longer ours
        self.stale_after = spec.lease.stale_after
        self.every = spec.lease.every
        self.machine = socket.gethostname()
        self.user = default_operator()
        self.pid = os.getpid()
        self.started = time.time()
        self.service_name = lease_name(spec.service)
        # host name -> (host, lease names held there)
        self._held: dict[str, tuple[Host, set[str]]] = {}
        # host name -> the version its current_version printed while its lease was held
        # (read in the exec that took the lease, or after it): no other rolldeck can
        # have changed it since, so the deploy's "previous" version needs no new read.
        self._seen: dict[str, str] = {}
        # (host name, lease name) -> when it was last written (taken or beaten;
        # monotonic): the heartbeat skips a host whose leases were all written less
        # than ``every`` ago (one beat a host per ``every``, none right after a take).
        self._fresh: dict[tuple[str, str], float] = {}
        self._beat_failed: set[str] = set()
        self._no_lease_said: set[str] = set()

    # -- the pieces ---------------------------------------------------------------------

    @property
    def lock_host(self) -> Host | None:
        if not self.hosts:
            return None
        name = self.spec.lock_host
        if name is None:
            return self.hosts[0]
        return next((h for h in self.hosts if h.name == name), None)

    def directory(self, host: Host) -> str:
        """``lease.path`` filled for ``host`` (raw: it goes out as one quoted argument)."""
        return render(self.spec.lease.path, build_context(self.spec, host, None), raw=True)

    def owner_json(self, kind: str, host: str) -> str:
        return json.dumps(
            {
                "service": self.spec.service,
                "rollout_id": self.rollout_id,
                "operator": self.options.operator,
                "user": self.user,
                "machine": self.machine,
                "pid": self.pid,
                "started": round(self.started, 3),
                "kind": kind,
                "host": host,
            }
        )

    def _who(self) -> str:
        return (
            f"rollout {self.rollout_id} operator {_one_line(self.options.operator, 80)} "
            f"{self.user}@{self.machine} pid {self.pid}"
        )

    async def _run(self, host: Host, conn: Connection, op: str, *args: str) -> list[str]:
        mode = lease_mode(host)
        command = remote_command(mode, op, self.directory(host), *args)
        result = await conn.run(command, timeout=LEASE_TIMEOUT)
        lines = [line for line in result.stdout_tail if line.strip()]
        if result.status == "timeout":
            raise LeaseError(f"lease {op}: no answer in {LEASE_TIMEOUT:g}s")
        if not result.ok or not lines:
            err = next((x for x in result.stderr_tail if x.strip()), "")
            code = result.exit_code if result.exit_code is not None else result.signal
            raise LeaseError(
                _one_line(f"lease {op} failed (exit {code}){': ' + err if err else ''}")
            )
        return lines

    async def _run_folded(
        self, host: Host, conn: Connection, then: str, timeout: float, op: str, *args: str
    ) -> Folded:
        """Lease ``op`` then ``then`` in one exec (LeaseError: no marker, see
        :func:`split_folded`); :meth:`_answer` judges the lease part, the caller
        ``then``."""
        token = secrets.token_hex(8)
        directory = self.directory(host)
        command = folded_command(token, op, directory, *args, then=then)
        # In the connection's kept shell (no exec channel of its own: the preflight's
        # shell is the one the monitor then polls in; the script runs in it, no `sh`
        # started for it); on an exec when it has none or it is busy. The version read
        # then runs under /bin/sh, not the login shell.
        shell = conn.persistent_shell()
        bound = LEASE_TIMEOUT + timeout
        if shell is None:
            result = await conn.run(command, timeout=bound)
        else:
            fold = folded_call if shell.defines(FUNCTION) else folded_in_sh
            inline = fold(token, op, directory, *args, then=then)
            result = await shell.run(inline, timeout=bound, alone=command)
        return split_folded(result, token, op)

    @staticmethod
    def _answer(folded: Folded, op: str) -> list[str]:
        """The lease part's answer lines; LeaseError when it failed."""
        if folded.code != 0 or not folded.lease:
            err = next((x for x in folded.lease if x.strip()), "")
            raise LeaseError(
                _one_line(f"lease {op} failed (exit {folded.code}){': ' + err if err else ''}")
            )
        return folded.lease

    def folds(self, host: Host) -> bool:
        """Whether this host's lease operations can share an exec with a command
        (a ``shell`` host; not ``command``, whose shell is unknown, nor ``none``)."""
        try:
            return lease_mode(host) in FOLD_MODES
        except LeaseError:
            return False

    def _enabled(self, host: Host) -> bool:
        if lease_mode(host) != "none":
            return True
        if host.name not in self._no_lease_said:
            self._no_lease_said.add(host.name)
            self.emit(
                ev.Notice(
                    message="rolldeck_lease: none: no lease held on this host", host=host.name
                )
            )
        return False

    def _take_args(self, name: str, kind: str, host: Host) -> tuple[str, ...]:
        owner = self.owner_json(kind, host.name)
        return (name, self.rollout_id, owner, f"taken by {self._who()}")

    async def _take(
        self,
        host: Host,
        conn: Connection,
        name: str,
        kind: str,
        answer: list[str] | None = None,
    ) -> None:
        """Take lease ``name`` on ``host``: free, ours (resume), or stale with
        --break-lock. ``answer``: the ``take`` already ran (folded), this is what it
        said. Raises LeaseRefused naming the holder."""
        owner = self.owner_json(kind, host.name)
        lines = answer
        if lines is None:
            lines = await self._run(host, conn, "take", *self._take_args(name, kind, host))
        if lines[0].strip() == "TAKEN":
            self._hold(host, name)
            return
        holder = LeaseRecord.parse(lines)
        what = "fleet lock" if kind == "service" else "lease"
        where = f"the {what} on {host.name}"
        if holder.rollout_id == self.rollout_id:
            history = f"re-taken by its own rollout ({self._who()})"
            expected = self.rollout_id
        elif holder.stale(self.stale_after, self.machine):
            if not self.options.break_lock:
                raise LeaseRefused(self._stale_refusal(where, holder), holder)
            reason = _one_line(self.options.reason or "no reason given", 200)
            history = f"broken by {self._who()}: reason: {reason}; was {holder.describe()}"
            expected = holder.rollout_id
        else:
            raise LeaseRefused(
                f"{where} is held by {holder.describe()}, heartbeat {holder.beat_text()}",
                holder,
            )
        lines = await self._run(
            host, conn, "takeover", name, expected, self.rollout_id, owner, history
        )
        if lines[0].strip() != "TAKEN":
            now = LeaseRecord.parse(lines)
            raise LeaseRefused(f"{where} was taken meanwhile by {now.describe()}", now)
        self._hold(host, name)
        if expected != self.rollout_id:
            self.emit(
                ev.Notice(
                    message=_one_line(
                        f"{self.options.operator} broke the stale {what} "
                        f"of {holder.describe()} (heartbeat {holder.beat_text()}); "
                        f"reason: {self.options.reason or 'no reason given'}",
                        400,
                    ),
                    host=host.name,
                )
            )

    def _stale_refusal(self, where: str, holder: LeaseRecord) -> str:
        """A stale lease's refusal: whose, stale since when, and the exact command
        that takes it over."""
        command = self.options.command or f"rolldeck run {shlex.quote(self.spec.path)}"
        # Who and how first, details last: a one-line view (headless) cuts the end.
        return (
            f"{where} is stale since {holder.stale_since()}, held by {holder.operator}; "
            f"{STALE_HINT}: {command} --break-lock --reason TEXT; held by "
            f"{holder.describe()}, last heartbeat {holder.beat_text()} (stale after "
            f"{self.stale_after:g}s)"
        )

    def _hold(self, host: Host, name: str) -> None:
        self._held.setdefault(host.name, (host, set()))[1].add(name)
        self._fresh[(host.name, name)] = time.monotonic()

    def _drop(self, host: str, name: str) -> None:
        """``name`` on ``host`` is no longer held by us (released, lost)."""
        held = self._held.get(host)
        if held is not None:
            held[1].discard(name)
        if name != self.service_name:
            self._seen.pop(host, None)

    def holds(self, host: Host) -> bool:
        """Whether this rollout holds ``host``'s own lease now."""
        held = self._held.get(host.name)
        return held is not None and lease_name(self.spec.service, host.name) in held[1]

    def saw_version(self, host: Host, version: str) -> None:
        """``host``'s current_version printed ``version`` while its lease was held."""
        if self.holds(host):
            self._seen[host.name] = version

    def version_under_lease(self, host: Host) -> str | None:
        """The version read while this lease has been held without a break, or None."""
        return self._seen.get(host.name) if self.holds(host) else None

    # -- what the engine calls ------------------------------------------------------

    async def lock_fleet(self) -> str | None:
        """Take the service's fleet lock on the lock host; the refusal, or None."""
        host = self.lock_host
        if host is None:
            names = ", ".join(h.name for h in self.hosts[:5])
            return (
                f"lock_host {self.spec.lock_host} is not among the targeted hosts ({names}); "
                "the fleet lock must live on a host this rollout reaches"
            )
        try:
            if not self._enabled(host):
                return None
            conn = await self.transport.connect(host)
            await self._take(host, conn, self.service_name, "service")
        except LeaseRefused as exc:
            return f"{self.spec.service} is locked on the fleet: {exc.detail}"
        except (LeaseError, TemplateError) as exc:
            return f"cannot take the fleet lock on {host.name} (lock_host): {exc}"
        except TransportError as exc:
            return (
                f"cannot take the fleet lock on {host.name} (lock_host): unreachable: "
                f"{exc.message}; name another host in the spec's lock_host"
            )
        return None

    async def take_at_preflight(
        self, host: Host, conn: Connection, then: str | None = None, timeout: float = 0.0
    ) -> tuple[str | None, RunResult | None]:
        """Preflight: take ``host``'s lease (free, ours, or stale with --break-lock), held
        from here until the host is done or the rollout ends. ``then`` (the version
        read, as the login user) runs in the same exec on a ``shell`` host, right after
        the take. Returns the problem (the holder named) or None, and ``then``'s
        result, or None when it did not run here (the caller runs it)."""
        name = lease_name(self.spec.service, host.name)
        try:
            if not self._enabled(host):
                return None, None
            if self.holds(host):
                return None, None
            if then is None or not self.folds(host):
                await self._take(host, conn, name, "host")
                return None, None
            args = self._take_args(name, "host", host)
            folded = await self._run_folded(host, conn, then, timeout, "take", *args)
            answer = self._answer(folded, "take")
            await self._take(host, conn, name, "host", answer=answer)
        except LeaseRefused as exc:
            return exc.detail, None
        except (LeaseError, TemplateError) as exc:
            return f"lease: {exc}", None
        return None, folded.then

    async def acquire(self, host: Host, conn: Connection) -> None:
        """Before the host's first step: take its lease (raises LeaseRefused, LeaseError)."""
        name = lease_name(self.spec.service, host.name)
        held = self._held.get(host.name)
        if held is not None and name in held[1]:
            return
        if not self._enabled(host):
            return
        try:
            await self._take(host, conn, name, "host")
        except TemplateError as exc:
            raise LeaseError(str(exc)) from exc

    async def release_then(
        self, host: Host, conn: Connection, then: str, timeout: float
    ) -> RunResult | None:
        """Release ``host``'s lease and run ``then`` (the "new" version read, as the login
        user) right after, in one exec. None: not folded here (no lease held, or not a
        ``shell`` host): the caller runs ``then`` and releases. A failed release is a
        notice (the lease goes stale); LeaseError: the exec's output could not be split,
        so ``then``'s result is unknown."""
        name = lease_name(self.spec.service, host.name)
        if not self.holds(host) or not self.folds(host):
            return None
        self._drop(host.name, name)  # a beat in flight must not report it lost
        note = f"released by {self._who()}"
        try:
            folded = await self._run_folded(
                host, conn, then, timeout, "release", name, self.rollout_id, note
            )
        except LeaseError as exc:
            self._not_released(host, str(exc))
            raise
        finally:
            held = self._held.get(host.name)
            if held is not None and not held[1]:
                self._held.pop(host.name, None)
        try:
            self._answer(folded, "release")
        except LeaseError as exc:  # the release's own failure: the read after it is sound
            self._not_released(host, str(exc))
        return folded.then

    def _not_released(self, host: Host, message: str) -> None:
        self.emit(
            ev.Notice(
                message=_one_line(
                    f"lease not released ({message}); it goes stale in {self.stale_after:g}s"
                ),
                host=host.name,
            )
        )

    async def release(self, host: Host, *, fleet: bool = False) -> None:
        """Release this host's lease (and, with ``fleet``, the fleet lock); never raises."""
        held = self._held.get(host.name)
        if held is None:
            return
        names = [lease_name(self.spec.service, host.name)]
        if fleet:
            names.append(self.service_name)
        for name in names:
            if name not in held[1]:
                continue
            self._drop(host.name, name)  # a beat in flight must not report it lost
            try:
                conn = await self.transport.connect(host)
                await self._run(
                    host, conn, "release", name, self.rollout_id, f"released by {self._who()}"
                )
            except (LeaseError, TransportError, TemplateError) as exc:
                message = exc.message if isinstance(exc, TransportError) else str(exc)
                self._not_released(host, message)
        if not held[1]:
            self._held.pop(host.name, None)

    async def release_all(self) -> None:
        """The rollout ended: every lease and the fleet lock (the latter last)."""
        lock = self.lock_host
        hosts = [h for h, _ in self._held.values() if lock is None or h.name != lock.name]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEASE_TIMEOUT * 2):
                async with asyncio.TaskGroup() as tg:
                    for host in hosts:
                        tg.create_task(self.release(host))
                if lock is not None:
                    await self.release(lock, fleet=True)

    async def keep(self) -> None:
        """Refresh every held lease's heartbeat each ``every`` seconds, one command per
        host for all its leases, until cancelled."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.beat_now(skip_fresh=True)
            except Exception:  # a heartbeat's surprise must not end the rollout
                log.exception("lease heartbeat")

    def _all_fresh(self, host: str, names: set[str], now: float) -> bool:
        return all(now - self._fresh.get((host, n), -1e18) < self.every for n in names)

    async def beat_now(self, *, skip_fresh: bool = False) -> None:
        """Rewrite the heartbeat of every held lease (``skip_fresh``: not on hosts whose
        leases were all written less than ``every`` ago: the next round beats them,
        still within ``2 * every``, a third of ``stale_after``)."""
        sem = asyncio.Semaphore(BEAT_CONCURRENCY)
        now = time.monotonic()
        skip_fresh = skip_fresh and 3 * self.every <= self.stale_after  # a tiny stale_after
        held = [
            (h, sorted(names))
            for h, names in self._held.values()
            if names and not (skip_fresh and self._all_fresh(h.name, names, now))
        ]

        async def one(host: Host, names: list[str]) -> None:
            async with sem:
                try:
                    conn = await self.transport.connect(host)
                    lines = await self._run(host, conn, "beat", self.rollout_id, *names)
                except (LeaseError, TransportError, TemplateError) as exc:
                    if host.name not in self._beat_failed:
                        self._beat_failed.add(host.name)
                        message = exc.message if isinstance(exc, TransportError) else str(exc)
                        self.emit(
                            ev.Notice(
                                message=_one_line(f"lease heartbeat failed: {message}"),
                                host=host.name,
                            )
                        )
                    return
            self._beat_failed.discard(host.name)
            for line in lines:
                word, _, name = line.strip().partition(" ")
                if word == "OK":
                    self._fresh[(host.name, name)] = time.monotonic()
                still = self._held.get(host.name)
                if word != "LOST" or still is None or name not in still[1]:
                    continue
                self._drop(host.name, name)
                kind = "fleet lock" if name == self.service_name else "lease"
                self.on_lost(
                    host.name,
                    f"the {kind} of {self.spec.service} on {host.name} is no longer this "
                    "rollout's (broken by another console?)",
                )

        async with asyncio.TaskGroup() as tg:
            for host, names in held:
                tg.create_task(one(host, names))

    @property
    def held(self) -> dict[str, frozenset[str]]:
        """Host -> the lease names held there (for tests and the console)."""
        return {name: frozenset(names) for name, (_, names) in self._held.items() if names}
