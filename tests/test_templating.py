"""Templates: placeholders, quoting (proved by running /bin/sh), and redaction."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.core.errors import InputError
from console.core.secrets import Redactor, is_secret_name
from console.spec import parse_spec
from console.templating import (
    FIXED_NAMES,
    Placeholder,
    TemplateError,
    build_context,
    parse,
    placeholders,
    redactor_for,
    render,
)
from inventory.model import Host

HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "&& touch pwned",
    "| touch pwned",
    "x'; touch pwned; echo '",
    'x"; touch pwned; echo "',
    "a\ntouch pwned",
    "a\r\ntouch pwned\n",
    "$(touch pwned)'$(touch pwned)'",
    "\\'; touch pwned #",
    "${IFS}touch${IFS}pwned",
    "> pwned",
    "* ? [a-z] ~ !",
    "",
    "-n",
]


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, capture_output=True, timeout=10, check=False
    )


def context(**variables: object) -> dict[str, object]:
    return {
        "host": "web-01",
        "address": "10.0.0.1",
        "version": "2.4.1",
        "new_version": "2.4.1",
        "previous_version": "2.4.0",
        "service": "checkout-api",
        "vars": variables,
    }


# --- parsing -----------------------------------------------------------------------------


def test_parse_splits_literals_and_placeholders() -> None:
    assert parse("lbctl drain {host} --v={vars.weight}") == (
        "lbctl drain ",
        Placeholder("host", 12),
        " --v=",
        Placeholder("vars.weight", 23),
    )


def test_double_braces_are_literal() -> None:
    assert render("awk '{{print $1}}' {host}", context()) == "awk '{print $1}' web-01"
    assert render("echo ${{HOME}}", context()) == "echo ${HOME}"
    assert placeholders("{{host}}") == ()


@pytest.mark.parametrize(
    ("template", "fragment", "offset"),
    [
        ("echo {hots}", "did you mean 'host'", 5),
        ("echo {weight}", "did you mean {vars.weight}", 5),
        ("echo ${HOME}", "write {{ and }} for literal braces", 6),
        ("awk '{print $1}'", "unknown placeholder {print $1}", 5),
        ("echo {host", "unmatched '{'", 5),
        ("echo host}", "unmatched '}'", 9),
        ("echo {}", "empty placeholder", 5),
        ("echo {vars.}", "bad placeholder", 5),
        ("echo {vars.a-b}", "bad placeholder", 5),
        ("echo {a{host}", "unmatched '{'", 5),
        ("echo {host!r}", "unknown placeholder", 5),
    ],
)
def test_bad_templates(template: str, fragment: str, offset: int) -> None:
    with pytest.raises(TemplateError) as info:
        parse(template)
    assert fragment in info.value.message
    assert info.value.offset == offset
    assert isinstance(info.value, InputError)


def test_every_fixed_name_renders() -> None:
    out = render("{host} {address} {version} {new_version} {previous_version} {service}", context())
    assert out == "web-01 10.0.0.1 2.4.1 2.4.1 2.4.0 checkout-api"


# --- quoting -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_inert_under_sh(value: str, tmp_path: Path) -> None:
    command = render("printf %s {vars.x}", context(x=value))
    result = sh(command, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == value  # passed through as one literal argument
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", FIXED_NAMES)
def test_fixed_values_are_quoted_too(name: str, tmp_path: Path) -> None:
    ctx = context()
    ctx[name] = "$(touch pwned); touch pwned2"
    result = sh(f"printf %s {render('{' + name + '}', ctx)}", tmp_path)
    assert result.stdout.decode() == "$(touch pwned); touch pwned2"
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(exclude_characters="\x00", codec="utf-8"), max_size=40))
def test_any_value_round_trips_through_sh(value: str) -> None:
    # A fresh directory per example: nothing a value could do may leave a file.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = sh(render("printf %s {vars.x}", context(x=value)), Path(tmp))
        assert result.returncode == 0
        assert result.stdout.decode("utf-8", "surrogateescape") == value
        assert list(Path(tmp).iterdir()) == []


def test_raw_substitutes_unquoted(tmp_path: Path) -> None:
    command = render("printf '%s|' {vars.x}", context(x="a b"), raw=True)
    assert command == "printf '%s|' a b"
    assert sh(command, tmp_path).stdout == b"a|b|"  # the shell split it: raw means raw
    assert render("printf '%s|' {vars.x}", context(x="a b")) == "printf '%s|' 'a b'"


def test_value_types_render_as_written() -> None:
    out = render("{vars.a} {vars.b} {vars.c} {vars.d}", context(a=True, b=2, c=1.5, d=None))
    assert out == "true 2 1.5 ''"


# --- missing values ----------------------------------------------------------------------


def test_missing_var_names_host_and_var() -> None:
    with pytest.raises(TemplateError) as info:
        render("echo {vars.port}", context(other=1))
    assert info.value.field == "vars.port"
    assert "is not set for host web-01" in info.value.message


def test_unknown_previous_version_is_an_error_not_an_empty_string() -> None:
    ctx = context()
    ctx["previous_version"] = None
    with pytest.raises(TemplateError, match="previous version is unknown"):
        render("/opt/deploy/activate {previous_version}", ctx)


def test_unknown_version_while_rolling_back_says_so() -> None:
    spec = parse_spec(SPEC, "s.yaml")
    ctx = build_context(spec, Host("web-01", "10.0.0.1"), None, rollback=True, environ={})
    with pytest.raises(TemplateError, match="version this host goes back to is unknown"):
        render("check {version}", ctx)
    assert render("check {new_version}", ctx) == "check 1.0"


# --- context -----------------------------------------------------------------------------

SPEC = """\
service: api
version: "1.0"
steps: [echo hi]
secrets: [DEPLOY_TOKEN, db_password]
vars: {port: 8080, region: eu, db_password: spec-pw}
"""


def test_build_context_precedence_env_then_spec_then_host() -> None:
    spec = parse_spec(SPEC, "s.yaml")
    host = Host("web-01", "10.0.0.1", vars={"region": "us"})
    env = {"DEPLOY_TOKEN": "tok-123", "port": "9999", "HOME": "/root"}
    ctx = build_context(spec, host, "0.9", environ=env)
    assert ctx["host"] == "web-01"
    assert ctx["address"] == "10.0.0.1"
    assert ctx["version"] == "1.0"
    assert ctx["new_version"] == "1.0"
    assert ctx["previous_version"] == "0.9"
    assert ctx["service"] == "api"
    # only names listed in secrets come from the environment; spec vars win over
    # env, host vars over spec vars
    assert ctx["vars"] == {
        "DEPLOY_TOKEN": "tok-123",
        "port": 8080,
        "region": "us",
        "db_password": "spec-pw",
    }


# --- redaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("db_password", True),
        ("ansible_become_password", True),
        ("api_token", True),
        ("API_KEY", True),
        ("client_secret", True),
        ("ansible_ssh_private_key_file", False),
        ("key", False),
        ("ssh_key", False),
        ("tls_key_file", False),
        ("ansible_ssh_pass", True),
        ("ansible_become_pass", True),
        ("db_pw", True),
        ("PWD_FILE", True),
        ("bypass", False),
        ("passenger_count", False),
        ("region", False),
        ("http_port", False),
    ],
)
def test_secret_name_heuristic(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_declared_names_are_secret() -> None:
    assert is_secret_name("region", ["region"])


def test_redactor_masks_raw_and_quoted_forms() -> None:
    red = Redactor(["s3cr'et", "multi\nline-secret"])
    rendered = render("login {vars.pw}", context(pw="s3cr'et"))
    assert "s3cr" in rendered
    assert red.redact(rendered) == "login ***"
    assert red.redact("pw=s3cr'et.") == "pw=***."
    assert red.redact("got line-secret here") == "got *** here"
    assert red.redact("nothing") == "nothing"


def test_redactor_prefers_the_longest_match() -> None:
    red = Redactor(["abc", "abcdef"])
    assert red.redact("xabcdefx abc") == "x***x ***"


def test_redactor_for_spec_collects_host_spec_and_env_secrets() -> None:
    spec = parse_spec(SPEC, "s.yaml")
    hosts = [
        Host("web-01", "a", vars={"api_token": "host-tok", "use_token": True}),
        Host("web-02", "b", vars={"ansible_ssh_private_key_file": "/keys/id", "n": 7}),
    ]
    red = redactor_for(spec, hosts, environ={"DEPLOY_TOKEN": "env-tok"})
    text = "host-tok env-tok spec-pw /keys/id 8080 7 True"
    assert red.redact(text) == "*** *** *** /keys/id 8080 7 True"
    assert bool(red)
    assert not Redactor()


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="{}ab.v_ rs$", max_size=20))
def test_parse_accepts_or_rejects_cleanly(template: str) -> None:
    try:
        parts = parse(template)
    except TemplateError as exc:
        assert 0 <= exc.offset < len(template)
        return
    rebuilt = "".join(
        p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else f"{{{p.name}}}"
        for p in parts
    )
    assert parse(rebuilt) == parts  # escaping the literal parts gives the same template


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_escaped_text_renders_to_itself(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert render(escaped, context()) == text


def test_version_names_what_the_host_should_run_now() -> None:
    """Deploying, {version} is the target; rolling back, the version the host goes back
    to; {new_version} is the target and {previous_version} the version read before."""
    spec = parse_spec(SPEC, "s.yaml")
    host = Host("web-01", "10.0.0.1")
    template = "{version} {new_version} {previous_version}"
    deploying = build_context(spec, host, "0.9", environ={})
    rolling_back = build_context(spec, host, "0.9", rollback=True, environ={})
    assert render(template, deploying) == "1.0 1.0 0.9"
    assert render(template, rolling_back) == "0.9 1.0 0.9"


def test_new_version_is_a_known_placeholder() -> None:
    assert [p.name for p in placeholders("x {new_version}")] == ["new_version"]
    with pytest.raises(TemplateError, match="did you mean"):
        parse("{new_verison}")
