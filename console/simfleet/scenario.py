"""Scenarios: how the simulated fleet behaves, by version and by host.

A scenario is a YAML file (built-ins live in ``console/simfleet/scenarios/``)::

    name: bad-canary
    description: The new version fails 15% of requests on every host.
    service: checkout-api        # the simulated service (default checkout-api)
    initial_version: 2.4.0       # what every host runs at start
    target_version: 2.4.1        # the version the generated rollout.yaml deploys
    time_scale: 1.0              # multiplies every duration below (0.1: ten times faster)
    log_rate: 5                  # log lines per second per host (--log-rate overrides)
    request_rate: 20             # simulated requests per second per host (metrics)
    versions:                    # behaviour by version; later keys win:
      default: {error_rate: 0.5%, latency: 40ms}   #  default < initial|new < exact
      new: {error_rate: 15%}     # "new": any version other than initial_version
    hosts:                       # per-host rules, applied in order
      - match: api-02            # a host name or a glob (web-*)
        slow: 3                  # durations and latency x3, commands answer late
        disk_full: true          # vitals show a full disk; install fails (ENOSPC)
        unreachable: {on: install, version: new, delay: 1s, recover_after: 30s}
        error_rate: 2%           # any behaviour key, for every version on this host
        versions: {new: {install_hangs: true}}       # or for one version
    load_balancer:               # a real HAProxy in front of the hosts (haproxy on PATH)
      pools: [blue, green]       # optional: blue-green, two halves (below)
      idle: drain                # how the second pool starts: drain (default) or maint
    rollout: {on_failure: rollback}   # overrides for the generated rollout.yaml

Behaviour keys: ``error_rate`` (``15%`` or 0.15), ``latency`` (median request
latency), ``install_duration`` (``[1s, 3s]``: uniform, seeded), ``install_hangs``,
``health`` (``ok`` | ``failing``), ``flapping`` (health flips every PERIOD;
a probe also fails when a failing stretch went by unseen since a passing probe),
``restart_duration``, ``warmup`` (health fails this long after a restart).

Triggers (``unreachable``, ``disk_full``): ``true`` (from the start), ``{after: 30s}``
(from fleet start), or ``{on: COMMAND, version: V, delay: D}`` (when the host receives
``svc COMMAND`` for that version; ``new``/``initial`` work here too), each with an
optional ``recover_after``. Durations: ``250ms``, ``2s``, ``1.5m`` or seconds.

``load_balancer`` (``true`` or the mapping above): the fleet starts a real HAProxy
(``/usr/sbin/haproxy`` or ``haproxy`` on PATH; absent, the fleet refuses to start and
says ``apt-get install haproxy``) whose backend ``app`` has one server per host (named
as the host) pointing at the host's HTTP port, and an extra inventory host ``lb-01``
(a simulated SSH host, never a target) through which rolldeck reaches HAProxy's admin
socket. A load generator then sends ``request_rate x hosts`` requests per second (real
seconds, at most 200) through HAProxy's frontend while the fleet runs, and each host's
counters (``svc metrics``, ``/metrics``, its request log lines) count only the real
requests it served: an idle pool reports nothing, a bad pool errors once traffic
reaches it (``log_rate`` does not apply there: the log lines are the requests). With
``pools: [A, B]`` the hosts are split in two halves, inventory groups
``A`` (ready in HAProxy: the live pool) and ``B`` (``idle``: drain or maint), and the
generated spec is ``strategy: blue-green`` with ``blue: A``, ``green: B`` (``rollout:``
may override them). Without the key nothing of this exists and the hosts' traffic is
simulated from ``request_rate`` alone.

The ``rollout`` keys: ``batches``, ``max_parallel``, ``max_failures``, ``on_failure``,
``between_batches`` (its durations, a plain one or a gate's ``bake`` and ``timeout``,
follow ``time_scale`` like every other), ``strategy``, ``blue``, ``green``, ``traffic``
(a canary's shares; needs ``load_balancer``) and ``notify``.

Scenario files are user input (``--scenario FILE``): they are read with the one YAML
walker (:mod:`console.core.yamlnodes`), so unknown and duplicate keys are errors at
their line, merge keys (``<<: *slow``) work, and nesting and alias expansion are capped.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from console.core.errors import InputError, did_you_mean
from console.core.files import MAX_INPUT_BYTES, read_limited, universal_newlines
from console.core.yamlnodes import Doc, join, line_of
from console.spec.model import STRATEGIES

T = TypeVar("T")

DEFAULT_SERVICE = "checkout-api"
DEFAULT_INITIAL = "2.4.0"
DEFAULT_TARGET = "2.4.1"
DEFAULT_LOG_RATE = 5.0
DEFAULT_REQUEST_RATE = 20.0
COMMANDS = ("install", "activate", "restart", "drain", "undrain", "health", "version")
ROLLOUT_KEYS = (
    "batches",
    "max_parallel",
    "max_failures",
    "on_failure",
    "between_batches",
    "strategy",
    "blue",
    "green",
    "traffic",
    "notify",
)
IDLE_STATES = ("drain", "maint")  # how a blue-green scenario's second pool starts
_GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How a service version behaves. In a scenario every field is optional (None:
    inherit); :data:`DEFAULT_BEHAVIOUR` is the complete base every host starts from."""

    error_rate: float | None = None
    latency: float | None = None
    install_duration: tuple[float, float] | None = None
    install_hangs: bool | None = None
    health: Literal["ok", "failing"] | None = None
    flapping: float | None = None  # period in seconds; 0 = steady
    restart_duration: tuple[float, float] | None = None
    warmup: float | None = None

    def over(self, base: Behaviour) -> Behaviour:
        """``base`` with this behaviour's set fields laid on top."""
        changes = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }
        return dataclasses.replace(base, **changes) if changes else base


DEFAULT_BEHAVIOUR = Behaviour(
    error_rate=0.005,
    latency=0.04,
    install_duration=(1.0, 3.0),
    install_hangs=False,
    health="ok",
    flapping=0.0,
    restart_duration=(0.2, 0.6),
    warmup=1.0,
)


@dataclass(frozen=True, slots=True)
class Trigger:
    """When a fault starts: at once, ``after`` seconds, or ``on`` a command."""

    after: float | None = None
    on: str | None = None
    version: str | None = None  # None: any; "new"/"initial" or an exact version
    delay: float = 0.0
    recover_after: float | None = None

    @property
    def at_start(self) -> bool:
        return self.after is None and self.on is None


@dataclass(frozen=True, slots=True)
class HostRule:
    match: str
    line: int
    behaviour: Behaviour = Behaviour()
    versions: dict[str, Behaviour] = field(default_factory=dict)
    slow: float | None = None
    disk_full: Trigger | None = None
    unreachable: Trigger | None = None

    def matches(self, host: str) -> bool:
        return fnmatch.fnmatchcase(host, self.match)


@dataclass(frozen=True, slots=True)
class Balancing:
    """``load_balancer:``: a real HAProxy in front of the fleet, maybe two pools."""

    pools: tuple[str, str] | None = None  # (live at start, idle at start)
    idle: Literal["drain", "maint"] = "drain"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: str = "<built-in>"
    description: str = ""
    service: str = DEFAULT_SERVICE
    initial_version: str = DEFAULT_INITIAL
    target_version: str = DEFAULT_TARGET
    time_scale: float = 1.0
    log_rate: float = DEFAULT_LOG_RATE
    request_rate: float = DEFAULT_REQUEST_RATE
    versions: dict[str, Behaviour] = field(default_factory=dict)
    hosts: tuple[HostRule, ...] = ()
    rollout: dict[str, Any] = field(default_factory=dict)
    load_balancer: Balancing | None = None

    def version_matches(self, key: str, version: str) -> bool:
        """Whether a versions key (``default``, ``initial``, ``new`` or exact) applies."""
        if key == "default":
            return True
        if key == "initial":
            return version == self.initial_version
        if key == "new":
            return version != self.initial_version
        return key == version

    def behaviour(self, host: str, version: str) -> Behaviour:
        """The complete behaviour of ``version`` on ``host``."""
        result = DEFAULT_BEHAVIOUR
        result = _layer(result, self.versions, self, version)
        for rule in self.hosts:
            if rule.matches(host):
                result = rule.behaviour.over(result)
                result = _layer(result, rule.versions, self, version)
        return result

    def rules_for(self, host: str) -> list[HostRule]:
        return [rule for rule in self.hosts if rule.matches(host)]


def _layer(base: Behaviour, table: dict[str, Behaviour], sc: Scenario, version: str) -> Behaviour:
    for key in ("default", "initial", "new"):
        if key in table and sc.version_matches(key, version):
            base = table[key].over(base)
    for key, value in table.items():
        if key not in ("default", "initial", "new") and key == version:
            base = value.over(base)
    return base


# --- value parsers -------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``250ms``, ``2s``, ``1.5m``, ``1h`` or a number of seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 2s or 250ms")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"expected a duration such as 2s or 250ms, not {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_ratio(value: Any) -> float:
    """``15%`` or a ratio 0..1."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as 15%")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            ratio = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a percentage such as 15%, not {value!r}") from None
    elif isinstance(value, int | float):
        ratio = float(value)
    else:
        raise ValueError(f"expected a percentage such as 15%, not {value!r}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("must be between 0% and 100%")
    return ratio


# --- loader --------------------------------------------------------------------------

_TOP_KEYS = (
    "name",
    "description",
    "service",
    "initial_version",
    "target_version",
    "time_scale",
    "log_rate",
    "request_rate",
    "versions",
    "hosts",
    "rollout",
    "load_balancer",
)
_BALANCER_KEYS = ("pools", "idle")
_BEHAVIOUR_KEYS = tuple(f.name for f in dataclasses.fields(Behaviour))
_RULE_KEYS = ("match", "slow", "disk_full", "unreachable", "versions", *_BEHAVIOUR_KEYS)
_TRIGGER_KEYS = ("after", "on", "version", "delay", "recover_after")


class Fields:
    """The keys of one YAML mapping, checked against the keys allowed there (the one
    walker rejects unknown and duplicate keys and applies merge keys)."""

    def __init__(self, doc: Doc, node: yaml.Node, where: str, allowed: Iterable[str]) -> None:
        self.doc = doc
        self.where = where
        self.line = line_of(node)
        self.items: dict[str, yaml.Node] = {}
        for entry in doc.mapping(node, where, allowed=tuple(allowed)):
            self.items[entry.key] = entry.value

    def field(self, key: str) -> str:
        return join(self.where, key)

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def error(self, key: str, message: str) -> InputError:
        node = self.items.get(key)
        line = line_of(node) if node is not None else self.line
        return InputError(message, file=self.doc.file, line=line, field=self.field(key))

    def scalar(self, key: str) -> Any:
        """The value of a scalar key (None when absent)."""
        node = self.items.get(key)
        if node is None:
            return None
        return self.doc.scalar(node, self.field(key))


class _Loader:
    def __init__(self, path: str) -> None:
        self.path = path

    def get(
        self, f: Fields, key: str, parse: Callable[[Any], T], what: str | None = None
    ) -> T | None:
        if key not in f:
            return None
        value = f.scalar(key)
        try:
            return parse(value)
        except (ValueError, TypeError) as exc:
            raise f.error(key, what or str(exc)) from None

    def text(self, f: Fields, key: str) -> str | None:
        def as_text(v: Any) -> str:
            if v is None or isinstance(v, bool | dict | list):
                raise ValueError("expected a string")
            return str(v)

        return self.get(f, key, as_text)

    def version(self, f: Fields, key: str) -> str | None:
        def check(v: Any) -> str:
            text = str(v)
            if v is None or isinstance(v, bool) or not _VERSION_RE.match(text):
                raise ValueError(f"not a version: {v!r}")
            return text

        return self.get(f, key, check)

    def positive(self, f: Fields, key: str) -> float | None:
        def check(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ValueError("expected a positive number")
            return float(v)

        return self.get(f, key, check)

    def rate(self, f: Fields, key: str) -> float | None:
        def check(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValueError("expected a number >= 0")
            return float(v)

        return self.get(f, key, check)

    def behaviour(self, f: Fields) -> Behaviour:
        def boolean(v: Any) -> bool:
            if not isinstance(v, bool):
                raise ValueError("expected true or false")
            return v

        def health(v: Any) -> Literal["ok", "failing"]:
            if v == "ok":
                return "ok"
            if v == "failing":
                return "failing"
            raise ValueError("expected ok or failing")

        return Behaviour(
            error_rate=self.get(f, "error_rate", parse_ratio),
            latency=self.get(f, "latency", parse_duration),
            install_duration=self.duration_range(f, "install_duration"),
            install_hangs=self.get(f, "install_hangs", boolean),
            health=self.get(f, "health", health),
            flapping=self.get(f, "flapping", parse_duration),
            restart_duration=self.duration_range(f, "restart_duration"),
            warmup=self.get(f, "warmup", parse_duration),
        )

    def duration_range(self, f: Fields, key: str) -> tuple[float, float] | None:
        node = f.items.get(key)
        if node is None:
            return None
        if isinstance(node, yaml.SequenceNode):
            if len(node.value) != 2:
                raise f.error(key, "expected [MIN, MAX] durations")
            try:
                lo, hi = (parse_duration(f.doc.scalar(n, f.field(key))) for n in node.value)
            except ValueError as exc:
                raise f.error(key, str(exc)) from None
            if hi < lo:
                raise f.error(key, "MAX is smaller than MIN")
            return (lo, hi)
        d = self.get(f, key, parse_duration)
        return None if d is None else (d, d)

    def versions(self, doc: Doc, node: yaml.Node, where: str) -> dict[str, Behaviour]:
        result: dict[str, Behaviour] = {}
        for key, key_node, value_node in doc.mapping(node, where):
            name = f"{where}.{key}"
            if key not in ("default", "initial", "new") and not _VERSION_RE.match(key):
                raise doc.error("expected default, initial, new or a version", key_node, name)
            result[key] = self.behaviour(Fields(doc, value_node, name, _BEHAVIOUR_KEYS))
        return result

    def trigger(self, f: Fields, key: str) -> Trigger | None:
        node = f.items.get(key)
        if node is None:
            return None
        if isinstance(node, yaml.ScalarNode):
            value = f.scalar(key)
            if value is True:
                return Trigger()
            if value is False:
                return None
            raise f.error(key, "expected true, false, {after: D} or {on: COMMAND}")
        t = Fields(f.doc, node, f.field(key), _TRIGGER_KEYS)
        after = self.get(t, "after", parse_duration)
        on = self.text(t, "on")
        if on is not None and on not in COMMANDS:
            raise t.error("on", f"unknown command {on!r}{did_you_mean(on, COMMANDS)}")
        if after is not None and on is not None:
            raise t.error("on", "give either after or on, not both")
        version = self.text(t, "version")
        if version is not None and on is None:
            raise t.error("version", "version needs on: COMMAND")
        return Trigger(
            after=after,
            on=on,
            version=version,
            delay=self.get(t, "delay", parse_duration) or 0.0,
            recover_after=self.get(t, "recover_after", parse_duration),
        )

    def rule(self, doc: Doc, node: yaml.Node, where: str) -> HostRule:
        f = Fields(doc, node, where, _RULE_KEYS)
        match = self.text(f, "match")
        if not match:
            raise InputError("missing key", file=self.path, line=f.line, field=f.field("match"))
        versions = (
            self.versions(doc, f.items["versions"], f.field("versions")) if "versions" in f else {}
        )
        return HostRule(
            match=match,
            line=f.line,
            behaviour=self.behaviour(f),
            versions=versions,
            slow=self.positive(f, "slow"),
            disk_full=self.trigger(f, "disk_full"),
            unreachable=self.trigger(f, "unreachable"),
        )

    def scenario(self, text: str, default_name: str) -> Scenario:
        doc = Doc(text, self.path)
        if doc.root is None:
            raise InputError("empty scenario", file=self.path, line=1)
        f = Fields(doc, doc.root, "", _TOP_KEYS)
        hosts: list[HostRule] = []
        if "hosts" in f:
            node = f.items["hosts"]
            if not isinstance(node, yaml.SequenceNode):
                raise f.error("hosts", "expected a list of host rules")
            hosts = [self.rule(doc, item, f"hosts[{i}]") for i, item in enumerate(node.value)]
        balancing = self.balancing(f)
        rollout: dict[str, Any] = {}
        if "rollout" in f:
            r = Fields(doc, f.items["rollout"], "rollout", ROLLOUT_KEYS)
            rollout = {k: doc.plain(v, r.field(k)) for k, v in r.items.items()}
            self.check_rollout(r, rollout, balancing)
        initial = self.version(f, "initial_version") or DEFAULT_INITIAL
        target = self.version(f, "target_version") or DEFAULT_TARGET
        if initial == target:
            raise f.error("target_version", "must differ from initial_version")
        time_scale = self.positive(f, "time_scale")
        log_rate = self.rate(f, "log_rate")
        request_rate = self.rate(f, "request_rate")
        return Scenario(
            name=self.text(f, "name") or default_name,
            path=self.path,
            description=(self.text(f, "description") or "").strip(),
            service=self.text(f, "service") or DEFAULT_SERVICE,
            initial_version=initial,
            target_version=target,
            time_scale=time_scale if time_scale is not None else 1.0,
            log_rate=log_rate if log_rate is not None else DEFAULT_LOG_RATE,
            request_rate=request_rate if request_rate is not None else DEFAULT_REQUEST_RATE,
            versions=self.versions(doc, f.items["versions"], "versions") if "versions" in f else {},
            hosts=tuple(hosts),
            rollout=rollout,
            load_balancer=balancing,
        )

    def balancing(self, f: Fields) -> Balancing | None:
        node = f.items.get("load_balancer")
        if node is None:
            return None
        if isinstance(node, yaml.ScalarNode):
            value = f.scalar("load_balancer")
            if value is True:
                return Balancing()
            if value is False:
                return None
            raise f.error("load_balancer", "expected true, false or {pools: [A, B], idle: drain}")
        b = Fields(f.doc, node, f.field("load_balancer"), _BALANCER_KEYS)
        pools: tuple[str, str] | None = None
        if "pools" in b:
            items = b.items["pools"]
            names = (
                [b.doc.scalar(n, b.field("pools")) for n in items.value]
                if isinstance(items, yaml.SequenceNode)
                else []
            )
            if len(names) != 2 or not all(isinstance(n, str) and _GROUP_RE.match(n) for n in names):
                raise b.error("pools", "expected two inventory group names, like [blue, green]")
            if names[0] == names[1]:
                raise b.error("pools", f"the two pools are the same group ({names[0]})")
            if names[0] in ("all", "lb") or names[1] in ("all", "lb"):
                raise b.error("pools", "all and lb are taken: name the pools otherwise")
            pools = (names[0], names[1])
        idle = self.text(b, "idle") or "drain"
        if idle not in IDLE_STATES:
            raise b.error("idle", "expected drain or maint")
        return Balancing(pools=pools, idle="maint" if idle == "maint" else "drain")

    def check_rollout(
        self, r: Fields, rollout: dict[str, Any], balancing: Balancing | None
    ) -> None:
        """What the generated spec could only refuse later, said at the scenario's line."""
        strategy = rollout.get("strategy")
        if "strategy" in rollout and strategy not in STRATEGIES:
            raise r.error("strategy", f"expected {', '.join(STRATEGIES[:-1])} or {STRATEGIES[-1]}")
        if strategy == "blue-green" and (balancing is None or balancing.pools is None):
            raise r.error("strategy", "blue-green needs load_balancer: {pools: [blue, green]}")
        if "traffic" in rollout and balancing is None:
            raise r.error("traffic", "traffic shares need load_balancer: true")
        for key in ("blue", "green"):
            if key not in rollout:
                continue
            value = rollout[key]
            pools = balancing.pools if balancing is not None else None
            if pools is None or value not in pools:
                raise r.error(key, f"expected one of the load_balancer's pools ({pools or 'none'})")


def parse_scenario(text: str, path: str = "<scenario>", default_name: str = "custom") -> Scenario:
    """Validate scenario YAML text; errors are InputErrors naming file:line:field."""
    return _Loader(path).scenario(text, default_name)


def builtin_names() -> list[str]:
    """Names of the scenarios shipped in the package."""
    files = resources.files("console.simfleet").joinpath("scenarios")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in by name (``bad-canary``) or a YAML file by path."""
    text_name = str(name_or_path)
    if text_name in builtin_names():
        res = resources.files("console.simfleet").joinpath("scenarios", f"{text_name}.yaml")
        return parse_scenario(
            res.read_text(encoding="utf-8"), f"scenarios/{text_name}.yaml", text_name
        )
    path = Path(name_or_path)
    if not path.exists():
        hint = did_you_mean(text_name, builtin_names())
        raise InputError(
            f"no such scenario (built-ins: {', '.join(builtin_names())}){hint}",
            field="scenario",
        )
    if path.is_dir():
        raise InputError("is a directory, not a scenario file", file=str(path), field="scenario")
    # Not a regular file (a pipe, /dev/zero): read too, bounded like the rest, so
    # `--scenario <(generate)` works and an endless device is refused by its size.
    try:  # bounded before parsing, like every file rolldeck reads
        data = read_limited(str(path), MAX_INPUT_BYTES, "a scenario")
        text = universal_newlines(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read scenario: {exc}", file=str(path)) from None
    return parse_scenario(text, str(path), path.stem)
