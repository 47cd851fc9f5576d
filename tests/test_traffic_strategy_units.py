"""The pure parts of the weighted canary and blue-green: weights for a share, pools,
the spec's keys, the plan per pool, and what ``rolldeck check`` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from console.cli import main
from console.core.errors import InputError
from console.runtime.rollout import load_rollout
from console.spec import parse_spec
from console.traffic.haproxy import MAX_WEIGHT, ServerState
from console.traffic.pools import PoolError, live_pool, split_pools
from console.traffic.weights import canary_weights

ROOT = Path(__file__).resolve().parent.parent


# -- weights -----------------------------------------------------------------------------


def test_five_percent_of_ten_servers_is_exact() -> None:
    shares = canary_weights(5, ["c"], {f"o{i}": 1 for i in range(9)})
    assert shares.achieved == 5.0
    assert shares.weights["c"] == 9 and shares.weights["o0"] == 19


def test_the_others_keep_their_proportions() -> None:
    shares = canary_weights(10, ["c"], {"a": 3, "b": 1})
    a, b = shares.weights["a"], shares.weights["b"]
    assert a == 3 * b
    assert shares.achieved == pytest.approx(10, abs=0.5)


def test_servers_out_of_traffic_are_left_alone() -> None:
    shares = canary_weights(25, ["c"], {"a": 1, "b": 1, "c2": 0})
    assert "c2" not in shares.weights


@given(
    share=st.floats(min_value=0.5, max_value=99.0),
    canaries=st.integers(min_value=1, max_value=20),
    others=st.lists(st.integers(min_value=1, max_value=MAX_WEIGHT), min_size=1, max_size=60),
)
@example(share=14.25, canaries=1, others=[1, 1, 1, 1, 1, 60])  # no integer gives 1/7
def test_weights_are_haproxys_and_the_share_is_the_closest_they_give(
    share: float, canaries: int, others: list[int]
) -> None:
    canary = [f"c{i}" for i in range(canaries)]
    rest = {f"o{i}": w for i, w in enumerate(others)}
    shares = canary_weights(share, canary, rest)
    assert all(1 <= w <= MAX_WEIGHT for w in shares.weights.values())
    total = sum(shares.weights.values())
    got = 100 * sum(shares.weights[c] for c in canary) / total
    assert got == pytest.approx(shares.achieved)
    # never worse than any canary weight HAProxy takes beside the others' own weights
    # (among them: the canary at the others' mean, rounded; the exact mean is often no
    # integer: 1 canary beside [1, 1, 1, 1, 1, 60] cannot get 1/7)
    rest_total = sum(others)
    for w in range(1, MAX_WEIGHT + 1):
        plain = 100 * canaries * w / (canaries * w + rest_total)
        assert abs(got - share) <= abs(plain - share) + 1e-9, (w, plain)


# -- pools -------------------------------------------------------------------------------


def _state(name: str, admin: str = "ready", weight: int = 1) -> ServerState:
    return ServerState(name, admin, "UP", weight, 0)


def test_split_pools_refuses_a_host_in_neither_or_both() -> None:
    with pytest.raises(PoolError, match="x is in neither pool"):
        split_pools([("a", ("blue",)), ("x", ("web",))], "blue", "green")
    with pytest.raises(PoolError, match="x is in both pools"):
        split_pools([("x", ("blue", "green"))], "blue", "green")
    with pytest.raises(PoolError, match="pool green has no targeted host"):
        split_pools([("a", ("blue",))], "blue", "green")


def test_the_live_pool_is_what_haproxy_says() -> None:
    pools = {"blue": ["a", "b"], "green": ["c", "d"]}
    servers = {n: n for n in "abcd"}
    states = {
        "a": _state("a"),
        "b": _state("b"),
        "c": _state("c", "drain"),
        "d": _state("d", "maint"),
    }
    assert live_pool(pools, servers, states) == ("blue", "green")
    states = {**states, "a": _state("a", weight=0), "b": _state("b", "drain")}
    states |= {"c": _state("c"), "d": _state("d")}
    assert live_pool(pools, servers, states) == ("green", "blue")


def test_a_pool_half_live_or_both_live_is_refused() -> None:
    pools = {"blue": ["a", "b"], "green": ["c", "d"]}
    servers = {n: n for n in "abcd"}
    half = {n: _state(n, "drain" if n in "bcd" else "ready") for n in "abcd"}
    with pytest.raises(PoolError, match="pool blue is half live: a serve, b do not"):
        live_pool(pools, servers, half)
    with pytest.raises(PoolError, match="both pools serve"):
        live_pool(pools, servers, {n: _state(n) for n in "abcd"})
    with pytest.raises(PoolError, match="neither pool serves"):
        live_pool(pools, servers, {n: _state(n, "maint") for n in "abcd"})


# -- the spec ----------------------------------------------------------------------------

BASE = """
service: shop
version: "2.0"
steps: [{name: a, run: "true"}]
"""
LB = "load_balancer: {host: lb-01, socket: /run/h.sock, backend: app}\n"


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("strategy: canary\ntraffic: [5%, 25%]\n" + LB, "traffic", "must end with 100%"),
        ("strategy: canary\ntraffic: [25%, 5%, 100%]\n" + LB, "traffic[1]", "must rise"),
        ("strategy: canary\ntraffic: [0%, 100%]\n" + LB, "traffic[0]", "more than 0%"),
        ("traffic: [5%, 100%]\n" + LB, "traffic", "need strategy: canary"),
        ("strategy: canary\ntraffic: [5%, 100%]\n", "traffic", "need a load_balancer"),
        ("strategy: blue-green\nblue: b\ngreen: g\n", "strategy", "needs a load_balancer"),
        ("strategy: blue-green\nblue: b\n" + LB, "strategy", "needs green"),
        ("strategy: blue-green\nblue: b\ngreen: b\n" + LB, "green", "the same group"),
        ("blue: b\n" + LB, "blue", "needs strategy: blue-green"),
        ("strategy: purple\n", "strategy", "purple"),
    ],
)
def test_strategy_keys_are_checked_at_their_line(extra: str, field: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_spec(BASE + extra, "spec.yaml")
    assert caught.value.field == field, caught.value
    assert message in str(caught.value)
    assert caught.value.line is not None


INVENTORY = """
groups:
  blue: {hosts: [a1, a2, a3]}
  green: {hosts: [b1, b2, b3]}
hosts:
  lb-01: {address: 10.0.0.1}
  a1: {address: 10.0.0.2}
  a2: {address: 10.0.0.3}
  a3: {address: 10.0.0.4}
  b1: {address: 10.0.0.5}
  b2: {address: 10.0.0.6}
  b3: {address: 10.0.0.7}
"""


def write(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    spec = tmp_path / "rollout.yaml"
    spec.write_text(BASE + "inventory: inventory.yaml\n" + LB + extra)
    return spec


def test_blue_green_targets_both_pools_and_plans_each_by_the_batches(tmp_path: Path) -> None:
    spec = write(tmp_path, "strategy: blue-green\nblue: blue\ngreen: green\nbatches: [1, 100%]\n")
    rollout = load_rollout(str(spec))
    assert rollout.plan.batches == (("a1",), ("a2", "a3"), ("b1",), ("b2", "b3"))


def test_blue_green_refuses_a_target_in_neither_pool(tmp_path: Path) -> None:
    spec = write(tmp_path, "strategy: blue-green\nblue: blue\ngreen: green\ntargets: all\n")
    spec.write_text(spec.read_text().replace("targets: all", "targets: 'blue:lb-01'"))
    with pytest.raises(InputError, match="lb-01 is in neither pool"):
        load_rollout(str(spec))


def test_a_weighted_canary_needs_hosts_beside_its_canary(tmp_path: Path) -> None:
    spec = write(
        tmp_path, "strategy: canary\ntraffic: [5%, 100%]\ntargets: blue\nbatches: [100%]\n"
    )
    with pytest.raises(InputError, match="the canary batch holds every targeted host"):
        load_rollout(str(spec))


def test_check_names_the_strategy_and_the_pools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path, "strategy: blue-green\nblue: blue\ngreen: green\n")
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "strategy    blue-green" in out
    assert "pool blue: 3 hosts (a1, a2, a3)" in out
    assert "the live pool is the one HAProxy has ready when the run" in out
    assert "rollback    the switch back" in out
    assert main(["check", str(spec), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["strategy"] == "blue-green"
    assert data["pools"] == {"blue": ["a1", "a2", "a3"], "green": ["b1", "b2", "b3"]}
