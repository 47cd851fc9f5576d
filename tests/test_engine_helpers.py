"""Shared helpers for the engine tests (no tests here): specs from YAML, hosts, a run
harness that records every event and can issue commands when an event shows up."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.plan import make_plan
from console.spec import RolloutSpec, parse_spec
from console.store.journal import Journal
from console.transport.fake import FakeTransport, VersionedFleet
from inventory.model import Host

BASE = """
service: shop
version: "2.0"
batches: [1, 2]
max_parallel: 5
max_failures: 0
on_failure: pause
between_batches: auto
current_version: version
steps:
  - {name: install, run: "install {version}", timeout: 5s}
  - {name: activate, run: "activate {version}", timeout: 5s}
health:
  run: check
  every: 0.01s
  healthy_after: 2
  deadline: 1s
rollback:
  steps:
    - {name: restore, run: "activate {previous_version}", timeout: 5s}
"""


def spec_from(extra: str = "", base: str = BASE) -> RolloutSpec:
    """The base spec with top-level keys of ``extra`` replacing its own."""
    lines = textwrap.dedent(base).strip("\n").splitlines()
    extra = textwrap.dedent(extra).strip("\n")
    keys = {ln.split(":", 1)[0] for ln in extra.splitlines() if ln and not ln[0].isspace()}
    kept: list[str] = []
    skipping = False
    for ln in lines:
        if ln and not ln[0].isspace():
            skipping = ln.split(":", 1)[0] in keys
        if not skipping:
            kept.append(ln)
    return parse_spec("\n".join(kept) + "\n" + extra + "\n", "spec.yaml")


def hosts(n: int, **vars: object) -> list[Host]:
    return [Host(name=f"h{i:02d}", address=f"10.0.0.{i}", vars=dict(vars)) for i in range(1, n + 1)]


@dataclass
class Run:
    engine: Engine
    fake: FakeTransport
    fleet: VersionedFleet
    events: list[Event] = field(default_factory=list)
    outcome: Outcome | None = None

    def kinds(self, cls: type[Event]) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def states(self, host: str) -> list[HostState]:
        return [e.state for e in self.kinds(ev.HostStateChanged) if e.host == host]

    def final(self, host: str) -> HostState:
        return self.engine.recs[host].state

    def commands(self, host: str) -> list[str]:
        return self.fake.commands(host)

    def deploy_commands(self, host: str) -> list[str]:
        return [c for c in self.fake.commands(host) if c.split()[0] in ("install", "activate")]


def make_engine(
    spec: RolloutSpec,
    n: int = 5,
    *,
    fake: FakeTransport | None = None,
    journal: Journal | None = None,
    host_list: list[Host] | None = None,
    **kw: object,
) -> Run:
    fake = fake or FakeTransport()
    fleet = VersionedFleet(default="1.0")
    fake.handler(fleet)
    hs = host_list or hosts(n)
    plan = make_plan([h.name for h in hs], spec.batches)
    kw.setdefault("monitors", False)
    engine = Engine(spec, hs, plan, fake, journal=journal, operator="tester", **kw)  # type: ignore[arg-type]
    return Run(engine, fake, fleet)


async def run_engine(
    run: Run,
    react: Callable[[Event, Run], None] | None = None,
    timeout: float = 20.0,
) -> Run:
    """Run to the end, recording events; ``react`` sees each event as it is published
    (after the journal has it) and may issue commands."""
    sub = run.engine.bus.subscribe()

    async def consume() -> None:
        async for batch in sub.batches():
            for event in batch:
                run.events.append(event)
                if react is not None:
                    react(event, run)

    async with asyncio.timeout(timeout):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(consume())
            run.outcome = await run.engine.run()
    return run


def journal_in(tmp: Path, rollout_id: str = "r1") -> Journal:
    return Journal.create(tmp, rollout_id, {"who": "tester"})
