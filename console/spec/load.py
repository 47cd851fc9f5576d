"""Rollout spec, the loader: YAML text to :mod:`console.spec.model` dataclasses, with
file:line:field errors, on the one YAML walker (:mod:`console.core.yamlnodes`).

Format rules the loader enforces (examples/rollout.yaml shows them all):

- Durations: ``500ms``, ``90s``, ``2m``, ``1h30m``, ``1d``; a bare number is seconds.
  Never negative, at most 30 days; only a bake time may be 0 (``0`` means ``auto``).
- Percentages: ``10%``. ``max_failures`` and batch sizes are percentages of the
  targeted hosts; ``error_rate.max`` is stored as a ratio (``2%`` -> 0.02; a bare
  number is already a ratio, so ``2`` is an error rather than 200%).
- ``batches`` is a ramp (``[1, 10%, 100%]``) or one size; ``max_failures`` is a count
  or a percentage; ``between_batches`` is ``manual``, ``auto``, a bake time, or
  ``{gate, timeout, on_timeout, bake}``.
- ``steps`` and ``preflight`` items are ``{name, run, timeout, raw}`` (steps also take
  ``once``) or a plain command; unnamed ones are ``step-N`` / ``preflight-N`` /
  ``rollback-N``, and names are unique per list. ``rollback`` is ``{steps, batches}``
  or a plain list of steps. ``health`` and ``logs`` may be a plain command, ``vitals``
  ``true``. ``vitals`` is polled by default (no key); ``vitals: false``, ``logs: false``
  and ``metrics: false`` mean no such polls at all (:mod:`console.signals.polls`).
- Commands are templates (see :mod:`console.templating`), checked when loaded.
- Rules across fields: ``{previous_version}`` needs ``current_version``;
  ``on_failure: rollback`` (or a gate's ``on_timeout: rollback``) needs rollback
  steps; ``error_rate`` needs ``metrics`` or ``logs.error_pattern``; ``seed`` needs
  ``order: shuffle``.
- Unknown keys, duplicate keys and wrong types are errors, each naming the file, the
  line and the field path (``steps[2].timeout``, 0-based indices). Merge keys
  (``<<: *defaults``) apply anywhere; the walker caps nesting and alias expansion.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import yaml

from console import become, templating
from console.core.errors import InputError, did_you_mean
from console.core.files import MAX_INPUT_BYTES, read_limited, universal_newlines
from console.core.yamlnodes import TAG, Doc, is_null, join, line_of
from console.spec import queries
from console.spec.balancer import DRAIN_KEYS, LB_KEYS, LB_TYPES, LoadBalancerSpec
from console.spec.model import (
    COMPARES,
    LEASE_PATH,
    LEASE_STALE_AFTER,
    NOTIFY_EVENTS,
    ON_FAILURE,
    ORDERS,
    PERCENT,
    PROVIDERS,
    STEP_TIMEOUT,
    STRATEGIES,
    WATCH_EVERY_FLOOR,
    AnalysisMetric,
    AnalysisSpec,
    Budget,
    ErrorRateSpec,
    GateSpec,
    HealthSpec,
    HookSpec,
    LeaseSpec,
    LogsSpec,
    MetricsSpec,
    PrometheusSpec,
    RequireSpec,
    RollbackSpec,
    RolloutSpec,
    Step,
    VitalsSpec,
    commands,
    release_version_command,
)

# The YAML is composed into its node tree (not constructed into Python objects) and
# walked with the schema below, so every error can name the node's own line. Scalars
# are converted by their resolved tag; a number written where text is expected
# (``version: 2.10``) keeps its exact spelling.

MAX_DURATION = 30 * 86400.0  # longer than this is a typo, and overflows some timers
PREFLIGHT_TIMEOUT = 60.0

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_LB_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_SERIES = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*(\{.*\})?")

TOP_KEYS = (
    "service",
    "version",
    "inventory",
    "targets",
    "batches",
    "max_parallel",
    "max_failures",
    "on_failure",
    "between_batches",
    "current_version",
    "release_dir",
    "preflight",
    "steps",
    "health",
    "logs",
    "metrics",
    "vitals",
    "error_rate",
    "analysis",
    "rollback",
    "order",
    "seed",
    "environment",
    "secrets",
    "vars",
    "lock_host",
    "lease",
    "load_balancer",
    "strategy",
    "traffic",
    "blue",
    "green",
    "become",
    "become_user",
    "become_method",
    "become_password",
    "notify",
    "metrics_out",
    "requires",
)
BECOME_STEP_KEYS = ("become", "become_user", "become_method")  # console/become.py
STEP_KEYS = ("name", "run", "timeout", "raw", "once", *BECOME_STEP_KEYS)
AUX_STEP_KEYS = ("name", "run", "timeout", "raw")  # preflight and rollback: no ``once``
ROLLBACK_STEP_KEYS = (*AUX_STEP_KEYS, *BECOME_STEP_KEYS)  # preflight's too: become applies
GATE_KINDS = ("manual", "auto", "bake", "command", "approval")
GATE_KEYS = ("gate", "bake", "timeout", "on_timeout", "run", "every", "approvers", "before")
HOOK_KEYS = ("on", "run", "webhook", "format", "timeout", "retries")
HOOK_FORMATS = ("json", "slack")
MAX_HOOK_RETRIES = 10
ON_TIMEOUT = ("abort", "pause", "rollback", "continue")


def load_spec(path: str | os.PathLike[str]) -> RolloutSpec:
    """Read and validate a rollout spec file; raise InputError for anything wrong."""
    name = os.fspath(path)
    try:  # the size is bounded before anything is parsed (``check /dev/zero``)
        text = universal_newlines(read_limited(name, MAX_INPUT_BYTES, "a spec").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read spec: {exc.strerror or exc}", file=name) from None
    return parse_spec(text, name)


def parse_spec(text: str, path: str = "<spec>") -> RolloutSpec:
    """Validate spec text; ``path`` names it in errors and anchors ``inventory``."""
    doc = Doc(text, path)
    if doc.root is None:
        raise InputError("the spec is empty", file=path, line=1)
    try:
        return _Reader(doc).spec(doc.root, text)
    except RecursionError:  # the walker bounds depth and merges; a guard, not a path
        raise InputError("YAML aliases refer to themselves", file=path) from None


class _Reader:
    """Typed accessors over YAML nodes; each failure is an InputError at the node."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.path = doc.file
        self.lines: dict[str, int] = {}

    # -- primitives -------------------------------------------------------------------

    def fail(self, node: yaml.Node, field: str, message: str) -> NoReturn:
        self.doc.fail(node, field, message)

    def mapping(
        self,
        node: yaml.Node,
        field: str,
        allowed: Sequence[str] | None,
        required: Sequence[str] = (),
    ) -> dict[str, yaml.Node]:
        """Key -> value node; unknown, duplicate and missing keys are errors.

        ``allowed`` None accepts any key (vars). Merge keys (``<<: *defaults``) apply,
        with keys written in the mapping itself winning.
        """
        out: dict[str, yaml.Node] = {}
        for entry in self.doc.mapping(node, field, allowed=allowed, required=required):
            out[entry.key] = entry.value
            self.lines[join(field, entry.key)] = line_of(entry.key_node)
        return out

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        items = self.doc.sequence(node, field)
        for i, item in enumerate(items):
            self.lines[f"{field}[{i}]"] = line_of(item)
        return items

    def scalar(self, node: yaml.Node, field: str) -> Any:
        return self.doc.scalar(node, field)

    def text(self, node: yaml.Node, field: str, *, empty: bool = False) -> str:
        """A string; a number keeps its spelling (``version: 2.10`` is "2.10")."""
        value = self.scalar(node, field)
        if node.tag in (TAG + "int", TAG + "float"):
            value = str(node.value)
        if not isinstance(value, str):
            shown = "null" if value is None else str(value).lower()
            self.fail(node, field, f"expected text, got {shown}")
        if not empty and not value.strip():
            self.fail(node, field, "must not be empty")
        return value

    def name(self, node: yaml.Node, field: str) -> str:
        """Text shown in headers and journal lines: one line, no control characters."""
        value = self.text(node, field)
        if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            self.fail(node, field, "must be one line without surrounding spaces")
        return value

    def integer(self, node: yaml.Node, field: str, *, minimum: int = 0) -> int:
        value = self.scalar(node, field)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, field, f"expected a whole number, got {node.value!r}")
        if value < minimum:
            what = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            self.fail(node, field, f"{what}, got {value}")
        return value

    def number(self, node: yaml.Node, field: str) -> float:
        value = self.scalar(node, field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, field, f"expected a number, got {node.value!r}")
        if not math.isfinite(value):
            self.fail(node, field, f"must be a finite number, got {node.value!r}")
        if value < 0:
            self.fail(node, field, f"must not be negative, got {node.value}")
        return float(value)

    def boolean(self, node: yaml.Node, field: str) -> bool:
        value = self.scalar(node, field)
        if not isinstance(value, bool):
            self.fail(node, field, f"expected true or false, got {node.value!r}")
        return value

    def choice(self, node: yaml.Node, field: str, choices: Sequence[str]) -> str:
        value = self.text(node, field)
        if value not in choices:
            hint = did_you_mean(value, choices)
            self.fail(node, field, f"{value!r} is not one of {', '.join(choices)}{hint}")
        return value

    def duration(self, node: yaml.Node, field: str, *, zero: bool = False) -> float:
        """``90s``, ``2m``, ``1h30m``, ``500ms``, ``1d``; a bare number is seconds."""
        value = self.scalar(node, field)
        if isinstance(value, str):
            seconds = parse_duration(value)
            if seconds is None:
                self.fail(
                    node,
                    field,
                    f"{value!r} is not a duration (write e.g. 90s, 2m, 1h30m, 500ms)",
                )
        else:
            seconds = self.number(node, field)
        if seconds < 0:
            self.fail(node, field, f"must not be negative, got {node.value}")
        if seconds == 0 and not zero:
            self.fail(node, field, "must be longer than 0")
        if seconds > MAX_DURATION:
            self.fail(node, field, f"{node.value} is longer than 30 days")
        return seconds

    def percent(self, node: yaml.Node, field: str) -> float:
        """``"10%"`` -> 10.0, in 0..100."""
        value = self.scalar(node, field)
        match = PERCENT.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            self.fail(node, field, f"expected a percentage like 10%, got {node.value!r}")
        pct = float(match.group(1))
        if pct > 100:
            self.fail(node, field, f"a percentage is at most 100%, got {node.value}")
        return pct

    def command(self, node: yaml.Node, field: str) -> str:
        """A command template: placeholders are checked now, not at run time."""
        value = self.text(node, field)
        try:
            templating.parse(value)
        except templating.TemplateError as exc:
            self.fail_at_offset(node, field, value, exc.offset, exc.message)
        return value

    def release_dir(self, node: yaml.Node, field: str) -> str:
        """An absolute directory path; placeholders allowed (rendered quoted), other
        shell syntax not, as the path goes into a command unquoted around them."""
        value = self.command(node, field)
        if not value.startswith(("/", "{")):
            self.fail(node, field, f"must be an absolute path, not {value!r}")
        literal = re.sub(r"\{[^{}]*\}", "", value)
        bad = sorted(set(re.sub(r"[A-Za-z0-9_./@+,:=-]", "", literal)))
        if bad:
            self.fail(
                node,
                field,
                f"must be a plain path; {''.join(bad)!r} would need quoting "
                "(use a variable: release_dir: '{vars.root}')",
            )
        return value.rstrip("/") or "/"

    def fail_at_offset(
        self, node: yaml.Node, field: str, value: str, offset: int, message: str
    ) -> NoReturn:
        """Point into a literal block (``run: |``) at the line holding ``offset``."""
        line = line_of(node)
        if isinstance(node, yaml.ScalarNode) and node.style == "|":
            line += 1 + value.count("\n", 0, offset)
        raise InputError(message, file=self.path, line=line, field=field)

    # -- the schema ---------------------------------------------------------------------

    def spec(self, root: yaml.Node, text: str) -> RolloutSpec:
        top = self.mapping(root, "", TOP_KEYS, required=("service", "version", "steps"))
        kw: dict[str, Any] = {}

        def opt(key: str, read: Callable[[yaml.Node, str], Any]) -> None:
            node = top.get(key)
            if node is not None and not is_null(node):
                kw[key] = read(node, key)

        kw["service"] = self.name(top["service"], "service")
        kw["version"] = self.name(top["version"], "version")
        opt("inventory", lambda n, f: _resolve_inventory(self.path, self.text(n, f)))
        opt("targets", self.targets)
        opt("batches", self.batches)
        opt("max_parallel", lambda n, f: self.integer(n, f, minimum=1))
        opt("max_failures", self.budget)
        opt("on_failure", lambda n, f: self.choice(n, f, ON_FAILURE))
        opt("between_batches", self.gate)
        opt("current_version", self.command)
        opt("release_dir", self.release_dir)
        if "release_dir" in kw:
            if "current_version" in kw:
                self.fail(
                    top["release_dir"],
                    "release_dir",
                    "give current_version or release_dir, not both "
                    "(release_dir reads the version from the `current` symlink)",
                )
            kw["current_version"] = release_version_command(kw["release_dir"])
        opt(
            "preflight",
            lambda n, f: self.steps(n, f, "preflight", PREFLIGHT_TIMEOUT, keys=ROLLBACK_STEP_KEYS),
        )
        kw["steps"] = self.steps(top["steps"], "steps", "step", STEP_TIMEOUT, required=True)
        opt("health", self.health)
        opt("logs", self.logs)
        opt("metrics", self.metrics)
        opt("vitals", self.vitals)
        kw["vitals_given"] = "vitals" in kw  # `vitals:` alone (null) is no key
        opt("error_rate", self.error_rate)
        opt("analysis", self.analysis)
        if "analysis" in kw:
            kw["error_rate"] = self.ssh_metric(kw["analysis"], top, kw.get("error_rate"))
        opt("rollback", self.rollback)
        opt("order", lambda n, f: self.choice(n, f, ORDERS))
        opt("seed", lambda n, f: self.integer(n, f))
        opt("environment", self.text)
        opt("secrets", self.secrets)
        opt("vars", self.variables)
        opt("lock_host", self.name)
        opt("lease", self.lease)
        opt("load_balancer", self.load_balancer)
        opt("strategy", lambda n, f: self.choice(n, f, STRATEGIES))
        opt("traffic", self.traffic)
        opt("blue", self.name)
        opt("green", self.name)
        opt("become", self.boolean)
        opt("become_user", self.become_user)
        opt("become_method", self.become_method)
        opt("become_password", self.become_password)
        opt("notify", self.notify)
        opt("metrics_out", lambda n, f: _resolve_inventory(self.path, self.text(n, f)))
        opt("requires", self.requires)
        kw.setdefault("inventory", None)
        spec = RolloutSpec(path=self.path, text=text, lines=self.lines, **kw)
        self.cross_check(spec, top)
        return spec

    def targets(self, node: yaml.Node, field: str) -> str:
        """A host pattern; a list of patterns is their union (``web:api``)."""
        if isinstance(node, yaml.SequenceNode):
            items = self.sequence(node, field)
            if not items:
                self.fail(node, field, "must not be empty")
            return ":".join(self.text(n, f"{field}[{i}]") for i, n in enumerate(items))
        return self.text(node, field)

    def batches(self, node: yaml.Node, field: str) -> tuple[int | str, ...]:
        """A ramp ``[1, 10%, 25%, 100%]``, or one size (a count or a percentage)."""
        if not isinstance(node, yaml.SequenceNode):
            return (self.batch_size(node, field),)
        items = self.sequence(node, field)
        if not items:
            self.fail(node, field, "must list at least one batch size")
        return tuple(self.batch_size(n, f"{field}[{i}]") for i, n in enumerate(items))

    def batch_size(self, node: yaml.Node, field: str) -> int | str:
        value = self.scalar(node, field)
        if isinstance(value, str):
            pct = self.percent(node, field)
            if pct <= 0:
                self.fail(node, field, "a batch percentage must be more than 0%")
            return f"{pct:g}%"
        return self.integer(node, field, minimum=1)

    def budget(self, node: yaml.Node, field: str) -> Budget:
        value = self.scalar(node, field)
        if isinstance(value, str):
            return Budget(percent=self.percent(node, field))
        return Budget(count=self.integer(node, field))

    def gate(self, node: yaml.Node, field: str) -> GateSpec:
        """``manual`` | ``auto`` | a bake time | ``{gate, timeout, on_timeout, bake}``."""
        if isinstance(node, yaml.MappingNode):
            m = self.mapping(node, field, GATE_KEYS)
            bake = self.duration(m["bake"], f"{field}.bake", zero=True) if "bake" in m else 0.0
            default = "bake" if "bake" in m else None
            if "gate" in m:
                kind = self.choice(m["gate"], f"{field}.gate", GATE_KINDS)
            elif default:
                kind = default
            else:
                self.fail(node, f"{field}.gate", "missing required key 'gate'")
            if kind == "bake" and "bake" not in m:
                self.fail(node, f"{field}.bake", "a bake gate needs a bake time")
            if kind != "bake" and "bake" in m:
                self.fail(m["bake"], f"{field}.bake", f"a {kind} gate has no bake time")
            asks: dict[str, Any] = {}
            if kind == "command":
                if "run" not in m:
                    self.fail(node, f"{field}.run", "a command gate needs run: the command")
                asks["run"] = self.command(m["run"], f"{field}.run")
                if "every" in m:
                    asks["every"] = self.duration(m["every"], f"{field}.every")
            else:
                for key in ("run", "every"):
                    if key in m:
                        self.fail(m[key], f"{field}.{key}", f"only a command gate has {key}")
            if kind == "approval":
                if "approvers" in m:
                    asks["approvers"] = self.integer(
                        m["approvers"], f"{field}.approvers", minimum=1
                    )
                if "before" in m:
                    asks["before"] = self.choice(m["before"], f"{field}.before", ("every", "final"))
            else:
                for key in ("approvers", "before"):
                    if key in m:
                        self.fail(m[key], f"{field}.{key}", f"only an approval gate has {key}")
            timeout = None
            if "timeout" in m:
                if kind not in ("manual", "command", "approval"):
                    self.fail(
                        m["timeout"],
                        f"{field}.timeout",
                        "only a manual, command or approval gate times out",
                    )
                timeout = self.duration(m["timeout"], f"{field}.timeout")
            on_timeout = "abort"
            if "on_timeout" in m:
                if timeout is None:
                    self.fail(m["on_timeout"], f"{field}.on_timeout", "needs a timeout")
                on_timeout = self.choice(m["on_timeout"], f"{field}.on_timeout", ON_TIMEOUT)
            return GateSpec(kind=kind, bake=bake, timeout=timeout, on_timeout=on_timeout, **asks)  # type: ignore[arg-type]
        value = self.scalar(node, field)
        if value in ("manual", "auto"):
            return GateSpec(kind=value)
        if isinstance(value, bool | None) or (
            isinstance(value, str) and parse_duration(value) is None
        ):
            hint = did_you_mean(str(node.value), ("manual", "auto"))
            self.fail(node, field, f"expected manual, auto or a bake time like 2m{hint}")
        bake = self.duration(node, field, zero=True)
        return GateSpec(kind="bake", bake=bake) if bake > 0 else GateSpec(kind="auto")

    def steps(
        self,
        node: yaml.Node,
        field: str,
        prefix: str,
        timeout: float,
        *,
        required: bool = False,
        keys: Sequence[str] = STEP_KEYS,
    ) -> tuple[Step, ...]:
        items = self.sequence(node, field)
        if required and not items:
            self.fail(node, field, "must list at least one step")
        steps: list[Step] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            step = self.step(item, f"{field}[{i}]", f"{prefix}-{i + 1}", timeout, keys)
            if step.name in seen:
                self.fail(
                    item,
                    f"{field}[{i}].name",
                    f"duplicate step name {step.name!r} (also {field}[{seen[step.name]}])",
                )
            seen[step.name] = i
            steps.append(step)
        return tuple(steps)

    def step(
        self, node: yaml.Node, field: str, name: str, timeout: float, keys: Sequence[str]
    ) -> Step:
        if isinstance(node, yaml.ScalarNode):
            self.lines[f"{field}.run"] = line_of(node)
            run = self.command(node, f"{field}.run")
            return Step(name=name, run=run, timeout=timeout, line=line_of(node))
        m = self.mapping(node, field, keys, required=("run",))
        step = Step(
            name=self.text(m["name"], f"{field}.name") if "name" in m else name,
            run=self.command(m["run"], f"{field}.run"),
            timeout=self.duration(m["timeout"], f"{field}.timeout") if "timeout" in m else timeout,
            raw=self.boolean(m["raw"], f"{field}.raw") if "raw" in m else False,
            once=self.boolean(m["once"], f"{field}.once") if "once" in m else False,
            line=line_of(node),
            become=self.boolean(m["become"], f"{field}.become") if "become" in m else None,
            become_user=(
                self.become_user(m["become_user"], f"{field}.become_user")
                if "become_user" in m
                else None
            ),
        )
        if "become_method" in m:
            self.become_method(m["become_method"], f"{field}.become_method")
        return step

    def become_user(self, node: yaml.Node, field: str) -> str:
        """A user name (or ``#UID``) for ``sudo -u``; shell syntax is refused."""
        value = self.text(node, field)
        problem = become.user_problem(value)
        if problem:
            self.fail(node, field, problem)
        return value

    def become_method(self, node: yaml.Node, field: str) -> str:
        value = self.text(node, field)
        if value not in become.METHODS:
            hint = did_you_mean(value, become.METHODS)
            self.fail(
                node,
                field,
                f"become_method {value!r} is not supported{hint}: rolldeck becomes "
                f"with {', '.join(become.METHODS)} only",
            )
        return value

    def become_password(self, node: yaml.Node, field: str) -> str:
        """A template naming the var that holds it (``'{vars.become_pass}'``): the
        password itself never sits in a spec file (nor in the journal's copy of it)."""
        value = self.command(node, field)
        if not any(p.var is not None for p in templating.placeholders(value)):
            self.fail(
                node,
                field,
                "must name the var holding the password, e.g. '{vars.become_pass}' (with "
                "become_pass in secrets, set from the environment), not the password itself",
            )
        return value

    def notify(self, node: yaml.Node, field: str) -> tuple[HookSpec, ...]:
        """``notify: [{on: [...], run: CMD | webhook: URL, format, timeout, retries}]``."""
        return tuple(
            self.hook(item, f"{field}[{i}]") for i, item in enumerate(self.sequence(node, field))
        )

    def hook(self, node: yaml.Node, field: str) -> HookSpec:
        m = self.mapping(node, field, HOOK_KEYS, required=("on",))
        names = self.hook_events(m["on"], join(field, "on"))
        if ("run" in m) == ("webhook" in m):
            self.fail(node, field, "give run (a local command) or webhook (a URL), one of them")
        kw: dict[str, Any] = {"on": names, "line": line_of(node)}
        if "run" in m:
            kw["run"] = self.text(m["run"], join(field, "run"))
            if "format" in m:
                self.fail(m["format"], join(field, "format"), "only a webhook has a format")
        else:
            url = self.name(m["webhook"], join(field, "webhook"))
            if not re.match(r"https?://[^/\s]+", url):
                self.fail(
                    m["webhook"], join(field, "webhook"), "must be an http:// or https:// URL"
                )
            kw["webhook"] = url
            if "format" in m:
                kw["format"] = self.choice(m["format"], join(field, "format"), HOOK_FORMATS)
        if "timeout" in m:
            kw["timeout"] = self.duration(m["timeout"], join(field, "timeout"))
        if "retries" in m:
            kw["retries"] = self.integer(m["retries"], join(field, "retries"))
            if kw["retries"] > MAX_HOOK_RETRIES:
                self.fail(
                    m["retries"], join(field, "retries"), f"at most {MAX_HOOK_RETRIES} retries"
                )
        return HookSpec(**kw)

    def hook_events(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        """Event names (``all``: every one); unknown names are errors with a hint."""
        items = self.sequence(node, field) if isinstance(node, yaml.SequenceNode) else [node]
        if not items:
            self.fail(node, field, "must name at least one event")
        names: list[str] = []
        for i, item in enumerate(items):
            where = f"{field}[{i}]" if isinstance(node, yaml.SequenceNode) else field
            name = self.text(item, where)
            if name == "all":
                names.extend(NOTIFY_EVENTS)
                continue
            if name not in NOTIFY_EVENTS:
                hint = did_you_mean(name, NOTIFY_EVENTS)
                self.fail(
                    item, where, f"{name!r} is not an event: {', '.join(NOTIFY_EVENTS)}{hint}"
                )
            names.append(name)
        return tuple(dict.fromkeys(names))

    def requires(self, node: yaml.Node, field: str) -> tuple[RequireSpec, ...]:
        """``[{environment, outcome, same_version, within}]``: promotion rules."""
        out = []
        for i, item in enumerate(self.sequence(node, field)):
            where = f"{field}[{i}]"
            keys = ("environment", "outcome", "same_version", "within")
            m = self.mapping(item, where, keys, required=("environment",))
            kw: dict[str, Any] = {"line": line_of(item)}
            kw["environment"] = self.name(m["environment"], join(where, "environment"))
            if "outcome" in m:
                kw["outcome"] = self.choice(
                    m["outcome"], join(where, "outcome"), ("succeeded", "rolled_back", "failed")
                )
            if "same_version" in m:
                kw["same_version"] = self.boolean(m["same_version"], join(where, "same_version"))
            if "within" in m:
                kw["within"] = self.duration(m["within"], join(where, "within"))
            out.append(RequireSpec(**kw))
        return tuple(out)

    def lease(self, node: yaml.Node, field: str) -> LeaseSpec:
        """``lease: {path: DIR, stale_after: DURATION}``: where each host keeps the
        leases (a template; absolute, ``~/...`` or starting with a placeholder)."""
        m = self.mapping(node, field, ("path", "stale_after"))
        path = LEASE_PATH
        if "path" in m:
            where = join(field, "path")
            path = self.command(m["path"], where).rstrip("/") or "/"
            if not path.startswith(("/", "~/", "{")):
                self.fail(m["path"], where, f"must be absolute or start with ~/, not {path!r}")
        stale = LEASE_STALE_AFTER
        if "stale_after" in m:
            where = join(field, "stale_after")
            stale = self.duration(m["stale_after"], where)
            if stale < 5:
                self.fail(m["stale_after"], where, "must be at least 5s")
        return LeaseSpec(path=path, stale_after=stale)

    def load_balancer(self, node: yaml.Node, field: str) -> LoadBalancerSpec:
        """``load_balancer: {type: haproxy, host, socket | api, backend, server, drain}``."""
        m = self.mapping(node, field, LB_KEYS, required=("host", "backend"))
        kw: dict[str, Any] = {}
        if "type" in m:
            kw["type"] = self.choice(m["type"], join(field, "type"), LB_TYPES)
        kw["host"] = self.name(m["host"], join(field, "host"))
        kw["backend"] = self.lb_name(m["backend"], join(field, "backend"))
        if ("socket" in m) == ("api" in m):
            self.fail(
                node,
                field,
                "give socket (the admin socket's path on the host) or api (HOST:PORT), exactly one",
            )
        if "socket" in m:
            where = join(field, "socket")
            path = self.text(m["socket"], where)
            if not path.startswith("/") or "\x00" in path:
                self.fail(m["socket"], where, f"must be an absolute path, not {path!r}")
            kw["socket"] = path
        if "api" in m:
            kw["api"] = self.host_port(m["api"], join(field, "api"))
        if "server" in m:
            kw["server"] = self.command(m["server"], join(field, "server"))
        if "drain" in m:
            where = join(field, "drain")
            d = self.mapping(m["drain"], where, DRAIN_KEYS)
            if "wait_sessions" in d:
                kw["wait_sessions"] = self.integer(d["wait_sessions"], join(where, "wait_sessions"))
            if "timeout" in d:
                kw["drain_timeout"] = self.duration(d["timeout"], join(where, "timeout"))
        return LoadBalancerSpec(**kw)

    def traffic(self, node: yaml.Node, field: str) -> tuple[float, ...]:
        """``traffic: [5%, 25%, 100%]``: the canary's share of the backend, step by
        step; rising, each more than 0%, the last 100% (the promotion)."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, field, "must be a list of percentages, like [5%, 25%, 100%]")
        items = self.sequence(node, field)
        shares: list[float] = []
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            pct = self.percent(item, where)
            if pct <= 0:
                self.fail(item, where, "a traffic share must be more than 0%")
            if shares and pct <= shares[-1]:
                self.fail(item, where, f"the shares must rise: {pct:g}% after {shares[-1]:g}%")
            shares.append(pct)
        if not shares or shares[-1] != 100:
            self.fail(
                node,
                field,
                "must end with 100% (the promotion: every host then takes its own share)",
            )
        return tuple(shares)

    def lb_name(self, node: yaml.Node, field: str) -> str:
        """A HAProxy backend name: it goes into a runtime API command line."""
        value = self.text(node, field)
        if not _LB_NAME.fullmatch(value):
            self.fail(node, field, f"not a HAProxy name (letters, digits, - _ . :): {value!r}")
        return value

    def host_port(self, node: yaml.Node, field: str) -> str:
        """``HOST:PORT`` (``[::1]:9999`` for IPv6), the port 1-65535."""
        value = self.text(node, field)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(node, field, f"must be HOST:PORT, like 127.0.0.1:9999, not {value!r}")
        return value

    def _fields(
        self, m: dict[str, yaml.Node], field: str, readers: dict[str, Callable[..., Any]]
    ) -> dict[str, Any]:
        return {key: readers[key](m[key], join(field, key)) for key in readers if key in m}

    def _positive_int(self, node: yaml.Node, field: str) -> int:
        return self.integer(node, field, minimum=1)

    def health(self, node: yaml.Node, field: str) -> HealthSpec:
        if isinstance(node, yaml.ScalarNode):
            return HealthSpec(run=self.command(node, field))
        keys = ("run", "every", "healthy_after", "deadline", "timeout")
        extra = ("flap_window", "flap_transitions", "watch_every")
        m = self.mapping(node, field, (*keys, *extra), ("run",))
        kw = self._fields(
            m,
            field,
            {
                "run": self.command,
                "every": self.duration,
                "healthy_after": self._positive_int,
                "deadline": self.duration,
                "timeout": self.duration,
                "flap_window": self.duration,
                "flap_transitions": lambda n, f: self.integer(n, f, minimum=2),
                "watch_every": self.duration,
            },
        )
        if "watch_every" not in kw and HealthSpec(**kw).every < WATCH_EVERY_FLOOR:
            kw["watch_every"] = WATCH_EVERY_FLOOR  # the default: max(every, 1s)
        spec = HealthSpec(**kw)
        needed = (spec.healthy_after - 1) * spec.every
        if spec.deadline < needed:
            self.fail(
                m.get("deadline", node),
                join(field, "deadline"),
                f"{format_duration(spec.deadline)} is too short for {spec.healthy_after} passes "
                f"{format_duration(spec.every)} apart (needs at least {format_duration(needed)})",
            )
        return spec

    def switched_off(self, node: yaml.Node, field: str, needs: str) -> bool:
        """``false`` turns a signal off (no such polls at all); ``true`` is refused
        where the signal has no default command (``needs`` says what to give)."""
        if not (isinstance(node, yaml.ScalarNode) and node.tag == TAG + "bool"):
            return False
        if self.boolean(node, field):
            self.fail(node, field, f"true needs {needs}; false turns {field} off")
        return True

    def logs(self, node: yaml.Node, field: str) -> LogsSpec | None:
        if self.switched_off(node, field, "the command that follows the log"):
            return None
        if isinstance(node, yaml.ScalarNode):
            return LogsSpec(run=self.command(node, field))
        m = self.mapping(node, field, ("run", "error_pattern"), required=("run",))
        pattern = None
        if "error_pattern" in m:
            pattern = self.text(m["error_pattern"], f"{field}.error_pattern")
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as exc:
                self.fail(m["error_pattern"], f"{field}.error_pattern", f"bad regex: {exc}")
        return LogsSpec(run=self.command(m["run"], f"{field}.run"), error_pattern=pattern)

    def metrics(self, node: yaml.Node, field: str) -> MetricsSpec | None:
        if self.switched_off(node, field, "{run, requests, errors}"):
            return None
        keys = ("run", "requests", "errors", "every", "timeout")
        m = self.mapping(node, field, keys, required=("run", "requests", "errors"))
        return MetricsSpec(
            **self._fields(
                m,
                field,
                {
                    "run": self.command,
                    "requests": self.series,
                    "errors": self.series,
                    "every": self.duration,
                    "timeout": self.duration,
                },
            )
        )

    def series(self, node: yaml.Node, field: str) -> str:
        value = self.text(node, field).strip()
        if not _SERIES.fullmatch(value):
            self.fail(
                node, field, f'{value!r} is not a series selector like name or name{{label="v"}}'
            )
        return value

    def vitals(self, node: yaml.Node, field: str) -> VitalsSpec | None:
        """``true`` (or no ``vitals`` key: the model's default) polls the default
        command every 5 s; ``false`` is None: no vitals polls at all."""
        if isinstance(node, yaml.ScalarNode) and node.tag == TAG + "bool":
            return VitalsSpec() if self.boolean(node, field) else None
        if isinstance(node, yaml.ScalarNode):
            return VitalsSpec(run=self.command(node, field))
        m = self.mapping(node, field, ("run", "every", "timeout"))
        return VitalsSpec(
            **self._fields(
                m,
                field,
                {"run": self.command, "every": self.duration, "timeout": self.duration},
            )
        )

    def error_rate(self, node: yaml.Node, field: str) -> ErrorRateSpec:
        keys = ("window", "max", "max_vs_baseline", "min_requests", "min_error_lines")
        m = self.mapping(node, field, keys)
        return ErrorRateSpec(
            **self._fields(
                m,
                field,
                {
                    "window": self.duration,
                    "max": self.ratio,
                    "max_vs_baseline": self.factor,
                    "min_requests": self._positive_int,
                    "min_error_lines": self._positive_int,
                },
            )
        )

    def analysis(self, node: yaml.Node, field: str) -> AnalysisSpec:
        keys = ("interval", "window", "prometheus", "metrics", "on_no_data")
        m = self.mapping(node, field, keys, required=("metrics",))
        kw = self._fields(
            m,
            field,
            {
                "interval": self.duration,
                "window": self.duration,
                "prometheus": self.prometheus,
                "on_no_data": lambda n, f: self.choice(n, f, ON_FAILURE),
            },
        )
        items = self.sequence(m["metrics"], join(field, "metrics"))
        if not items:
            self.fail(m["metrics"], join(field, "metrics"), "name at least one metric")
        metrics: list[AnalysisMetric] = []
        for i, item in enumerate(items):
            metric = self.analysis_metric(item, f"{field}.metrics[{i}]")
            if any(x.name == metric.name for x in metrics):
                self.fail(item, f"{field}.metrics[{i}].name", f"{metric.name!r} is named twice")
            if metric.provider == "prometheus" and "prometheus" not in kw:
                self.fail(
                    item,
                    f"{field}.metrics[{i}].provider",
                    "a prometheus metric needs analysis.prometheus: {url: ...}",
                )
            metrics.append(metric)
        if sum(x.provider == "ssh" for x in metrics) > 1:
            self.fail(m["metrics"], join(field, "metrics"), "at most one ssh metric")
        return AnalysisSpec(metrics=tuple(metrics), **kw)

    def prometheus(self, node: yaml.Node, field: str) -> PrometheusSpec:
        keys = ("url", "bearer_token", "basic_auth", "timeout")
        m = self.mapping(node, field, keys, required=("url",))
        url = self.text(m["url"], join(field, "url")).strip()
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            self.fail(m["url"], join(field, "url"), f"{url!r} is not an http:// or https:// URL")
        token = basic = None
        if "bearer_token" in m:
            token = self.command(m["bearer_token"], join(field, "bearer_token"))
        if "basic_auth" in m:
            where = join(field, "basic_auth")
            b = self.mapping(m["basic_auth"], where, ("username", "password"), ("username",))
            user = self.name(b["username"], join(where, "username"))
            password = ""
            if "password" in b:
                password = self.command(b["password"], join(where, "password"))
            basic = (user, password)
        if token is not None and basic is not None:
            self.fail(m["basic_auth"], join(field, "basic_auth"), "give bearer_token or basic_auth")
        timeout = 5.0
        if "timeout" in m:
            timeout = self.duration(m["timeout"], join(field, "timeout"))
        return PrometheusSpec(
            url=url.rstrip("/"), bearer_token=token, basic_auth=basic, timeout=timeout
        )

    def analysis_metric(self, node: yaml.Node, field: str) -> AnalysisMetric:
        keys = ("name", "provider", "query", "max", "max_vs_baseline", "compare", "floor")
        m = self.mapping(node, field, keys, required=("name",))
        name = self.name(m["name"], join(field, "name"))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            self.fail(m["name"], join(field, "name"), "letters, digits, '.', '_' and '-' only")
        provider = "prometheus"
        if "provider" in m:
            provider = self.choice(m["provider"], join(field, "provider"), PROVIDERS)
        kw = self._fields(
            m,
            field,
            {
                "max": self.bound,
                "max_vs_baseline": self.multiple,
                "floor": self.bound,
                "compare": lambda n, f: self.choice(n, f, COMPARES),
            },
        )
        if "max" not in kw and "max_vs_baseline" not in kw:
            self.fail(node, field, "give max, max_vs_baseline or both")
        if kw.get("compare") == "mann-whitney" and "max_vs_baseline" not in kw:
            self.fail(
                m["compare"],
                join(field, "compare"),
                "mann-whitney needs max_vs_baseline: the effect size a significant "
                "difference must also reach",
            )
        bound = m.get("max", m.get("floor"))  # how the bound is written says the unit
        written = str(bound.value) if isinstance(bound, yaml.ScalarNode) else ""
        if "%" in written:
            kw["unit"] = "ratio"
        elif parse_duration(written) is not None and not _NUMBER.fullmatch(written):
            kw["unit"] = "seconds"
        if provider == "ssh":
            for key in ("query", "floor", "compare"):
                if key in m:
                    self.fail(m[key], join(field, key), f"an ssh metric takes no {key}")
            if "max" in kw and kw["max"] > 1:
                self.fail(m["max"], join(field, "max"), "an ssh metric's max is a ratio (5%)")
            return AnalysisMetric(name=name, provider="ssh", line=line_of(node), **kw)
        if "query" not in m:
            self.fail(node, field, "a prometheus metric needs a query")
        query = self.text(m["query"], join(field, "query")).strip()
        try:
            queries.check_query(query)
        except queries.QueryError as exc:
            self.fail_at_offset(m["query"], join(field, "query"), query, exc.offset, exc.message)
        return AnalysisMetric(
            name=name, provider="prometheus", query=query, line=line_of(node), **kw
        )

    def bound(self, node: yaml.Node, field: str) -> float:
        """A metric's bound: ``5%`` (a ratio), ``300ms``/``1.5s`` (seconds) or a number."""
        value = self.scalar(node, field)
        if isinstance(value, str) and "%" in value:
            return self.percent(node, field) / 100.0
        if isinstance(value, str):
            seconds = parse_duration(value)
            if seconds is None or _NUMBER.fullmatch(value):
                self.fail(node, field, f"expected a number, 5% or 300ms, got {value!r}")
            return seconds
        return self.number(node, field)

    def multiple(self, node: yaml.Node, field: str) -> float:
        """``3x``, ``1.5x`` or a bare number: a multiple of the baseline."""
        value = self.scalar(node, field)
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*x\s*", value)
            if match is None:
                self.fail(node, field, f"expected a multiple like 1.5x, got {value!r}")
            factor = float(match.group(1))
            if factor <= 0:
                self.fail(node, field, "must be more than 0 (a multiple of the baseline)")
            return factor
        return self.factor(node, field)

    def ssh_metric(
        self, analysis: AnalysisSpec, top: dict[str, yaml.Node], given: ErrorRateSpec | None
    ) -> ErrorRateSpec | None:
        """An ``ssh`` metric is ``error_rate`` written inside ``analysis`` (its window
        is the analysis's): one of the two, never both."""
        ssh = [m for m in analysis.metrics if m.provider == "ssh"]
        if not ssh:
            return given
        if given is not None:
            self.fail(
                top["error_rate"],
                "error_rate",
                "give error_rate or an ssh metric in analysis, not both",
            )
        metric = ssh[0]
        return ErrorRateSpec(
            window=analysis.window, max=metric.max, max_vs_baseline=metric.max_vs_baseline
        )

    def ratio(self, node: yaml.Node, field: str) -> float:
        """``2%`` -> 0.02; a bare number is already a ratio in 0..1."""
        value = self.scalar(node, field)
        if isinstance(value, str):
            return self.percent(node, field) / 100.0
        ratio = self.number(node, field)
        if ratio > 1:
            self.fail(node, field, f"write a percentage like 2%, or a ratio 0..1; got {ratio:g}")
        return ratio

    def factor(self, node: yaml.Node, field: str) -> float:
        value = self.number(node, field)
        if value <= 0:
            self.fail(node, field, "must be more than 0 (a multiple of the baseline rate)")
        return value

    def rollback(self, node: yaml.Node, field: str) -> RollbackSpec:
        """``{steps: [...], batches: [...]}``; a bare list is the steps."""
        keys = ROLLBACK_STEP_KEYS
        if isinstance(node, yaml.SequenceNode):
            return RollbackSpec(steps=self.steps(node, field, "rollback", STEP_TIMEOUT, keys=keys))
        m = self.mapping(node, field, ("steps", "batches"))
        steps: tuple[Step, ...] = ()
        if "steps" in m and not is_null(m["steps"]):
            steps = self.steps(m["steps"], f"{field}.steps", "rollback", STEP_TIMEOUT, keys=keys)
        batches = None
        if "batches" in m and not is_null(m["batches"]):
            batches = self.batches(m["batches"], f"{field}.batches")
        return RollbackSpec(steps=steps, batches=batches)

    def secrets(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        names = []
        for i, item in enumerate(self.sequence(node, field)):
            name = self.text(item, f"{field}[{i}]")
            if not templating.VAR_NAME.fullmatch(name):
                self.fail(item, f"{field}[{i}]", f"{name!r} is not a var name")
            names.append(name)
        return tuple(names)

    def variables(self, node: yaml.Node, field: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.mapping(node, field, None).items():
            child = join(field, key)
            if not templating.VAR_NAME.fullmatch(key):
                self.fail(value, child, f"{key!r} is not a var name (letters, digits, '_')")
            out[key] = self.scalar(value, child)
        return out

    # -- rules across fields ----------------------------------------------------------

    def cross_check(self, spec: RolloutSpec, top: dict[str, yaml.Node]) -> None:
        def fail(where: str, message: str) -> NoReturn:
            raise InputError(message, file=self.path, line=self.lines.get(where), field=where)

        for where, step in commands(spec):
            used = {p.name for p in templating.placeholders(step.run)}
            if "previous_version" not in used:
                continue
            if where == "current_version":
                fail(where, "current_version prints the previous version; it cannot use it")
            if spec.current_version is None:
                fail(
                    f"{where}.run" if f"{where}.run" in self.lines else where,
                    "{previous_version} needs current_version: the command that prints "
                    "the version a host runs now",
                )
        if not spec.rollback.steps and spec.strategy != "blue-green":  # its rollback: a switch
            if spec.on_failure == "rollback":
                fail("on_failure", "on_failure is rollback, but rollback has no steps")
            if spec.between_batches.on_timeout == "rollback":
                fail(
                    "between_batches.on_timeout",
                    "on_timeout is rollback, but rollback has no steps",
                )
        no_pattern = spec.logs is None or spec.logs.error_pattern is None
        if spec.error_rate is not None and spec.metrics is None and no_pattern:
            fail(
                "error_rate" if "error_rate" in top else "analysis.metrics",
                "error_rate needs a source: metrics, or logs with an error_pattern",
            )
        self.strategy_check(spec, fail)
        if spec.seed is not None and spec.order != "shuffle":
            fail("seed", f"seed only applies to order: shuffle (order is {spec.order})")

    def strategy_check(self, spec: RolloutSpec, fail: Callable[[str, str], NoReturn]) -> None:
        """The strategy's keys agree with each other (groups are checked at plan time)."""
        lb = spec.load_balancer is not None
        if spec.traffic:
            if spec.strategy != "canary":
                fail("traffic", f"traffic shares need strategy: canary (it is {spec.strategy})")
            if not lb:
                fail("traffic", "traffic shares need a load_balancer section: HAProxy weighs them")
        for pool in ("blue", "green"):
            if getattr(spec, pool) is not None and spec.strategy != "blue-green":
                fail(pool, f"{pool} needs strategy: blue-green (it is {spec.strategy})")
        if spec.strategy == "blue-green":
            if not lb:
                fail("strategy", "blue-green needs a load_balancer section: it switches traffic")
            for pool in ("blue", "green"):
                if getattr(spec, pool) is None:
                    fail("strategy", f"blue-green needs {pool}: the inventory group of that pool")
            if spec.blue == spec.green:
                fail("green", f"blue and green are the same group ({spec.blue})")


def parse_duration(text: str) -> float | None:
    """Seconds in a duration as the spec writes it (``90s``, ``1h30m``, ``500ms``, a
    bare number); None when ``text`` is not one. Signs are never part of one."""
    s = text.strip()
    if _NUMBER.fullmatch(s):
        return float(s)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(s):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
    return total if pos == len(s) and s else None


def format_duration(seconds: float) -> str:
    """The spec's own spelling: 90 -> "1m30s", 0.5 -> "500ms", 120 -> "2m"."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    rest = seconds - whole
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or rest or not parts:
        parts.append(f"{whole + rest:g}s")
    return "".join(parts)


def _resolve_inventory(spec_path: str, value: str) -> str:
    """Relative to the spec file's directory (``~`` expanded)."""
    value = os.path.expanduser(value)
    if os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(os.path.dirname(spec_path), value))
