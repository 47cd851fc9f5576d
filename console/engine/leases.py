"""Leases on the fleet itself: no two rollouts touch one host, or run one service, at once.

The local lock (:mod:`console.store.lock`) only sees rollouts started from the same
state directory and inventory path. Two laptops, two accounts on a bastion or two
checkouts of the inventory do not share it; the hosts do. So, as Kamal and Deployer
do, the lock also lives on the servers:

* **the fleet lock** of a service on its ``lock_host`` (the spec's, default the plan's
  first host), taken at the start of the preflight, before any host is checked, and
  held until the rollout ends: a second console is refused before it touches a host;
* **a host lease** on every host rolldeck changes, taken before the host's first step
  (deploy or rollback) and released when that host is done, failed or rolled back,
  and at the end of the rollout (success, failure, abort); the preflight reads every
  host's lease first and names the holder of one held by another rollout.

On a host, a lease is a directory ``<lease.path>/<name>`` made with ``mkdir`` (atomic:
exactly one of two racing consoles creates it) holding ``owner`` (one JSON line:
service, rollout, operator, Unix user, machine, pid, start time), ``rollout`` (its id)
and ``beat`` (the host's own ``date +%s``, rewritten every ``lease.every`` seconds, so
the age is measured on one clock, the host's). ``<name>.history`` beside it keeps one
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
The heartbeat of every held lease of a host is one command per interval for that host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from console.core import events as ev
from console.core.commands import default_operator
from console.core.text import shorten
from console.spec.model import RolloutSpec
from console.templating import TemplateError, build_context, render
from console.transport.base import Connection, Transport, TransportError
from inventory.model import Host

log = logging.getLogger(__name__)
LEASE_TIMEOUT = 15.0  # one lease command on one host
BEAT_CONCURRENCY = 32  # hosts refreshed at once
HISTORY_KEEP = 500  # lines of a lease's history kept on the host (trimmed on take)
MODES = ("shell", "command", "none")
STALE_HINT = "--break-lock --reason TEXT takes it over"

# $1 op, $2 lease directory, then the op's arguments. Prints one status word first.
SCRIPT = r"""umask 077
op=$1; d=$2; shift 2
case $d in "~/"*) d=$HOME/${d#"~/"};; esac
now() { date +%s; }
held() {
  echo HELD; now
  cat "$1/beat" 2>/dev/null || stat -c %Y "$1" 2>/dev/null || echo 0
  cat "$1/owner" 2>/dev/null || echo
}
note() { printf '%s %s\n' "$(now)" "$2" >> "$1.history"; }
write() {
  printf '%s\n' "$2" > "$1/owner.tmp" && mv -f "$1/owner.tmp" "$1/owner" &&
  printf '%s\n' "$3" > "$1/rollout" && now > "$1/beat"
}
ours() { [ "$(cat "$1/rollout" 2>/dev/null)" = "$2" ]; }
case $op in
take)
  l=$d/$1; mkdir -p "$d" || exit 3
  if [ -f "$l.history" ] && [ "$(wc -l < "$l.history")" -gt 500 ]; then
    tail -n 250 "$l.history" > "$l.history.tmp" && mv -f "$l.history.tmp" "$l.history"
  fi
  if mkdir "$l" 2>/dev/null; then write "$l" "$3" "$2" || exit 3; note "$l" "$4"; echo TAKEN
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
  r=$1; shift
  for n in "$@"; do
    if ours "$d/$n" "$r" && now > "$d/$n/beat.tmp" && mv -f "$d/$n/beat.tmp" "$d/$n/beat"
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
    # ``--break-lock --reason TEXT`` (resume: ``rolldeck resume ID``); empty: ``rolldeck
    # run SPEC``.
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
    argv = " ".join(shlex.quote(a) for a in ("rolldeck-lease", op, directory, *args))
    if mode == "command":
        return argv
    return f"sh -c {shlex.quote(SCRIPT)} {argv}"


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

    async def _take(self, host: Host, conn: Connection, name: str, kind: str) -> None:
        """Take lease ``name`` on ``host``: free, ours (resume), or stale with
        --break-lock. Raises LeaseRefused naming the holder."""
        owner = self.owner_json(kind, host.name)
        lines = await self._run(
            host, conn, "take", name, self.rollout_id, owner, f"taken by {self._who()}"
        )
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

    async def check(self, host: Host, conn: Connection) -> str | None:
        """Preflight: is ``host``'s lease free (or ours, or breakable)? The problem."""
        try:
            if not self._enabled(host):
                return None
            lines = await self._run(host, conn, "read", lease_name(self.spec.service, host.name))
        except (LeaseError, TemplateError) as exc:
            return f"lease: {exc}"
        if lines[0].strip() == "FREE":
            return None
        try:
            holder = LeaseRecord.parse(lines)
        except LeaseError as exc:
            return f"lease: {exc}"
        if holder.rollout_id == self.rollout_id:
            return None
        if holder.stale(self.stale_after, self.machine):
            if self.options.break_lock:
                return None  # taken over before its first step, and journaled then
            return self._stale_refusal("the lease", holder)
        return f"lease held by {holder.describe()}, heartbeat {holder.beat_text()}"

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
            held[1].discard(name)  # a beat in flight must not report it lost
            try:
                conn = await self.transport.connect(host)
                await self._run(
                    host, conn, "release", name, self.rollout_id, f"released by {self._who()}"
                )
            except (LeaseError, TransportError, TemplateError) as exc:
                message = exc.message if isinstance(exc, TransportError) else str(exc)
                self.emit(
                    ev.Notice(
                        message=_one_line(
                            f"lease not released ({message}); it goes stale in "
                            f"{self.stale_after:g}s"
                        ),
                        host=host.name,
                    )
                )
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
                await self.beat_now()
            except Exception:  # a heartbeat's surprise must not end the rollout
                log.exception("lease heartbeat")

    async def beat_now(self) -> None:
        sem = asyncio.Semaphore(BEAT_CONCURRENCY)
        held = [(h, sorted(names)) for h, names in self._held.values() if names]

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
                still = self._held.get(host.name)
                if word != "LOST" or still is None or name not in still[1]:
                    continue
                still[1].discard(name)
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
