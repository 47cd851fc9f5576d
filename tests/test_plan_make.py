"""The batch planner's rules, examples first, then properties."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.plan import (
    Plan,
    batch_size,
    describe_budget,
    make_plan,
    natural_key,
    order_hosts,
    ordinal,
    replan,
)
from console.spec import Budget, parse_spec


def names(n: int, prefix: str = "web-") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("n", "batches", "sizes"),
    [
        (40, [1, "10%", "25%", "100%"], (1, 4, 10, 25)),
        (40, [1, "25%"], (1, 10, 10, 10, 9)),
        (41, ["10%"], (5,) * 8 + (1,)),  # 4.1 rounds up to 5
        (40, ["1%"], (1,) * 40),  # at least 1
        (10, ["30%"], (3, 3, 3, 1)),  # exact, though 0.3 * 10 is not 3 in floats
        (10, [100], (10,)),  # larger than the hosts left: takes the rest
        (10, [3, 100, 1], (3, 7)),  # sizes after the last host are unused
        (5, [2], (2, 2, 1)),  # one fixed size
        (5, ["100%"], (5,)),
        (1, [1, "10%", "50%"], (1,)),
        (0, [1, "10%"], ()),
        (8, ["12.5%"], (1,) * 8),
        (200, [1, 1, "5%", "50%"], (1, 1, 10, 100, 88)),
    ],
)
def test_sizes(n: int, batches: list[int | str], sizes: tuple[int, ...]) -> None:
    plan = make_plan(names(n), batches)
    assert plan.sizes == sizes
    assert plan.hosts == tuple(names(n))


def test_plan_helpers() -> None:
    plan = make_plan(names(15), [1, "10%", "100%"])
    assert plan.batches == (("web-01",), ("web-02", "web-03"), tuple(names(15)[3:]))
    assert plan.total_hosts == 15
    assert len(plan) == 3
    assert plan.batch_of("web-01") == 0
    assert plan.batch_of("web-03") == 1
    assert plan.batch_of("web-15") == 2
    assert plan.hosts_through(1) == 3
    with pytest.raises(KeyError):
        plan.batch_of("web-99")


def test_plan_rejects_duplicates_and_empty_batches() -> None:
    with pytest.raises(ValueError, match="planned twice"):
        Plan((("a",), ("a",)))
    with pytest.raises(ValueError, match="empty"):
        Plan((("a",), ()))
    with pytest.raises(ValueError, match="targeted twice"):
        make_plan(["a", "a"], [1])
    with pytest.raises(ValueError, match="at least one size"):
        make_plan(["a"], [])


@pytest.mark.parametrize("bad", [0, -1, True, "0x%", "abc"])
def test_bad_batch_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        batch_size(bad, 10)  # type: ignore[arg-type]


def test_orders() -> None:
    hosts = ["web-10", "web-2", "db-1", "web-1"]
    assert order_hosts(hosts, "inventory") == hosts
    assert order_hosts(hosts, "sorted") == ["db-1", "web-1", "web-2", "web-10"]
    assert order_hosts(hosts, "reverse_sorted") == ["web-10", "web-2", "web-1", "db-1"]
    with pytest.raises(ValueError, match="unknown order"):
        order_hosts(hosts, "random")


def test_natural_sort_is_total_and_stable() -> None:
    hosts = ["a01", "a1", "a001", "a", "a-1", "A1"]
    once = sorted(hosts, key=natural_key)
    assert sorted(reversed(hosts), key=natural_key) == once  # ties broken by the name
    assert once == ["A1", "a", "a001", "a01", "a1", "a-1"]
    assert sorted(["web-10", "web-9", "web-100", "web-09"], key=natural_key) == [
        "web-09",
        "web-9",
        "web-10",
        "web-100",
    ]


def test_shuffle_is_seeded_and_deterministic() -> None:
    hosts = names(50)
    a = make_plan(hosts, [5], order="shuffle", seed=3)
    assert a == make_plan(hosts, [5], order="shuffle", seed=3)
    assert a != make_plan(hosts, [5], order="shuffle", seed=4)
    assert sorted(a.hosts) == hosts
    assert a.hosts != tuple(hosts)
    assert make_plan(hosts, [5], order="shuffle") == make_plan(hosts, [5], order="shuffle", seed=0)


def test_replan_keeps_started_batches() -> None:
    plan = make_plan(names(20), [1, 2, 5])
    remaining = [h for b in plan.batches[2:] for h in b]
    new = replan(plan, 2, remaining, 10)
    assert new.batches[:2] == plan.batches[:2]
    assert new.sizes == (1, 2, 10, 7)
    assert new.hosts == plan.hosts
    assert replan(plan, 2, remaining, "25%").sizes == (1, 2, 5, 5, 5, 2)  # 25% of all 20


def test_replan_without_skipped_hosts_and_errors() -> None:
    plan = make_plan(names(6), [2])
    new = replan(plan, 1, ["web-03", "web-05", "web-06"], 2)
    assert new.batches == (("web-01", "web-02"), ("web-03", "web-05"), ("web-06",))
    with pytest.raises(ValueError, match="already started"):
        replan(plan, 1, ["web-02", "web-03"], 2)
    with pytest.raises(ValueError, match="outside"):
        replan(plan, 4, [], 2)
    with pytest.raises(ValueError):
        replan(plan, 1, ["web-03"], 0)


# --- properties --------------------------------------------------------------------------

SIZES = st.lists(
    st.integers(1, 30) | st.integers(1, 100).map(lambda p: f"{p}%"), min_size=1, max_size=6
)
HOSTS = st.lists(st.integers(0, 999), unique=True, max_size=80).map(
    lambda ns: [f"h{n}" if n % 3 else f"web-{n}" for n in ns]
)


def expected_sizes(n: int, batches: list[int | str]) -> list[int]:
    out, left, i = [], n, 0
    while left > 0:
        entry = batches[min(i, len(batches) - 1)]
        size = entry if isinstance(entry, int) else max(1, math.ceil(n * int(entry[:-1]) / 100))
        out.append(min(size, left))
        left -= out[-1]
        i += 1
    return out


@settings(max_examples=120, deadline=None)
@given(HOSTS, SIZES, st.sampled_from(["inventory", "sorted", "reverse_sorted", "shuffle"]))
def test_every_host_planned_once_in_order(
    hosts: list[str], batches: list[int | str], order: str
) -> None:
    plan = make_plan(hosts, batches, order=order, seed=1)
    flat = plan.hosts
    assert sorted(flat) == sorted(hosts)  # exactly once each
    assert flat == tuple(order_hosts(hosts, order, 1))  # contiguous, in order
    if order == "inventory":
        assert flat == tuple(hosts)
    assert list(plan.sizes) == expected_sizes(len(hosts), batches)
    for i, batch in enumerate(plan.batches):
        assert all(plan.batch_of(h) == i for h in batch)


@settings(max_examples=60, deadline=None)
@given(HOSTS.filter(len), SIZES, st.integers(0, 10), st.integers(1, 40))
def test_replan_properties(
    hosts: list[str], batches: list[int | str], done: int, size: int
) -> None:
    plan = make_plan(hosts, batches)
    done = min(done, len(plan))
    rest = [h for b in plan.batches[done:] for h in b]
    new = replan(plan, done, rest, size)
    assert new.batches[:done] == plan.batches[:done]
    assert new.hosts == plan.hosts
    assert all(len(b) == size for b in new.batches[done:-1])


# --- the budget in words -----------------------------------------------------------------

SPEC = "service: api\nversion: '1'\nsteps: [x]\n"


def spec_with(**changes: object):  # type: ignore[no-untyped-def]
    return dataclasses.replace(parse_spec(SPEC, "s.yaml"), **changes)


def test_budget_words_count() -> None:
    plan = make_plan(names(40), [1, "10%", "25%", "100%"])
    text = describe_budget(spec_with(max_failures=Budget(count=2)), plan)
    assert text.startswith("40 hosts; max_failures 2: more than 2 failed hosts fires on_failure")
    # 3 failures need 3 hosts to have run: batch 1 has 1, batches 1-2 have 5
    assert "pauses at the third failed host, at the earliest in batch 2" in text
    assert "(5 hosts will have run by then), at the latest in batch 4, the last" in text
    assert "unreachable hosts count as failed" in text
    assert "counted across all batches, not per batch" in text
    assert "a batch in which every host fails stops the rollout too" in text


def test_budget_words_zero_and_percent_and_verbs() -> None:
    plan = make_plan(names(40), [1, "10%", "25%", "100%"])
    text = describe_budget(spec_with(on_failure="abort"), plan)
    assert "max_failures 0: any failed host fires on_failure (abort)" in text
    assert "aborts at the first failed host, at the earliest in batch 1 (1 host" in text
    text = describe_budget(spec_with(max_failures=Budget(percent=10.0)), plan)
    assert "max_failures 10% of 40 hosts = 4: more than 4 failed hosts" in text
    assert "fifth failed host, at the earliest in batch 2" in text
    text = describe_budget(
        spec_with(max_failures=Budget(count=14), on_failure="rollback"),
        plan,
    )
    assert "stops and rolls back at the 15th failed host, at the earliest in batch 3" in text
    text = describe_budget(spec_with(max_failures=Budget(count=15)), plan)
    assert "at the earliest in batch 4 (40 hosts will have run by then)" in text
    assert "at the latest" not in text  # batch 4 is the last


def test_budget_words_when_it_cannot_be_exceeded() -> None:
    plan = make_plan(names(3), [1])
    text = describe_budget(spec_with(max_failures=Budget(count=3)), plan)
    assert "cannot be exceeded" in text
    assert "only a batch in which every host fails stops the rollout" in text
    assert describe_budget(spec_with(), make_plan([], [1])) == (
        "0 hosts; max_failures 0: nothing to deploy"
    )


@pytest.mark.parametrize(
    ("n", "word"),
    [(1, "first"), (3, "third"), (8, "eighth"), (9, "9th"), (11, "11th"), (12, "12th"),
     (13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (111, "111th"), (101, "101st")],
)  # fmt: skip
def test_ordinal(n: int, word: str) -> None:
    assert ordinal(n) == word


def test_operator_batch_sizes_follow_the_spec_rules() -> None:
    """``set_batch_size`` takes what the spec takes: a count >= 1 (also in digits) or a
    percentage above 0% and at most 100%."""
    from console.plan import parse_size

    assert parse_size(3) == 3 and parse_size(" 7 ") == 7 and parse_size("64.4%") == "64.4%"
    for bad in (0, -1, "0", "0%", "0.0%", "100.5%", "x", "5 hosts", None, True, 2.5):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_recut_is_replan_without_the_started_batches() -> None:
    from console.plan import recut

    names = [f"h{i}" for i in range(250)]
    plan = make_plan(names, [10])
    rest = list(plan.hosts[20:])
    assert recut(rest, "64.4%", 250) == replan(plan, 2, rest, "64.4%").batches[2:]
    assert [len(b) for b in recut(rest, "64.4%", 250)] == [161, 69]  # exact: 161, not 162
