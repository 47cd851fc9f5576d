"""What a rollout acts on, loaded once: the spec, the targeted hosts and their plan.

Its own module, apart from :mod:`console.runtime.session`, because ``rolldeck check``
loads a rollout too and must not pay for importing the engine, the transport and SSH.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from console import become
from console.core.errors import InputError
from console.plan import Plan, make_plan
from console.spec import RolloutSpec, load_spec
from console.traffic.pools import PoolError, split_pools
from inventory import load_inventory, select
from inventory.loader import join_sources
from inventory.model import Host, Inventory
from inventory.patterns import read_limit_file


@dataclass(frozen=True, slots=True)
class Rollout:
    """What a rollout acts on: its spec, the targeted hosts (in plan order), their plan
    and the inventory they came from."""

    spec: RolloutSpec
    hosts: list[Host]
    plan: Plan
    inventory_path: str = ""
    inventory_format: str = ""
    # group_vars/host_vars files read, and what the inventory found but did not read.
    vars_files: tuple[str, ...] = ()
    inventory_notes: tuple[str, ...] = ()
    # load_balancer.host, from the inventory (targeted or not); None without the section
    balancer: Host | None = None


def load_rollout(
    spec_path: str,
    *,
    inventory: str | Sequence[str] | None = None,
    targets: str | None = None,
) -> Rollout:
    """Load the spec and its inventory, select the targets and cut the plan; bad input
    raises :class:`InputError` naming the file, line and field to fix.

    ``inventory`` and ``targets`` override the spec's (``--inventory``, given once or
    more: merged in order; ``--targets``, where ``@FILE`` reads patterns from a file).
    Several inventories are recorded as one ``os.pathsep``-joined path.
    """
    spec = load_spec(spec_path)
    if isinstance(inventory, str):
        inventory = [inventory]
    inventory_path = join_sources(inventory) if inventory else spec.inventory
    if inventory_path is None:
        raise InputError(
            "no inventory: set inventory in the spec or pass --inventory FILE",
            file=spec.path,
            field="inventory",
        )
    if inventory is None and not os.path.exists(inventory_path):
        raise InputError(
            f"inventory {inventory_path} does not exist (resolved from the spec's directory)",
            file=spec.path,
            line=spec.lines.get("inventory"),
            field="inventory",
        )
    inv = load_inventory(inventory or inventory_path)
    if targets and targets.startswith("@"):
        pattern, where = read_limit_file(targets[1:]), targets[1:]
        hosts = select(inv, pattern, file=where, field="--targets")
    elif targets:
        hosts = select(inv, targets, field="--targets")
    else:
        hosts = select(
            inv, spec.targets, file=spec.path, line=spec.lines.get("targets"), field="targets"
        )
    if spec.strategy == "blue-green" and not targets and spec.targets == "all":
        hosts = select(inv, f"{spec.blue}:{spec.green}", file=spec.path, field="strategy")
    try:
        plan = plan_for(spec, hosts)
    except ValueError as exc:
        raise InputError(
            str(exc), file=spec.path, line=spec.lines.get("batches"), field="batches"
        ) from None
    by_name = {h.name: h for h in hosts}
    ordered = [by_name[name] for name in plan.hosts]
    become.validate(spec, ordered)  # a bad ansible_become* var: refused before connecting
    balancer = balancer_in(spec, inv, inventory_path)
    return Rollout(
        spec, ordered, plan, inventory_path, inv.format, inv.vars_files, inv.notes, balancer
    )


def plan_for(spec: RolloutSpec, hosts: Sequence[Host]) -> Plan:
    """The batches of the rollout's strategy: blue-green cuts each pool by the spec's
    batches (the live pool's are set aside once HAProxy says which is live); a weighted
    canary needs hosts left after its first batch. InputError at the field to fix."""
    names = [h.name for h in hosts]
    if spec.strategy != "blue-green":
        plan = make_plan(names, spec.batches, order=spec.order, seed=spec.seed)
        if spec.traffic and len(plan.batches) < 2:
            raise InputError(
                f"the canary batch holds every targeted host ({len(names)}): traffic shares "
                "need hosts beside the canary (e.g. batches: [1, 100%])",
                file=spec.path,
                line=spec.lines.get("traffic"),
                field="traffic",
            )
        return plan
    assert spec.blue is not None and spec.green is not None
    try:
        pools = split_pools(((h.name, h.groups) for h in hosts), spec.blue, spec.green)
    except PoolError as exc:
        raise InputError(
            str(exc), file=spec.path, line=spec.lines.get("strategy"), field="strategy"
        ) from None
    batches: list[tuple[str, ...]] = []
    for pool in (spec.blue, spec.green):
        batches += make_plan(pools[pool], spec.batches, order=spec.order, seed=spec.seed).batches
    return Plan(tuple(batches))


def balancer_in(spec: RolloutSpec, inv: Inventory, inventory_path: str) -> Host | None:
    """``load_balancer.host`` from the inventory (targeted or not; None without the
    section); InputError naming the spec's line when the inventory has no such host."""
    if spec.load_balancer is None:
        return None
    balancer = inv.hosts.get(spec.load_balancer.host)
    if balancer is None:
        raise InputError(
            f"load_balancer.host {spec.load_balancer.host!r} is not in the inventory "
            f"{inventory_path}",
            file=spec.path,
            line=spec.lines.get("load_balancer.host"),
            field="load_balancer.host",
        )
    return balancer


def balancer_of(spec: RolloutSpec, inventory_path: str) -> Host | None:
    """:func:`balancer_in`, loading the inventory (resume and rollback rebuild a
    rollout from its journal, where only the targeted hosts are kept)."""
    if spec.load_balancer is None:
        return None
    return balancer_in(spec, load_inventory(inventory_path), inventory_path)
