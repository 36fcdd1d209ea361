"""The quality gate: pick the best variant combination by a primary metric, then check it against thresholds —
absolute (accuracy >= 0.8) and relative to the version deployed now (no more than 0.02 worse).

Declared in experiment.yaml (per environment through the overlays, which replace the whole block):

    gate:
      primary_metric: accuracy          # or evaluator.metric when two evaluators share a metric name
      thresholds:
      - {metric: accuracy, min: 0.8}
      - {metric: error_rate, max: 0.2}
      - {metric: accuracy, max_drop: 0.02}   # vs the deployed version; skipped (and said so) when none is deployed

Values are means over the experiment's datasets, counting only combinations measured on every dataset — the same
rule the report's verdict uses, so the gate and the report never disagree about the winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.experiments.results import ExperimentResult
from shared.experiments.scoring import Combination, MetricColumn, best_keys, build_grid, mean_scores


class GateConfigError(ValueError):
    pass


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    min: float | None = Field(default=None, description="absolute: the best combination's value must be >= min")
    max: float | None = Field(default=None, description="absolute: the best combination's value must be <= max")
    max_drop: float | None = Field(default=None, ge=0,
                                   description="relative: at most this much worse than the deployed version")

    @model_validator(mode="after")
    def _exactly_one(self) -> Threshold:
        if sum(value is not None for value in (self.min, self.max, self.max_drop)) != 1:
            raise ValueError(f"threshold on {self.metric!r}: give exactly one of min, max, max_drop")
        return self


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_metric: str
    thresholds: list[Threshold] = Field(default_factory=list)


class Baseline(BaseModel):
    """The version deployed now, with the metrics it was approved on."""

    flow_version: str
    metrics: dict[str, float]


class Check(BaseModel):
    metric: str
    comparison: Literal[">=", "<=", "max_drop"]
    threshold: float
    actual: float | None
    passed: bool
    note: str = ""


class GateVerdict(BaseModel):
    passed: bool
    primary_metric: str
    best_variant: dict[str, str]
    best_hyperparameters: dict[str, object]
    best_metrics: dict[str, float]
    best_value: float | None
    checks: list[Check]
    reasons: list[str]
    baseline_version: str | None


def _column(columns: list[MetricColumn], name: str) -> MetricColumn:
    """`accuracy` or `math_accuracy.accuracy`; ambiguous or unknown names are configuration errors."""
    matches = [c for c in columns if name in (c.name, f"{c.evaluator}.{c.name}")]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted({c.name for c in columns} | {f"{c.evaluator}.{c.name}" for c in columns})) or "none"
    problem = "is ambiguous (qualify it as evaluator.metric)" if matches else "was not measured"
    raise GateConfigError(f"gate metric {name!r} {problem}; metrics of this experiment: {known}")


def evaluate_gate(result: ExperimentResult, gate: GateConfig, baseline: Baseline | None) -> GateVerdict:
    grid = build_grid(result)
    if not result.evaluation_runs:
        return _unevaluated(grid.combinations[0] if grid.combinations else None, gate, baseline)
    primary = _column(grid.metrics, gate.primary_metric)
    means = mean_scores(grid, primary)
    winners = best_keys(means, primary.direction)
    if not winners:
        return GateVerdict(passed=False, primary_metric=gate.primary_metric, best_variant={}, best_hyperparameters={},
                           best_metrics={}, best_value=None, checks=[], baseline_version=None,
                           reasons=[f"no combination has a value for {gate.primary_metric} on every dataset"])
    # Ties go to the first combination in the experiment's order (the all-defaults baseline comes first).
    best = next(c for c in grid.combinations if c.id == winners[0])
    best_metrics = {f"{c.evaluator}.{c.name}": value for c in grid.metrics
                    if (value := mean_scores(grid, c).get(best.id)) is not None}
    checks = [_check(threshold, _column(grid.metrics, threshold.metric), best_metrics, baseline)
              for threshold in gate.thresholds]
    reasons = [f"{c.metric} {c.comparison} {c.threshold:g} failed: actual {_show(c.actual)}"
               + (f" ({c.note})" if c.note else "") for c in checks if not c.passed]
    return GateVerdict(
        passed=not reasons, primary_metric=gate.primary_metric, best_variant=best.variant,
        best_hyperparameters=best.hyperparameters, best_metrics=best_metrics, best_value=means[best.id],
        checks=checks, reasons=reasons, baseline_version=baseline.flow_version if baseline else None,
    )


def _unevaluated(first: Combination | None, gate: GateConfig, baseline: Baseline | None) -> GateVerdict:
    """No evaluator ran (e.g. a pr overlay with `evaluators:` empty), so nothing was measured: nothing ranks the
    combinations (the first, all defaults, stands) and no threshold can be checked, so each one fails. With no
    thresholds, the flow having run on every line (the experiment completed) is what passes."""
    reasons = [f"{threshold.metric}: no evaluator ran in this environment, so this threshold cannot be checked"
               for threshold in gate.thresholds]
    return GateVerdict(passed=not reasons, primary_metric=gate.primary_metric,
                       best_variant=first.variant if first else {},
                       best_hyperparameters=first.hyperparameters if first else {}, best_metrics={}, best_value=None,
                       checks=[], reasons=reasons, baseline_version=baseline.flow_version if baseline else None)


def _check(threshold: Threshold, column: MetricColumn, best: Mapping[str, float], baseline: Baseline | None) -> Check:
    key = f"{column.evaluator}.{column.name}"
    actual = best.get(key)
    if threshold.max_drop is None:
        comparison, limit = (">=", threshold.min) if threshold.min is not None else ("<=", threshold.max)
        assert limit is not None  # guaranteed by Threshold's validator
        passed = actual is not None and (actual >= limit if comparison == ">=" else actual <= limit)
        return Check(metric=threshold.metric, comparison=comparison, threshold=limit, actual=actual, passed=passed)
    deployed = None if baseline is None else baseline.metrics.get(key, baseline.metrics.get(column.name))
    if deployed is None:
        note = "no deployed version yet" if baseline is None else f"version {baseline.flow_version} has no value"
        return Check(metric=threshold.metric, comparison="max_drop", threshold=threshold.max_drop, actual=actual,
                     passed=True, note=f"skipped: {note}")
    assert baseline is not None  # deployed is only set when there is a baseline
    passed = actual is not None and _worsening(actual, deployed, column.direction) <= threshold.max_drop + 1e-12
    return Check(metric=threshold.metric, comparison="max_drop", threshold=threshold.max_drop, actual=actual,
                 passed=passed, note=f"deployed version {baseline.flow_version}: {deployed:g}")


def _worsening(actual: float, deployed: float, direction: str) -> float:
    """How much worse than the deployed version (negative when better)."""
    return deployed - actual if direction == "higher" else actual - deployed


def _show(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"
