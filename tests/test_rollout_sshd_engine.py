"""The engine through real OpenSSH: every step is a real shell command on each host's
deploy root (install writes releases/VERSION, activate flips the ``current`` symlink,
current_version reads it), and every check reads the files back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.events import Event, HostState, Outcome
from console.engine import Engine
from console.plan import make_plan
from console.spec import RolloutSpec, parse_spec
from console.store.journal import Journal, read_journal
from console.transport import make_transport
from inventory.model import Host
from tests.fixtures.sshd import SSHFleet, free_port, living_processes, unique_sleep, write_keypair
from tests.waiting import wait_until

pytestmark = pytest.mark.sshd
FleetMaker = Callable[..., SSHFleet]

SPEC = """
service: shop
version: "{version}"
batches: {batches}
max_parallel: 20
max_failures: {max_failures}
on_failure: {on_failure}
between_batches: auto
release_dir: "{{vars.root}}"  # the release layout: current -> releases/<version>
steps:
  - name: install
    run: >-
      ( test ! -e {{vars.root}}/FAIL || (
      w=$(cat {{vars.root}}/FAIL); while test -n "$w" && test ! -e "$w"; do sleep 0.02; done;
      sleep 0.3; false ) ) &&
      mkdir -p {{vars.root}}/releases/{{version}} &&
      printf '%s\\n' {{version}} > {{vars.root}}/releases/{{version}}/VERSION
    timeout: 10s
  - name: migrate
    run: >-
      if test -e {{vars.root}}/HANG; then touch {{vars.root}}/MIGRATING; {sleep}; fi;
      echo migrated {{host}}
    timeout: {migrate_timeout}
  - name: activate
    run: ln -sfn releases/{{version}} {{vars.root}}/current
    timeout: 10s
health:
  run: test -f {{vars.root}}/current/VERSION
  every: 0.05s
  healthy_after: 2
  deadline: 5s
rollback:
  steps:
    - name: restore
      run: ln -sfn releases/{{previous_version}} {{vars.root}}/current
      timeout: 10s
"""


def make_spec(
    *,
    version: str = "2.0",
    batches: str = "[1, 25%, 100%]",
    on_failure: str = "pause",
    migrate_timeout: str = "10s",
    sleep: str = "sleep 600",
    max_failures: int = 0,
    extra: str = "",
) -> RolloutSpec:
    text = SPEC.format(
        version=version.replace("\\", "\\\\").replace('"', '\\"'),
        batches=batches,
        on_failure=on_failure,
        migrate_timeout=migrate_timeout,
        sleep=sleep,
        max_failures=max_failures,
    )
    return parse_spec(text + extra, "spec.yaml")


def seed(fleet: SSHFleet, versions: dict[str, str] | None = None) -> None:
    """Each host starts on its own release (default 1.0), ``current`` pointing at it."""
    for host in fleet.hosts:
        version = (versions or {}).get(host.name, "1.0")
        root = fleet.root(host.name)
        (root / "releases" / version).mkdir(parents=True, exist_ok=True)
        (root / "releases" / version / "VERSION").write_text(version + "\n")
        link = root / "current"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(f"releases/{version}")


def active(fleet: SSHFleet, name: str) -> str:
    return os.readlink(fleet.root(name) / "current").removeprefix("releases/")


def engine_for(
    fleet: SSHFleet,
    spec: RolloutSpec,
    *,
    hosts: list[Host] | None = None,
    journal: Journal | None = None,
    **kw: object,
) -> Engine:
    hs = hosts or fleet.hosts
    plan = make_plan([h.name for h in hs], spec.batches)
    kw.setdefault("monitors", False)
    return Engine(
        spec,
        hs,
        plan,
        make_transport(fleet.options),
        journal=journal,
        operator="tester",
        **kw,  # type: ignore[arg-type]
    )


async def drive(
    engine: Engine, react: Callable[[Event, Engine], None] | None = None, timeout: float = 60.0
) -> tuple[Outcome, list[Event]]:
    seen: list[Event] = []
    sub = engine.bus.subscribe()

    async def consume() -> None:
        async for batch in sub.batches():
            for event in batch:
                seen.append(event)
                if react is not None:
                    react(event, engine)

    async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        outcome = await engine.run()
    return outcome, seen


def on_step(
    host: str, step: str, action: Callable[[Engine], None]
) -> Callable[[Event, Engine], None]:
    done: list[bool] = []

    def react(e: Event, engine: Engine) -> None:
        if not done and isinstance(e, ev.StepStarted) and e.host == host and e.step == step:
            done.append(True)
            action(engine)

    return react


def on(
    pred: Callable[[Event], bool], action: Callable[[Engine], None]
) -> Callable[[Event, Engine], None]:
    """``action(engine)`` once, on the first event for which ``pred`` holds."""
    done: list[bool] = []

    def react(e: Event, engine: Engine) -> None:
        if not done and pred(e):
            done.append(True)
            action(engine)

    return react


def state_is(host: str, state: HostState) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, ev.HostStateChanged) and (e.host, e.state) == (host, state)


def step_is(host: str, step: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, ev.StepStarted) and (e.host, e.step) == (host, step)


def all_seen(*preds: Callable[[Event], bool]) -> Callable[[Event], bool]:
    """True from the event by which each of ``preds`` has matched some event (it
    remembers: one per rule)."""
    hit = [False] * len(preds)

    def pred(e: Event) -> bool:
        for i, p in enumerate(preds):
            hit[i] = hit[i] or p(e)
        return all(hit)

    return pred


def both(*reacts: Callable[[Event, Engine], None]) -> Callable[[Event, Engine], None]:
    """Several react callbacks on one run: each sees every event, in order."""

    def react(e: Event, engine: Engine) -> None:
        for r in reacts:
            r(e, engine)

    return react


async def gone(marker: str) -> None:
    """Until no process runs ``marker`` (a killed remote command exits asynchronously)."""
    await wait_until(
        lambda: not living_processes(marker), what=f"no process running {marker!r}", interval=0.1
    )


@pytest.mark.slow
async def test_full_rollout_of_20_hosts_in_a_ramp(sshd_fleet: FleetMaker, tmp_path: Path) -> None:
    fleet = sshd_fleet(20)
    seed(fleet)
    journal = Journal.create(tmp_path, "full")
    engine = engine_for(fleet, make_spec(), journal=journal)
    outcome, events = await drive(engine)
    assert outcome == Outcome.SUCCEEDED
    assert [len(b.hosts) for b in events if isinstance(b, ev.BatchStarted)] == [1, 5, 14]
    for host in fleet.hosts:
        assert active(fleet, host.name) == "2.0"
        assert (fleet.root(host.name) / "releases/2.0/VERSION").read_text() == "2.0\n"
        assert engine.recs[host.name].previous_version == "1.0"
    reads = {(e.host, e.role): e.version for e in events if isinstance(e, ev.VersionRead)}
    assert all(reads[(h.name, "new")] == "2.0" for h in fleet.hosts)
    output = [e for e in events if isinstance(e, ev.StepOutput) and e.step == "migrate"]
    assert {line for e in output for line in e.lines} == {f"migrated {h.name}" for h in fleet.hosts}
    assert read_journal(journal.path)[-1].outcome == Outcome.SUCCEEDED  # type: ignore[attr-defined]


@pytest.mark.parametrize("on_failure", ["pause", "rollback", "abort"])
async def test_failing_step_on_one_host(sshd_fleet: FleetMaker, on_failure: str) -> None:
    fleet = sshd_fleet(8)
    seed(fleet)
    # batch 2 is web-02, web-03; web-03 fails once web-02 is in its slow migrate, so
    # web-02 is still moving then (a FAIL file may name a file to wait for)
    (fleet.root("web-03") / "FAIL").write_text(str(fleet.root("web-02") / "MIGRATING"))
    hang = "sleep 0.5" if on_failure != "abort" else unique_sleep()
    spec = make_spec(batches="[1, 2]", on_failure=on_failure, sleep=hang)
    (fleet.root("web-02") / "HANG").touch()
    engine = engine_for(fleet, spec, exit_when_paused=True)
    outcome, events = await drive(engine)
    states = {h.name: engine.recs[h.name].state for h in fleet.hosts}
    assert states["web-03"] in (HostState.FAILED, HostState.ROLLED_BACK)
    assert not (fleet.root("web-03") / "releases/2.0").exists()  # failed before writing
    untouched = [f"web-{i:02d}" for i in range(4, 9)]
    for name in untouched:
        assert active(fleet, name) == "1.0"
        assert not (fleet.root(name) / "releases/2.0").exists()
        assert states[name] == HostState.PENDING
    if on_failure == "pause":
        assert outcome == Outcome.PAUSED
        assert active(fleet, "web-01") == "2.0"
        assert active(fleet, "web-02") == "2.0"  # was moving: finished, not half-deployed
        assert states["web-02"] == HostState.HEALTHY
    elif on_failure == "rollback":
        assert outcome == Outcome.ROLLED_BACK
        for name in ("web-01", "web-02", "web-03"):
            assert active(fleet, name) == "1.0"
            assert states[name] == HostState.ROLLED_BACK
    else:
        assert outcome == Outcome.FAILED
        assert states["web-02"] == HostState.INTERRUPTED
        assert engine.recs["web-02"].detail == "aborted during migrate"
        assert active(fleet, "web-02") == "1.0"  # cut before activate
        assert (fleet.root("web-02") / "releases/2.0/VERSION").exists()  # install had run
        await gone(hang)
    assert any(isinstance(e, ev.Alert) and e.rule == "max_failures" for e in events)


async def test_hung_step_times_out_and_the_remote_process_is_gone(sshd_fleet: FleetMaker) -> None:
    fleet = sshd_fleet(2)
    seed(fleet)
    (fleet.root("web-01") / "HANG").touch()
    sleep = unique_sleep()
    spec = make_spec(batches="[100%]", migrate_timeout="1s", sleep=sleep, max_failures=1)
    engine = engine_for(fleet, spec)
    outcome, events = await drive(engine)
    assert outcome == Outcome.SUCCEEDED  # one failure is within the budget
    rec = engine.recs["web-01"]
    assert (rec.state, rec.detail) == (HostState.FAILED, "timeout in migrate")
    finished = [e for e in events if isinstance(e, ev.StepFinished) and e.host == "web-01"]
    assert finished[-1].status == "timeout"
    assert active(fleet, "web-01") == "1.0" and active(fleet, "web-02") == "2.0"
    await gone(sleep)


async def test_unreachable_host_refuses_then_allowed(sshd_fleet: FleetMaker) -> None:
    fleet = sshd_fleet(3)
    seed(fleet)
    dead = Host(
        name="web-dead",
        address="127.0.0.1",
        port=free_port(),
        user=fleet.hosts[0].user,
        key=fleet.hosts[0].key,
        known_hosts=fleet.hosts[0].known_hosts,
        vars={"root": "/nonexistent"},
    )
    hosts = [*fleet.hosts, dead]
    outcome, events = await drive(engine_for(fleet, make_spec(), hosts=hosts))
    assert outcome == Outcome.FAILED
    finished = events[-1]
    assert isinstance(finished, ev.RolloutFinished) and "web-dead: unreachable" in finished.reason
    assert all(active(fleet, h.name) == "1.0" for h in fleet.hosts)

    spec = make_spec(max_failures=1)
    engine = engine_for(fleet, spec, hosts=hosts, allow_unreachable=True)
    outcome, events = await drive(engine)
    assert outcome == Outcome.SUCCEEDED
    assert engine.recs["web-dead"].state == HostState.SKIPPED
    assert all(active(fleet, h.name) == "2.0" for h in fleet.hosts)


async def test_changed_host_key_is_refused(sshd_fleet: FleetMaker, tmp_path: Path) -> None:
    fleet = sshd_fleet(2)
    seed(fleet)
    other = write_keypair(tmp_path / "impostor")
    public = other.export_public_key().decode().split()
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{fleet.server.port} {public[0]} {public[1]}\n")
    h = fleet.hosts[1]
    moved = Host(
        name=h.name,
        address=h.address,
        port=h.port,
        user=h.user,
        key=h.key,
        known_hosts=str(wrong),
        vars=h.vars,
    )
    fleet.options.known_hosts = None  # the host's own known_hosts decides
    outcome, events = await drive(engine_for(fleet, make_spec(), hosts=[fleet.hosts[0], moved]))
    assert outcome == Outcome.FAILED
    pre = {e.host: e for e in events if isinstance(e, ev.PreflightResult)}
    assert pre["web-02"].error.startswith("host key")
    assert active(fleet, "web-01") == "1.0" and active(fleet, "web-02") == "1.0"


async def test_hostile_values_are_never_executed(sshd_fleet: FleetMaker, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    hostile_var = f"$(touch {canary}); touch {canary}; rm -rf {tmp_path}/keep 'q\" `touch {canary}`"
    fleet = sshd_fleet(2, extra_vars={"note": hostile_var})
    seed(fleet)
    (tmp_path / "keep").mkdir()
    home = fleet.server.workdir / "home"
    hostile_version = "2.0$(touch pwned-v);touch pwned-v'\"`touch pwned-v`"
    extra = "preflight:\n  - {name: note, run: \"printf '%s' {vars.note} > {vars.root}/note\"}\n"
    spec = make_spec(version=hostile_version, batches="[100%]", extra=extra)
    outcome, _ = await drive(engine_for(fleet, spec))
    assert outcome == Outcome.SUCCEEDED
    assert not canary.exists()
    assert (tmp_path / "keep").is_dir()
    assert not list(home.glob("pwned*"))
    for host in fleet.hosts:
        assert (fleet.root(host.name) / "note").read_text() == hostile_var
        assert active(fleet, host.name) == hostile_version
        assert (fleet.root(host.name) / "current" / "VERSION").read_text() == hostile_version + "\n"


async def test_pause_then_resume(sshd_fleet: FleetMaker) -> None:
    fleet = sshd_fleet(6)
    seed(fleet)
    spec = make_spec(batches="[1, 2]")
    engine = engine_for(fleet, spec)
    snapshot: dict[str, object] = {}

    def look_and_resume(engine: Engine) -> None:
        snapshot["active"] = {h.name: active(fleet, h.name) for h in fleet.hosts}
        engine.resume()

    pause = on_step("web-01", "install", lambda e: e.pause(reason="check dashboards"))
    # web-01 was moving when the pause came: it finishes, then nothing else starts
    resume = on(state_is("web-01", HostState.HEALTHY), look_and_resume)
    outcome, _ = await drive(engine, both(pause, resume))
    assert snapshot["active"] == {"web-01": "2.0", **{f"web-{i:02d}": "1.0" for i in range(2, 7)}}
    assert outcome == Outcome.SUCCEEDED
    assert all(active(fleet, h.name) == "2.0" for h in fleet.hosts)


async def test_abort_mid_batch_stops_in_flight_commands(sshd_fleet: FleetMaker) -> None:
    fleet = sshd_fleet(6)
    seed(fleet)
    for name in ("web-02", "web-03"):
        (fleet.root(name) / "HANG").touch()
    sleep = unique_sleep()
    engine = engine_for(fleet, make_spec(batches="[1, 3]", sleep=sleep))

    # web-04 went through while web-02 and web-03 hang in migrate
    hanging = (step_is("web-02", "migrate"), step_is("web-03", "migrate"))
    through = all_seen(state_is("web-04", HostState.HEALTHY), *hanging)
    react = on(through, lambda e: e.abort(reason="stop now"))
    outcome, events = await drive(engine, react)
    assert outcome == Outcome.ABORTED
    for name in ("web-02", "web-03"):
        rec = engine.recs[name]
        assert (rec.state, rec.detail) == (HostState.INTERRUPTED, "aborted during migrate")
        assert active(fleet, name) == "1.0"
    assert engine.recs["web-04"].state == HostState.HEALTHY  # it had finished
    assert engine.recs["web-05"].state == HostState.PENDING
    assert active(fleet, "web-05") == "1.0"
    await gone(sleep)
    cancelled = {
        e.host for e in events if isinstance(e, ev.StepFinished) and e.status == "cancelled"
    }
    assert cancelled == {"web-02", "web-03"}


async def test_rollback_restores_each_host_to_its_recorded_previous_version(
    sshd_fleet: FleetMaker,
) -> None:
    fleet = sshd_fleet(6)
    before = {
        "web-01": "1.0",
        "web-02": "1.1",
        "web-03": "0.9",
        "web-04": "1.0",
        "web-05": "1.2",
        "web-06": "1.0",
    }
    seed(fleet, before)
    engine = engine_for(fleet, make_spec(batches="[1, 2]"))
    outcome, events = await drive(
        engine, on_step("web-04", "install", lambda e: e.rollback(reason="errors"))
    )
    assert outcome == Outcome.ROLLED_BACK
    for name, version in before.items():
        assert active(fleet, name) == version
    changed = {"web-01", "web-02", "web-03", "web-04", "web-05"}
    for name in changed:
        assert engine.recs[name].state == HostState.ROLLED_BACK
    assert engine.recs["web-06"].state == HostState.PENDING
    assert not (fleet.root("web-06") / "releases/2.0").exists()
    order = [e.hosts for e in events if isinstance(e, ev.BatchStarted) and e.rollback]
    assert [set(o) for o in order] == [{"web-04", "web-05"}, {"web-02", "web-03"}, {"web-01"}]


async def test_cli_run_headless_json_and_the_lock(
    sshd_fleet: FleetMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from console.cli import main
    from console.store.lock import RolloutLock

    fleet = sshd_fleet(3)
    seed(fleet)
    h = fleet.hosts[0]
    lines = [
        f"defaults: {{user: {h.user}, port: {h.port}, key: {h.key}, known_hosts: {h.known_hosts}}}",
        "hosts:",
    ]
    for host in fleet.hosts:
        lines.append(f"  {host.name}: {{address: 127.0.0.1, vars: {{root: {host.vars['root']}}}}}")
    inv = tmp_path / "inventory.yaml"
    inv.write_text("\n".join(lines) + "\n")
    spec_file = tmp_path / "rollout.yaml"
    spec_file.write_text(make_spec(batches="[1, 100%]").text)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    argv = [
        "run",
        str(spec_file),
        "--inventory",
        str(inv),
        "--headless",
        "--json",
        "--state-dir",
        str(state),
        "--operator",
        "ci",
    ]

    held = RolloutLock.acquire(state, service="shop", inventory=str(inv), rollout_id="other")
    code = await asyncio.to_thread(main, argv)
    assert code == 3
    assert "locked by rollout other" in capsys.readouterr().err
    held.release()

    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    events = [json.loads(line) for line in out.splitlines()][1:]  # after the header
    assert events[0]["kind"] == "rollout_started" and events[0]["operator"] == "ci"
    assert events[-1]["kind"] == "rollout_finished" and events[-1]["outcome"] == "succeeded"
    assert all(active(fleet, h.name) == "2.0" for h in fleet.hosts)
    assert not list(state.glob("*.lock"))  # released
    journals = list(state.glob("*.jsonl"))
    assert len(journals) == 1 and oct(journals[0].stat().st_mode & 0o777) == "0o600"


async def test_accept_new_host_keys_is_journaled(sshd_fleet: FleetMaker, tmp_path: Path) -> None:
    fleet = sshd_fleet(2)
    seed(fleet)
    empty = tmp_path / "known_hosts_new"
    empty.write_text("")
    hosts = [
        Host(
            name=h.name,
            address=h.address,
            port=h.port,
            user=h.user,
            key=h.key,
            known_hosts=str(empty),
            vars=h.vars,
        )
        for h in fleet.hosts
    ]
    fleet.options.known_hosts = None
    outcome, _ = await drive(engine_for(fleet, make_spec(), hosts=hosts))
    assert outcome == Outcome.FAILED  # strict by default: unknown keys refuse the start

    fleet.options.accept_new_host_keys = True
    journal = Journal.create(tmp_path, "tofu")
    outcome, _ = await drive(engine_for(fleet, make_spec(), hosts=hosts, journal=journal))
    assert outcome == Outcome.SUCCEEDED
    notes = [e for e in read_journal(journal.path) if isinstance(e, ev.Notice) and e.host]
    assert {n.host for n in notes if "accepted new host key" in n.message} == {"web-01", "web-02"}
    assert str(fleet.server.port) in empty.read_text()


VERSION_AWARE_HEALTH = 'run: test "$(cat {vars.root}/current/VERSION)" = {version}'


def version_aware_spec(**kw: object) -> RolloutSpec:
    """The spec with a health check that names the version the host should run."""
    base = make_spec(**kw)  # type: ignore[arg-type]
    text = base.text.replace("run: test -f {vars.root}/current/VERSION", VERSION_AWARE_HEALTH)
    assert text != base.text
    return parse_spec(text, "spec.yaml")


@pytest.mark.parametrize("monitors", [False, True])
async def test_rollback_health_judges_the_version_each_host_goes_back_to(
    sshd_fleet: FleetMaker, monitors: bool
) -> None:
    """A version-aware health check passes during rollback: {version} is then the
    host's previous version, not the rollout's target (it used to fail every host)."""
    fleet = sshd_fleet(6)
    versions = ["1.0", "1.1", "1.0", "0.9", "1.0", "1.2"]
    before = {f"web-{i:02d}": v for i, v in enumerate(versions, 1)}
    seed(fleet, before)
    (fleet.root("web-06") / "FAIL").touch()  # the last batch is web-04..06
    spec = version_aware_spec(batches="[1, 2, 100%]", on_failure="rollback")
    engine = engine_for(fleet, spec, monitors=monitors)
    outcome, events = await drive(engine)
    assert outcome == Outcome.ROLLED_BACK, engine.recs["web-01"].detail
    finished = events[-1]
    assert isinstance(finished, ev.RolloutFinished) and finished.exit_code == 4
    for name, version in before.items():
        assert engine.recs[name].state == HostState.ROLLED_BACK, engine.recs[name].detail
        assert active(fleet, name) == version
    gated = [e for e in events if isinstance(e, ev.HealthSample) and e.host == "web-02"]
    assert gated and gated[-1].ok  # its last probe judged 1.1, the version it went back to
    reads = [e for e in events if isinstance(e, ev.VersionRead) and e.role == "current"]
    assert {(e.host, e.version) for e in reads} == set(before.items())


SECRET_TOKEN = "tok-5e2b7d90c1"
SECRET_SPEC = """
service: shop
version: "2.0"
batches: [1, 100%]
max_parallel: 20
max_failures: 0
on_failure: pause
between_batches: manual
secrets: [token]
current_version: "printf '%s+%s\\\\n' \\"$(cat {vars.root}/current/VERSION)\\" {vars.token}"
steps:
  - name: install
    run: >-
      echo installing with {vars.token} && echo warn {vars.token} >&2 &&
      mkdir -p {vars.root}/releases/{version} &&
      printf '%s\\n' {version} > {vars.root}/releases/{version}/VERSION &&
      ln -sfn releases/{version} {vars.root}/current
    timeout: 10s
health:
  run: echo healthy {vars.token} && test -f {vars.root}/current/VERSION
  every: 0.05s
  healthy_after: 2
  deadline: 5s
logs:
  run: echo GET / 200 {vars.token}; echo ERROR {vars.token}; exec sleep 600
  error_pattern: ERROR
metrics:
  run: echo denied {vars.token}; false
  requests: http_requests_total
  errors: http_errors_total
  every: 0.05s
"""


async def test_a_secret_echoed_by_every_command_is_masked_over_ssh(
    sshd_fleet: FleetMaker, tmp_path: Path
) -> None:
    """Monitors on, over real SSH (chained polls in a persistent shell): the token the
    health check, log follower, metrics command, step and version command print
    reaches no event, no journal line and no part of the view."""
    fleet = sshd_fleet(2, extra_vars={"token": SECRET_TOKEN})
    seed(fleet)
    journal = Journal.create(tmp_path, "secret")
    spec = parse_spec(SECRET_SPEC, "spec.yaml")
    engine = engine_for(fleet, spec, journal=journal, monitors=True)
    seen: set[str] = set()

    def react(e: Event, engine: Engine) -> None:
        if isinstance(e, ev.LogLines):
            seen.add("logs")
        elif isinstance(e, ev.HealthSample) and e.status:
            seen.add("watch")
        elif isinstance(e, ev.Alert) and e.rule == "signal.metrics":
            seen.add("metrics")
        elif isinstance(e, ev.GateWaiting):
            seen.add("gate")
        if {"logs", "watch", "metrics", "gate"} <= seen and "continued" not in seen:
            seen.add("continued")
            engine.continue_()

    outcome, events = await drive(engine, react)
    assert outcome == Outcome.SUCCEEDED
    assert {"logs", "watch", "metrics"} <= seen
    assert any("***" in line for e in events if isinstance(e, ev.LogLines) for line in e.lines)
    assert any("***" in e.detail for e in events if isinstance(e, ev.HealthSample) and e.status)
    assert any("***" in e.message for e in events if isinstance(e, ev.Alert))
    assert any("***" in line for e in events if isinstance(e, ev.StepOutput) for line in e.lines)
    versions = {e.version for e in events if isinstance(e, ev.VersionRead)}
    assert versions == {"1.0+***", "2.0+***"}
    assert not [e for e in events if SECRET_TOKEN in repr(ev.to_json(e))]
    assert SECRET_TOKEN not in journal.path.read_text()
    assert SECRET_TOKEN not in repr(engine.view)
