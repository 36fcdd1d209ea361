"""Post-production evaluation, the parts without I/O: which logged requests a run judges, how a request becomes an
evaluator's inputs, and what the evaluators' per-line outputs add up to per deployment.

Sampling is by a hash of the request id, so a redelivered run picks the very same lines; the lines already judged
are remembered (`JudgingState.judged`) for as long as the lookback can read them again, so none is judged twice.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from shared.experiments.mappings import resolve_inputs
from shared.experiments.monitoring_config import MetricThreshold, ProductionEvaluationConfig, ProductionEvaluator
from shared.monitoring.production_log import ProductionLine


class JudgingState(BaseModel):
    """What the evaluation remembers of a use case (system/production-evaluation/{use_case}.json)."""

    last_run: datetime | None = Field(default=None, description="The last schedule firing judged")
    judged: dict[str, datetime] = Field(default_factory=dict, description="request id -> its time, within lookback")
    running: datetime | None = Field(default=None, description="The firing a run is judging now (a lease)")
    running_until: datetime | None = None

    def busy(self, window_end: datetime, now: datetime) -> bool:
        """Another firing's run holds the lease: this one would judge the same lines."""
        return (self.running is not None and self.running != window_end and self.running_until is not None
                and now < self.running_until)

    def remember(self, lines: Iterable[ProductionLine], window_end: datetime, lookback: timedelta) -> None:
        """Record `lines` as judged and forget those the next run's lookback can no longer read."""
        self.judged.update({line.request_id: line.time for line in lines})
        self.judged = {rid: time for rid, time in self.judged.items() if time >= window_end - lookback}
        self.last_run = window_end
        self.running = self.running_until = None


class JudgedLine(BaseModel):
    """One production request as judged: what was asked and answered, and each evaluator's numeric outputs."""

    request_id: str
    deployment: str
    time: datetime
    inputs: Any = None
    outputs: Any = None
    scores: dict[str, float] = Field(default_factory=dict, description="'<evaluator>.<output>' -> value")
    errors: list[str] = Field(default_factory=list, description="why an evaluator gave no score")


class DeploymentResult(BaseModel):
    deployment: str
    lines: int
    failed_lines: int
    metrics: dict[str, float] = Field(default_factory=dict, description="mean over the lines that have the score")
    breaches: list[str] = Field(default_factory=list)


def is_sampled(request_id: str, rate: float) -> bool:
    """Deterministic: the same request is in or out of the sample however often it is looked at."""
    bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return bucket < rate


def judgeable(line: ProductionLine) -> bool:
    """Routed requests that got an answer: pinned smoke tests are not users' traffic, failures are the monitor's."""
    return line.deployment is not None and not line.pinned and not line.failed and line.outputs is not None


def select_lines(lines: Sequence[ProductionLine], state: JudgingState,
                 config: ProductionEvaluationConfig) -> tuple[list[ProductionLine], int]:
    """The sampled lines not judged yet, at most `max_lines`, taken in turn from each deployment (oldest first) so
    a small share of traffic still gets judged; returns (chosen, how many sampled new lines were left over)."""
    fresh = [line for line in lines if judgeable(line) and line.request_id not in state.judged
             and is_sampled(line.request_id, config.sample_rate)]
    by_deployment: dict[str, list[ProductionLine]] = {}
    for line in sorted(fresh, key=lambda line: line.time):
        by_deployment.setdefault(str(line.deployment), []).append(line)
    ranked = sorted(((rank, line.time, line) for queue in by_deployment.values() for rank, line in enumerate(queue)),
                    key=lambda item: item[:2])
    chosen = [line for _, _, line in ranked[:config.max_lines]]
    return sorted(chosen, key=lambda line: line.time), len(fresh) - len(chosen)


def evaluator_inputs(evaluator: ProductionEvaluator, line: ProductionLine) -> dict[str, Any]:
    """The evaluator's inputs for one request, by the mapping experiment evaluators use: `${data.x}` and
    `${run.inputs.x}` read the request, `${run.outputs.x}` the answer. Raises MappingError when a field is absent."""
    inputs = line.inputs if isinstance(line.inputs, dict) else {}
    outputs = line.outputs if isinstance(line.outputs, dict) else {}
    return resolve_inputs(evaluator.mappings, data=inputs, run_outputs=outputs, run_inputs=inputs)


def numeric_scores(evaluator: str, outputs: dict[str, Any] | None) -> dict[str, float]:
    """The evaluator's numeric (and boolean, as 0/1) outputs, named `<evaluator>.<output>`."""
    scores = {}
    for name, value in (outputs or {}).items():
        if isinstance(value, bool | int | float) and math.isfinite(float(value)):
            scores[f"{evaluator}.{name}"] = float(value)
    return scores


def breaches(metrics: dict[str, float], thresholds: Sequence[MetricThreshold]) -> list[str]:
    found = []
    for threshold in thresholds:
        value = metrics.get(threshold.metric)
        if value is None:
            continue
        if threshold.min is not None and value < threshold.min:
            found.append(f"{threshold.metric} {value:.3g} < {threshold.min:g}")
        if threshold.max is not None and value > threshold.max:
            found.append(f"{threshold.metric} {value:.3g} > {threshold.max:g}")
    return found


def per_deployment(lines: Sequence[JudgedLine], config: ProductionEvaluationConfig) -> list[DeploymentResult]:
    """Means per deployment and metric; thresholds are only held against `min_lines` scored lines or more."""
    by_deployment: dict[str, list[JudgedLine]] = {}
    for line in lines:
        by_deployment.setdefault(line.deployment, []).append(line)
    results = []
    for name, judged in sorted(by_deployment.items()):
        values: dict[str, list[float]] = {}
        for line in judged:
            for metric, value in line.scores.items():
                values.setdefault(metric, []).append(value)
        metrics = {metric: statistics.fmean(found) for metric, found in sorted(values.items())}
        scored = sum(1 for line in judged if line.scores and not line.errors)
        results.append(DeploymentResult(
            deployment=name, lines=len(judged), failed_lines=sum(1 for line in judged if line.errors),
            metrics=metrics, breaches=breaches(metrics, config.thresholds) if scored >= config.min_lines else []))
    return results


def worst_lines(lines: Sequence[JudgedLine], metric: str | None, count: int = 20) -> list[JudgedLine]:
    """Failed lines first, then the lowest `metric` (a ranking without a metric shows the failed ones only)."""
    failed = [line for line in lines if line.errors]
    scored = sorted((line for line in lines if not line.errors and metric in line.scores),
                    key=lambda line: line.scores[str(metric)])
    return [*failed, *scored][:count]
