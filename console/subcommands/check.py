"""``rolldeck check``: validate a spec and its inventory, and show what would run.

Nothing connects anywhere: the point is to read the plan, the failure budget and the
exact commands (rendered for the first host, secrets masked) before a rollout starts.
Every ``{vars.NAME}`` a command uses is checked against every targeted host, so a var
missing on one host is found here rather than in batch 3.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console import become as becomemod
from console import spec as specmod
from console.core.errors import EXIT_FAILED, InputError
from console.core.secrets import Redactor
from console.core.text import printable
from console.plan import Plan, describe_budget
from console.runtime.rollout import Rollout, load_rollout
from console.signals.polls import PollGroup, polls_by_host, sampling_note
from console.spec import RolloutSpec, format_duration
from console.templating import (
    build_context,
    check_command_sizes,
    context_vars,
    placeholders,
    redactor_for,
    render,
)
from console.traffic.look import LookedAt
from console.traffic.plan import describe_balancer, pools_of, server_names
from console.transport.cli_options import add_connect_timeout, connect_timeout
from inventory.ansible_vars import unhonoured

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from inventory.model import Host

NAME = "check"
HELP = "validate a rollout spec and its inventory; show the plan, budget and commands"
DESCRIPTION = """\
Validate a rollout spec and its inventory without connecting to anything, then print
the batches (in running order), the failure budget in words, the gate between
batches, on_failure, every command rendered for the first host (secrets masked) and
warnings. With `requires:` (promotion from staging) it checks the state directory's
history too. `--lb` also reads the load balancer (the one connection check makes): the
pool live now and what will switch, the weights. Exit code 0 when the spec is valid
(warnings included), 2 when it is not, 3 when a `requires:` rule is not met or the
load balancer says `run` would refuse to start."""
ORDER = 60

PREVIOUS_VERSION_SHOWN = "<previous_version>"  # what check renders: nothing is read yet
NAMES_SHOWN = 8  # a batch with more hosts is abbreviated
VARS_FILES_SHOWN = 10  # past this, vars files are counted (--verbose lists them)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="rollout spec (YAML)")
    parser.add_argument(
        "--inventory",
        metavar="PATH",
        action="append",
        help="inventory file or directory (repeat to merge several; default: the spec's)",
    )
    parser.add_argument(
        "--targets",
        metavar="PATTERN",
        help="host pattern (default: the spec's targets; @FILE: one pattern a line)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="list every vars file read (default: a count)"
    )
    parser.add_argument(
        "--state-dir", metavar="DIR", help="the history `requires:` is checked against"
    )
    parser.add_argument(
        "--lb",
        action="store_true",
        help="also read the load balancer now (connects to load_balancer.host only, over "
        "SSH as run does): which pool is live, the weights, what will switch",
    )
    add_connect_timeout(parser)


@dataclass(slots=True)
class RenderedCommand:
    field: str
    name: str
    command: str
    timeout: float | None
    raw: bool
    once: bool = False

    @property
    def label(self) -> str:
        """``step install``, ``preflight disk``, ``health``."""
        kind = self.field.rsplit("[", 1)[0]
        if kind == self.field:
            return kind
        return f"{_KIND_LABELS.get(kind, kind)} {self.name}"


_KIND_LABELS = {"steps": "step", "preflight": "preflight", "rollback.steps": "rollback"}


@dataclass(slots=True)
class CheckReport:
    spec: RolloutSpec
    inventory_path: str
    inventory_format: str
    targets: str
    hosts: list[Host]
    plan: Plan
    budget: str
    gate: str
    commands: list[RenderedCommand]
    warnings: list[str] = field(default_factory=list)
    vars_files: tuple[str, ...] = ()
    inventory_notes: tuple[str, ...] = ()
    polls: list[PollGroup] = field(default_factory=list)  # what each host will poll
    polls_sampled: str | None = None  # which hosts poll, when not every host (sampling)
    become: list[becomemod.BecomeGroup] = field(default_factory=list)  # who runs what
    balancer: Host | None = None  # load_balancer.host, from the inventory
    servers: dict[str, str] = field(default_factory=dict)  # host -> its HAProxy server
    pools: dict[str, list[str]] = field(default_factory=dict)  # blue-green: pool -> hosts
    strategy: str = "rolling"  # spec.strategy (console/engine/strategies.py)

    @property
    def rollout(self) -> Rollout:
        """What was checked, as the session builds an engine from it."""
        return Rollout(
            self.spec,
            self.hosts,
            self.plan,
            self.inventory_path,
            self.inventory_format,
            self.vars_files,
            self.inventory_notes,
            self.balancer,
        )

    def to_json(self) -> dict[str, Any]:
        settings = specmod.settings(self.spec)
        settings["inventory"] = self.inventory_path
        settings["targets"] = self.targets
        return {
            "spec": self.spec.path,
            "hosts": self.plan.total_hosts,
            "batches": [list(b) for b in self.plan.batches],
            "budget": self.budget,
            "gate": self.gate,
            "settings": settings,
            "commands": {
                "host": self.plan.hosts[0] if self.plan.hosts else None,
                "commands": [
                    {
                        "field": c.field,
                        "name": c.name,
                        "command": c.command,
                        "timeout": c.timeout,
                        "raw": c.raw,
                        "once": c.once,
                    }
                    for c in self.commands
                ],
            },
            "servers": dict(self.servers),  # load_balancer: host -> server name
            "strategy": self.strategy,
            "pools": {pool: list(hosts) for pool, hosts in self.pools.items()},
            "warnings": list(self.warnings),
            "vars_files": list(self.vars_files),
            "become": [
                {
                    "hosts": list(g.hosts),
                    "runs": [{"as": w, "commands": list(c)} for w, c in g.runs],
                }
                for g in self.become
            ],
            "polls": [
                {
                    "hosts": list(g.hosts),
                    "shared_shell": g.shared_shell,
                    "polls": [
                        {
                            "signal": p.signal,
                            "command": p.command,
                            "every": p.every,
                            "timeout": p.timeout,
                            "when": p.when,
                        }
                        for p in g.polls
                    ],
                    "off": list(g.off),
                }
                for g in self.polls
            ],
            "polls_sampled": self.polls_sampled,
        }


def run(args: argparse.Namespace) -> int:
    timeout = connect_timeout(args)
    report = analyse(args.spec, inventory=args.inventory, targets=args.targets)
    if args.lb and report.spec.load_balancer is None:
        raise InputError("the spec has no load_balancer section to read", field="--lb")
    promotion = _requires(report.spec, args.state_dir)
    now = _look_at_lb(report, timeout) if args.lb else None
    if args.json:
        data = report.to_json()
        data["requires"] = [{"met": ok, "reason": why} for ok, why in promotion]
        if now is not None:
            data["lb"] = now.data
        print(json.dumps(data, indent=2))
    else:  # host names, vars and commands come from files: no terminal escapes
        text = format_report(report, verbose=args.verbose)
        for i, (ok, why) in enumerate(promotion):
            head = "requires    " if i == 0 else "            "
            text += f"\n{head}{'met' if ok else 'NOT MET'}: {why}"
        if now is not None:
            text += "\n" + "\n".join(now.lines)
        print(printable(text, multiline=True))
    refused = any(not ok for ok, _ in promotion) or (now is not None and now.refused)
    return EXIT_FAILED if refused else 0


def _look_at_lb(report: CheckReport, timeout: float | None) -> LookedAt:
    """``--lb``: the backend read now through the load balancer host's SSH connection
    (imported here: a plain ``check`` loads no transport)."""
    import asyncio

    from console.traffic.haproxy import HAProxyError
    from console.traffic.look import look, read_backend
    from console.transport import make_transport
    from console.transport.base import TransportError, TransportOptions

    spec, balancer = report.spec, report.balancer
    assert balancer is not None

    async def read() -> dict[str, Any]:
        options = (
            TransportOptions() if timeout is None else TransportOptions(connect_timeout=timeout)
        )
        transport = make_transport(options)
        try:
            conn = await transport.connect(balancer)
            return dict(await read_backend(conn, spec))
        finally:
            await transport.close()

    try:
        states = asyncio.run(read())
    except (TransportError, HAProxyError) as exc:
        said = exc.message if isinstance(exc, TransportError) else str(exc)
        return LookedAt(lines=[f"lb now      {balancer.name}: {said}"], refused=True)
    first = report.plan.batches[0] if report.plan.batches else ()
    return look(spec, report.servers, report.pools, first, states)


def _requires(spec: RolloutSpec, state_dir: str | None) -> list[tuple[bool, str]]:
    """``requires:`` against the state directory's history: (met, why) per rule."""
    if not spec.requires:
        return []
    from console.store.journal import resolve_state_dir
    from console.store.promotion import judge

    verdicts = judge(spec, resolve_state_dir(state_dir, shared=True))
    return [(v.met_by is not None, v.reason) for v in verdicts]


def analyse(
    spec_path: str,
    *,
    inventory: str | Sequence[str] | None = None,
    targets: str | None = None,
) -> CheckReport:
    """Load, resolve, plan and render; raise InputError for anything invalid."""
    rollout = load_rollout(spec_path, inventory=inventory, targets=targets)
    spec, plan, ordered = rollout.spec, rollout.plan, rollout.hosts
    _check_vars(spec, ordered)
    check_command_sizes(spec, ordered)
    redactor = redactor_for(spec, ordered)
    return CheckReport(
        spec=spec,
        inventory_path=rollout.inventory_path,
        inventory_format=rollout.inventory_format,
        targets=targets or spec.targets,
        hosts=ordered,
        plan=plan,
        budget=describe_budget(spec, plan),
        gate=describe_gate(spec),
        commands=_first_host_commands(spec, ordered[0], redactor) if ordered else [],
        warnings=[
            *warnings(spec, plan, ordered),
            *(f"inventory: {note}" for note in rollout.inventory_notes),
            *connection_warnings(ordered),
        ],
        vars_files=rollout.vars_files,
        inventory_notes=rollout.inventory_notes,
        polls=polls_by_host(spec, ordered, lambda h: _renderer(spec, h, redactor)),
        polls_sampled=sampling_note(spec, len(ordered)),
        become=becomemod.plan(spec, ordered),
        balancer=rollout.balancer,
        servers=server_names(spec, ordered),
        pools=pools_of(spec, ordered),
        strategy=spec.strategy,
    )


HOSTS_NAMED = 5  # a warning shared by more hosts names this many and counts the rest


def connection_warnings(hosts: list[Host]) -> list[str]:
    """One warning per Ansible connection var rolldeck does not honour, naming the
    hosts that set it (grouped: 1,000 hosts sharing one var make one line)."""
    by_var: dict[tuple[str, str], list[str]] = {}
    for host in hosts:
        for var, why in [*unhonoured(host.vars), *becomemod.unhonoured(host.vars)]:
            by_var.setdefault((var, why), []).append(host.name)
    out = []
    for (var, why), names in by_var.items():
        shown = ", ".join(names[:HOSTS_NAMED])
        if len(names) > HOSTS_NAMED:
            shown += f" and {len(names) - HOSTS_NAMED} more"
        out.append(f"{var}: {why} ({_count(len(names))}: {shown})")
    return out


def _check_vars(spec: RolloutSpec, hosts: list[Host]) -> None:
    """Every ``{vars.NAME}`` a command uses must be set for every host.

    Checked by name rather than by rendering each command for each host: the same
    answer, ten times faster on a 10,000-host inventory.
    """
    used: dict[str, str] = {}  # var -> the first command using it
    for where, step in specmod.commands(spec):
        for placeholder in placeholders(step.run):
            if placeholder.var is not None:
                used.setdefault(placeholder.var, where)
    missing: dict[str, list[str]] = {}
    for host in hosts:
        available = context_vars(spec, host)
        for var in used:
            if var not in available:
                missing.setdefault(var, []).append(host.name)
    if not missing:
        return
    var, names = next(iter(missing.items()))
    where = used[var]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    line = spec.lines.get(f"{where}.run") or spec.lines.get(where)
    raise InputError(
        f"{{vars.{var}}} is not set for {len(names)} of {len(hosts)} hosts ({shown}): define "
        "it in the spec's vars or the inventory",
        file=spec.path,
        line=line,
        field=where,
    )


def _first_host_commands(
    spec: RolloutSpec, host: Host, redactor: Redactor
) -> list[RenderedCommand]:
    context = build_context(spec, host, PREVIOUS_VERSION_SHOWN)
    # Rollback commands run while the host goes back: {version} is then the version
    # it goes back to (docs/architecture.md, "Placeholders").
    back = build_context(spec, host, PREVIOUS_VERSION_SHOWN, rollback=True)
    timeouts: dict[str, float | None] = {
        "health": spec.health.timeout if spec.health else None,
        "metrics": spec.metrics.timeout if spec.metrics else None,
        "vitals": spec.vitals.timeout if spec.vitals else None,
        "logs": None,
        "current_version": None,
    }
    out = []
    for where, step in specmod.commands(spec):
        ctx = back if where.startswith("rollback") else context
        command = redactor.redact(render(step.run, ctx, raw=step.raw))
        timeout = timeouts.get(where, step.timeout)
        out.append(RenderedCommand(where, step.name, command, timeout, step.raw, step.once))
    return out


def describe_gate(spec: RolloutSpec) -> str:
    gate = spec.between_batches
    if gate.kind == "auto":
        return "auto: the next batch starts as soon as the previous one is done and healthy"
    if gate.kind == "bake":
        return (
            f"bake {format_duration(gate.bake)}: the next batch starts after "
            f"{format_duration(gate.bake)} in which health and error rate hold"
        )
    text = "manual: waits for an operator to continue"
    if gate.kind == "command":
        text = (
            f"command: asks `{gate.run}` every {format_duration(gate.every)} "
            "(exit 0 go, 1 not yet, other no: on_failure)"
        )
    if gate.timeout is not None:
        text += f"; after {format_duration(gate.timeout)} without one: {gate.on_timeout}"
    return text


def describe_notify(spec: RolloutSpec) -> list[str]:
    """``notify`` lines: each hook (a webhook's token masked), its events and bounds."""
    from console.notify.names import hook_label
    from console.spec.model import NOTIFY_EVENTS, webhook_url

    lines = []
    for i, hook in enumerate(spec.notify):
        head = "notify      " if i == 0 else "            "
        fmt = f", {hook.format}" if hook.webhook is not None else ""
        if hook.webhook is not None:
            try:
                webhook_url(hook, os.environ)
            except KeyError as exc:  # ${VAR} from the environment of the run
                fmt += f"; ${{{exc.args[0]}}} is not set here"
        events = "every event" if set(hook.on) >= set(NOTIFY_EVENTS) else ", ".join(hook.on)
        lines.append(
            f"{head}{hook_label(hook)} on {events} (timeout "
            f"{format_duration(hook.timeout)}, {hook.retries} retries{fmt})"
        )
    return lines


def describe_rollback(spec: RolloutSpec) -> str:
    rollback = spec.rollback
    if spec.strategy == "blue-green":
        return "the switch back: the old pool ready again, the new one drained (no steps run)"
    if not rollback.steps:
        return "no steps"
    sizes = (
        "in the rollout's own batches"
        if rollback.batches is None
        else "in batches of " + ", ".join(str(b) for b in rollback.batches)
    )
    return f"{_count(len(rollback.steps), 'step', 'steps')} on the hosts that moved, {sizes}"


def describe_analysis(spec: RolloutSpec) -> list[str]:
    """The ``analysis`` section: each metric's provider and rule in words, and its
    query as written (placeholders were checked when the spec loaded)."""
    from console.signals.analysis import rule_words

    a = spec.analysis
    if a is None:
        return []
    where = ""
    if a.prometheus is not None:
        auth = " (bearer token)" if a.prometheus.bearer_token else ""
        auth = " (basic auth)" if a.prometheus.basic_auth else auth
        where = f"; Prometheus {a.prometheus.url}{auth}, timeout {a.prometheus.timeout:g}s"
    lines = [
        f"analysis    every {format_duration(a.interval)} over {format_duration(a.window)}, "
        f"no data: {a.on_no_data}, a failure: on_failure{where}"
    ]
    for m in a.metrics:
        lines.append(f"  {m.name} ({m.provider}): {rule_words(m)}")
        if m.query is not None:
            lines.append(f"    {' '.join(m.query.split())}")
    return lines


def warnings(spec: RolloutSpec, plan: Plan, hosts: list[Host]) -> list[str]:
    """Valid but probably not what was meant."""
    out: list[str] = []
    if spec.analysis is not None and spec.analysis.prometheus_metrics:
        from console.signals.analysis import instance_label
        from console.spec.queries import var_names

        unseen = [h.name for h in hosts if instance_label(h) is None]
        if unseen:
            out.append(
                f"analysis cannot find {_count(len(unseen))} in Prometheus (no "
                f"prometheus_instance or metrics_port var): {_names(tuple(unseen))}"
            )
        spec_vars = set(context_vars(spec, None))
        for m in spec.analysis.prometheus_metrics:
            for name in var_names(m.query or ""):
                if name not in spec_vars:
                    out.append(
                        f"analysis metric {m.name}: {{vars.{name}}} is not set in the "
                        "spec's vars or the environment (queries see no host vars)"
                    )
    if not hosts:
        out.append("no host to deploy to")
    if spec.health is None:
        out.append("no health check: a host counts as healthy as soon as its steps succeed")
    if not spec.rollback.steps and spec.strategy != "blue-green":  # its rollback: a switch
        out.append("rollback has no steps: a rollback cannot move hosts back")
    if spec.current_version is None:
        out.append("no current_version: previous versions are not read or journaled")
    rate = spec.error_rate
    if rate is not None and rate.max is None and rate.max_vs_baseline is None:
        out.append("error_rate has neither max nor max_vs_baseline: it never stops anything")
    if spec.order == "shuffle" and spec.seed is None:
        out.append("order shuffle without seed: seed 0 is used, so every run shuffles alike")
    if hosts and spec.max_failures.allowed(plan.total_hosts) >= plan.total_hosts:
        out.append("max_failures allows every host to fail")
    known = set(context_vars(spec, None)).union(*(h.vars for h in hosts))
    for name in spec.secrets:
        if name not in known:
            out.append(f"secret {name} is not set in vars, the inventory or the environment")
    return out


def format_report(report: CheckReport, *, verbose: bool = False) -> str:
    spec, plan = report.spec, report.plan
    width = 100
    lines = [
        f"spec        {spec.path}: {spec.service} {spec.version}",
        f"inventory   {report.inventory_path}"
        + (f" ({report.inventory_format})" if report.inventory_format else ""),
    ]
    if report.vars_files:
        lines.append(f"vars files  {len(report.vars_files)} read (group_vars/, host_vars/)")
        shown = report.vars_files if verbose else report.vars_files[:VARS_FILES_SHOWN]
        lines += [f"  {file}" for file in shown]
        if len(shown) < len(report.vars_files):
            lines.append(f"  ... {len(report.vars_files) - len(shown)} more (--verbose lists all)")
    lines += [
        f"targets     {report.targets}: {_count(plan.total_hosts)}",
        f"plan        {_count(len(plan), 'batch', 'batches')}, order {spec.order}"
        + (f" (seed {spec.seed})" if spec.seed is not None else "")
        + f", at most {spec.max_parallel} hosts at a time",
    ]
    for i, batch in enumerate(plan.batches):
        at_a_time = f" ({spec.max_parallel} at a time)" if len(batch) > spec.max_parallel else ""
        lines.append(f"  batch {i + 1:<4}{_count(len(batch)):<11}{_names(batch)}{at_a_time}")
    budget = textwrap.wrap(report.budget, width - 12)
    lines.append("budget      " + "\n            ".join(budget))
    lines.append(f"strategy    {report.strategy}")
    lines.append(f"gate        {report.gate}")
    lines.append(f"on_failure  {spec.on_failure}")
    lines.append(f"rollback    {describe_rollback(spec)}")
    lines.extend(describe_notify(spec))
    lines.extend(describe_analysis(spec))
    lines.extend(describe_balancer(spec, report.servers, report.pools))
    if report.commands:
        lines.append(f"commands    for {plan.hosts[0]}, the first host (secrets masked)")
        for c in report.commands:
            extra = []
            if c.timeout is not None:
                extra.append(f"timeout {format_duration(c.timeout)}")
            if c.raw:
                extra.append("raw")
            if c.once:
                extra.append("once")
            suffix = f"   [{', '.join(extra)}]" if extra else ""
            lines.append(f"  {c.label:<24}{c.command}{suffix}")
    lines += format_become(report.become)
    lines += format_polls(report.polls, report.polls_sampled)
    if report.warnings:
        lines.append("warnings")
        lines.extend(f"  - {w}" for w in report.warnings)
    return "\n".join(lines)


def _renderer(spec: RolloutSpec, host: Host, redactor: Redactor) -> Callable[[str], str]:
    """A host's poll commands as its monitor runs them (secrets masked)."""
    context = build_context(spec, host, PREVIOUS_VERSION_SHOWN)
    return lambda command: redactor.redact(render(command, context))


def format_polls(groups: list[PollGroup], sampled: str | None = None) -> list[str]:
    """The ``polls`` section: per group of hosts with identical polls, what runs on
    them and how often (console.signals.polls, what the monitors start); ``sampled``:
    which hosts run them when not every host does."""
    if not groups:
        return []
    lines = ["polls       per host, from preflight on (hosts with identical polls grouped)"]
    if sampled:
        lines.append(f"  {sampled}")
    for group in groups:
        shell = "" if group.shared_shell else ", one command per poll (rolldeck_shell: none)"
        lines.append(f"  {_count(len(group.hosts))}: {_names(group.hosts)}{shell}")
        for poll in group.polls:
            lines.append(f"    {poll.signal:<15}{poll.describe()}")
            lines.append(f"    {'':<15}{poll.command}")
        if not group.polls:
            lines.append("    nothing is polled")
        lines.extend(f"    {'off':<15}{what}" for what in group.off)
    return lines


def format_become(groups: list[becomemod.BecomeGroup]) -> list[str]:
    """The ``become`` section: per group of hosts, who runs which command (sudo as
    whom, or the login user; console/become.py)."""
    if not any(group.applies for group in groups):
        return ["become      off: every command runs as the login user"]
    lines = ["become      per host (health gating, polls, preflight, leases: the login user)"]
    for group in groups:
        lines.append(f"  {_count(len(group.hosts))}: {_names(group.hosts)}")
        for who, labels in group.runs:
            lines.append(f"    {who}: {', '.join(labels)}")
    return lines


def _count(n: int, one: str = "host", many: str = "hosts") -> str:
    return f"{n} {one if n == 1 else many}"


def _names(batch: tuple[str, ...]) -> str:
    batch = tuple(printable(name) for name in batch)  # a newline in a name stays on its line
    if len(batch) <= NAMES_SHOWN:
        return " ".join(batch)
    head = " ".join(batch[: NAMES_SHOWN - 2])
    return f"{head} ... {batch[-1]} ({len(batch) - NAMES_SHOWN + 1} not shown)"
