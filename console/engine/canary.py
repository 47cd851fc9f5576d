"""The Prometheus canary analysis in the engine: a loop beside the batches and the
last word of a bake gate.

Every ``analysis.interval`` the new cohort (hosts serving the new version: healthy,
or in health gating when no load balancer holds them out of traffic) and the
baseline cohort (hosts not yet touched) are judged per metric
(:class:`console.signals.analysis.PrometheusAnalysis`, off the loop under the
provider's timeout); each judgement is streamed as an ``AnalysisSample``. A failure
is a critical ``Alert`` (``analysis.METRIC.max`` or ``.max_vs_baseline``, every number
in ``numbers``) and ``on_failure`` acts. No data (Prometheus down, slow, an empty
answer) is never a pass: once a metric has had none for a whole window while the new
version serves, it is an ``analysis.METRIC.no_data`` alert and ``on_no_data`` acts.
At the end of a bake every metric must have a verdict: the bake waits for one at most
one more window, then fires ``on_no_data``, and a passing verdict is journaled as a
notice with its numbers, so ``show`` says what the gate saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from console.core import events as ev
from console.core.clock import Clock
from console.core.describe import format_metric
from console.core.events import HostState
from console.engine.control import Control, HostRecord
from console.engine.machine import on_failure_action
from console.signals.analysis import Judgement, PrometheusAnalysis, instance_label
from console.signals.prometheus import PrometheusClient
from console.spec.model import AnalysisSpec, RolloutSpec
from console.templating import TemplateError, context_vars, render

log = logging.getLogger(__name__)


class CanaryEngine(Protocol):
    """What the analysis sees of the engine (a part of ``EngineContext``, which
    refers to this module: no cycle)."""

    @property
    def spec(self) -> RolloutSpec: ...
    @property
    def control(self) -> Control: ...
    @property
    def recs(self) -> dict[str, HostRecord]: ...
    @property
    def clock(self) -> Clock: ...

    def emit(self, event: ev.Event) -> None: ...

    def policy(self, action: str, reason: str) -> None: ...


def analysis_values(spec: RolloutSpec) -> dict[str, str]:
    """The rollout's own placeholders of a query (``{instances}`` and ``{window}`` are
    the analysis's): service, version, new_version, environment, vars.NAME."""
    values = {
        "service": spec.service,
        "version": spec.version,
        "new_version": spec.version,
        "environment": spec.environment or "",
    }
    for name, value in context_vars(spec, None).items():
        values[f"vars.{name}"] = "" if value is None else str(value)
    return values


def _credential(template: str, spec: RolloutSpec) -> str:
    context = {"service": spec.service, "vars": context_vars(spec, None)}
    return render(template, context, raw=True)


class CanaryJudge:
    """One per rollout whose spec has prometheus metrics (``Engine.canary``)."""

    def __init__(self, engine: CanaryEngine, spec: AnalysisSpec) -> None:
        assert spec.prometheus is not None
        self.engine = engine
        self.spec = spec
        self.setup_error = ""
        prom = spec.prometheus
        token = basic = None
        try:
            if prom.bearer_token is not None:
                token = _credential(prom.bearer_token, engine.spec)
            if prom.basic_auth is not None:
                basic = (prom.basic_auth[0], _credential(prom.basic_auth[1], engine.spec))
        except TemplateError as exc:
            self.setup_error = f"Prometheus credentials: {exc}"
        client = PrometheusClient(
            prom.url, timeout=prom.timeout, bearer_token=token, basic_auth=basic
        )
        instances: dict[str, str] = {}
        self.unseen: list[str] = []
        for name, rec in engine.recs.items():
            label = instance_label(rec.host)
            if label is None:
                self.unseen.append(name)
            else:
                instances[name] = label
        self.analysis = PrometheusAnalysis(spec, client, instances, analysis_values(engine.spec))
        self._no_data_since: dict[str, float] = {}
        self._joined: dict[str, float] = {}  # host -> when first seen in the new cohort
        self.last: dict[str, Judgement] = {}

    def cohorts(self) -> tuple[list[str], list[str]]:
        """(new, baseline): hosts serving the new version; hosts not yet touched.

        Serving means healthy, or done with every step and in health gating when no
        ``load_balancer`` holds it out of traffic until then: its users already get
        the new version, and waiting out ``healthy_after`` probes (4 s and more in the
        drills) before judging would add that much to every alert's latency. A young
        host's window still holds some old-version traffic, which can only dilute
        its numbers (never a false alarm of its own making)."""
        recs = self.engine.recs.values()
        serving: tuple[HostState, ...] = (HostState.HEALTHY,)
        if self.engine.spec.load_balancer is None:
            serving = (HostState.HEALTHY, HostState.VERIFYING)
        new = [r.name for r in recs if r.state in serving and not r.failed]
        base = [r.name for r in recs if r.state == HostState.PENDING and not r.changed]
        now = self.engine.clock.monotonic()
        for name in new:
            self._joined.setdefault(name, now)
        return new, base

    def settled_at(self) -> float:
        """When the youngest host of the new cohort will have served the new version
        for a whole window: before that, a query's range still holds old-version
        traffic of the same instances, and a pass proves little."""
        new, _ = self.cohorts()
        return max((self._joined[h] for h in new), default=0.0) + self.spec.window

    def start_notice(self) -> None:
        if self.unseen:
            shown = ", ".join(self.unseen[:8]) + (" ..." if len(self.unseen) > 8 else "")
            self.engine.emit(
                ev.Notice(
                    message=f"analysis cannot see {len(self.unseen)} host(s) in Prometheus "
                    f"(no prometheus_instance or metrics_port var): {shown}"
                )
            )

    async def judge(self) -> list[Judgement]:
        """Judge every metric now; each judgement is streamed."""
        new, base = self.cohorts()
        if self.setup_error and new:
            judgements = [
                Judgement(m.name, "no_data", f"{m.name}: {self.setup_error}", "", {})
                for m in self.spec.prometheus_metrics
            ]
        else:
            judgements = await self.analysis.judge(new, base)
        for j in judgements:
            self.last[j.metric] = j
            n = j.numbers
            metric = next(m for m in self.spec.metrics if m.name == j.metric)
            self.engine.emit(
                ev.AnalysisSample(
                    metric=j.metric,
                    verdict=j.verdict,
                    new_value=n.get("new_value"),
                    baseline_value=n.get("baseline_value"),
                    new_hosts=int(n.get("new_hosts", len(new))),
                    baseline_hosts=int(n.get("baseline_hosts", len(base))),
                    rule=str(n.get("rule", "")),
                    unit=metric.unit,
                    reason=j.reason,
                    max=metric.max,
                    max_vs_baseline=metric.max_vs_baseline,
                )
            )
        return judgements

    def _quiet(self) -> bool:
        c = self.engine.control
        return c.rolling_back or c.aborted or c.stopping or c.paused

    async def run(self) -> None:
        """The background loop: judge every interval while the new version rolls out."""
        self.start_notice()
        clock = self.engine.clock
        tick = clock.monotonic()
        while True:
            # A fixed rate: the queries' own time (a few hundred ms for 1,000
            # instances on a busy machine) is not added to every interval, which
            # would add it to an alert's latency too; but a slow Prometheus still
            # gets half an interval of rest between ticks (no back-to-back burst).
            tick = max(tick + self.spec.interval, clock.monotonic() + self.spec.interval / 2)
            await clock.sleep(tick - clock.monotonic())
            if self._quiet():
                self._no_data_since.clear()
                continue
            judgements = await self.judge()
            if self._quiet():
                continue
            now = clock.monotonic()
            seen = {j.metric for j in judgements}
            for metric in list(self._no_data_since):
                if metric not in seen:
                    del self._no_data_since[metric]
            for j in judgements:
                if j.verdict == "fail":
                    self._fire(j)  # quiet from now on until the operator resumes
                    break
                if j.verdict == "no_data":
                    since = self._no_data_since.setdefault(j.metric, now)
                    if now - since >= self.spec.window:
                        self._no_data(j, f"for {now - since:.0f}s")
                        self._no_data_since.clear()
                        break
                else:
                    self._no_data_since.pop(j.metric, None)

    async def gate_verdict(self, stop: Callable[[], bool], after: int) -> bool:
        """The last word of a bake: every metric judged on a window that holds only
        the new version's traffic (the bake extended until the youngest new host has
        served a whole window), then at most one more window for data; a failure
        fires ``on_failure``, no data ``on_no_data``. True if it stopped the rollout
        (or something else did meanwhile)."""
        engine, clock = self.engine, self.engine.clock
        settled = self.settled_at()
        deadline = max(clock.monotonic(), settled) + self.spec.window
        extended = False
        if clock.monotonic() < settled:
            extended = True
            engine.emit(
                ev.Notice(
                    message=f"bake after batch {after + 1} extended by "
                    f"{settled - clock.monotonic():.0f}s: the analysis judges a whole "
                    f"{self.spec.window:g}s window of the new version"
                )
            )
        while True:
            judgements = await self.judge()
            if stop():
                return True
            failed = [j for j in judgements if j.verdict == "fail"]
            if failed:
                self._fire(failed[0])
                return True
            missing = [j for j in judgements if j.verdict == "no_data"]
            if not missing and clock.monotonic() >= settled:
                if judgements:
                    engine.emit(ev.Notice(message=self._passed_words(judgements, after)))
                return stop()
            if missing and clock.monotonic() >= deadline:
                self._no_data(missing[0], f"at the gate after batch {after + 1}")
                return True
            if missing and not extended:
                extended = True
                engine.emit(
                    ev.Notice(
                        message=f"bake after batch {after + 1} extended: no verdict yet "
                        f"({missing[0].reason}); waiting up to {self.spec.window:g}s"
                    )
                )
            if await engine.control.wait_for(stop, timeout=self.spec.interval):
                return True

    def _passed_words(self, judgements: list[Judgement], after: int) -> str:
        parts = []
        for j in judgements:
            n = j.numbers
            unit = str(n.get("unit", ""))
            base = n.get("baseline_value")
            vs = f" vs baseline {format_metric(base, unit)}" if base is not None else ""
            parts.append(f"{j.metric} {format_metric(n.get('new_value'), unit)}{vs}")
        return f"analysis passed after batch {after + 1}: " + "; ".join(parts)

    def _fire(self, j: Judgement) -> None:
        spec = self.engine.spec
        action, note = on_failure_action(spec.on_failure, bool(spec.rollback.steps))
        self._alert(j, f"analysis.{j.metric}.{j.rule}", j.reason + note, action, "on_failure")

    def _no_data(self, j: Judgement, when: str) -> None:
        spec = self.engine.spec
        action, note = on_failure_action(self.spec.on_no_data, bool(spec.rollback.steps))
        message = f"no verdict {when}: {j.reason}{note}"
        self._alert(j, f"analysis.{j.metric}.no_data", message, action, "on_no_data")

    def _alert(self, j: Judgement, rule: str, message: str, action: str, why: str) -> None:
        numbers: dict[str, Any] = dict(j.numbers)
        self.engine.emit(
            ev.Alert(level="critical", rule=rule, message=message, numbers=numbers, action=action)
        )
        self.engine.policy(action, f"{why}: {rule}")
