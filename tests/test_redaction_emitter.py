"""The emitter masks every text field of every event kind, nested ones too, leaves
names (hosts, steps, batches) and dict keys alone, and costs nothing without secrets."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

import pytest

from console.core import events as ev
from console.core.bus import EventBus
from console.core.secrets import MASK, Redactor
from console.core.state import RolloutView
from console.engine.emitter import NAME_FIELDS, Emitter, redact_event, text_fields

SECRET = "s3cr3t-value-91"
REDACTOR = Redactor([SECRET])


def sample(hint: Any, name: str) -> Any:
    """A value of type ``hint`` with the secret in every string it can hold."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)), name)
    if origin is tuple:
        if len(args) == 1:  # tuple[X, ...]
            return (sample(args[0], name), sample(args[0], name))
        return tuple(sample(a, name) for a in args)
    if origin is dict:
        return {"plain": f"{name} {SECRET}", "nested": {"deep": [SECRET, 1.5]}, "n": 3}
    if hint is Any:
        return {"x": f"any {SECRET}"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(iter(hint))
    if hint is bool:
        return True
    if hint is int:
        return 7
    if hint is float:
        return 1.25
    if hint is str:
        return f"{name}: {SECRET}!"
    raise AssertionError(f"no sample for {hint!r}")


def filled(cls: type[ev.Event]) -> ev.Event:
    hints = typing.get_type_hints(cls)
    values = {f.name: sample(hints[f.name], f.name) for f in dataclasses.fields(cls)}
    values["ts"] = 1.0
    return cls(**values)


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=list(ev.EVENT_TYPES))
def test_every_event_kind_has_every_text_field_masked(cls: type[ev.Event]) -> None:
    event = filled(cls)
    masked = redact_event(event, REDACTOR)
    assert type(masked) is cls and masked.ts == event.ts
    for f in dataclasses.fields(cls):
        before, after = getattr(event, f.name), getattr(masked, f.name)
        if f.name in NAME_FIELDS and not isinstance(before, dict):
            assert after == before, f"{f.name} is a name: never masked"
        elif SECRET in repr(before):
            assert SECRET not in repr(after), f"{cls.__name__}.{f.name} leaks"
            assert MASK in repr(after)
        else:
            assert after == before
    # JSON round trip of the masked event holds no secret outside names
    data = ev.to_json(masked)
    leaks = [k for k, v in data.items() if SECRET in repr(v) and k not in NAME_FIELDS]
    assert not leaks


def test_nested_values_are_masked_keys_and_non_text_kept() -> None:
    alert = ev.Alert(
        level="critical",
        rule="max_failures",
        message=f"failed with {SECRET}",
        host="web-01",
        numbers={"failed": 3, "why": f"x {SECRET}", SECRET: 1, "deep": {"l": [SECRET, 2]}},
    )
    masked = redact_event(alert, REDACTOR)
    assert isinstance(masked, ev.Alert)
    assert masked.message == f"failed with {MASK}"
    assert masked.numbers == {
        "failed": 3,
        "why": f"x {MASK}",
        SECRET: 1,  # a key is a name
        "deep": {"l": [MASK, 2]},
    }
    started = filled(ev.RolloutStarted)
    assert isinstance(started, ev.RolloutStarted)
    out = redact_event(started, REDACTOR)
    assert isinstance(out, ev.RolloutStarted)
    assert SECRET not in repr(out.hosts) and SECRET not in repr(out.settings)
    assert out.batches == started.batches  # host names


def test_unchanged_events_are_the_same_object() -> None:
    lines = tuple(f"GET /{i} 200" for i in range(500))
    event = ev.LogLines(host="web-01", lines=lines)
    assert redact_event(event, REDACTOR) is event
    health = ev.HealthSample(host="web-01", ok=True, detail="ok", changed=False)
    assert redact_event(health, REDACTOR) is health


def test_a_multi_line_secret_is_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAAsecretbody\n-----END KEY-----"
    redactor = Redactor([key])
    out = redact_event(
        ev.StepOutput(host="h", step="s", lines=("-----BEGIN KEY-----", "AAAAsecretbody")),
        redactor,
    )
    assert isinstance(out, ev.StepOutput)
    assert out.lines == (MASK, MASK)


def test_text_fields_are_cached_and_skip_numbers_enums_and_names() -> None:
    assert text_fields(ev.VitalsSample) == ()
    assert text_fields(ev.HostStateChanged) == ("detail",)
    assert "hosts" in text_fields(ev.RolloutStarted)  # a mapping of data under names
    assert "hosts" not in text_fields(ev.BatchStarted)  # a tuple of names
    assert text_fields(ev.LogLines) is text_fields(ev.LogLines)


def test_the_emitter_masks_before_view_and_bus_and_held_events_too() -> None:
    bus, view = EventBus(), RolloutView()
    sub = bus.subscribe()
    emitter = Emitter(bus, view, None)
    emitter.emit(ev.Notice(message=f"early {SECRET}"))  # held until the first event
    emitter.set_redactor(REDACTOR)  # set after it: the held notice is masked too
    started = ev.RolloutStarted(
        rollout_id="r1",
        service="shop",
        version="2.0",
        operator="op",
        spec_path="spec.yaml",
        spec_hash="sha256:0",
        spec_text=f"vars: {{token: {SECRET}}}",
        inventory_path="inv.yaml",
        batches=(("web-01",),),
        hosts={"web-01": {"name": "web-01", "vars": {"url": f"https://x/?t={SECRET}"}}},
    )
    emitter.open(started)
    emitter.emit(ev.HostStateChanged(host="web-01", state=ev.HostState.FAILED, detail=SECRET))
    published = sub.drain()
    assert [type(e) for e in published] == [ev.RolloutStarted, ev.Notice, ev.HostStateChanged]
    assert not [e for e in published if SECRET in repr(ev.to_json(e))]
    assert view.hosts["web-01"].detail == MASK
    assert SECRET not in repr(view)


def test_no_secrets_no_work() -> None:
    bus, view = EventBus(), RolloutView()
    sub = bus.subscribe()
    emitter = Emitter(bus, view, None)
    emitter.open(ev.Notice(message="first"))
    event = ev.LogLines(host="web-01", lines=("a", "b"))
    emitter.emit(event)
    assert sub.drain()[-1] is event
