"""Canary analysis without a Prometheus: the spec's ``analysis:`` section and its
errors, query placeholders and their escaping, the provider's answer parsing and
bounds, and the judgement's arithmetic (``PrometheusAnalysis.decide`` is pure).
The same paths against a real Prometheus: tests/test_analysis_prometheus.py."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator

import pytest

from console.core import events as ev
from console.core.describe import describe, format_metric
from console.core.errors import InputError
from console.signals.analysis import Measured, PrometheusAnalysis, instance_label, rule_words
from console.signals.prometheus import PrometheusClient, PrometheusError, parse_response
from console.spec import parse_spec, settings
from console.spec.queries import (
    QueryError,
    check_query,
    instances_regex,
    promql_duration,
    render_query,
)
from console.templating import redactor_for
from inventory.model import Host

HEAD = "service: api\nversion: '1'\nsteps: [deploy]\n"  # lines 1-3
PROM = "  prometheus: {url: 'http://127.0.0.1:9090'}\n"
RATIO = 'sum(rate(x{code=~"5..", instance=~"{instances}"}[{window}]))'


def analysis(metrics: str, extra: str = PROM) -> str:
    return HEAD + "analysis:\n" + extra + "  metrics:\n" + metrics


def fail(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_spec(text, "bad.yaml")
    return info.value


def test_a_full_analysis_section_loads() -> None:
    spec = parse_spec(
        HEAD
        + "vars: {prom_token: s3cret-token}\n"
        + "analysis:\n"
        + "  interval: 5s\n  window: 30s\n  on_no_data: rollback\n"
        + "  prometheus:\n    url: https://prom.example:9090/\n"
        + "    bearer_token: '{vars.prom_token}'\n    timeout: 2s\n"
        + "  metrics:\n"
        + f"    - {{name: error-ratio, query: '{RATIO}', max: 5%, max_vs_baseline: 3x}}\n"
        + "    - {name: p95, query: 'q{instance=~\"{instances}\"}', max: 300ms}\n"
        + "    - {name: logs, provider: ssh, max: 2%}\n"
        + "rollback: [undo]\n"
        + "logs: {run: tail, error_pattern: ERROR}\n"
    )
    a = spec.analysis
    assert a is not None and a.interval == 5 and a.window == 30 and a.on_no_data == "rollback"
    assert a.prometheus is not None and a.prometheus.url == "https://prom.example:9090"
    assert a.prometheus.timeout == 2 and a.prometheus.bearer_token == "{vars.prom_token}"
    ratio, p95, logs = a.metrics
    assert (ratio.max, ratio.max_vs_baseline, ratio.unit) == (0.05, 3.0, "ratio")
    assert (p95.max, p95.unit, p95.line) == (0.3, "seconds", 15)
    assert [m.name for m in a.prometheus_metrics] == ["error-ratio", "p95"]
    # the ssh metric is error_rate's short form, over the analysis's window
    assert logs.provider == "ssh"
    assert spec.error_rate is not None and spec.error_rate.max == 0.02
    assert spec.error_rate.window == 30
    # credentials are never shown, and their value is masked wherever it appears
    assert settings(spec)["analysis"]["prometheus"]["bearer_token"] == "***"
    assert "s3cret-token" in redactor_for(spec)


def test_a_literal_credential_is_a_secret_too() -> None:
    spec = parse_spec(
        analysis(
            f"    - {{name: m, query: '{RATIO}', max: 1%}}\n",
            "  prometheus:\n    url: http://p:9090\n"
            "    basic_auth: {username: rd, password: hunter2-literal}\n",
        )
    )
    assert spec.analysis is not None and spec.analysis.prometheus is not None
    assert spec.analysis.prometheus.basic_auth == ("rd", "hunter2-literal")
    assert "hunter2-literal" in redactor_for(spec)
    assert settings(spec)["analysis"]["prometheus"]["basic_auth"] == ["rd", "***"]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (
            analysis(f"    - {{name: m, query: '{RATIO}'}}\n"),
            7,
            "analysis.metrics[0]",
            "give max, max_vs_baseline or both",
        ),
        (
            analysis("    - {name: m, query: 'up{instance=~\"{instance}\"}', max: 1%}\n"),
            7,
            "analysis.metrics[0].query",
            "did you mean 'instances'",
        ),
        (
            analysis(
                "    - name: m\n      max: 1%\n      query: |\n        sum(up)\n"
                "        / sum(x{instance=~{instances}})\n"
            ),
            11,  # the block's second line, where the placeholder is
            "analysis.metrics[0].query",
            'put it in a quoted matcher, instance=~"{instances}"',
        ),
        (
            analysis("    - {name: m, query: 'sum(up)', max: 1%}\n"),
            7,
            "analysis.metrics[0].query",
            "must select a cohort",
        ),
        (
            analysis(
                '    - {name: m, query: \'rate(x{instance=~"{instances}"}["{window}"])\','
                " max: 1%}\n"
            ),
            7,
            "analysis.metrics[0].query",
            "{window} is a duration",
        ),
        (
            analysis(f"    - {{name: m, query: '{RATIO}', max: 1%}}\n", ""),
            6,
            "analysis.metrics[0].provider",
            "needs analysis.prometheus",
        ),
        (
            analysis(
                f"    - {{name: m, query: '{RATIO}', max: 1%}}\n",
                "  prometheus: {url: 'ftp://x'}\n",
            ),
            5,
            "analysis.prometheus.url",
            "not an http:// or https:// URL",
        ),
        (
            analysis(
                f"    - {{name: m, query: '{RATIO}', max_vs_baseline: 3}}\n"
                f"    - {{name: m, query: '{RATIO}', max: 1%}}\n"
            ),
            8,
            "analysis.metrics[1].name",
            "'m' is named twice",
        ),
        (
            analysis(f"    - {{name: m, query: '{RATIO}', max_vs_baseline: three}}\n"),
            7,
            "analysis.metrics[0].max_vs_baseline",
            "expected a multiple like 1.5x",
        ),
        (
            analysis("    - {name: m, provider: ssh, max: 1%}\n") + "error_rate: {max: 2%}\n",
            8,
            "error_rate",
            "not both",
        ),
        (
            analysis("    - {name: m, provider: ssh, max: 1%}\n"),
            6,
            "analysis.metrics",
            "error_rate needs a source",
        ),
        (
            analysis(f"    - {{name: m, query: '{RATIO}', max: 1%}}\n") + "",
            None,
            None,
            None,
        ),
    ],
)
def test_bad_analysis_names_file_line_and_field(
    text: str, line: int | None, field: str | None, fragment: str | None
) -> None:
    if fragment is None:  # the control: the same section, well formed, loads
        parse_spec(text, "bad.yaml")
        return
    err = fail(text)
    assert (err.file, err.line, err.field) == ("bad.yaml", line, field), str(err)
    assert fragment in str(err)


def test_on_no_data_takes_the_on_failure_words() -> None:
    err = fail(
        analysis(f"    - {{name: m, query: '{RATIO}', max: 1%}}\n", PROM + "  on_no_data: ignore\n")
    )
    assert err.field == "analysis.on_no_data" and "pause, rollback, abort" in str(err)


def test_query_placeholders_are_escaped_for_where_they_land() -> None:
    q = "a{instance=~\"{instances}\", x='{vars.v}'} + b{i=~`{instances}`}[{window}]"
    check_query(q)
    out = render_query(q, {"instances": r"^(?:a\.b:1)$", "vars.v": "it's", "window": "5s"})
    # Inside "..." a backslash is doubled (PromQL unescapes it back); in '...' the
    # quote is escaped; a raw `...` string takes the value as is.
    assert out == "a{instance=~\"^(?:a\\\\.b:1)$\", x='it\\'s'} + b{i=~`^(?:a\\.b:1)$`}[5s]"
    with pytest.raises(QueryError, match="never closed"):
        check_query('up{instance=~"{instances}}')
    with pytest.raises(KeyError):
        render_query(q, {"instances": "x"})


def test_instances_regex_is_anchored_and_exact() -> None:
    rx = instances_regex(["10.0.0.1:9100", "web-01.example:9100", "10.0.0.1:9100"])
    assert rx == r"^(?:10\.0\.0\.1:9100|web-01\.example:9100)$"
    matches = re.compile(rx).fullmatch
    assert matches("10.0.0.1:9100") and matches("web-01.example:9100")
    assert not matches("10.0.0.1:91000") and not matches("10x0.0.1:9100")
    assert instances_regex([]) == "^$"
    assert promql_duration(90) == "90s" and promql_duration(1.5) == "1500ms"


def test_instance_label_from_host_vars() -> None:
    assert instance_label(Host("a", "10.0.0.1", vars={"metrics_port": 9100})) == "10.0.0.1:9100"
    assert instance_label(Host("a", "::1", vars={"metrics_port": 9100})) == "[::1]:9100"
    named = Host("a", "10.0.0.1", vars={"metrics_port": 1, "prometheus_instance": "a:9"})
    assert instance_label(named) == "a:9"
    assert instance_label(Host("a", "10.0.0.1")) is None


def test_parse_response() -> None:
    body = (
        b'{"status":"success","data":{"resultType":"vector","result":['
        b'{"metric":{"instance":"a"},"value":[1,"0.25"]},'
        b'{"metric":{},"value":[1,"NaN"]}]}}'
    )
    (series,) = parse_response(body)  # NaN (0/0 of an idle cohort) is no data
    assert series.labels == {"instance": "a"} and series.value == 0.25
    scalar = b'{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}'
    assert parse_response(scalar)[0].value == 3.0
    with pytest.raises(PrometheusError, match="bad_data"):
        parse_response(b'{"status":"error","errorType":"bad_data","error":"parse error"}')
    with pytest.raises(PrometheusError, match="not JSON"):
        parse_response(b"<html>proxy error</html>")
    with pytest.raises(PrometheusError, match="instant vector"):
        parse_response(b'{"status":"success","data":{"resultType":"matrix","result":[]}}')


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP listener that accepts connections (the kernel's backlog) and never
    answers: a Prometheus wedged behind a load balancer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_a_silent_prometheus_is_an_error_within_its_timeout(silent_server: int) -> None:
    client = PrometheusClient(f"http://127.0.0.1:{silent_server}", timeout=0.5)
    async with asyncio.timeout(10):  # the client's own bound fires long before this
        with pytest.raises(PrometheusError, match="no answer from"):
            await client.query("up")


async def test_a_refused_connection_is_an_error_with_the_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(PrometheusError, match=r"cannot reach .*refused"):
        await client.query("up")


def _analysis(metric_yaml: str) -> PrometheusAnalysis:
    spec = parse_spec(analysis(metric_yaml))
    assert spec.analysis is not None
    client = PrometheusClient("http://127.0.0.1:1")
    return PrometheusAnalysis(spec.analysis, client, {"a": "a:1", "b": "b:1"}, {})


def test_decide_max_and_ratio_with_a_floor() -> None:
    pa = _analysis(f"    - {{name: err, query: '{RATIO}', max: 5%, max_vs_baseline: 3x}}\n")
    (metric,) = pa.spec.metrics
    q = pa.query_for(metric, ["a"])
    assert 'instance=~"^(?:a:1)$"' in q and "[60s]" in q

    over = pa.decide(metric, q, Measured(0.15), Measured(0.005), 1, 20)
    assert (over.verdict, over.rule) == ("fail", "max")
    assert "15.0%" in over.reason and "above the 5.0% maximum" in over.reason
    assert over.numbers["threshold"] == 0.05 and over.numbers["baseline_hosts"] == 20

    ratio = pa.decide(metric, q, Measured(0.02), Measured(0.005), 1, 20)
    assert (ratio.verdict, ratio.rule) == ("fail", "max_vs_baseline")
    assert ratio.numbers["ratio"] == pytest.approx(4.0)
    assert "4.0x the baseline's 0.50% (20 hosts); the limit is 3x" in ratio.reason

    # A clean baseline counts as the floor (0.1%): 0.2% is 2x that, not infinite.
    clean = pa.decide(metric, q, Measured(0.002), Measured(0.0), 1, 20)
    assert clean.verdict == "pass" and clean.numbers["ratio"] == pytest.approx(2.0)

    # The last batch: no baseline hosts left, the last baseline measured stands in.
    last = pa.decide(metric, q, Measured(0.02), Measured(), 21, 0)
    assert last.verdict == "fail" and last.numbers["baseline_live"] is False
    assert "last measured" in last.reason


def test_decide_without_data_is_never_a_pass() -> None:
    pa = _analysis(f"    - {{name: err, query: '{RATIO}', max_vs_baseline: 3x}}\n")
    (metric,) = pa.spec.metrics
    down = pa.decide(metric, "q", Measured(error="cannot reach x: refused"), Measured(), 1, 3)
    assert down.verdict == "no_data" and "cannot reach" in down.reason
    empty = pa.decide(metric, "q", Measured(None), Measured(0.01), 1, 3)
    assert empty.verdict == "no_data" and "no data for the new cohort" in empty.reason
    # a ratio rule with no baseline ever measured cannot be judged
    alone = pa.decide(metric, "q", Measured(0.01), Measured(), 4, 0)
    assert alone.verdict == "no_data" and "baseline cohort is empty" in alone.reason


def test_rule_words_and_the_sample_description() -> None:
    pa = _analysis(f"    - {{name: err, query: '{RATIO}', max: 5%, max_vs_baseline: 1.5x}}\n")
    assert rule_words(pa.spec.metrics[0]) == (
        "new cohort at most 5.0%, and at most 1.5x the baseline cohort's "
        "(a baseline under 0.10% counts as 0.10%)"
    )
    assert format_metric(0.272, "seconds") == "272ms" and format_metric(None) == "no data"
    sample = ev.AnalysisSample(
        metric="p95",
        verdict="fail",
        new_value=0.27,
        baseline_value=0.09,
        new_hosts=1,
        baseline_hosts=5,
        rule="r",
        unit="seconds",
    )
    words = describe(sample)
    assert "analysis p95: new 270ms (1 host) vs baseline 90ms (5 hosts): fail" in words.text()
    assert ev.from_json(ev.to_json(sample)) == sample


def test_mann_whitney_ranks_per_host_samples_with_an_effect_size_guard() -> None:
    pa = _analysis(
        "    - {name: p95, query: 'max by (instance) (x{instance=~\"{instances}\"})', "
        "max_vs_baseline: 1.5x, compare: mann-whitney, floor: 1ms}\n"
    )
    (metric,) = pa.spec.metrics
    base = Measured(samples=(0.09, 0.1, 0.095, 0.092, 0.11, 0.097, 0.1, 0.093))
    slow = pa.decide(metric, "q", Measured(samples=(0.27, 0.3, 0.28)), base, 3, 8)
    assert (slow.verdict, slow.rule) == ("fail", "max_vs_baseline"), slow.reason
    assert slow.numbers["p_value"] < 0.05 and slow.numbers["new_value"] == 0.28  # the median
    assert "mann-whitney p=" in slow.reason
    # significant but small (1.1x): the effect-size guard passes it
    near = pa.decide(metric, "q", Measured(samples=(0.111, 0.112, 0.113)), base, 3, 8)
    assert near.verdict == "pass" and near.numbers["p_value"] < 0.05
    # large but not significant (one slow host among three): no evidence, a pass
    mixed = pa.decide(metric, "q", Measured(samples=(0.3, 0.09, 0.095)), base, 3, 8)
    assert mixed.verdict == "pass" and mixed.numbers["p_value"] >= 0.05
    # one canary: no rank test can say anything; the medians alone decide, and say so
    one = pa.decide(metric, "q", Measured(samples=(0.3,)), base, 1, 8)
    assert one.verdict == "fail" and "medians only" in one.reason


def test_mann_whitney_needs_its_effect_size() -> None:
    err = fail(analysis(f"    - {{name: m, query: '{RATIO}', max: 1%, compare: mann-whitney}}\n"))
    assert err.field == "analysis.metrics[0].compare" and "needs max_vs_baseline" in str(err)
