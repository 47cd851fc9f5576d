"""The load balancer's parts without a load balancer: the ``load_balancer:`` section
(errors name file, line and field), ``rolldeck check``'s words and checks, the runtime
API's answers parsed (text captured from HAProxy 2.6), and ``exchange`` on the local
and fake transports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from console.cli import main
from console.core.errors import InputError
from console.spec import parse_spec
from console.traffic.haproxy import (
    HAProxy,
    HAProxyError,
    admin_state,
    parse_servers_state,
    parse_stat,
)
from console.transport.base import TransportError
from console.transport.fake import FakeTransport
from console.transport.local import LocalTransport
from inventory.model import Host

HEAD = "service: shop\nversion: '2.0'\nsteps: [{name: go, run: 'true'}]\n"


def lb_spec(section: str) -> str:
    return HEAD + "load_balancer:\n" + section


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("  host: lb-01\n  backend: app\n", 5, "load_balancer: give socket"),
        (
            "  host: lb-01\n  backend: app\n  socket: /a\n  api: 127.0.0.1:9\n",
            5,
            "exactly one",
        ),
        ("  host: lb-01\n  backend: app\n  api: localhost\n", 7, "load_balancer.api: must be"),
        ("  host: lb-01\n  backend: app\n  api: 'h:70000'\n", 7, "must be HOST:PORT"),
        ("  host: lb-01\n  backend: app\n  socket: run/a.sock\n", 7, "must be an absolute"),
        ("  host: lb-01\n  backend: 'a b'\n  socket: /a\n", 6, "load_balancer.backend: not a"),
        ("  host: lb-01\n  socket: /a\n", 5, "backend"),
        ("  type: nginx\n  host: lb\n  backend: a\n  socket: /a\n", 5, "load_balancer.type"),
        (
            "  host: lb\n  backend: a\n  socket: /a\n  drain: {timeout: soon}\n",
            8,
            "load_balancer.drain.timeout",
        ),
        (
            "  host: lb\n  backend: a\n  socket: /a\n  drain: {wait_sessions: -1}\n",
            8,
            "load_balancer.drain.wait_sessions",
        ),
        ("  host: lb\n  backend: a\n  socket: /a\n  server: '{nope}'\n", 8, "load_balancer.server"),
    ],
)
def test_bad_sections_name_file_line_and_field(section: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_spec(lb_spec(section), "spec.yaml")
    text = str(caught.value)
    assert text.startswith(f"spec.yaml:{line}:"), text
    assert message in text


def test_a_section_with_its_defaults() -> None:
    spec = parse_spec(lb_spec("  host: lb-01\n  backend: app\n  api: '[::1]:9999'\n"), "s.yaml")
    lb = spec.load_balancer
    assert lb is not None
    assert (lb.type, lb.server, lb.wait_sessions, lb.drain_timeout) == ("haproxy", "{host}", 0, 60)
    assert lb.target == "[::1]:9999"


INVENTORY = """\
[web]
web-01 ansible_host=10.0.0.1 slot=a
web-02 ansible_host=10.0.0.2 slot=b

[lb]
lb-01 ansible_host=10.0.9.1
"""

CHECKED = """\
service: shop
version: '2.0'
inventory: hosts.ini
targets: web
steps: [{{name: go, run: 'true'}}]
load_balancer:
  host: {lb}
  socket: /run/haproxy/admin.sock
  backend: app
  server: {server}
  drain: {{wait_sessions: 2, timeout: 30s}}
"""


def check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str, **kw: str
) -> tuple[int, str, str]:
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    spec = tmp_path / "rollout.yaml"
    values = {"lb": "lb-01", "server": "'{host}'"} | kw
    spec.write_text(CHECKED.format(**values))
    code = main(["check", str(spec), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_shows_the_load_balancer_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check(tmp_path, capsys, server="'{host}-{vars.slot}'")
    assert code == 0
    assert (
        "traffic     haproxy backend app on lb-01 (socket /run/haproxy/admin.sock, through "
        "its SSH connection)" in out
    )
    assert "drained before its steps (until 2 sessions, at most 30s)" in out
    assert "a host that fails stays drained" in out
    assert "servers: web-01 -> app/web-01-a, web-02 -> app/web-02-b" in out
    code, out, _ = check(tmp_path, capsys, "--json")
    data = json.loads(out)
    assert data["servers"] == {"web-01": "web-01", "web-02": "web-02"}
    assert data["settings"]["load_balancer"]["backend"] == "app"


def test_check_refuses_a_balancer_host_missing_from_the_inventory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(tmp_path, capsys, lb="lb-99")
    assert code == 2
    assert "rollout.yaml:7: load_balancer.host: load_balancer.host 'lb-99' is not in" in err


def test_check_refuses_two_hosts_on_one_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(tmp_path, capsys, server="web")
    assert code == 2
    assert "rollout.yaml:10: load_balancer.server: web-01 and web-02 are both server 'web'" in err


# HAProxy 2.6.12's answers, captured.
SERVERS_STATE = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port\n"
    "3 app 1 web-01 127.0.0.1 0 8 1 1 0 8 2 0 6 0 0 0 - 18081 - 0 0 - - 0\n"
    "3 app 2 web-02 127.0.0.1 2 0 50 1 1 1 0 2 0 0 0 0 - 18082 - 0 0 - - 0\n"
    "3 app 3 web-03 127.0.0.1 2 1 1 1 1 1 0 2 0 0 0 0 - 18083 - 0 0 - - 0\n\n"
)
STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
    "wretr,wredis,status,weight,act\n"
    "fe,FRONTEND,,,4,9,9985,0,0,0,0,0,0,,,,,OPEN,,\n"
    "app,web-01,0,0,3,3,,9,0,0,,0,,0,0,0,0,DRAIN,1,1\n"
    "app,web-02,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,50,1\n"
    "app,BACKEND,0,0,3,3,999,9,0,0,0,0,,0,0,0,0,UP,51,2\n"
    "other,web-01,0,0,7,7,,0,0,0,,0,,0,0,0,0,UP,1,1\n\n"
)


def test_parsing_the_runtime_apis_answers() -> None:
    assert parse_servers_state(SERVERS_STATE) == {
        "web-01": ("drain", 1),
        "web-02": ("ready", 50),
        "web-03": ("maint", 1),
    }
    assert parse_stat(STAT, "app") == {"web-01": ("DRAIN", 3), "web-02": ("no check", 0)}
    assert [admin_state(b) for b in (0, 0x08, 0x10, 0x01, 0x04, 0x09)] == [
        "ready",
        "drain",
        "drain",
        "maint",
        "maint",
        "maint",
    ]


async def test_the_client_over_a_local_socket(tmp_path: Path) -> None:
    """LocalTransport reaches the socket itself; the client sends one line per request
    and reads to the close, as HAProxy's non-interactive mode answers."""
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        got.append(line)
        answers = {b"show servers state app\n": SERVERS_STATE, b"show stat\n": STAT}
        writer.write(answers.get(line, "No such server.\n\n").encode())
        await writer.drain()
        writer.close()

    sock = str(tmp_path / "admin.sock")
    server = await asyncio.start_unix_server(serve, sock)
    transport = LocalTransport()
    try:
        api = HAProxy(await transport.connect(Host(name="localhost", address="localhost")), sock)
        web01 = await api.server("app", "web-01")
        assert (web01.admin, web01.status, web01.sessions, web01.weight) == ("drain", "DRAIN", 3, 1)
        with pytest.raises(HAProxyError, match="No such server"):
            await api.set_state("app", "web-01", "ready")
        with pytest.raises(HAProxyError, match="not a HAProxy name"):
            await api.set_state("app", "web 01; shutdown", "ready")
        with pytest.raises(HAProxyError, match="unknown server state"):
            await api.set_state("app", "web-01", "off")
        assert got[-1] == b"set server app/web-01 state ready\n"
        with pytest.raises(HAProxyError, match="cannot reach"):
            await HAProxy(
                await transport.connect(Host(name="localhost", address="localhost")), sock + "x"
            ).servers("app")
    finally:
        server.close()
        await transport.close()


async def test_a_socket_that_never_answers_is_bounded(tmp_path: Path) -> None:
    hold = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    sock = str(tmp_path / "silent.sock")
    server = await asyncio.start_unix_server(silent, sock)
    transport = LocalTransport()
    try:
        conn = await transport.connect(Host(name="localhost", address="localhost"))
        with pytest.raises(TransportError, match=r"did not answer within 0\.2 s"):
            await conn.exchange(sock, b"show info\n", timeout=0.2)
    finally:
        hold.set()
        server.close()
        await transport.close()


async def test_the_fake_transport_forwards_no_sockets() -> None:
    transport = FakeTransport()
    conn = await transport.connect(Host(name="web-01", address="10.0.0.1"))
    with pytest.raises(TransportError, match="forwards no sockets"):
        await conn.exchange("/run/haproxy/admin.sock", b"show info\n", timeout=1)
