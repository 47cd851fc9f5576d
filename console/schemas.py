"""Every JSON Schema rolldeck publishes, by name (``rolldeck schema NAME``).

``spec`` and ``inventory`` come from :mod:`console.spec.schema`, ``events`` from
:mod:`console.core.eventschema`; the scenario schema sits here, beside the simulated
fleet's loader whose key tables it is built from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from console.core.eventschema import stream_schema
from console.simfleet.scenario import IDLE_STATES, ROLLOUT_KEYS, Behaviour
from console.spec.schema import BASE_ID, DRAFT, duration, inventory_schema, spec_schema, text

_RATIO = r"^\s*\d+(\.\d+)?\s*%\s*$"


def _behaviour() -> dict[str, Any]:
    props: dict[str, Any] = {
        "error_rate": {
            "description": "Share of requests that fail: 0.5% or a ratio.",
            "anyOf": [{"type": "string", "pattern": _RATIO}, {"type": "number", "minimum": 0}],
        },
        "latency": duration("A request's latency.", zero=True, examples=["40ms"]),
        "install_duration": {
            "description": "How long install takes: a duration or [min, max].",
            "anyOf": [
                {"type": ["string", "number"]},
                {"type": "array", "items": {"type": ["string", "number"]}},
            ],
        },
        "install_hangs": {"description": "install never finishes.", "type": "boolean"},
        "health": {"description": "The health check's answer.", "enum": ["ok", "failing"]},
        "flapping": duration("Health flips with this period (0: steady).", zero=True),
        "restart_duration": {
            "description": "How long restart takes: a duration or [min, max].",
            "anyOf": [
                {"type": ["string", "number"]},
                {"type": "array", "items": {"type": ["string", "number"]}},
            ],
        },
        "warmup": duration("Errors are raised this long after a start.", zero=True),
    }
    missing = {f.name for f in dataclasses.fields(Behaviour)} ^ set(props)
    if missing:  # Behaviour gained or lost a field: describe it here
        raise KeyError(f"scenario schema out of step with Behaviour: {sorted(missing)}")
    return {"type": "object", "properties": props, "additionalProperties": False}


def _trigger(what: str) -> dict[str, Any]:
    return {
        "description": what + ": true, or {after, on, version, delay, recover_after}.",
        "type": ["object", "boolean"],
        "additionalProperties": False,
        "properties": {
            "after": duration("After this long from the fleet's start.", zero=True),
            "on": text("On this command (install, restart, ...)."),
            "version": text("Only while this version (or new/old) runs."),
            "delay": duration("This long after the trigger.", zero=True),
            "recover_after": duration("Back to normal after this long."),
        },
    }


def scenario_schema() -> dict[str, Any]:
    """A simulated-fleet scenario (``console/simfleet/scenarios/*.yaml``)."""
    behaviour = _behaviour()
    versions = {
        "description": "Version (default, new, old, or a number) -> how it behaves.",
        "type": "object",
        "additionalProperties": {"$ref": "#/definitions/behaviour"},
    }
    rule = {
        "description": "Hosts matching a pattern, and what happens to them.",
        "type": "object",
        "additionalProperties": False,
        "required": ["match"],
        "properties": {
            "match": text("A host name or pattern.", ["api-02"]),
            "slow": {"description": "Commands run this many times slower.", "type": "number"},
            "disk_full": _trigger("The disk fills up"),
            "unreachable": _trigger("The host drops off the network"),
            "versions": versions,
            **behaviour["properties"],
        },
    }
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "scenario.schema.json",
        "title": "rolldeck simulated-fleet scenario",
        "description": "rolldeck drill SCENARIO: a simulated fleet with faults.",
        "type": "object",
        "additionalProperties": False,
        "definitions": {"behaviour": behaviour},
        "properties": {
            "name": text("The scenario's name.", ["bad-canary"]),
            "description": text("What the scenario shows."),
            "service": text("The simulated service's name."),
            "initial_version": text("The version the fleet starts on.", ["2.4.0"]),
            "target_version": text("The version the drill deploys.", ["2.4.1"]),
            "time_scale": {
                "description": "Simulated time runs this much faster.",
                "type": "number",
            },
            "log_rate": {"description": "Log lines per host per second.", "type": "number"},
            "request_rate": {"description": "Requests per host per second.", "type": "number"},
            "versions": versions,
            "hosts": {"description": "Host rules.", "type": "array", "items": rule},
            "load_balancer": {
                "description": "A real HAProxy in front of the hosts (haproxy on PATH), "
                "lb-01 to reach its admin socket, and a load generator: true, or "
                "{pools: [A, B], idle: drain|maint} for blue-green (A live, B idle).",
                "type": ["object", "boolean"],
                "additionalProperties": False,
                "properties": {
                    "pools": {
                        "description": "Two inventory groups: the first half of the hosts "
                        "in A (live), the rest in B (idle).",
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "idle": {"description": "How pool B starts.", "enum": list(IDLE_STATES)},
                },
            },
            "rollout": {
                "description": "Spec keys the scenario sets for its drill.",
                "type": "object",
                "propertyNames": {"enum": list(ROLLOUT_KEYS)},
            },
        },
    }


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "spec": spec_schema,
    "inventory": inventory_schema,
    "scenario": scenario_schema,
    "events": stream_schema,
}
