"""Series selectors and counter reading over prometheus_client's parser."""

from __future__ import annotations

import pytest

from console.core.errors import InputError
from console.signals.metrics import (
    MetricsParseError,
    line_filter,
    parse_selector,
    read_counters,
    select_sums,
)

PAGE = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200",method="GET"} 900
http_requests_total{code="200",method="HEAD"} 50
http_requests_total{code="404",method="GET"} 20
http_requests_total{code="500",method="GET"} 25
http_requests_total{code="503",method="POST"} 5
http_requests_created{code="500",method="GET"} 1.7e9
# HELP http_request_duration_seconds Latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 800
http_request_duration_seconds_bucket{le="+Inf"} 1000
http_request_duration_seconds_sum 55.5
http_request_duration_seconds_count 1000
"""


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("http_requests_total", 1000),
        ("http_requests", 1000),  # the counter's family name selects its _total samples
        ('http_requests_total{code=~"5.."}', 30),
        ('http_requests_total{code="500"}', 25),
        ('http_requests_total{code!="200"}', 50),
        ('http_requests_total{code!~"2..|404"}', 30),
        ('http_requests_total{code=~"5..", method="GET"}', 25),
        ("http_requests_total{code=~'5..',method!=\"GET\",}", 5),
        ('http_requests_total{code=~"5"}', None),  # anchored: "5" is not "500"
        ('http_requests_total{region="eu"}', None),
        ('http_requests_total{region=""}', 1000),  # a missing label is the empty string
        ('{__name__="http_request_duration_seconds_count"}', 1000),
        ("http_request_duration_seconds_count", 1000),
        ("nope_total", None),
    ],
)
def test_selectors_sum_matching_series(selector, expected):
    (value,) = select_sums(PAGE, [parse_selector(selector)])
    assert value == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "http requests",
        "http_requests_total{code=5..}",
        'http_requests_total{code=~"5.." method="GET"}',
        'http_requests_total{code=~"("}',
        'http_requests_total{code=="5"}',
        '{code="500"}',
        'http_requests_total{code="500"',
    ],
)
def test_bad_selectors_are_input_errors(bad):
    with pytest.raises(InputError) as info:
        parse_selector(bad, field="metrics.errors")
    assert info.value.field == "metrics.errors"
    assert "selector" in str(info.value)


def test_escaped_values():
    sel = parse_selector(r'm{path="a\"b\\c"}')
    assert sel.matchers[0].value == 'a"b\\c'
    assert sel.matches("m", {"path": 'a"b\\c'})


def test_read_counters_treats_unseen_label_set_as_zero_and_missing_family_as_none():
    page = '# TYPE http_requests_total counter\nhttp_requests_total{code="200"} 10\n'
    reading = read_counters(
        page,
        parse_selector("http_requests_total"),
        parse_selector('http_requests_total{code=~"5.."}'),
    )
    assert (reading.requests, reading.errors) == (10, 0.0)

    # A separate error counter declared but never incremented: zero.
    page2 = page + "# TYPE http_errors_total counter\n"
    reading = read_counters(
        page2, parse_selector("http_requests_total"), parse_selector("http_errors_total")
    )
    assert reading.errors == 0.0

    # A name that is not on the page at all: None (a misconfigured spec).
    reading = read_counters(
        page, parse_selector("http_requests_total"), parse_selector("errors_total")
    )
    assert reading.requests == 10 and reading.errors is None


def test_nan_samples_are_ignored():
    (value,) = select_sums('m 2\nm{a="1"} NaN\n', [parse_selector("m")])
    assert value == 2


@pytest.mark.parametrize("garbage", ["m{ 1\n", 'm{a="b} 1\n', "m abc\n"])
def test_unparseable_text_raises_one_error_type(garbage):
    with pytest.raises(MetricsParseError):
        select_sums(garbage, [parse_selector("m")])


def test_line_filter_keeps_only_selected_families_and_reads_the_same():
    sels = [
        parse_selector("http_requests_total"),
        parse_selector('http_requests_total{code=~"5.."}'),
    ]
    keep = line_filter(sels)
    kept = [line for line in PAGE.splitlines() if keep(line)]
    assert not any("duration" in line for line in kept)
    assert "# TYPE http_requests_total counter" in kept
    assert select_sums("\n".join(kept) + "\n", sels) == select_sums(PAGE, sels) == [1000, 30]
    # Without a metric name nothing can be filtered out.
    anything = line_filter([parse_selector('{__name__=~"http_.*"}')])
    assert all(anything(line) for line in PAGE.splitlines())
