"""Local limits: the descriptor estimate, raising or refusing, the user name, and a
connect failing for a local cause (EMFILE) stopping the rollout instead of a host."""

from __future__ import annotations

import asyncio
import errno
import resource
import subprocess
import sys
import textwrap

import pytest

from console.runtime.limits import (
    FDS_BASE,
    LocalFailureGuard,
    descriptors_needed,
    local_cause,
)
from console.transport.base import HostUnreachable, TransportOptions
from console.transport.fake import FakeTransport
from inventory.model import Host


def hosts(n: int, **kw: object) -> list[Host]:
    return [Host(name=f"h{i}", address="10.0.0.1", **kw) for i in range(n)]  # type: ignore[arg-type]


def test_one_descriptor_per_ssh_host_plus_the_base() -> None:
    assert descriptors_needed(hosts(2000), max_handshakes=10) == FDS_BASE + 10 + 2000
    local = [Host(name="localhost", address="127.0.0.1")]
    assert descriptors_needed(local, max_handshakes=0) > FDS_BASE + 1  # pipes per command


def run_limited(soft: int, hard: int, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a child whose RLIMIT_NOFILE is (soft, hard) when it starts."""
    prelude = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from inventory.model import Host
        from console.runtime.limits import ensure_descriptors
        from console.core.hints import flag_hint
        hosts = [Host(name=f"h{{i}}", address="10.0.0.1") for i in range(2000)]
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )


HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD < 3000,
    reason=f"this machine's hard open-file limit ({HARD}) is below what 2,000 hosts need",
)
def test_soft_limit_raised_toward_the_hard_limit_as_far_as_needed() -> None:
    done = run_limited(
        1024,
        HARD,
        """
        print(ensure_descriptors(hosts))
        print(resource.getrlimit(resource.RLIMIT_NOFILE))
        """,
    )
    assert done.returncode == 0, done.stderr
    notice, limits = done.stdout.splitlines()
    assert notice.startswith("open-file limit raised from 1024 to ")
    soft, hard = eval(limits)  # a tuple printed by Python
    assert 2000 + FDS_BASE <= soft < 3000 and hard == HARD


def test_hard_limit_too_low_is_refused_naming_limit_need_and_fix() -> None:
    done = run_limited(
        1024,
        1024,
        """
        hint = flag_hint("run", "target fewer hosts at a time with {0}", "--targets")
        try:
            ensure_descriptors(hosts, fewer_hosts=hint)
        except Exception as e:
            print(type(e).__name__, e)
        """,
    )
    out = done.stdout
    assert out.startswith("InputError RLIMIT_NOFILE: 2000 hosts need about 2074 open files")
    assert "hard limit is 1024" in out and "ulimit -n 2074" in out and "--targets" in out


def test_a_limit_that_suffices_is_left_alone() -> None:
    done = run_limited(4096, 4096, "print(ensure_descriptors(hosts[:100]))")
    assert done.stdout.strip() == "None", done.stderr


def _emfile_unreachable() -> HostUnreachable:
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as exc:
            raise HostUnreachable("h1", f"cannot connect: {exc}") from None
    except HostUnreachable as wrapped:
        return wrapped


def test_local_causes_are_found_behind_from_none() -> None:
    cause = local_cause(_emfile_unreachable())
    assert cause is not None and "EMFILE" in cause and "not the hosts" in cause
    assert local_cause(HostUnreachable("h1", "connection refused")) is None


class _Failing(FakeTransport):
    async def connect(self, host: Host):  # type: ignore[no-untyped-def]
        raise _emfile_unreachable()


async def test_guard_stops_once_and_never_fails_the_host() -> None:
    stops: list[str] = []
    guard = LocalFailureGuard(_Failing(), TransportOptions(), stops.append)
    tasks = [asyncio.create_task(guard.connect(h)) for h in hosts(5)]
    await asyncio.sleep(0)  # let the connects start (no assertion on time)
    for _ in range(50):
        if stops and all(not t.done() for t in tasks):
            break
        await asyncio.sleep(0.01)
    assert len(stops) == 1 and "out of open files" in stops[0]
    assert not any(t.done() for t in tasks)  # held, waiting for the stop to cancel them
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


async def test_guard_passes_a_hosts_own_failure_through() -> None:
    class Refused(FakeTransport):
        async def connect(self, host: Host):  # type: ignore[no-untyped-def]
            raise HostUnreachable(host.name, "connection refused")

    stops: list[str] = []
    guard = LocalFailureGuard(Refused(), TransportOptions(), stops.append)
    with pytest.raises(HostUnreachable, match="refused"):
        await guard.connect(hosts(1)[0])
    assert stops == []
