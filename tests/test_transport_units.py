"""Transport building blocks without a network: line splitting, the kill script, policy."""

from __future__ import annotations

import subprocess

import pytest

from console.core.errors import InputError
from console.transport.knownhosts import lookup_name, resolve_paths
from console.transport.output import LineSplitter, OutputSink
from console.transport.remote_kill import kill_mode, kill_script, parse_pid, wrap_pgroup
from console.transport.ssh import BACKOFF_CAP, _backoff
from inventory.model import Host
from tests.fixtures.sshd import living_processes, unique_sleep


def test_splitter_handles_chunk_boundaries_crlf_and_the_last_line() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\r\ntw") == ["one"]
    assert splitter.feed(b"o\n\nthr") == ["two", ""]
    assert splitter.flush() == ["thr"]
    assert splitter.flush() == []


def test_splitter_bounds_a_line_without_newline() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij") == ["abcd", "efgh"]
    assert splitter.feed(b"\n") == ["ij"]


def test_splitter_cuts_a_long_line_the_same_way_however_it_was_chunked() -> None:
    """A pipe may hand over a long line at once or in parts (it depends on load):
    the lines must not depend on which."""
    data = b"a" * 10 + b"\n" + b"b" * 8 + b"\n" + b"c" * 3 + b"\n"
    at_once = LineSplitter(max_line=4).feed(data)
    splitter = LineSplitter(max_line=4)
    byte_by_byte = [line for byte in data for line in splitter.feed(bytes([byte]))]
    assert at_once == byte_by_byte == ["aaaa", "aaaa", "aa", "bbbb", "bbbb", "", "ccc"]


def test_splitter_never_splits_a_utf8_character_into_garbage_at_newlines() -> None:
    splitter = LineSplitter()
    data = "héllo\nwörld\n".encode()
    lines = [line for byte in data for line in splitter.feed(bytes([byte]))]
    assert lines == ["héllo", "wörld"]


def test_sink_keeps_bounded_tails() -> None:
    sink = OutputSink(2, None)
    for i in range(5):
        sink.emit("stdout", str(i))
    sink.emit("stderr", "e")
    result = sink.result("ok", 0, 0.1)
    assert result.stdout_tail == ("3", "4") and result.stderr_tail == ("e",)


def test_pid_marker_round_trip_through_a_real_shell() -> None:
    out = subprocess.run(
        ["sh", "-c", wrap_pgroup("echo after")], capture_output=True, text=True, check=True
    )
    first, second = out.stdout.rstrip("\n").split("\n")  # \x1e is a splitlines() boundary
    assert parse_pid(first) is not None
    assert second == "after"
    assert parse_pid("1234") is None
    assert parse_pid("\x1erolldeck-pid 1") is None


def test_kill_script_stops_a_process_group_with_dash() -> None:
    sleep = unique_sleep()
    group = subprocess.Popen(["setsid", "sh", "-c", f"{sleep} & {sleep}"])
    try:
        for _ in range(200):
            if len(living_processes(sleep)) >= 2:
                break
            subprocess.run(["sleep", "0.02"], check=True)
        out = subprocess.run(
            ["sh", "-c", kill_script(group.pid)], capture_output=True, text=True, timeout=10
        )
        assert out.stdout.strip() == "TERM"
        group.wait(timeout=5)
        assert living_processes(sleep) == []
    finally:
        group.kill()
        group.wait()


def test_kill_script_refuses_init_and_negative_pids() -> None:
    for pid in (0, 1, -5):
        with pytest.raises(ValueError):
            kill_script(pid)


def test_kill_mode_is_validated() -> None:
    assert kill_mode(Host(name="a", address="a")) == "pgroup"
    assert kill_mode(Host(name="a", address="a", vars={"rolldeck_kill": "signal"})) == "signal"
    with pytest.raises(InputError, match="rolldeck_kill"):
        kill_mode(Host(name="a", address="a", vars={"rolldeck_kill": "hup"}))


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt in range(1, 12):
        delay = _backoff(attempt)
        ceiling = min(BACKOFF_CAP, 0.1 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_known_hosts_names_and_paths(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/op")
    assert lookup_name("web", 22) == "web"
    assert lookup_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"
    assert resolve_paths(None) == ("/home/op/.ssh/known_hosts",)
    assert resolve_paths(["none"]) == ("/home/op/.ssh/known_hosts",)
    assert resolve_paths(["~/kh", "/etc/kh"]) == ("/home/op/kh", "/etc/kh")


def test_sshd_fixture_skips_without_sshd_and_fails_under_require(monkeypatch) -> None:
    from tests.fixtures import sshd

    monkeypatch.setattr(sshd, "SSHD", "/nonexistent/sshd")
    monkeypatch.delenv("REQUIRE_SSHD", raising=False)
    with pytest.raises(pytest.skip.Exception, match="OpenSSH server not installed"):
        sshd.require_sshd()
    monkeypatch.setenv("REQUIRE_SSHD", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_SSHD=1"):
        sshd.require_sshd()


def test_the_real_transports_implement_the_protocol() -> None:
    from console.transport import LocalTransport, SSHTransport, Transport, make_transport

    for transport in (SSHTransport(), LocalTransport(), make_transport()):
        assert isinstance(transport, Transport)
        assert transport.open_connections == 0
