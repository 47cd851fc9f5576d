"""``between_batches: {gate: command}``: a gate that asks an outside system with a
real local command; 0 go, 1 not yet (asked again), anything else no (on_failure, the
command's output the reason); every answer journaled."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.core import events as ev
from console.core.errors import InputError
from console.core.events import HostState, Outcome
from console.core.secrets import BECOME_PASSWORD_ENV
from console.spec import RolloutSpec, parse_spec
from tests.test_engine_helpers import make_engine, run_engine, spec_from

# Answers from a list, one per poll (the last one repeats): a change-management
# system that says "pending" twice, then yes.
ANSWERS = """\
#!/bin/sh
n=$(cat polls 2>/dev/null || echo 0); n=$((n + 1)); echo $n > polls
code=$(sed -n "${n}p" answers); [ -n "$code" ] || code=$(tail -n 1 answers)
echo "CHG-42 poll $n: answer $code for $1 $2"
exit $code
"""


def gate_spec(tmp: Path, gate: str, extra: str = "", answers: tuple[int, ...] = ()) -> RolloutSpec:
    script = tmp / "ask.sh"
    script.write_text(ANSWERS)
    script.chmod(0o755)
    (tmp / "answers").write_text("".join(f"{a}\n" for a in answers))
    text = spec_from(f"between_batches: {gate}\n{extra}").text
    return parse_spec(text, str(tmp / "spec.yaml"))


def answers(run) -> list[tuple[str, int | None, int]]:
    return [(a.answer, a.exit_code, a.poll) for a in run.kinds(ev.GateAnswer)]


async def test_not_yet_twice_then_go_passes_on_the_third_poll(tmp_path: Path) -> None:
    gate = '{gate: command, run: "./ask.sh {service} {version}", every: 20ms}'
    run = make_engine(gate_spec(tmp_path, gate, answers=(1, 1, 0)), 3)
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    assert answers(run) == [("not_yet", 1, 1), ("not_yet", 1, 2), ("go", 0, 3)]
    first, _, last = run.kinds(ev.GateAnswer)
    assert first.output == "CHG-42 poll 1: answer 1 for shop 2.0" and first.next_at is not None
    assert last.next_at is None
    assert [p.by for p in run.kinds(ev.GatePassed)] == ["command"]
    waiting = run.kinds(ev.GateWaiting)[0]
    assert waiting.gate == "command" and waiting.after_batch == 0
    # the second batch started only after the go
    order = [type(e) for e in run.events if isinstance(e, ev.GateAnswer | ev.BatchStarted)]
    assert order == [ev.BatchStarted, ev.GateAnswer, ev.GateAnswer, ev.GateAnswer, ev.BatchStarted]
    assert run.engine.view.gate_answer is None or run.engine.view.gate_answer.answer == "go"


async def test_any_other_answer_is_no_and_fires_on_failure_with_the_output(tmp_path: Path) -> None:
    gate = '{gate: command, run: "./ask.sh {service} {version}", every: 20ms}'
    spec = gate_spec(tmp_path, gate, "on_failure: rollback\n", answers=(1, 2))
    run = make_engine(spec, 3)
    await run_engine(run)
    assert run.outcome == Outcome.ROLLED_BACK
    assert answers(run) == [("not_yet", 1, 1), ("no", 2, 2)]
    alert = next(a for a in run.kinds(ev.Alert) if a.rule == "gate.command")
    assert alert.action == "rollback" and "exit 2" in alert.message
    assert "CHG-42 poll 2: answer 2 for shop 2.0" in alert.message
    assert run.final("h01") == HostState.ROLLED_BACK and run.final("h02") == HostState.PENDING
    policy = [c for c in run.kinds(ev.OperatorCommand) if c.command == "rollback"]
    assert policy and "CHG-42 poll 2" in policy[0].reason


async def test_no_go_before_the_gate_timeout_applies_on_timeout(tmp_path: Path) -> None:
    # long enough for a second poll when forks are slow (a loaded machine), short
    # enough to keep the test quick
    gate = "{gate: command, run: ./ask.sh, every: 50ms, timeout: 1500ms, on_timeout: abort}"
    run = make_engine(gate_spec(tmp_path, gate, answers=(1,)), 3)
    await run_engine(run)
    assert run.outcome == Outcome.FAILED  # the policy stopped it
    assert {a.answer for a in run.kinds(ev.GateAnswer)} == {"not_yet"}
    assert len(run.kinds(ev.GateAnswer)) >= 2
    alert = next(a for a in run.kinds(ev.Alert) if a.rule == "gate.timeout")
    assert alert.action == "abort"
    assert not run.deploy_commands("h02")


async def test_an_operator_continue_overrides_a_command_gate(tmp_path: Path) -> None:
    gate = "{gate: command, run: ./ask.sh, every: 20ms}"
    run = make_engine(gate_spec(tmp_path, gate, answers=(1,)), 3)

    def react(e: ev.Event, r) -> None:
        if isinstance(e, ev.GateAnswer) and e.poll == 2:
            r.engine.continue_(reason="CAB approved by phone", operator="erin")

    await run_engine(run, react)
    assert run.outcome == Outcome.SUCCEEDED
    assert [p.by for p in run.kinds(ev.GatePassed)] == ["operator:erin"]


def test_command_gate_spec_errors_name_the_field() -> None:
    with pytest.raises(InputError) as bad:
        spec_from("between_batches: {gate: command, every: 5s}\n")
    assert bad.value.field == "between_batches.run"
    with pytest.raises(InputError) as bad:
        spec_from("between_batches: {gate: manual, run: x}\n")
    assert bad.value.field == "between_batches.run" and "only a command gate" in str(bad.value)
    with pytest.raises(InputError) as bad:
        spec_from('between_batches: {gate: command, run: "x {nope}"}\n')
    assert bad.value.field == "between_batches.run"
    spec = spec_from("between_batches: {gate: command, run: x, every: 30s, timeout: 30m}\n")
    g = spec.between_batches
    assert (g.kind, g.run, g.every, g.timeout, g.on_timeout) == ("command", "x", 30, 1800, "abort")


async def test_the_command_never_sees_rolldecks_secrets_and_values_are_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BECOME_PASSWORD_ENV, "hunter2-become")
    run_ = 'echo "pw=[$ROLLDECK_BECOME_PASSWORD]" {vars.ticket}'
    gate = f"{{gate: command, run: '{run_}', every: 20ms}}"
    extra = 'vars: {ticket: "$(touch pwned); CHG-1"}\n'
    run = make_engine(gate_spec(tmp_path, gate, extra, answers=(0,)), 3)
    await run_engine(run)
    assert run.outcome == Outcome.SUCCEEDED
    (answer,) = run.kinds(ev.GateAnswer)
    assert answer.output == "pw=[] $(touch pwned); CHG-1"
    assert not (tmp_path / "pwned").exists()
