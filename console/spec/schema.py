"""JSON Schema (draft-07) for the files users write: rollout specs, native inventories
and simulated-fleet scenarios; the one source of the spec's key descriptions.

The schema describes the spelling users write, not the loaded model: durations are
``90s``/``2m``/``1h30m`` or a number of seconds, percentages ``10%``, and text fields
take numbers as text (``version: 2.10`` stays "2.10"). Every mapping has
``additionalProperties: false``, so an editor flags a typo'd key as the loader does.
``docs/spec.md`` (the spec reference) is generated from the same descriptions
(:func:`spec_markdown`); tests/test_spec_schema.py holds the schema to the loader's
key tables and to a corpus of valid and invalid specs.

The loader (:mod:`console.spec.load`) stays the authority: rules across fields
(``seed`` needs ``order: shuffle``), template placeholders and regexes are checked
there only (:data:`LOADER_ONLY` lists them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from console import become
from console.spec import load
from console.spec.model import NOTIFY_EVENTS, ON_FAILURE, ORDERS, PROVIDERS

DRAFT = "http://json-schema.org/draft-07/schema#"
BASE_ID = "https://rolldeck.dev/schemas/"

# What the schema cannot say; the loader checks these (and `rolldeck check` shows them).
LOADER_ONLY = (
    "placeholders in commands ({version}, {vars.x}, ...) are known names",
    "{previous_version} needs current_version",
    "current_version and release_dir are not both given",
    "on_failure or a gate's on_timeout of rollback needs rollback steps",
    "error_rate needs metrics, or logs with an error_pattern",
    "seed needs order: shuffle",
    "logs.error_pattern is a valid regular expression",
    "health.deadline leaves room for healthy_after passes every `every`",
    "a bake gate has a bake time, only a manual gate has a timeout",
    "step names are unique within a list",
    "durations are at most 30 days; a percentage is at most 100%",
    "release_dir is an absolute path needing no shell quoting",
    "load_balancer has socket or api, exactly one; api is HOST:PORT; backend is a HAProxy name",
    "become_password names a var ('{vars.become_pass}'), never the password itself",
)

_DURATION_RE = r"^\s*(\d+(\.\d+)?\s*|(\d+(\.\d+)?\s*(ms|s|m|h|d) *)+)$"
_PERCENT_RE = r"^\s*\d+(\.\d+)?\s*%\s*$"
_VAR_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"


def duration(
    description: str, *, zero: bool = False, examples: list[Any] | None = None
) -> dict[str, Any]:
    """``90s``, ``2m``, ``1h30m``, ``500ms``, ``1d`` or a number of seconds."""
    number: dict[str, Any] = {"type": "number", "minimum": 0}
    if not zero:
        number = {"type": "number", "exclusiveMinimum": 0}
    return {
        "description": description + " A duration: 90s, 2m, 1h30m, 500ms, 1d, or seconds.",
        "anyOf": [number, {"type": "string", "pattern": _DURATION_RE}],
        "examples": examples or ["30s"],
    }


def text(description: str, examples: list[Any] | None = None) -> dict[str, Any]:
    """Text; a number written here keeps its spelling (``version: 2.10``)."""
    out: dict[str, Any] = {"description": description, "type": ["string", "number"]}
    if examples:
        out["examples"] = examples
    return out


def command(description: str, examples: list[Any] | None = None) -> dict[str, Any]:
    return text(
        description + " A command template: {host}, {version}, {vars.NAME}, ... are filled "
        "in per host and shell-quoted.",
        examples,
    )


def integer(
    description: str, minimum: int = 0, examples: list[Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "type": "integer", "minimum": minimum}
    if examples:
        out["examples"] = examples
    return out


def boolean(description: str) -> dict[str, Any]:
    return {"description": description, "type": "boolean"}


def choice(description: str, values: tuple[str, ...]) -> dict[str, Any]:
    return {"description": description, "type": "string", "enum": list(values)}


def percent(description: str) -> dict[str, Any]:
    return {"description": description, "type": "string", "pattern": _PERCENT_RE}


def obj(
    description: str,
    properties: dict[str, dict[str, Any]],
    required: tuple[str, ...] = (),
    examples: list[Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        out["required"] = list(required)
    if examples:
        out["examples"] = examples
    return out


def either(
    description: str, *forms: dict[str, Any], examples: list[Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "anyOf": list(forms)}
    if examples:
        out["examples"] = examples
    return out


def _batch_size() -> dict[str, Any]:
    return either(
        "A number of hosts, or a percentage of the targeted hosts (rounded up).",
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": _PERCENT_RE},
    )


def _batches(description: str) -> dict[str, Any]:
    return either(
        description,
        {"type": "array", "items": {"$ref": "#/definitions/batch_size"}, "minItems": 1},
        {"$ref": "#/definitions/batch_size"},
        examples=[[1, "10%", "100%"], "25%"],
    )


def _become_props() -> dict[str, dict[str, Any]]:
    return {
        "become": boolean("Run through sudo (`sudo -n`, or `-S` with become_password)."),
        "become_user": text(
            "Who to become (a user name or #UID); default: the host's ansible_become_user, "
            "else root.",
            ["postgres"],
        ),
        "become_method": choice("How to become: sudo only.", become.METHODS),
    }


def _step(keys: tuple[str, ...], what: str) -> dict[str, Any]:
    props: dict[str, dict[str, Any]] = {
        "name": text(f"The {what}'s name, unique in its list (default {what}-N).", ["install"]),
        "run": command("What to run on each host.", ["/opt/deploy/install {version}"]),
        "timeout": duration(
            "Stop the command and fail the host after this long.", examples=["120s"]
        ),
        "raw": boolean("Run the command as written: no placeholder quoting."),
        "once": boolean(
            "Run once per rollout (on the first host of the first batch), not on every host."
        ),
        **_become_props(),
    }
    unknown = set(keys) - set(props)
    if unknown:  # a key the loader reads with no description here: tests fail too
        raise KeyError(f"no description for step keys {sorted(unknown)}")
    return either(
        f"A {what}: a command, or {{name, run, timeout, ...}}.",
        command("The command (named " + what + "-N)."),
        obj(f"A {what} with a name and options.", {k: props[k] for k in keys}, required=("run",)),
        examples=[{"name": "install", "run": "/opt/deploy/install {version}", "timeout": "2m"}],
    )


def _steps(keys: tuple[str, ...], what: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "type": "array",
        "items": _step(keys, what),
    }


def _gate() -> dict[str, Any]:
    return either(
        "What happens between batches: `manual` (wait for an operator), `auto` (go on), a "
        "bake time (wait, watching), or {gate, ...}: a bake, manual, command (a local "
        "command decides) or approval (other people approve) gate with its options.",
        {"type": "string", "enum": ["manual", "auto"]},
        duration("A bake time: wait this long, watching, before the next batch.", zero=True),
        obj(
            "A gate with options.",
            {
                "gate": choice(
                    "The kind of gate (default: bake when bake is given).", load.GATE_KINDS
                ),
                "bake": duration("A bake gate's time; 0 means auto.", zero=True, examples=["5m"]),
                "timeout": duration(
                    "A manual or command gate gives up after this long.", examples=["15m"]
                ),
                "on_timeout": choice(
                    "What a manual or command gate's timeout does (default abort).",
                    load.ON_TIMEOUT,
                ),
                "run": command(
                    "A command gate's command, run on this machine every `every`: exit 0 "
                    "is go, 1 not yet, anything else no (on_failure fires with its output).",
                    ["./ci/approve.sh {service} {version}"],
                ),
                "every": duration("How often a command gate asks.", examples=["30s"]),
                "approvers": integer(
                    "An approval gate: approvals needed from Unix users other than the one "
                    "running the rollout (`rolldeck approve`).",
                    1,
                    [2],
                ),
                "before": choice(
                    "An approval gate asks before every batch, or only the final one.",
                    ("every", "final"),
                ),
            },
        ),
        examples=["2m", "manual", {"gate": "manual", "timeout": "15m", "on_timeout": "abort"}],
    )


def _health() -> dict[str, Any]:
    return either(
        "The health check: a command (exit 0 is healthy), or {run, every, ...}. Hosts are "
        "gated on it after their steps and watched with it afterwards.",
        command("The health command."),
        obj(
            "The health check with its pacing.",
            {
                "run": command(
                    "The health command (exit 0 is healthy).", ["curl -fsS localhost/healthz"]
                ),
                "every": duration("Probe this often while gating.", examples=["2s"]),
                "healthy_after": integer("Consecutive passes that make a host healthy.", 1, [3]),
                "deadline": duration("Fail a host not healthy within this long.", examples=["60s"]),
                "timeout": duration("One probe's time limit.", examples=["10s"]),
                "flap_window": duration(
                    "The window in which pass/fail changes count.", examples=["60s"]
                ),
                "flap_transitions": integer("Changes in flap_window that mean flapping.", 2, [4]),
                "watch_every": duration(
                    "The post-deploy watch's pace (default max(every, 1s)).", examples=["5s"]
                ),
            },
            required=("run",),
        ),
    )


def _signals() -> dict[str, dict[str, Any]]:
    return {
        "logs": either(
            "Follow each host's log: a command, {run, error_pattern}, or false (none).",
            command("The command that follows the log."),
            {"const": False},
            obj(
                "The log command and what counts as an error line.",
                {
                    "run": command("Follows the log.", ["journalctl -fu app -n 0 -o cat"]),
                    "error_pattern": text(
                        "A regular expression; matching lines count as errors.",
                        ["\\b(ERROR|CRITICAL)\\b"],
                    ),
                },
                required=("run",),
            ),
        ),
        "metrics": either(
            "Prometheus text-format counters read from each host, or false (none).",
            {"const": False},
            obj(
                "The metrics command and the request and error series.",
                {
                    "run": command(
                        "Prints Prometheus text format.", ["curl -fsS localhost/metrics"]
                    ),
                    "requests": text("The request counter's selector.", ["http_requests_total"]),
                    "errors": text(
                        "The error counter's selector.", ['http_requests_total{code=~"5.."}']
                    ),
                    "every": duration("Scrape this often.", examples=["5s"]),
                    "timeout": duration("One scrape's time limit.", examples=["10s"]),
                },
                required=("run", "requests", "errors"),
            ),
        ),
        "vitals": either(
            "Load, memory and disk per host: true (the default command), a command, "
            "{run, every, timeout}, or false (none).",
            {"type": "boolean"},
            command("A command printing the vitals."),
            obj(
                "The vitals command and its pacing.",
                {
                    "run": command("Prints the vitals (default: /proc and df)."),
                    "every": duration("Poll this often.", examples=["5s"]),
                    "timeout": duration("One poll's time limit.", examples=["10s"]),
                },
            ),
        ),
        "error_rate": obj(
            "Automatic trigger for on_failure: the new version's error rate over a window.",
            {
                "window": duration("The sliding window.", examples=["60s"]),
                "max": either(
                    "Highest error rate allowed: a percentage (2%) or a ratio 0..1.",
                    {"type": "string", "pattern": _PERCENT_RE},
                    {"type": "number", "minimum": 0, "maximum": 1},
                    examples=["2%"],
                ),
                "max_vs_baseline": {
                    "description": "Highest multiple of the old version's rate allowed.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "examples": [2.0],
                },
                "min_requests": integer("Requests in the window before any verdict.", 1, [100]),
                "min_error_lines": integer("Log mode: error lines before any verdict.", 1, [5]),
            },
        ),
    }


def _bound(description: str) -> dict[str, Any]:
    return either(
        description + " A number, a percentage (5%: a ratio) or a duration (300ms).",
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": _PERCENT_RE},
        {"type": "string", "pattern": _DURATION_RE},
        examples=["5%", "300ms"],
    )


def _analysis() -> dict[str, Any]:
    return obj(
        "Canary analysis: metrics of the new cohort judged against bounds and the "
        "baseline cohort every interval; no data is never a pass.",
        {
            "interval": duration("Judge this often.", examples=["10s"]),
            "window": duration("Over this window.", examples=["60s"]),
            "prometheus": obj(
                "The Prometheus server the analysis asks.",
                {
                    "url": text("http:// or https:// URL.", ["http://prometheus:9090"]),
                    "bearer_token": command(
                        "A template naming a secret var.", ["{vars.prom_token}"]
                    ),
                    "basic_auth": obj(
                        "User and password (a template naming a secret var).",
                        {
                            "username": text("The user.", ["rolldeck"]),
                            "password": command("The password's var.", ["{vars.prom_pass}"]),
                        },
                        required=("username",),
                    ),
                    "timeout": duration("One query's time limit.", examples=["5s"]),
                },
                required=("url",),
            ),
            "metrics": {
                "description": "The judged metrics.",
                "type": "array",
                "minItems": 1,
                "items": obj(
                    "One metric: a prometheus query per cohort ({instances}, {window}), or "
                    "ssh: the error rate rolldeck scrapes itself.",
                    {
                        "name": text("The metric's name (letters, digits, . _ -).", ["error-rate"]),
                        "provider": choice("Where the numbers come from.", PROVIDERS),
                        "query": text(
                            "PromQL, rendered per cohort.",
                            [
                                'sum(rate(http_requests_total{code=~"5..",instance=~"{instances}"}[{window}]))'
                            ],
                        ),
                        "max": _bound("The new cohort's highest value."),
                        "max_vs_baseline": either(
                            "The new cohort's highest multiple of the baseline's.",
                            {"type": "number", "exclusiveMinimum": 0},
                            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*x\s*$"},
                            examples=["1.5x"],
                        ),
                        "compare": text("How the cohorts are compared (threshold).", ["threshold"]),
                        "floor": _bound("A baseline under this counts as this."),
                    },
                    required=("name",),
                ),
            },
            "on_no_data": choice("What a metric without a verdict does.", ON_FAILURE),
        },
        required=("metrics",),
    )


def _notify() -> dict[str, Any]:
    events = [*NOTIFY_EVENTS, "all"]
    return {
        "description": "Hooks told about the rollout (best effort, after the journal).",
        "type": "array",
        "items": obj(
            "One hook: a local command (event JSON on stdin) or a webhook.",
            {
                "on": either(
                    "The events sent (all: every one).",
                    {"type": "string", "enum": events},
                    {"type": "array", "items": {"type": "string", "enum": events}, "minItems": 1},
                    examples=[["gate_waiting", "finished"]],
                ),
                "run": text("A local command.", ["./notify.sh"]),
                "webhook": text("An http:// or https:// URL.", ["https://hooks.example.com/x"]),
                "format": choice("A webhook's body.", load.HOOK_FORMATS),
                "timeout": duration("One delivery's time limit.", examples=["10s"]),
                "retries": integer(f"Retries (at most {load.MAX_HOOK_RETRIES}).", 0, [3])
                | {"maximum": load.MAX_HOOK_RETRIES},
            },
            required=("on",),
        ),
    }


def spec_properties() -> dict[str, dict[str, Any]]:
    """The top-level keys of a rollout spec, described (``docs/spec.md`` too)."""
    return {
        "service": text(
            "The service's name: in headers, the journal and the lock.", ["checkout-api"]
        ),
        "version": text(
            "The version to deploy ({version} in commands). Numbers are text: 2.10 stays 2.10.",
            ["2.4.1"],
        ),
        "inventory": text(
            "The inventory file or directory, relative to this spec (INI, YAML, native, an "
            "Ansible inventory directory); --inventory overrides it.",
            ["inventory.ini"],
        ),
        "targets": either(
            "Which hosts: an Ansible pattern (web:api:!web-07, &intersection), or a list "
            "of patterns (their union). Default: all.",
            {"type": ["string", "number"]},
            {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1},
            examples=["web:!web-07"],
        ),
        "batches": _batches(
            "Batch sizes: a ramp ([1, 10%, 100%]; the last size repeats) or one size."
        ),
        "max_parallel": integer("Hosts deployed at once within a batch.", 1, [20]),
        "max_failures": either(
            "Failures allowed in the whole rollout (a count, or a percentage of the "
            "targeted hosts); more fires on_failure.",
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": _PERCENT_RE},
            examples=[0, "5%"],
        ),
        "on_failure": choice("What the failure budget or an alert does.", ON_FAILURE),
        "between_batches": _gate(),
        "current_version": command(
            "Prints the version a host runs now (journaled as previous_version).",
            ["readlink /opt/app/current"],
        ),
        "release_dir": text(
            "The release layout: current links to releases/<version>; the version is read "
            "from the link. An absolute path.",
            ["/opt/checkout-api"],
        ),
        "preflight": _steps(
            load.ROLLBACK_STEP_KEYS,
            "preflight",
            "Checks run on every host before anything changes.",
        ),
        "steps": _steps(load.STEP_KEYS, "step", "The deploy steps, run in order on each host."),
        "health": _health(),
        **_signals(),
        "analysis": _analysis(),
        "notify": _notify(),
        "metrics_out": text(
            "A directory for the rollout's own metrics, a Prometheus text file "
            "(node_exporter's textfile collector), rewritten as it runs; relative to this "
            "spec. --metrics-textfile overrides it.",
            ["/var/lib/node_exporter/textfile"],
        ),
        "requires": {
            "description": "Promotion rules: rollouts of this service that must be in the "
            "state directory's history before this one starts.",
            "type": "array",
            "items": obj(
                "A rollout that must have happened first.",
                {
                    "environment": text(
                        "Its environment (that spec's environment: label).", ["staging"]
                    ),
                    "outcome": choice(
                        "How it must have ended (default succeeded).",
                        ("succeeded", "rolled_back", "failed"),
                    ),
                    "same_version": boolean("It deployed this same version (default true)."),
                    "within": duration(
                        "No longer ago than this (default: any time).", examples=["7d"]
                    ),
                },
                required=("environment",),
            ),
            "examples": [[{"environment": "staging", "within": "7d"}]],
        },
        "rollback": either(
            "How to roll back: a list of steps, or {steps, batches}.",
            {"type": "array", "items": _step(load.ROLLBACK_STEP_KEYS, "rollback")},
            obj(
                "Rollback steps and batch sizes.",
                {
                    "steps": _steps(
                        load.ROLLBACK_STEP_KEYS, "rollback", "Steps that roll a host back."
                    ),
                    "batches": _batches("Batch sizes for the rollback."),
                },
            ),
        ),
        "order": choice("The order hosts are deployed in.", ORDERS),
        "seed": integer("The shuffle's seed (order: shuffle).", 0, [7]),
        "environment": text("A label: prod, staging (shown and journaled).", ["prod"]),
        "secrets": {
            "description": "Var names whose values are masked everywhere (screen, journal, JSON).",
            "type": "array",
            "items": {"type": "string", "pattern": _VAR_NAME_RE},
            "examples": [["DEPLOY_TOKEN"]],
        },
        "vars": {
            "description": "Default vars ({vars.NAME}); the inventory's host and group vars win.",
            "type": "object",
            "propertyNames": {"pattern": _VAR_NAME_RE},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
            "examples": [{"http_port": 8080}],
        },
        "lock_host": text(
            "The host holding the fleet-wide lock (default: the plan's first).", ["web-01"]
        ),
        "lease": obj(
            "Per-host leases that stop two rollouts touching one host.",
            {
                "path": command(
                    "Where each host keeps them (absolute or ~/...).", ["~/.rolldeck/leases"]
                ),
                "stale_after": duration(
                    "A lease without a heartbeat this long is stale (>= 5s).", examples=["60s"]
                ),
            },
        ),
        "load_balancer": obj(
            "The HAProxy backend in front of the hosts: each host is drained before its "
            "steps and set ready once healthy, through HAProxy's runtime API reached over "
            "the SSH connection of `host`. Give socket or api, exactly one.",
            {
                "type": choice("The load balancer (haproxy).", ("haproxy",)),
                "host": text("The inventory host the runtime API is reached through.", ["lb-01"]),
                "socket": text(
                    "The admin socket's absolute path on that host (`stats socket PATH "
                    "level admin`).",
                    ["/run/haproxy/admin.sock"],
                ),
                "api": text(
                    "A TCP stats socket, HOST:PORT as seen from that host.", ["127.0.0.1:9999"]
                ),
                "backend": text("The backend holding the hosts' servers.", ["app"]),
                "server": command(
                    "Each host's server name in that backend (a template).", ["{host}"]
                ),
                "drain": obj(
                    "How long a drained server may keep its sessions.",
                    {
                        "wait_sessions": integer(
                            "Deploy once the server's current sessions are at most this (0)."
                        ),
                        "timeout": duration(
                            "The host fails when its sessions have not ended by then (60s).",
                            examples=["60s"],
                        ),
                    },
                ),
            },
            required=("host", "backend"),
        ),
        "strategy": choice(
            "How the rollout moves: rolling (batch after batch, each host drained while "
            "it changes), canary (with traffic: the first batch gets those shares of the "
            "backend by HAProxy weights), blue-green (deploy the idle pool of blue/green, "
            "switch the backend to it; rollback switches back).",
            ("rolling", "canary", "blue-green"),
        ),
        "traffic": {
            "description": "canary: the canary batch's share of the backend's traffic, "
            "step by step, judged by the between_batches gate after each; rising, ending "
            "at 100% (the promotion: every server back to its own weight, the rest rolls).",
            "type": "array",
            "items": percent("A share of the backend's requests."),
            "minItems": 1,
            "examples": [["5%", "25%", "100%"]],
        },
        "blue": text("blue-green: the inventory group of one pool.", ["blue"]),
        "green": text("blue-green: the inventory group of the other pool.", ["green"]),
        **_become_props(),
        "become_password": command(
            "Names the var holding sudo's password ('{vars.become_pass}', with become_pass "
            "in secrets); never the password itself.",
            ["{vars.become_pass}"],
        ),
    }


def spec_schema() -> dict[str, Any]:
    props = spec_properties()
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "spec.schema.json",
        "title": "rolldeck rollout spec",
        "description": "A rolldeck rollout spec (rolldeck check SPEC validates it fully).",
        "type": "object",
        "properties": props,
        "required": ["service", "version", "steps"],
        "additionalProperties": False,
        "definitions": {"batch_size": _batch_size()},
    }


def inventory_schema() -> dict[str, Any]:
    """The YAML inventories: rolldeck's native format (``defaults``, ``groups``,
    ``hosts``) or Ansible's (group name -> ``hosts``, ``children``, ``vars``). INI
    inventories and directories have no schema; ``rolldeck inventory`` checks them."""
    variables = {"type": ["object", "null"], "propertyNames": {"pattern": _VAR_NAME_RE}}
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    native = {
        "description": "rolldeck's native inventory: defaults, groups and hosts "
        "(examples/inventory.yaml).",
        "type": "object",
        "additionalProperties": False,
        "anyOf": [{"required": [key]} for key in ("defaults", "groups", "hosts")],
        "properties": {
            "defaults": obj(
                "Connection defaults for every host.",
                {
                    "user": text("The SSH login user.", ["deploy"]),
                    "port": {**port, "description": "The SSH port."},
                    "key": text(
                        "The private key file (relative to this file).", ["~/.ssh/id_ed25519"]
                    ),
                    "known_hosts": text("The known_hosts file to check host keys against."),
                },
            ),
            "groups": {
                "description": "Group name -> {hosts, children, vars}.",
                "type": "object",
                "additionalProperties": obj(
                    "A group.",
                    {
                        "hosts": {"type": "array", "items": {"type": "string"}},
                        "children": {"type": "array", "items": {"type": "string"}},
                        "vars": {**variables, "description": "The group's vars."},
                    },
                ),
            },
            "hosts": {
                "description": "Host name -> {address, port, user, key, vars, groups}.",
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        {"type": "null"},
                        obj(
                            "A host.",
                            {
                                "address": text("Where to connect (default: the name)."),
                                "port": {**port, "description": "The SSH port."},
                                "user": text("The SSH login user."),
                                "key": text("The private key file."),
                                "vars": {**variables, "description": "The host's vars."},
                                "groups": {"type": "array", "items": {"type": "string"}},
                            },
                        ),
                    ]
                },
            },
        },
    }
    group = {
        "description": "An Ansible group: hosts (name -> vars), children (name -> group) and vars.",
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "hosts": {
                "description": "Host name (ranges like web[01:20]) -> its vars.",
                "type": ["object", "null"],
                "additionalProperties": variables,
            },
            "children": {
                "description": "Child group name -> group.",
                "type": ["object", "null"],
                "additionalProperties": {"$ref": "#/definitions/ansible_group"},
            },
            "vars": {**variables, "description": "The group's vars."},
        },
    }
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "inventory.schema.json",
        "title": "rolldeck YAML inventory",
        "description": "A native inventory (defaults, groups, hosts) or an Ansible YAML "
        "inventory (all: {hosts, children, vars}).",
        "definitions": {"native": native, "ansible_group": group},
        "anyOf": [
            {"$ref": "#/definitions/native"},
            {
                "description": "An Ansible YAML inventory: group name -> group.",
                "type": "object",
                "not": {"anyOf": [{"required": [k]} for k in ("defaults", "groups", "hosts")]},
                "propertyNames": {"not": {"const": "plugin"}},
                "additionalProperties": {"$ref": "#/definitions/ansible_group"},
            },
        ],
    }


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


# -- the spec reference ----------------------------------------------------------------


def _walk(
    props: dict[str, Any], prefix: str, defs: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, prop in props.items():
        path = f"{prefix}{key}"
        yield path, prop
        for form in _forms(prop, defs):
            if form.get("type") == "object" and "properties" in form:
                yield from _walk(form["properties"], f"{path}.", defs)
            items = form.get("items")
            if isinstance(items, dict):
                for item in _forms(items, defs):
                    if item.get("type") == "object" and "properties" in item:
                        yield from _walk(item["properties"], f"{path}[].", defs)


def _forms(prop: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    if "$ref" in prop:
        return _forms(defs[prop["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in prop:
        return [f for sub in prop["anyOf"] for f in _forms(sub, defs)]
    return [prop]


def object_paths(schema: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Each mapping's path (``""``, ``health``, ``steps[]``) -> its keys; what the
    key-table test compares with the loader's."""
    defs = schema.get("definitions", {})
    out: dict[str, tuple[str, ...]] = {"": tuple(schema["properties"])}

    def visit(prop: dict[str, Any], path: str) -> None:
        for form in _forms(prop, defs):
            if form.get("type") == "object" and "properties" in form:
                keys = tuple(form["properties"])
                out[path] = tuple(dict.fromkeys(out.get(path, ()) + keys))
                for key, sub in form["properties"].items():
                    visit(sub, f"{path}.{key}" if path else key)
            items = form.get("items")
            if isinstance(items, dict):
                visit(items, f"{path}[]")

    for key, prop in schema["properties"].items():
        visit(prop, key)
    return out


def _type_words(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    words = []
    for form in _forms(prop, defs):
        if "enum" in form:
            words.append(" \\| ".join(f"`{v}`" for v in form["enum"]))
        elif "const" in form:
            words.append(f"`{json.dumps(form['const'])}`")
        elif form.get("pattern") == _DURATION_RE:
            words.append("duration")
        elif form.get("pattern") == _PERCENT_RE:
            words.append("percentage")
        elif form.get("type") == "object":
            words.append("mapping")
        elif form.get("type") == "array":
            words.append("list")
        elif isinstance(form.get("type"), list):
            words.append("text" if "string" in form["type"] else "/".join(form["type"]))
        elif "type" in form:
            words.append(
                {"integer": "whole number", "string": "text"}.get(form["type"], form["type"])
            )
    return " or ".join(dict.fromkeys(words))


def spec_markdown() -> str:
    """``docs/spec.md``: every key of a spec with its description (generated)."""
    schema = spec_schema()
    defs = schema["definitions"]
    required = set(schema["required"])
    out = [
        "# Spec reference",
        "",
        "<!-- Generated from console/spec/schema.py by `python -m console.docgen`; "
        "do not edit. -->",
        "",
        "Every key a rollout spec takes. `rolldeck check SPEC` validates a spec fully;",
        "`rolldeck schema spec` prints the JSON Schema (draft-07) these descriptions come",
        "from, for an editor (see [Getting started](getting-started.md#editor-support)).",
        "Durations are `90s`, `2m`, `1h30m`, `500ms`, `1d` or a number of seconds;",
        "percentages are `10%`; a number written as text stays as written",
        '(`version: 2.10` is "2.10"). Unknown keys are errors.',
        "",
        "| key | type | meaning |",
        "|---|---|---|",
    ]
    for path, prop in _walk(schema["properties"], "", defs):
        desc = prop.get("description", "")
        if path in required:
            desc = "**Required.** " + desc
        examples = prop.get("examples")
        if examples:
            desc += " Example: " + ", ".join(f"`{json.dumps(e)}`" for e in examples[:2])
        desc = desc.replace("|", "\\|")
        out.append(f"| `{path}` | {_type_words(prop, defs)} | {desc} |")
    out += ["", "## Checked by the loader only", ""]
    out += [f"- {rule}" for rule in LOADER_ONLY]
    return "\n".join(out) + "\n"
