"""The session is the one place a rollout's inputs become an engine: run, demo, drill,
resume and the bench scripts all build through it, the journal header is written
once, and the lock's story (a stale lock broken, or taken over) reaches the journal."""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.clock import SYSTEM, ManualClock
from console.core.errors import InputError
from console.core.events import Outcome
from console.plan import make_plan
from console.runtime.rollout import Rollout, load_rollout
from console.runtime.session import build_engine, create_journal
from console.store.journal import read_journal
from console.store.lock import LockInfo, RolloutLock
from console.subcommands.check import analyse
from console.transport import TransportOptions
from console.transport.fake import FakeTransport, VersionedFleet
from tests.test_engine_helpers import hosts, spec_from

ROOT = Path(__file__).resolve().parent.parent

INVENTORY = """\
groups:
  web: {hosts: [web-01, web-02, web-03]}
  db: {hosts: [db-01]}
hosts:
  web-01: {address: 10.0.0.1}
  web-02: {address: 10.0.0.2}
  web-03: {address: 10.0.0.3}
  db-01: {address: 10.0.0.9}
"""


def files(tmp: Path, *, inventory: str | None = "inventory.yaml") -> Path:
    """A spec (targets: web, reverse order) and its inventory on disk."""
    (tmp / "inventory.yaml").write_text(INVENTORY)
    text = spec_from("batches: [1, 2]\ntargets: web\norder: reverse_sorted\n").text
    if inventory is not None:
        text += f"inventory: {inventory}\n"
    path = tmp / "rollout.yaml"
    path.write_text(text)
    return path


def a_rollout(n: int = 3) -> Rollout:
    spec = spec_from("batches: [1, 2]\n")
    hs = hosts(n)
    return Rollout(spec, hs, make_plan([h.name for h in hs], spec.batches), "inv.yaml")


def fake() -> FakeTransport:
    transport = FakeTransport()
    transport.handler(VersionedFleet(default="1.0"))
    return transport


# -- loading ---------------------------------------------------------------------------


def test_load_rollout_selects_the_targets_in_plan_order(tmp_path: Path) -> None:
    rollout = load_rollout(str(files(tmp_path)))
    assert [h.name for h in rollout.hosts] == list(rollout.plan.hosts)
    assert set(rollout.plan.hosts) == {"web-01", "web-02", "web-03"}
    assert rollout.inventory_path.endswith("inventory.yaml") and rollout.inventory_format
    # check validates on top of the very same load
    report = analyse(str(tmp_path / "rollout.yaml"))
    assert report.rollout == rollout


def test_load_rollout_names_the_field_to_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_rollout(str(files(tmp_path, inventory=None)))
    assert err.value.field == "inventory"
    with pytest.raises(InputError) as err:
        load_rollout(str(files(tmp_path, inventory="missing.yaml")))
    assert "does not exist" in str(err.value) and err.value.field == "inventory"
    with pytest.raises(InputError) as err:
        load_rollout(str(files(tmp_path)), targets="nothing-matches-*")
    assert err.value.field == "--targets"


# -- the journal -----------------------------------------------------------------------


async def test_journal_header_says_who_ran_what_from_which_files(tmp_path: Path) -> None:
    rollout = load_rollout(str(files(tmp_path)))
    journal = create_journal(
        tmp_path, "shop-1", rollout, "carol", {"demo": {"scenario": "demo", "seed": 3}}
    )
    await journal.close()
    head = json.loads(journal.path.read_text().splitlines()[0])
    assert head["who"] == "carol" and head["service"] == "shop" and head["version"] == "2.0"
    assert head["spec_hash"].startswith("sha256:") and head["pid"] == os.getpid()
    assert head["spec_path"] == str(tmp_path / "rollout.yaml")
    assert head["inventory_path"] == str(tmp_path / "inventory.yaml")
    assert os.path.isabs(head["spec_path"]) and os.path.isabs(head["inventory_path"])
    assert head["demo"] == {"scenario": "demo", "seed": 3}


# -- the engine ------------------------------------------------------------------------


def test_engine_gets_what_the_session_was_given() -> None:
    transport = fake()
    engine = build_engine(
        a_rollout(),
        operator="dave",
        journal=None,
        rollout_id="shop-7",
        transport=transport,
        allow_unreachable=True,
        exit_when_paused=True,
    )
    assert engine.transport is transport and engine.rollout_id == "shop-7"
    assert engine.operator == "dave" and engine.allow_unreachable and engine.exit_when_paused
    assert engine.inventory_path == "inv.yaml"


def test_the_engine_keeps_the_clock_it_is_given() -> None:
    """Tests step a manual clock through deadlines and bakes instead of sleeping."""
    clock = ManualClock()
    assert build_engine(a_rollout(), operator="t", journal=None, clock=clock).clock is clock
    assert build_engine(a_rollout(), operator="t", journal=None).clock is SYSTEM


def test_without_a_transport_one_is_sized_for_every_host() -> None:
    """The monitors keep every host's connection open: the cap must hold them all."""
    many = build_engine(a_rollout(300), operator="t", journal=None)
    assert many.transport.options.max_connections >= 308  # type: ignore[attr-defined]
    mine = TransportOptions(ssh_config=[], max_connections=50)
    given = build_engine(a_rollout(3), operator="t", journal=None, options=mine)
    assert given.transport.options is mine  # type: ignore[attr-defined]


def _lock(tmp: Path, broken_id: str | None) -> RolloutLock:
    info = LockInfo(os.getpid(), "carol", "here", time.time(), "mine", "shop", "inv.yaml")
    broken = None
    if broken_id is not None:
        broken = LockInfo(1, "bob", "gone", time.time() - 900, broken_id, "shop", "inv.yaml")
    return RolloutLock(tmp / "shop.lock", info, broken)


async def notices_of(tmp: Path, rollout_id: str, **kw: object) -> list[str]:
    """Run a small rollout built by the session; the notices its journal holds."""
    journal = create_journal(tmp, rollout_id, a_rollout(), "carol")
    engine = build_engine(
        a_rollout(),
        operator="carol",
        journal=journal,
        rollout_id=rollout_id,
        transport=fake(),
        monitors=False,
        exit_when_paused=True,
        **kw,  # type: ignore[arg-type]
    )
    assert await engine.run() == Outcome.SUCCEEDED
    return [e.message for e in read_journal(journal.path) if isinstance(e, ev.Notice)]


async def test_notices_reach_the_journal_lock_first_then_in_order(tmp_path: Path) -> None:
    notices = await notices_of(
        tmp_path,
        "shop-new",
        lock=_lock(tmp_path, "shop-old"),
        lock_reason="INC-9",
        notices=["first", "second"],
    )
    assert notices[0].startswith("carol broke the stale lock of rollout shop-old")
    assert notices[0].endswith("; reason: INC-9")
    assert notices[1:3] == ["first", "second"]


async def test_a_lock_of_the_same_rollout_is_taken_over_not_broken(tmp_path: Path) -> None:
    """resume: the stale lock is the rollout's own (its console died)."""
    notices = await notices_of(tmp_path, "shop-1", lock=_lock(tmp_path, "shop-1"))
    assert notices[0].startswith("carol took over its own stale lock of rollout shop-1")
    assert notices[0].endswith("; no reason given")


@pytest.mark.parametrize("broken", [False, True])
async def test_a_lock_that_broke_nothing_says_nothing(tmp_path: Path, broken: bool) -> None:
    lock = _lock(tmp_path, None) if broken else None
    notices = await notices_of(tmp_path, "shop-2", lock=lock)
    assert not [m for m in notices if "lock" in m]


# -- one place -------------------------------------------------------------------------


def _engine_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "Engine")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "Engine")
        )
    ]


def test_the_session_is_the_only_place_that_builds_an_engine() -> None:
    """run, demo, drill, resume and the bench scripts: a new engine keyword (a restore
    point, a clock) is a change to one call."""
    where = []
    for path in sorted([*(ROOT / "console").rglob("*.py"), *(ROOT / "bench").glob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        where += [f"{rel}:{line}" for line in _engine_calls(path)]
    (line,) = _engine_calls(ROOT / "console/runtime/session.py")
    assert where == [f"console/runtime/session.py:{line}"]
