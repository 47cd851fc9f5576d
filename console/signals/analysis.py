"""Canary analysis through Prometheus: each metric's query, rendered per cohort, and
the judgement of the new cohort against the baseline cohort.

The new cohort is the hosts serving the new version (deployed and healthy), the
baseline the hosts not yet moved; both are asked in the same tick, each as its own
query with ``{instances}`` the cohort's instance labels (host var
``prometheus_instance``, else ``ADDRESS:metrics_port``) as one anchored regex. A
metric fails when the new cohort's value is over ``max``, or over ``max_vs_baseline``
times the baseline's (a baseline under the metric's ``floor`` counts as the floor, so
a clean baseline never makes one error an infinite multiple). When the baseline
cohort is empty (the last batch) the last baseline measured stands in, and says so.

A judgement that cannot be made is ``no_data`` with the reason (Prometheus down,
slow, refusing the query, an empty answer, no baseline ever measured for a rule that
needs one): the engine never reads it as a pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from console.core.describe import format_metric as format_value
from console.signals.prometheus import PrometheusClient, PrometheusError, Series
from console.signals.stats import mann_whitney_u
from console.spec.model import AnalysisMetric, AnalysisSpec
from console.spec.queries import instances_regex, promql_duration, render_query
from inventory.model import Host

Verdict = Literal["pass", "fail", "no_data"]
MW_MIN = 3  # hosts a cohort before a rank test can say anything (n=1 vs 20: p >= 0.045)
MW_ALPHA = 0.05  # one-sided: are the new hosts ranked above the baseline's?


def instance_label(host: Host) -> str | None:
    """The ``instance`` label Prometheus gives this host's target, or None when the
    inventory does not say (no ``prometheus_instance``, no ``metrics_port``)."""
    explicit = host.vars.get("prometheus_instance")
    if explicit not in (None, ""):
        return str(explicit)
    port = host.vars.get("metrics_port")
    if port in (None, ""):
        return None
    address = host.address
    if ":" in address and not address.startswith("["):  # an IPv6 literal
        address = f"[{address}]"
    return f"{address}:{port}"


def rule_words(metric: AnalysisMetric) -> str:
    """The rule in words: ``new cohort at most 5.0%, and at most 3x the baseline``."""
    parts = []
    if metric.max is not None:
        parts.append(f"at most {format_value(metric.max, metric.unit)}")
    if metric.max_vs_baseline is not None:
        floor = format_value(metric.floor, metric.unit)
        parts.append(
            f"at most {metric.max_vs_baseline:g}x the baseline cohort's (a baseline under "
            f"{floor} counts as {floor})"
        )
    return "new cohort " + ", and ".join(parts)


@dataclass(frozen=True, slots=True)
class Judgement:
    """One metric judged once: the verdict and every number behind it."""

    metric: str
    verdict: Verdict
    reason: str  # the verdict in words (a failure's numbers, or why there is no data)
    rule: str  # which rule broke: 'max' | 'max_vs_baseline' | '' (none)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def new_value(self) -> float | None:
        value = self.numbers.get("new_value")
        return value if isinstance(value, float) else None


@dataclass(slots=True)
class Measured:
    """What one query of one cohort answered: its value, or the error in words."""

    value: float | None = None
    series: int = 0
    error: str = ""
    samples: tuple[float, ...] = ()  # every series' value (mann-whitney: one per host)


def _value(series: Sequence[Series]) -> float | None:
    """An aggregated query answers one series; several (a query without ``sum``):
    the worst, so a split answer never hides a bad part."""
    return max((s.value for s in series), default=None)


class PrometheusAnalysis:
    """Judges ``spec``'s prometheus metrics for two cohorts of hosts."""

    def __init__(
        self,
        spec: AnalysisSpec,
        client: PrometheusClient,
        instances: Mapping[str, str],
        values: Mapping[str, str],
    ) -> None:
        self.spec = spec
        self.client = client
        self.instances = dict(instances)  # host name -> instance label
        self.values = dict(values)  # the rollout's placeholders (service, vars.NAME...)
        self.values["window"] = promql_duration(spec.window)
        self._last_baseline: dict[str, tuple[float, int]] = {}  # metric -> (value, hosts)

    def query_for(self, metric: AnalysisMetric, hosts: Sequence[str]) -> str:
        assert metric.query is not None
        labels = [self.instances[h] for h in hosts if h in self.instances]
        return render_query(metric.query, {**self.values, "instances": instances_regex(labels)})

    async def _measure(self, query: str) -> Measured:
        try:
            series = await self.client.query(query)
        except PrometheusError as exc:
            return Measured(error=str(exc))
        values = tuple(s.value for s in series)
        return Measured(value=_value(series), series=len(series), samples=values)

    async def judge(self, new: Sequence[str], baseline: Sequence[str]) -> list[Judgement]:
        """Every prometheus metric, both cohorts queried at once; ``new`` empty: []."""
        new = [h for h in new if h in self.instances]
        baseline = [h for h in baseline if h in self.instances]
        metrics = self.spec.prometheus_metrics
        if not new or not metrics:
            return []
        tasks: list[tuple[AnalysisMetric, str, asyncio.Task[Measured], asyncio.Task[Measured]]]
        tasks = []
        async with asyncio.TaskGroup() as tg:
            for metric in metrics:
                q_new = self.query_for(metric, new)
                q_base = self.query_for(metric, baseline)
                t_new = tg.create_task(self._measure(q_new))
                t_base = tg.create_task(
                    self._measure(q_base) if baseline else _nothing(),
                )
                tasks.append((metric, q_new, t_new, t_base))
        return [
            self.decide(metric, query, t_new.result(), t_base.result(), len(new), len(baseline))
            for metric, query, t_new, t_base in tasks
        ]

    def decide(
        self,
        metric: AnalysisMetric,
        query: str,
        new: Measured,
        base: Measured,
        new_hosts: int,
        base_hosts: int,
    ) -> Judgement:
        """The verdict on what both cohorts' queries answered (pure: no I/O)."""
        unit = metric.unit
        numbers: dict[str, Any] = {
            "metric": metric.name,
            "provider": "prometheus",
            "query": query,
            "window": self.spec.window,
            "new_value": new.value,
            "new_hosts": new_hosts,
            "new_series": new.series,
            "baseline_value": base.value,
            "baseline_hosts": base_hosts,
            "baseline_series": base.series,
            "max": metric.max,
            "max_vs_baseline": metric.max_vs_baseline,
            "unit": unit,
            "rule": rule_words(metric),
        }
        name = metric.name
        test = ""  # compare: mann-whitney: which comparison the numbers come from
        if metric.compare == "mann-whitney" and not new.error:
            new, base, test = self._ranked(new, base, numbers)
            numbers.update(new_value=new.value, baseline_value=base.value)
        if new.error:
            return Judgement(name, "no_data", f"{name}: {new.error}", "", numbers)
        if new.value is None:
            reason = (
                f"{name}: Prometheus has no data for the new cohort ({new_hosts} "
                f"host{'' if new_hosts == 1 else 's'}) in the last "
                f"{promql_duration(self.spec.window)}"
            )
            return Judgement(name, "no_data", reason, "", numbers)
        shown = format_value(new.value, unit)
        cohort = f"{new_hosts} host{'' if new_hosts == 1 else 's'}"
        if metric.max is not None and new.value > metric.max:
            numbers["threshold"] = metric.max
            reason = (
                f"{name} of the new version is {shown} ({cohort}), above the "
                f"{format_value(metric.max, unit)} maximum"
            )
            return Judgement(name, "fail", reason, "max", numbers)
        factor = metric.max_vs_baseline
        if factor is None:
            return Judgement(name, "pass", f"{name} {shown}", "", numbers)
        live = base.value is not None
        if live:
            assert base.value is not None
            self._last_baseline[name] = (base.value, base_hosts)
            base_value, base_n = base.value, base_hosts
        elif name in self._last_baseline:
            base_value, base_n = self._last_baseline[name]
        else:
            why = base.error or (
                "the baseline cohort is empty" if not base_hosts else "no data for the baseline"
            )
            reason = f"{name}: cannot compare with the baseline ({why})"
            return Judgement(name, "no_data", reason, "", numbers)
        effective = max(base_value, metric.floor)
        ratio = new.value / effective
        numbers.update(
            baseline_value=base_value,
            baseline_live=live,
            baseline_floor=metric.floor,
            ratio=ratio,
        )
        significant = numbers.get("p_value") is None or numbers["p_value"] < MW_ALPHA
        if metric.compare == "mann-whitney":
            numbers["test"] = test
        if new.value > factor * effective and significant:
            numbers["threshold"] = factor
            numbers["threshold_value"] = factor * effective
            base_words = format_value(base_value, unit)
            if base_value < metric.floor:
                base_words += f", counted as {format_value(metric.floor, unit)}"
            stale = ", last measured" if not live else ""
            reason = (
                f"{name} of the new version is {shown} ({cohort}), {ratio:.1f}x the "
                f"baseline's {base_words} ({base_n} host{'' if base_n == 1 else 's'}{stale}); "
                f"the limit is {factor:g}x"
            )
            if metric.compare == "mann-whitney":
                reason += f" ({test})"
            return Judgement(name, "fail", reason, "max_vs_baseline", numbers)
        return Judgement(name, "pass", f"{name} {shown}, {ratio:.2f}x the baseline", "", numbers)

    def _ranked(
        self, new: Measured, base: Measured, numbers: dict[str, Any]
    ) -> tuple[Measured, Measured, str]:
        """``compare: mann-whitney``: each cohort's per-host values (one series per
        instance) become its median, and a one-sided Mann-Whitney U test says whether
        the new hosts rank above the baseline's (p in ``numbers``). With fewer than
        MW_MIN hosts a side, the medians are compared alone, and the test says so."""
        numbers.update(new_samples=len(new.samples), baseline_samples=len(base.samples))
        med_new = Measured(_median(new.samples), new.series, new.error, new.samples)
        med_base = Measured(_median(base.samples), base.series, base.error, base.samples)
        if len(new.samples) < MW_MIN or len(base.samples) < MW_MIN:
            return med_new, med_base, f"medians only: mann-whitney needs {MW_MIN} hosts a side"
        u, p = mann_whitney_u(new.samples, base.samples, alternative="greater")
        numbers.update(u=u, p_value=p, alpha=MW_ALPHA)
        return med_new, med_base, f"mann-whitney p={p:.3g}, alpha {MW_ALPHA:g}"


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0


async def _nothing() -> Measured:
    return Measured()
