"""This machine's limits, checked before any host is touched; local causes stay local.

A rollout holds one SSH connection per targeted host for its whole length (the
monitors poll over it), and each connection is one socket: measured against real
OpenSSH, 50 hosts with a command, a kept-open shell and a log stream each cost 50
descriptors (tests/test_local_limits_sshd.py counts /proc/self/fd). Channels (steps,
polls, log tails) ride inside the socket. A host run locally (``localhost``) costs
pipes per running command instead.

- :func:`ensure_descriptors` raises the soft ``RLIMIT_NOFILE`` toward the hard limit
  as far as the rollout needs (never lowers it), and when the hard limit is below the
  need refuses with exit 2, naming the limit, the need and the fix. Without this, 2,000
  hosts under the usual soft limit of 1,024 failed preflight one by one with "Too many
  open files" and were reported unreachable.
- :func:`local_username` is the user name SSH takes from this machine (asyncssh asks
  ``getpass.getuser()`` for every connection, even with a ``User`` set): with USER and
  LOGNAME unset and a uid without a passwd entry, every host failed with "Unknown
  local username"; now the run is refused once, naming the local cause, as OpenSSH's
  ``ssh`` refuses ("No user exists for uid").
- :class:`LocalFailureGuard` wraps the transport the session builds: a connect that
  fails for a local reason (EMFILE, ENFILE, no local user name) is not a host's
  failure: the rollout is stopped once with the local reason, and the hosts waiting
  to connect are never reported unreachable.
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import math
import os
import resource
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from console.core.errors import InputError
from console.core.hints import FlagHint
from console.transport import is_local
from console.transport.base import (
    Connection,
    HostUnreachable,
    Transport,
    TransportError,
    TransportOptions,
)
from inventory.model import Host

if TYPE_CHECKING:
    from console.engine import Engine

FDS_PER_SSH_HOST = 1  # one socket; channels are inside it (measured, see the module doc)
FDS_PER_LOCAL_HOST = 12  # a step, a kept-open shell and a log tail: 3 pipes + a pidfd each
FDS_BASE = 64  # the interpreter, journal, lock, attach socket, event loops, the console
HEADROOM = 1.25  # reconnects, attach clients and files opened while hosts are connected
LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
HOLD = 30.0  # seconds a connect waits for the stop it asked for before it gives up


def descriptors_needed(hosts: Sequence[Host], *, max_handshakes: int = 10) -> int:
    """Open files a rollout over ``hosts`` holds at its peak: every host connected at
    once (the monitors keep them), plus handshakes in flight (each reads known_hosts)."""
    local = sum(1 for host in hosts if is_local(host))
    remote = len(hosts) - local
    return FDS_BASE + max_handshakes + remote * FDS_PER_SSH_HOST + local * FDS_PER_LOCAL_HOST


def ensure_descriptors(
    hosts: Sequence[Host],
    *,
    max_handshakes: int = 10,
    fewer_hosts: FlagHint | None = None,
) -> str | None:
    """Make room for ``hosts``' descriptors before connecting to any of them.

    Returns a notice when the soft limit was raised (None when it already sufficed);
    raises :class:`InputError` when even the hard limit is too low. ``fewer_hosts``:
    the command's own way to target fewer hosts, named in the refusal.
    """
    need = descriptors_needed(hosts, max_handshakes=max_handshakes)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _unlimited(soft) or soft >= need:
        return None
    if not _unlimited(hard) and hard < need:
        fix = f"raise it (`ulimit -n {need}` as root, LimitNOFILE={need} in a systemd unit)"
        if fewer_hosts is not None:
            fix += f", or {fewer_hosts.text()}"
        raise InputError(
            f"{len(hosts)} hosts need about {need} open files (one connection each, kept "
            f"open for the monitors, plus {need - len(hosts)} for rolldeck) but the hard "
            f"limit is {hard}: {fix}; no host was contacted",
            field="RLIMIT_NOFILE",
        )
    wanted = math.ceil(need * HEADROOM)
    target = wanted if _unlimited(hard) else min(hard, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{len(hosts)} hosts need about {need} open files; the soft limit is {soft} "
            f"and raising it to {target} failed ({exc}): run `ulimit -n {need}` first",
            field="RLIMIT_NOFILE",
        ) from None
    return f"open-file limit raised from {soft} to {target} for {len(hosts)} hosts (need {need})"


def _unlimited(value: int) -> bool:
    return value == resource.RLIM_INFINITY


def local_username() -> str:
    """This machine's user name for SSH, as asyncssh will take it; InputError when
    there is none (no USER, LOGNAME, LNAME or USERNAME, and no passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        uid = os.getuid()
        raise InputError(
            f"no local user name: uid {uid} has no passwd entry and none of LOGNAME, USER, "
            "LNAME, USERNAME is set, and SSH needs one (OpenSSH refuses too): set "
            "USER=<your login name> (remote logins still use each host's ansible_user or "
            "the ssh config's User) or add the uid to /etc/passwd; no host was contacted",
            field="USER",
        ) from None


def check_local(
    hosts: Sequence[Host], *, max_handshakes: int = 10, fewer_hosts: FlagHint | None = None
) -> list[str]:
    """Every local precondition of a rollout over ``hosts``, before any host is
    touched; the notices to journal (a raised limit). Raises InputError (exit 2)."""
    if any(not is_local(host) for host in hosts):
        local_username()
    raised = ensure_descriptors(hosts, max_handshakes=max_handshakes, fewer_hosts=fewer_hosts)
    return [raised] if raised else []


def local_cause(exc: BaseException) -> str | None:
    """The local reason behind a failed connect (its causes and contexts walked), or
    None when the failure is the host's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in LOCAL_ERRNOS:
            name = errno.errorcode.get(current.errno or 0, "")
            return (
                f"this machine ran out of open files ({name}: {os.strerror(current.errno or 0)}"
                f", soft limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}): a local "
                "limit, not the hosts; raise `ulimit -n` and resume"
            )
        if isinstance(current, ValueError) and "Unknown local username" in str(current):
            return (
                "no local user name (USER and LOGNAME unset, uid without a passwd entry): "
                "a local cause, not the hosts; set USER and resume"
            )
        current = current.__cause__ or current.__context__
    return None


def stop_for_local_cause(engine: Engine, reason: str) -> None:
    """Stop ``engine`` for a local cause: abort while no host has changed (nothing to
    resume: fix the cause and run again), pause once hosts have (resumable)."""
    changed = any(rec.changed for rec in engine.recs.values())
    engine.policy("pause" if changed else "abort", f"local: {reason}")


class LocalFailureGuard:
    """A :class:`Transport` whose connects that fail for a local reason stop the
    rollout once (``on_local_failure(reason)``) instead of failing the host.

    The connect that met the local cause, and every connect after it, waits (at most
    :data:`HOLD` seconds) for the stop to cancel it: a host is never reported
    unreachable for this machine's fault. Should nothing cancel it, it fails with a
    reason that says the host was not tried and why.
    """

    def __init__(
        self,
        inner: Transport,
        options: TransportOptions,
        on_local_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.options = options  # what the session sized the wrapped transport with
        self.on_local_failure = on_local_failure
        self.tripped: str | None = None

    @property
    def open_connections(self) -> int:
        return self.inner.open_connections

    @property
    def accepted_keys(self) -> Sequence[tuple[str, str]]:
        return self.inner.accepted_keys

    async def connect(self, host: Host) -> Connection:
        if self.tripped is not None:
            await self._held(host)
        try:
            return await self.inner.connect(host)
        except TransportError as exc:
            cause = local_cause(exc)
            if cause is None:
                raise
            if self.tripped is None:
                self.tripped = cause
                if self.on_local_failure is not None:
                    self.on_local_failure(cause)
            await self._held(host)

    async def _held(self, host: Host) -> NoReturn:
        await asyncio.sleep(HOLD)  # the stop cancels this task (preflight, a host's work)
        raise HostUnreachable(host.name, f"not tried: {self.tripped}")

    async def close_host(self, name: str) -> None:
        await self.inner.close_host(name)

    async def close(self) -> None:
        await self.inner.close()
