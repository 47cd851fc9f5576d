"""Every bomb of issue 18 point 5 through the CLI, as a subprocess: exit 2, one
``file:line`` line, no traceback, quickly and in bounded memory (the child's own peak
RSS). The bounds are generous (a busy 2-core machine), never a benchmark.

Beside ``tests/test_bounded_inputs.py`` (spec merge keys and aliases, scenario
aliases through ``sim-fleet`` and ``drill``, the 50,000-deep scenario through
``sim-fleet``): the range bombs, the group var inherited by 3,000 hosts, merge keys
in an inventory and a scenario, the deep scenario through ``drill``, ``/dev/zero`` as
every kind of input. ``python -m tests.test_bombs_cli`` prints each one's time and
peak RSS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from console.core.errors import InputError
from inventory import load_inventory, select
from inventory.varload import MAX_VAR_VALUES_ENV, Sizer, check_expansion
from tests.test_bounded_inputs import (
    GOOD_INVENTORY,
    RSS_MB,
    SPEC_HEAD,
    WALL,
    assert_refused,
    laughs,
    merge_nest,
    run_bounded,
)

# A 38-byte INI inventory naming a million hosts.
RANGE_INI = "[web]\nweb-[000000:999999].example.com\n"
RANGE_YAML = "all:\n  hosts:\n    web-[000000:999999]:\n"


def group_bomb(hosts: int = 3000) -> str:
    """One group var of ~90,000 values (aliases, so a few hundred bytes) that every
    one of ``hosts`` hosts inherits: ~170 KB, 270 million values written out in full."""
    lines = ["all:", "  children:", "    web:", "      vars:"]
    lines.append("        l0: &l0 [" + ", ".join(["1"] * 30) + "]")
    lines.append("        l1: &l1 [" + ", ".join(["*l0"] * 30) + "]")
    lines.append("        big: [" + ", ".join(["*l1"] * 100) + "]")
    lines.append("      hosts:")
    lines += [f"        web-{i:04d}.example.com: {{ansible_host: 10.0.0.1}}" for i in range(hosts)]
    return "\n".join(lines) + "\n"


DEEP = "[" * 50_000 + "1" + "]" * 50_000


def fleet_args(work: Path, scenario: str) -> list[str]:
    return ["sim-fleet", "--dir", str(work / "fleet"), "--hosts", "2", "--scenario", scenario]


def drill_args(work: Path, scenario: str) -> list[str]:
    return ["drill", "--headless", "--hosts", "2", "--state-dir", str(work / "st"), scenario]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "inventory.yaml").write_text(GOOD_INVENTORY)
    return tmp_path


@pytest.mark.parametrize(("name", "text"), [("hosts.ini", RANGE_INI), ("hosts.yaml", RANGE_YAML)])
def test_range_bomb(work: Path, name: str, text: str) -> None:
    (work / name).write_text(text)
    assert len(text) <= 40
    assert_refused(["inventory", name, "--json"], work, file=f"{name}:", fragment="100,000")
    (work / "spec.yaml").write_text(SPEC_HEAD.replace("inventory.yaml", name))
    assert_refused(["check", "spec.yaml"], work, file=f"{name}:", fragment="100,000")


def test_group_var_inherited_by_3000_hosts_is_refused_by_inventory(work: Path) -> None:
    (work / "hosts.yaml").write_text(group_bomb())
    assert (work / "hosts.yaml").stat().st_size < 210_000
    for args in (["inventory", "hosts.yaml", "--json"], ["inventory", "hosts.yaml"]):
        last = assert_refused(args, work, file="hosts.yaml:7: big:", fragment="var values")
        assert "3,000 of the hosts inherit it" in last and "--targets" in last, last


def test_group_var_inherited_by_3000_hosts_costs_check_and_run_loading_nothing(
    work: Path,
) -> None:
    """Shared, not copied: what ``check`` (and ``run``, which loads the same way)
    does with it costs what was written; one host of it prints fine."""
    (work / "hosts.yaml").write_text(group_bomb())
    (work / "spec.yaml").write_text(SPEC_HEAD.replace("inventory.yaml", "hosts.yaml"))
    code, err, took, rss = run_bounded(["check", "spec.yaml"], work)
    assert code == 0, err[-2000:]
    assert took < WALL and rss < RSS_MB, (took, rss)
    args = ["inventory", "hosts.yaml", "--json", "--targets", "web-0007.example.com"]
    code, err, took, rss = run_bounded(args, work)
    assert code == 0, err[-2000:]
    assert took < WALL and rss < RSS_MB, (took, rss)


def test_merge_key_bomb_in_an_inventory(work: Path) -> None:
    inv = "hosts:\n  h1:\n    address: 127.0.0.1\n    vars:\n" + merge_nest(22, "      ")
    (work / "hosts.yaml").write_text(inv)
    assert len(inv) < 1500
    assert_refused(
        ["inventory", "hosts.yaml", "--json"], work, file="hosts.yaml:", fragment="alias expansion"
    )


def test_merge_key_bomb_in_a_scenario(work: Path) -> None:
    (work / "bomb.yaml").write_text("name: bomb\nrollout:\n  vars:\n" + merge_nest(22, "    "))
    for args in (fleet_args(work, "bomb.yaml"), drill_args(work, "bomb.yaml")):
        assert_refused(args, work, file="bomb.yaml:", fragment="alias expansion")
    assert not (work / "fleet" / "rollout.yaml").exists()


def test_deep_scenario_through_drill(work: Path) -> None:
    (work / "deep.yaml").write_text(f"name: deep\nrollout:\n  between_batches: {DEEP}\n")
    assert_refused(
        drill_args(work, "deep.yaml"), work, file="deep.yaml:3", fragment="nested too deeply"
    )


@pytest.mark.parametrize(
    ("args", "file", "fragment"),
    [
        (["inventory", "/dev/zero"], "/dev/zero", "larger than"),
        (["check", "/dev/zero"], "/dev/zero", "larger than"),
        # not a regular file: never opened as a scenario at all
        (["sim-fleet", "--dir", "fleet", "--scenario", "/dev/zero"], "", "scenario is larger than"),
        (["drill", "--headless", "--state-dir", "st", "/dev/zero"], "", "scenario is larger than"),
    ],
    ids=["inventory", "check", "sim-fleet", "drill"],
)
def test_dev_zero_everywhere(work: Path, args: list[str], file: str, fragment: str) -> None:
    assert_refused(args, work, file=file, fragment=fragment)


# -- the measure behind the refusal, in process -------------------------------------------


def test_sizer_counts_each_shared_value_once_and_expanded_per_host() -> None:
    leaf = [1, 2, 3]
    shared = {"a": leaf, "b": leaf}  # 1 + 2 keys + 2 * 4
    sizer = Sizer()
    assert sizer.size(shared) == 11
    assert sizer.size([shared, shared]) == 23
    cyclic: list[object] = [1]
    cyclic.append(cyclic)  # no loader builds one; it still ends
    assert sizer.size(cyclic) == 3


def test_the_limit_counts_only_the_hosts_written_and_can_be_raised(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (work / "hosts.yaml").write_text(group_bomb(hosts=50))
    inv = load_inventory(work / "hosts.yaml")
    assert len({id(h.vars["big"]) for h in inv.hosts.values()}) == 1  # one shared object
    monkeypatch.setenv(MAX_VAR_VALUES_ENV, "1000000")
    check_expansion(inv, select(inv, "web-000*"))  # 10 hosts: 930,000 values
    with pytest.raises(InputError) as refused:
        check_expansion(inv, select(inv, "all"))
    assert (refused.value.line, refused.value.field) == (7, "big")
    assert refused.value.file == str(work / "hosts.yaml")
    monkeypatch.setenv(MAX_VAR_VALUES_ENV, "5000000")
    check_expansion(inv, select(inv, "all"))
    monkeypatch.setenv(MAX_VAR_VALUES_ENV, "lots")
    with pytest.raises(InputError, match="positive integer"):
        check_expansion(inv, select(inv, "all"))


# -- measuring: python -m tests.test_bombs_cli ----------------------------------------------


def _measure() -> None:
    import tempfile

    lol = laughs

    cases: list[tuple[str, Callable[[Path], list[str]]]] = []

    def case(name: str) -> Callable[[Callable[[Path], list[str]]], None]:
        def add(fn: Callable[[Path], list[str]]) -> None:
            cases.append((name, fn))

        return add

    def write(work: Path, name: str, text: str) -> None:
        (work / name).write_text(text)

    case("INI range, inventory")(
        lambda w: (write(w, "r.ini", RANGE_INI), ["inventory", "r.ini"])[1]
    )
    case("spec merge keys x22, check")(
        lambda w: (
            write(w, "s.yaml", SPEC_HEAD + "vars:\n" + merge_nest(22)),
            ["check", "s.yaml"],
        )[1]
    )
    case("spec aliases, check")(
        lambda w: (write(w, "s.yaml", SPEC_HEAD + "preflight:\n" + lol()), ["check", "s.yaml"])[1]
    )
    case("inventory aliases, inventory --json")(
        lambda w: (
            write(w, "h.yaml", "hosts:\n  h1:\n    vars:\n      l:\n" + lol("      ")),
            ["inventory", "h.yaml", "--json"],
        )[1]
    )
    case("group var x 3000 hosts, inventory --json")(
        lambda w: (write(w, "g.yaml", group_bomb()), ["inventory", "g.yaml", "--json"])[1]
    )
    for key in ("batches", "between_batches"):
        text = f"name: b\nrollout:\n  {key}:\n" + lol("  ")
        case(f"scenario aliases in {key}, sim-fleet")(
            lambda w, t=text: (write(w, "b.yaml", t), fleet_args(w, "b.yaml"))[1]
        )
        case(f"scenario aliases in {key}, drill")(
            lambda w, t=text: (write(w, "b.yaml", t), drill_args(w, "b.yaml"))[1]
        )
    deep = f"name: d\nrollout:\n  batches: {DEEP}\n"
    case("50,000-deep scenario, sim-fleet")(
        lambda w: (write(w, "d.yaml", deep), fleet_args(w, "d.yaml"))[1]
    )
    case("50,000-deep scenario, drill")(
        lambda w: (write(w, "d.yaml", deep), drill_args(w, "d.yaml"))[1]
    )
    case("check /dev/zero")(lambda w: ["check", "/dev/zero"])
    for name, make in cases:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            write(work, "inventory.yaml", GOOD_INVENTORY)
            code, _err, took, rss = run_bounded(make(work), work)
            print(f"{name:45} exit {code}  {took:5.2f} s  {rss:6.1f} MB", flush=True)


if __name__ == "__main__":
    sys.exit(_measure())
