"""The headless runner: plain/json/rich output, manual gates with and without --yes,
Ctrl-C pauses then aborts, SIGHUP pauses; and `rolldeck run` bad input."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from console.cli import main
from console.core import events as ev
from console.core.events import Outcome
from console.headless import choose_mode, describe, run_headless
from tests.test_engine_helpers import Run, make_engine, spec_from


async def test_plain_lines_for_notable_events() -> None:
    run = make_engine(spec_from(), 3, exit_when_paused=True)
    out = io.StringIO()
    outcome = await run_headless(run.engine, mode="plain", out=out, handle_signals=False)
    assert outcome == Outcome.SUCCEEDED
    text = out.getvalue()
    assert "batch 1/2 started: 1 host (h01)" in text
    assert "batch 2/2 started: 2 hosts (h02, h03)" in text
    assert "h02 healthy" in text
    assert "h01 preflight ok, version 1.0" in text
    assert "rollout finished: succeeded (exit 0)" in text
    assert text.rstrip().endswith("succeeded (3 healthy)")
    assert "step_output" not in text and "health_sample" not in text
    assert "step install" not in text  # steps that went fine are not listed


async def test_json_lines_are_every_event() -> None:
    run = make_engine(spec_from(), 3, exit_when_paused=True)
    run.fake.on(r"^install", lines=["unpacking"])
    out = io.StringIO()
    outcome = await run_headless(run.engine, mode="json", out=out, handle_signals=False)
    assert outcome == Outcome.SUCCEEDED
    header, *rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert header == ev.stream_header()
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "rollout_started" and kinds[-1] == "rollout_finished"
    assert "step_output" in kinds and "health_sample" in kinds
    assert [ev.from_json(r) for r in rows][-1].outcome == Outcome.SUCCEEDED  # type: ignore[attr-defined]


async def test_manual_gate_without_yes_stops_paused() -> None:
    run = make_engine(spec_from("between_batches: manual\n"), 3, exit_when_paused=True)
    out = io.StringIO()
    outcome = await run_headless(run.engine, mode="plain", out=out, handle_signals=False)
    assert outcome == Outcome.PAUSED
    assert "pass --yes" in out.getvalue()
    assert not run.deploy_commands("h02")
    pause = next(e for e in run.engine.view.timeline if isinstance(e, ev.OperatorCommand))
    assert pause.command == "pause" and "without --yes" in pause.reason


async def test_manual_gate_with_yes_continues_journaled() -> None:
    run = make_engine(spec_from("between_batches: manual\n"), 3, exit_when_paused=True)
    out = io.StringIO()
    outcome = await run_headless(run.engine, mode="plain", yes=True, out=out, handle_signals=False)
    assert outcome == Outcome.SUCCEEDED
    cmd = next(e for e in run.engine.view.timeline if isinstance(e, ev.OperatorCommand))
    assert (cmd.command, cmd.reason, cmd.operator) == ("continue", "--yes (headless)", "tester")


async def _signal_when_installing(run: Run, sigs: list[signal.Signals]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    sub = run.engine.bus.subscribe()

    async def trigger() -> None:
        stream = aiter(sub.batches())

        async def until_seen(pred: Callable[[ev.Event], bool], what: str) -> None:
            while True:
                batch = await anext(stream, None)
                assert batch is not None, f"the rollout ended before {what}"
                if any(pred(e) for e in batch):
                    return

        await until_seen(
            lambda e: isinstance(e, ev.StepStarted) and e.step == "install", "an install"
        )
        for n, sig in enumerate(sigs, 1):
            os.kill(os.getpid(), sig)
            if n < len(sigs):  # the next signal only once the engine took this one
                took = f"the engine took {sig.name}"
                await until_seen(lambda e: isinstance(e, ev.OperatorCommand), took)

    task = asyncio.create_task(trigger())
    outcome = await run_headless(run.engine, mode="plain", out=out, err=err)
    await task
    return outcome


async def test_ctrl_c_pauses_and_twice_aborts() -> None:
    run = make_engine(spec_from("batches: [1, 2]\n"), 5, exit_when_paused=True)
    run.fake.on(r"^install", delay=0.3)
    assert await _signal_when_installing(run, [signal.SIGINT]) == Outcome.PAUSED
    assert run.final("h01").value == "healthy"  # the moving host finished
    assert not run.deploy_commands("h02")

    run = make_engine(spec_from("batches: [1, 2]\n"), 5, exit_when_paused=True)
    run.fake.on(r"^install", delay=0.5)
    outcome = await _signal_when_installing(run, [signal.SIGINT, signal.SIGINT])
    assert outcome == Outcome.ABORTED
    assert run.final("h01").value == "interrupted"
    reasons = [e.reason for e in run.engine.view.timeline if isinstance(e, ev.OperatorCommand)]
    assert reasons == ["SIGINT (Ctrl-C)", "second SIGINT (Ctrl-C)"]


async def test_sighup_pauses() -> None:
    run = make_engine(spec_from("batches: [1, 2]\n"), 5, exit_when_paused=True)
    run.fake.on(r"^install", delay=0.2)
    assert await _signal_when_installing(run, [signal.SIGHUP]) == Outcome.PAUSED
    reasons = [e.reason for e in run.engine.view.timeline if isinstance(e, ev.OperatorCommand)]
    assert reasons == ["terminal lost (SIGHUP)"]


async def test_rich_mode_renders_and_summarises() -> None:
    run = make_engine(spec_from("batches: [1, 2]\n"), 4, exit_when_paused=True)
    run.fake.on(r"^install", exit_code=1, hosts=["h03"])
    out = io.StringIO()
    outcome = await run_headless(run.engine, mode="rich", out=out, handle_signals=False)
    assert outcome == Outcome.PAUSED
    text = out.getvalue()
    assert "ALERT [critical] max_failures" in text
    assert "rollout " in text and "paused" in text


def test_mode_choice_and_describe() -> None:
    assert choose_mode(True, io.StringIO()) == "json"
    assert choose_mode(False, io.StringIO()) == "plain"
    line = describe(ev.OperatorCommand(command="skip", operator="amy", accepted=False, detail="no"))
    assert line == "skip by amy REFUSED: no"
    assert describe(ev.HealthSample(host="h", ok=True)) is None


def test_run_cli_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing.yaml"), "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rolldeck: ") and len(err.strip().splitlines()) == 1
