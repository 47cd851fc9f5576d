"""Every simulated-host command, through real SSH with strict host-key checking."""

from __future__ import annotations

import asyncio
import re

import asyncssh
import pytest
from prometheus_client.parser import text_string_to_metric_families

from console.simfleet import SimFleet, parse_scenario
from tests.fixtures.simfleet import FleetFactory, sim_connect
from tests.waiting import wait_until


async def run(
    fleet: SimFleet, host: str, command: str, **kw: object
) -> asyncssh.SSHCompletedProcess:
    async with sim_connect(fleet, host) as conn:
        return await asyncio.wait_for(conn.run(command, **kw), 10)


async def test_shell_utilities(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "web-01") as conn:
        assert (await conn.run("true")).exit_status == 0
        assert (await conn.run("false")).exit_status == 1
        r = await conn.run("echo hello   'two  words'")
        assert (r.exit_status, r.stdout) == (0, "hello two  words\n")
        assert (await conn.run("echo -n x")).stdout == "x"
        assert (await conn.run("sleep 0.01")).exit_status == 0
        r = await conn.run("sleep soon")
        assert r.exit_status == 1 and "invalid time interval" in r.stderr
        r = await conn.run("cat", input="line one\nline two\n")
        assert (r.exit_status, r.stdout) == (0, "line one\nline two\n")
        assert (await conn.run("hostname")).stdout == "web-01\n"
        big = "".join(f"{i:07d}\n" for i in range(400_000))  # 3.2 MB > the SSH window
        r = await conn.run("cat -", input=big)
        assert r.exit_status == 0 and r.stdout == big


async def test_unknown_command_is_127_on_stderr(sim_fleet: SimFleet) -> None:
    r = await run(sim_fleet, "api-01", "systemctl restart checkout-api")
    assert r.exit_status == 127
    assert r.stdout == ""
    assert "systemctl: command not found" in r.stderr


async def test_svc_usage_errors(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "web-01") as conn:
        r = await conn.run("svc frobnicate")
        assert r.exit_status == 2 and "unknown command 'frobnicate'" in r.stderr
        assert (await conn.run("svc")).exit_status == 2
        assert (await conn.run("svc install")).exit_status == 2
        assert (await conn.run("svc install 'a b'")).exit_status == 2
        assert (await conn.run("svc logs --bogus")).exit_status == 2


async def test_chaining_and_syntax(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "web-01") as conn:
        assert (await conn.run("echo a && false || echo b; echo c")).stdout == "a\nb\nc\n"
        assert (await conn.run("false && echo never")).stdout == ""
        r = await conn.run("echo 'unterminated")
        assert r.exit_status == 2 and "Syntax error" in r.stderr
        r = await conn.run("svc version | cat")
        assert r.exit_status == 2 and "not simulated" in r.stderr
        assert (await conn.run("sh -c 'echo inner'")).stdout == "inner\n"


async def test_exit_status_variable_and_stderr_redirection(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "web-01") as conn:
        r = await conn.run('false; echo "was $?"; true; echo was $?')
        assert r.stdout == "was 1\nwas 0\n"
        r = await conn.run("echo to-err >&2; echo to-out; >&2 echo a b; echo c >&2 d")
        assert (r.stdout, r.stderr) == ("to-out\n", "to-err\na b\nc d\n")
        r = await conn.run("echo x >&1")
        assert r.exit_status == 2 and "only >&2" in r.stderr
        r = await conn.run("echo x >&")
        assert r.exit_status == 2


async def test_sh_runs_its_script_from_stdin_line_by_line(sim_fleet: SimFleet) -> None:
    """What the console's persistent probe shell relies on: each line runs as soon as
    it arrives, `$?` carries over from one line to the next."""
    async with sim_connect(sim_fleet, "web-01") as conn:
        r = await conn.run("sh", input="echo one\nfalse\necho status $?\nsvc version\n")
        assert r.exit_status == 0
        assert r.stdout.splitlines()[:2] == ["one", "status 1"]
        assert (await conn.run("sh -s", input="false")).exit_status == 1
        proc = await conn.create_process("sh")
        try:
            proc.stdin.write("echo first\n")
            assert await asyncio.wait_for(proc.stdout.readline(), 5) == "first\n"
            proc.stdin.write("echo sec")  # half a line: nothing runs yet
            proc.stdin.write("ond\n")
            assert await asyncio.wait_for(proc.stdout.readline(), 5) == "second\n"
            proc.stdin.write_eof()
            await asyncio.wait_for(proc.wait_closed(), 5)
            assert proc.exit_status == 0
        finally:
            proc.close()


async def test_install_activate_version_state(sim_fleet: SimFleet) -> None:
    async with sim_connect(sim_fleet, "api-01") as conn:
        assert (await conn.run("svc version")).stdout == "2.4.0\n"
        r = await conn.run("svc activate 2.4.1")
        assert r.exit_status == 1 and "not installed" in r.stderr
        assert sim_fleet.host_state("api-01").active == "2.4.0"

        r = await conn.run("svc install '2.4.1'")  # shell-quoted, as the engine renders it
        assert r.exit_status == 0, r.stderr
        assert r.stdout.splitlines()[0] == "fetching checkout-api 2.4.1"
        assert re.search(r"installed checkout-api 2\.4\.1 in \d+\.\d+s", r.stdout)
        assert (await conn.run("svc install 2.4.1")).stdout.endswith("already installed\n")
        assert (await conn.run("svc version")).stdout == "2.4.0\n"  # installed, not active

        r = await conn.run("svc activate 2.4.1")
        assert r.exit_status == 0 and "(was 2.4.0)" in r.stdout
        assert (await conn.run("svc version")).stdout == "2.4.1\n"
    state = sim_fleet.host_state("api-01")
    assert state.installed == ("2.4.0", "2.4.1")
    assert (state.active, state.running) == ("2.4.1", "2.4.0")  # not restarted yet
    other = sim_fleet.host_state("web-01")
    assert (other.active, other.installed) == ("2.4.0", ("2.4.0",))


async def test_restart_keeps_state_and_briefly_fails_health(
    sim_fleet_factory: FleetFactory,
) -> None:
    # Unscaled time: the warm-up after a restart lasts its full second, so the health
    # call right after it lands inside it however busy the machine (at the suite's
    # usual x0.05 it is 50 ms, shorter than one exec on a loaded machine).
    sim_fleet = await sim_fleet_factory(time_scale=1.0)
    async with sim_connect(sim_fleet, "worker-01") as conn:
        await conn.run("svc install 2.4.1", check=True)
        await conn.run("svc activate 2.4.1", check=True)
        await conn.run("svc drain", check=True)
        assert sim_fleet.host_state("worker-01").drained
        r = await conn.run("svc restart")
        assert r.exit_status == 0 and "restarted checkout-api 2.4.1" in r.stdout
        r = await conn.run("svc health")  # warm-up right after the restart
        assert (r.exit_status, r.stdout) == (1, "fail: 503 Service Unavailable: warming up\n")

        async def healthy() -> bool:
            nonlocal r
            r = await conn.run("svc health")
            return r.exit_status == 0

        await wait_until(healthy, what="svc health to pass after the warm-up")
        assert r.stdout.startswith("ok: checkout-api 2.4.1 up ")
        assert "drained" in r.stdout
        await conn.run("svc undrain", check=True)
        status = (await conn.run("svc status")).stdout
    state = sim_fleet.host_state("worker-01")
    assert (state.active, state.running, state.restarts, state.drained) == (
        "2.4.1",
        "2.4.1",
        1,
        False,
    )
    assert state.installed == ("2.4.0", "2.4.1")
    assert "running 2.4.1" in status and "drained no" in status


async def test_vitals_formats(sim_fleet: SimFleet) -> None:
    r = await run(sim_fleet, "web-02", "svc vitals")
    lines = r.stdout.splitlines()
    assert r.exit_status == 0
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+", lines[0])  # /proc/loadavg
    assert re.fullmatch(r"MemTotal: +\d+ kB", lines[1])
    assert re.fullmatch(r"MemAvailable: +\d+ kB", lines[3])
    assert lines[4].split()[:2] == ["Filesystem", "1K-blocks"]
    size, used, avail, pct = lines[5].split()[1:5]
    assert int(size) == int(used) + int(avail) and pct.endswith("%")
    assert (await run(sim_fleet, "web-02", "cat /proc/loadavg")).stdout.count(" ") == 4
    assert (await run(sim_fleet, "web-02", "cat /etc/shadow")).exit_status == 1


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_parse_and_match_the_error_rate(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=3, scenario="bad-canary")
    # Traffic is a function of the host's clock (time.monotonic, this process's): this
    # many requests a second (time_scale 0.05: 400).
    rate = fleet.scenario.request_rate / fleet.time_scale
    ok = ("http_requests_total", (("code", "200"),))
    err = ("http_requests_total", (("code", "500"),))

    def total(sample: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return sample[ok] + sample[err]

    async with sim_connect(fleet, "web-01") as conn:

        async def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return _samples((await conn.run("svc metrics", check=True)).stdout)

        first = second = third = await metrics()
        for cmd in ("svc install 2.4.1", "svc activate 2.4.1"):  # 2.4.0 still runs
            await conn.run(cmd, check=True)

        async def old_counted() -> bool:  # plenty for the 0.5% check and the reset check
            nonlocal second
            second = await metrics()
            return total(second) > 200 and second[ok] > first[ok]

        await wait_until(old_counted, what="the old version to count more than 200 requests")
        restarting = asyncio.get_running_loop().time()  # the host's clock too: monotonic
        await conn.run("svc restart", check=True)

        async def new_counted() -> bool:  # enough for the 15% check to within 0.02
            nonlocal third
            third = await metrics()
            return total(third) >= 100

        await wait_until(new_counted, what="the new version to count 100 requests")
        elapsed = asyncio.get_running_loop().time() - restarting

    assert second[ok] > first[ok] >= 0  # counters only grow...
    old_total = total(second)
    assert second[err] / old_total == pytest.approx(0.005, abs=0.01)
    new_total = total(third)
    # ...and reset on restart like a real process: the new process counts only what it
    # served since the restart began (a bound that holds however slow the machine); a
    # counter carried over would add old_total (> 200) to it.
    assert 0 < new_total <= rate * elapsed + 2
    assert third[("process_start_time_seconds", ())] > second[("process_start_time_seconds", ())]
    assert third[err] / new_total == pytest.approx(0.15, abs=0.02)  # bad-canary's new version
    count = third[("http_request_duration_seconds_count", ())]
    assert count == new_total
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in third.items()
        if name == "http_request_duration_seconds_bucket"
    )
    values = [v for _, v in buckets]
    assert values == sorted(values) and values[-1] == count
    assert third[("app_info", (("service", "checkout-api"), ("version", "2.4.1")))] == 1


async def test_logs_recent_and_follow_stops_on_close(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=2, log_rate=50)
    host = fleet.sim_host("web-01")
    async with sim_connect(fleet, "web-01") as conn:
        recent: list[str] = []

        async def five_lines() -> bool:  # 50 a second, written as time passes
            nonlocal recent
            recent = (await conn.run("svc logs -n 5", check=True)).stdout.splitlines()
            return len(recent) >= 5

        await wait_until(five_lines, what="5 log lines on web-01")
        assert len(recent) == 5
        line = re.compile(r"^\S+Z (INFO |ERROR) checkout-api\[\d+\]: .+$")
        assert all(line.match(x) for x in recent)

        proc = await conn.create_process("svc logs --follow")
        got = []
        while len(got) < 10:
            got.append(await asyncio.wait_for(proc.stdout.readline(), 5))
        assert all(line.match(x.rstrip("\n")) for x in got)
        assert len(host.followers) == 1
        proc.close()
        await asyncio.wait_for(proc.wait_closed(), 5)
        # the server-side command really stopped
        await wait_until(lambda: not host.followers, what="the log follower to stop")


@pytest.mark.parametrize("signal", ["TERM", "KILL", "INT"])
async def test_signal_stops_long_commands(sim_fleet_factory: FleetFactory, signal: str) -> None:
    hang_everywhere = parse_scenario("versions: {new: {install_hangs: true}}\n")
    fleet = await sim_fleet_factory(n=1, scenario=hang_everywhere, log_rate=20)
    async with sim_connect(fleet, "web-01") as conn:
        host = fleet.sim_host("web-01")
        running = {  # what shows the command is under way on the host
            "echo started; sleep 300": None,  # "started" is read below; the sleep follows
            "svc install 2.4.1": lambda: host.installing == 1,
            "svc logs --follow": lambda: bool(host.followers),
        }
        for command, started in running.items():
            proc = await conn.create_process(command)
            if started is None:
                assert await asyncio.wait_for(proc.stdout.readline(), 10) == "started\n"
            else:
                await wait_until(started, what=f"{command!r} to be running on the host")
            assert proc.exit_status is None and proc.exit_signal is None  # still running
            proc.send_signal(signal)
            await asyncio.wait_for(proc.wait_closed(), 5)
            assert proc.exit_signal is not None and proc.exit_signal[0] == signal, command
    state = fleet.host_state("web-01")
    assert state.installed == ("2.4.0",)  # the hung install wrote nothing
    assert fleet.sim_host("web-01").installing == 0
    assert not fleet.sim_host("web-01").followers


async def test_closing_channel_stops_a_hung_install(sim_fleet_factory: FleetFactory) -> None:
    fleet = await sim_fleet_factory(n=6, scenario="hung-install")
    host = fleet.sim_host("web-02")
    async with sim_connect(fleet, "web-02") as conn:
        proc = await conn.create_process("svc install 2.4.1")
        assert (await asyncio.wait_for(proc.stdout.readline(), 5)).startswith("fetching")
        assert host.installing == 1
        proc.close()
        await asyncio.wait_for(proc.wait_closed(), 5)
        await wait_until(lambda: host.installing == 0, what="the hung install to stop")
        assert (await conn.run("svc install 2.4.0")).exit_status == 0  # the host still answers
    assert fleet.host_state("web-02").installed == ("2.4.0",)
