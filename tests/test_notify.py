"""``notify:`` hooks: webhooks to a real HTTP receiver on loopback and local commands,
fed from the engine's bus after the journal; best effort, never in the way, every
delivery and failure journaled, a URL's token never written."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from console.cli import main
from console.core import events as ev
from console.core.errors import EXIT_ROLLED_BACK, InputError
from console.core.events import Outcome
from console.core.secrets import Redactor
from console.notify import attach_notifier, deliver
from console.notify import notifier as notifier_mod
from console.notify.deliver import Attempt
from console.spec import RolloutSpec, parse_spec
from console.spec.model import HookSpec
from console.store.journal import read_journal
from console.templating import redactor_for
from tests.fixtures.http_receiver import Receiver
from tests.fixtures.simfleet import FleetFactory
from tests.test_engine_helpers import Run, hosts, journal_in, make_engine, run_engine, spec_from
from tests.waiting import wait_until

TOKEN = "secret-token-123"


def spec_with(notify: str, extra: str = "", path: str = "spec.yaml") -> RolloutSpec:
    """The engine tests' base spec, ``extra`` keys replacing its own, and ``notify``."""
    return parse_spec(spec_from(extra + "notify:\n" + notify).text, path)


async def run_with_hooks(
    spec: RolloutSpec, tmp: Path, n: int = 3, fail_host: str | None = None, react=None
):
    run = make_engine(spec, n, journal=journal_in(tmp))
    if fail_host is not None:
        run.fake.on(r"^activate 2.0", exit_code=1, hosts=[fail_host])
    attach_notifier(
        run.engine,
        spec.notify,
        redactor=redactor_for(spec, hosts(n)),
        journal=str(run.engine.journal.path),  # type: ignore[union-attr]
    )
    await run_engine(run, react)
    journal = run.engine.journal.path  # type: ignore[union-attr]
    return run, read_journal(journal), journal.read_text()


def deliveries(events: list[ev.Event]) -> list[ev.NotifyDelivery]:
    return [e for e in events if isinstance(e, ev.NotifyDelivery)]


def test_notify_spec_is_checked_with_file_line_and_field() -> None:
    spec = spec_with(
        "  - on: [started, finished]\n    run: ./hooks/notify.sh\n"
        "  - on: all\n    webhook: https://hooks.example.com/T0/B0/XXXXXXXX\n"
        "    format: slack\n    timeout: 2s\n    retries: 1\n"
    )
    run, hook = spec.notify
    assert run.on == ("started", "finished") and run.run == "./hooks/notify.sh"
    assert hook.format == "slack" and hook.timeout == 2 and hook.retries == 1
    assert "finished" in hook.on and "rolled_back" in hook.on
    text = spec_from().text.rstrip("\n") + "\nnotify:\n  - on: [started, finshed]\n    run: x\n"
    with pytest.raises(InputError) as bad:
        parse_spec(text, "spec.yaml")
    assert bad.value.field == "notify[0].on[1]" and "finished" in str(bad.value)
    assert bad.value.line == text.splitlines().index("  - on: [started, finshed]") + 1
    with pytest.raises(InputError, match="one of them"):
        spec_with("  - on: started\n    run: x\n    webhook: http://h/x\n")
    with pytest.raises(InputError, match="http:// or https://"):
        spec_with("  - on: started\n    webhook: ftp://h/x\n")
    with pytest.raises(InputError, match="only a webhook has a format"):
        spec_with("  - on: started\n    run: x\n    format: slack\n")


async def test_webhook_is_told_every_event_after_the_journal_and_the_token_is_never_written(
    tmp_path: Path,
) -> None:
    with Receiver("ok") as rx:
        spec = spec_with(
            f"  - on: [started, batch_finished, finished]\n    webhook: {rx.url()}\n"
            f"  - on: [finished]\n    webhook: {rx.url('/slack/' + TOKEN)}\n    format: slack\n",
            extra="between_batches: manual\n",
        )

        def react(e: ev.Event, r: Run) -> None:  # the gate waits for a delivery's report
            if isinstance(e, ev.NotifyDelivery):
                r.engine.continue_()

        run, events, raw = await run_with_hooks(spec, tmp_path, react=react)
    assert run.outcome == Outcome.SUCCEEDED
    json_posts = [body for path, body in rx.posts if path.startswith("/hooks/")]
    assert [b["event"] for b in json_posts] == [
        "started",
        "batch_finished",
        "batch_finished",
        "finished",
    ]
    started, *_, finished = json_posts
    assert started["service"] == "shop" and started["version"] == "2.0"
    assert started["rollout_id"] == run.engine.rollout_id
    assert (finished["outcome"], finished["exit_code"]) == ("succeeded", 0)
    assert finished["previous_versions"] == ["1.0"] and finished["hosts_changed"] == 3
    (slack,) = [body for path, body in rx.posts if path.startswith("/slack/")]
    assert set(slack) == {"text"} and "shop 2.0 [finished]" in slack["text"]
    done = deliveries(events)
    assert len(done) == 5 and all(d.ok and d.status == "HTTP 200" for d in done)
    assert {d.hook for d in done} == {f"webhook http://127.0.0.1:{rx.port}/***"}
    # the ones delivered while the rollout ran were journaled through the engine
    assert any(events.index(d) < events.index(run.kinds(ev.RolloutFinished)[0]) for d in done)
    assert TOKEN not in raw  # not in the spec text, the settings or any delivery


async def test_failing_and_hanging_receivers_delay_nothing_and_change_no_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier_mod, "BACKOFF_FIRST", 0.01)
    with Receiver("fail") as bad, Receiver("hang") as hung:
        spec = spec_with(
            f"  - on: [started, alert, rolled_back, finished]\n    webhook: {bad.url()}\n"
            "    retries: 1\n"
            f"  - on: [started, rolled_back, finished]\n    webhook: {hung.url()}\n"
            "    timeout: 300ms\n    retries: 0\n",
            extra="on_failure: rollback\n",
        )
        run, events, raw = await run_with_hooks(spec, tmp_path, n=3, fail_host="h02")
    assert run.outcome == Outcome.ROLLED_BACK
    assert run.kinds(ev.RolloutFinished)[-1].exit_code == 4
    failed = deliveries(events)
    by_hook: dict[str, list[ev.NotifyDelivery]] = {}
    for d in failed:
        by_hook.setdefault(d.hook.split("127.0.0.1:")[1], []).append(d)
    five = by_hook[f"{bad.port}/***"]
    assert [d.event for d in five] == ["started", "alert", "rolled_back", "finished"]
    assert all(not d.ok and d.status == "HTTP 500" and d.attempts == 2 for d in five)
    stuck = by_hook[f"{hung.port}/***"]
    assert [d.event for d in stuck] == ["started", "rolled_back", "finished"]
    assert all(not d.ok and d.status == "timeout" for d in stuck)
    assert bad.requests == 8 and hung.requests == 3
    assert TOKEN not in raw


async def test_a_command_hook_gets_the_event_on_stdin_and_the_rolldeck_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "hooks").mkdir()
    script = tmp_path / "hooks" / "notify.sh"
    script.write_text(
        "#!/bin/sh\n"
        'cat > "out-$ROLLDECK_EVENT.json"\n'
        'env | grep ^ROLLDECK_ > "out-$ROLLDECK_EVENT.env"\n'
    )
    script.chmod(0o755)
    spec = spec_with(
        "  - on: [batch_finished, finished]\n    run: ./hooks/notify.sh\n"
        "  - on: [finished]\n    run: echo broken >&2; exit 3\n    retries: 0\n",
        extra="environment: staging\n",
        path=str(tmp_path / "spec.yaml"),
    )
    run, events, _ = await run_with_hooks(spec, tmp_path, n=3)
    assert run.outcome == Outcome.SUCCEEDED
    body = json.loads((tmp_path / "out-finished.json").read_text())
    assert body["event"] == "finished" and body["outcome"] == "succeeded"
    assert body["environment"] == "staging" and body["detail"]["counts"] == {"healthy": 3}
    env = dict(
        line.split("=", 1) for line in (tmp_path / "out-finished.env").read_text().splitlines()
    )
    journal = str(run.engine.journal.path)  # type: ignore[union-attr]
    assert env["ROLLDECK_SERVICE"] == "shop" and env["ROLLDECK_VERSION"] == "2.0"
    assert env["ROLLDECK_PREVIOUS_VERSIONS"] == "1.0" and env["ROLLDECK_HOSTS_CHANGED"] == "3"
    assert env["ROLLDECK_ROLLOUT_ID"] == run.engine.rollout_id
    assert env["ROLLDECK_OPERATOR"] == "tester" and env["ROLLDECK_ENVIRONMENT"] == "staging"
    assert (env["ROLLDECK_OUTCOME"], env["ROLLDECK_EXIT_CODE"]) == ("succeeded", "0")
    assert env["ROLLDECK_BATCH"] == "2" and env["ROLLDECK_JOURNAL"] == journal
    broken = [d for d in deliveries(events) if d.hook.startswith("run echo")]
    assert [(d.ok, d.status, d.detail) for d in broken] == [(False, "exit 3", "broken")]


def test_a_hook_that_falls_behind_drops_the_oldest_and_says_how_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notifier_mod, "QUEUE_SIZE", 2)
    release, in_flight = threading.Event(), threading.Event()
    sent: list[str] = []
    reports: list[tuple[str, int]] = []
    done = threading.Event()

    def send(item: notifier_mod._Item) -> Attempt:
        in_flight.set()
        release.wait(10)
        sent.append(item.event.message)  # type: ignore[attr-defined]
        return Attempt(True, "exit 0")

    def report(label: str, name: str, attempt: Attempt, tries: int, dropped: int) -> None:
        reports.append((name, dropped))
        if len(reports) == 3:
            done.set()

    worker = notifier_mod._Worker(HookSpec(on=("alert",), run="x"), send, report)
    worker.thread.start()
    facts = notifier_mod.payload.Facts()
    items = [notifier_mod._Item("alert", ev.Notice(message=str(i)), facts) for i in range(6)]
    worker.offer(items[0])
    assert in_flight.wait(10)
    for item in items[1:]:
        worker.offer(item)
    release.set()
    assert done.wait(10)
    worker.close()
    worker.thread.join(10)
    assert sent == ["0", "4", "5"]  # 1, 2, 3 dropped, oldest first
    assert [d for _, d in reports] == [0, 3, 0]


async def test_bad_canary_drill_announces_alert_then_rolled_back_then_finished(
    sim_fleet_factory: FleetFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulated fleet's bad canary, headless, the engine's policy acting: the
    channel hears the alert, the rollback and the end, in that order, with the exit
    code the command line returns."""
    fleet = await sim_fleet_factory(n=4, scenario="bad-canary")
    with Receiver("ok") as rx:
        text = fleet.spec_path.read_text()
        fleet.spec_path.write_text(
            text + f"notify:\n  - on: [alert, rolled_back, finished]\n    webhook: {rx.url()}\n"
        )
        state = tmp_path / "state"
        argv = ["run", str(fleet.spec_path), "--headless", "--state-dir", str(state)]
        argv += ["--metrics-textfile", str(tmp_path / "textfile")]
        code = await asyncio.to_thread(main, argv)
    assert code == EXIT_ROLLED_BACK, capsys.readouterr().err
    said = rx.events()
    assert said[-2:] == ["rolled_back", "finished"] and said[0] == "alert", said
    assert set(said[:-2]) == {"alert"}
    alert, finished = rx.posts[0][1], rx.posts[-1][1]
    assert alert["detail"]["action"] == "rollback" and alert["detail"]["rule"].startswith(
        "error_rate"
    )
    assert (finished["outcome"], finished["exit_code"]) == ("rolled_back", EXIT_ROLLED_BACK)
    (journal,) = state.glob("*.jsonl")
    done = deliveries(read_journal(journal))
    assert [d.event for d in done] == said and all(d.ok for d in done)
    assert TOKEN not in journal.read_text()
    (prom,) = (tmp_path / "textfile").glob("*.prom")  # the metrics file, wired by the CLI
    assert 'outcome="rolled_back"' in prom.read_text()


def test_check_lists_the_hooks_with_the_token_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "inventory.yaml").write_text("all:\n  hosts:\n    here: {}\n")
    spec = tmp_path / "rollout.yaml"
    spec.write_text(
        'service: shop\nversion: "2.0"\ninventory: inventory.yaml\nsteps: ["true"]\n'
        "notify:\n  - on: [alert, finished]\n    run: ./hooks/notify.sh\n"
        f"  - on: all\n    webhook: https://hooks.example.com/T0/B0/{TOKEN}\n"
        "    format: slack\n"
    )
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "notify      run ./hooks/notify.sh on alert, finished (timeout 5s, 2 retries)" in out
    assert "webhook https://hooks.example.com/*** on every event" in out
    assert main(["check", str(spec), "--json"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and "https://hooks.example.com/***" in out


async def test_the_end_of_a_run_waits_for_a_stuck_hook_only_so_long(tmp_path: Path) -> None:
    """What is still queued when the drain's limit passes is reported as not sent."""
    with Receiver("hang") as hung:
        hook = HookSpec(on=("started", "finished"), webhook=hung.url(), timeout=30.0)
        notifier = notifier_mod.Notifier((hook,), redactor=Redactor(), cwd=str(tmp_path))
        notifier.start()
        finished = ev.RolloutFinished(outcome=Outcome.SUCCEEDED, exit_code=0)
        for event in (ev.Notice(message="ignored"), started_event(), finished):
            notifier.listen(event)
        # "started" is in flight (stuck at the receiver) before the drain's limit runs
        await wait_until(lambda: hung.requests == 1, what="the started hook to be sent")
        left = await notifier.drain(limit=0.2)
    (report,) = left
    assert (report.ok, report.status, report.event) == (False, "not sent", "finished")
    assert "finished not sent" in report.detail and report.hook.endswith("/***")


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_attempts_timeout() -> None:
    """Each byte comes well within the socket's read timeout; the whole answer would
    take a minute: the attempt ends at its own timeout, not at the answer's end."""
    with Receiver("trickle") as slow:
        attempt = deliver.post(slow.url(), b'{"event": "finished"}', timeout=0.5)
    assert (attempt.ok, attempt.status) == (False, "timeout"), attempt
    assert slow.requests == 1 and "0.5s" in attempt.detail


def started_event() -> ev.RolloutStarted:
    return ev.RolloutStarted(
        rollout_id="r1", service="shop", version="2.0", operator="tester", spec_path="s",
        spec_hash="h", spec_text="", inventory_path="i", batches=(("h01",),),
    )  # fmt: skip
