"""become without SSH: spec fields, precedence, the wrapped command (quoting, the
password never on it), sudo's refusals in words, the kill of several groups, check."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import psutil
import pytest

from console import become
from console.become import Become, become_for, command_for, kill_command, refusal
from console.core.errors import InputError
from console.spec import parse_spec
from console.subcommands.check import analyse, format_report
from console.templating import redactor_for
from console.transport.remote_kill import kill_script
from inventory.model import Host
from tests.waiting import wait_until_sync

BASE = """
service: shop
version: "2.0"
steps:
  - name: install
    run: echo install
  - name: status
    run: echo status
    become: false
  - name: db
    run: echo db
    become_user: postgres
"""


def spec(extra: str = "") -> object:
    return parse_spec(BASE + extra, "s.yaml")


def host(**vars: object) -> Host:
    return Host(name="web-01", address="web-01", user="deployer", vars=dict(vars))


def test_become_is_off_unless_asked() -> None:
    s = spec()
    assert become_for(s, host(), s.steps[0]) is None  # type: ignore[attr-defined]


def test_precedence_step_over_host_over_spec() -> None:
    s = spec("become: true\nbecome_user: app\n")
    install, status, db = s.steps  # type: ignore[attr-defined]
    assert become_for(s, host(), install) == Become("app")
    assert become_for(s, host(), status) is None  # the step's become: false opts out
    assert become_for(s, host(ansible_become=True), status) is None  # even over a host var
    assert become_for(s, host(), db) == Become("postgres")  # step user > spec user
    assert become_for(s, host(ansible_become_user="ops"), install) == Become("ops")
    assert become_for(s, host(ansible_become_user="ops"), db) == Become("postgres")
    assert become_for(s, host(ansible_become="no"), install) is None  # host var > spec
    off = spec()
    assert become_for(off, host(ansible_become="True"), off.steps[0]) == Become("root")  # type: ignore[attr-defined]


def test_password_sources_in_order() -> None:
    s = spec("become: true\nbecome_password: '{vars.sudo_word}'\n")
    step = s.steps[0]  # type: ignore[attr-defined]
    env = {"ROLLDECK_BECOME_PASSWORD": "from-env"}
    got = become_for(s, host(sudo_word="w0rd", ansible_become_pass="hv"), step, environ=env)
    assert got is not None and (got.password, got.password_from) == ("hv", "ansible_become_pass")
    got = become_for(s, host(sudo_word="w0rd"), step, environ=env)
    assert got is not None and (got.password, got.password_from) == ("w0rd", "become_password")
    plain = spec("become: true\n")
    got = become_for(plain, host(), plain.steps[0], environ=env)  # type: ignore[attr-defined]
    assert got is not None and (got.password, got.password_from) == ("from-env", env.popitem()[0])
    assert "w0rd" not in repr(become_for(s, host(sudo_word="w0rd"), step, environ={}))


def test_the_password_is_masked_whatever_its_var_is_called() -> None:
    s = spec("become: true\nbecome_password: '{vars.sudo_word}'\n")
    redactor = redactor_for(
        s, [host(sudo_word="w0rd-x")], environ={"ROLLDECK_BECOME_PASSWORD": "e"}
    )  # type: ignore[arg-type]
    assert redactor.redact("a w0rd-x b") == "a *** b"
    assert "e" in redactor


def test_wrapping_quotes_the_user_and_the_command_and_never_holds_the_password() -> None:
    command = "echo 'it''s' $HOME; false"
    wrapped = command_for(command, Become("o'brien", password="s3cret pw"))
    assert "s3cret" not in wrapped
    argv = shlex.split(wrapped)
    assert argv[:7] == ["sudo", "-H", "-S", "-p", "", "-u", "o'brien"]
    assert argv[-1] == command and argv[-2] == "rolldeck-become"
    assert shlex.split(command_for("true", Become("root")))[:5] == [
        "sudo",
        "-H",
        "-n",
        "-u",
        "root",
    ]
    assert Become("root", password="pw").stdin == b"pw\n"


def test_the_wrapper_runs_the_command_in_sh_reporting_its_pid_with_stdin_closed() -> None:
    """The inner part of the wrapper (what sudo runs) run by a local sh."""
    argv = shlex.split(command_for('echo "$0" $(cat); exit 3', Become("root")))
    inner = argv[argv.index("--") + 1 :]
    done = subprocess.run(inner, input="pw\n", capture_output=True, text=True, timeout=10)
    first, second = done.stdout.rstrip("\n").split("\n")  # not splitlines: \x1e
    assert become.parse_pid(first) is not None and second == "/bin/sh"  # nothing read
    assert done.returncode == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("become_method", "su", "become_method 'su' is not supported"),
        ("become_user", "'root; rm -rf /'", "is not a user name"),
        ("become_password", "hunter2", "must name the var holding the password"),
        ("become", "maybe", "become"),
    ],
)
def test_bad_spec_fields_name_file_line_and_field(field: str, value: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        spec(f"{field}: {value}\n")
    err = info.value
    assert message in str(err) and err.field == field and err.line == BASE.count("\n") + 1
    assert err.file == "s.yaml"


def test_step_level_method_is_refused_and_preflight_steps_take_become() -> None:
    with pytest.raises(InputError) as info:
        spec("rollback:\n  - run: echo back\n    become_method: doas\n")
    assert info.value.field == "rollback[0].become_method"
    with pytest.raises(InputError) as info:
        spec("preflight:\n  - run: df\n    become_method: su\n")
    assert info.value.field == "preflight[0].become_method"
    s = spec("preflight:\n  - run: df\n    become: false\n")
    assert s.preflight[0].become is False


def test_bad_host_vars_are_refused_naming_host_and_var() -> None:
    s = spec("become: true\n")
    for vars, field in (
        ({"ansible_become_method": "su"}, "ansible_become_method"),
        ({"ansible_become": "perhaps"}, "ansible_become"),
        ({"ansible_become_user": "a b"}, "ansible_become_user"),
    ):
        with pytest.raises(InputError) as info:
            become.validate(s, [host(**vars)])  # type: ignore[arg-type]
        assert info.value.field == field and "web-01" in str(info.value)


def test_sudo_refusals_in_words() -> None:
    b = Become("root")
    h = host()
    said = refusal(["sudo: a password is required"], 1, host=h, become=b, what="step install")
    assert said is not None and "web-01" in said and "deployer" in said and "NOPASSWD" in said
    said = refusal(
        ["Sorry, user deployer is not allowed to execute '/bin/sh' as root on web-01."],
        1,
        host=h,
        become=b,
        what="step install",
    )
    assert said is not None and "'deployer ALL=(root) NOPASSWD: ALL'" in said
    said = refusal(["sh: 1: sudo: not found"], 127, host=h, become=b, what="step x")
    assert said is not None and "sudo is not installed on web-01" in said
    assert refusal(["cp: permission denied"], 1, host=h, become=b, what="step x") is None


def test_kill_through_sudo_quotes_the_script() -> None:
    script = kill_script(4242, also=(4343,))
    wrapped = kill_command(script, Become("root"))
    argv = shlex.split(wrapped)
    assert argv[:6] == ["sudo", "-H", "-n", "-u", "root", "--"] and argv[-1] == script


def test_kill_script_stops_two_groups() -> None:
    """A command's group and the group of the session sudo's use_pty gives it."""
    groups = [
        subprocess.Popen(
            ["sh", "-c", "trap '' TERM; sleep 600 & sleep 600"], start_new_session=True
        )
        for _ in range(2)
    ]
    try:
        done = subprocess.run(
            ["sh", "-c", kill_script(groups[0].pid, grace=0.3, also=(groups[1].pid,))],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.stdout.strip() == "KILL"
        for g in groups:
            g.wait(timeout=10)

        def gone() -> bool:
            pgids = {g.pid for g in groups}
            return not [
                p
                for p in psutil.process_iter(["status"])
                if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p) in pgids
            ]

        wait_until_sync(gone, what="both groups gone")
    finally:
        for g in groups:
            if g.poll() is None:
                g.kill()


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None


def test_check_shows_who_runs_what_per_host(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[web]\nweb-01\nweb-02 ansible_become_user=ops\nweb-03 ansible_become=false "
        "ansible_become_flags=-E\n"
    )
    path = tmp_path / "spec.yaml"
    path.write_text(f"inventory: {inventory}\nbecome: true\ncurrent_version: cat /v\n" + BASE)
    report = analyse(str(path))
    text = format_report(report)
    assert "become      per host" in text
    assert "sudo as root (sudo -n): current_version, step install" in text
    assert "sudo as ops (sudo -n): current_version, step install" in text
    assert "sudo as postgres (sudo -n): step db" in text
    assert "as the login user: step status" in text
    assert any("ansible_become_flags" in w and "web-03" in w for w in report.warnings)
    assert not any("ansible_become_user" in w for w in report.warnings)
    assert report.to_json()["become"][0]["hosts"] == ["web-01"]
