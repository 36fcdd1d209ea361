"""Scoring: the variant × metric grid (standard runs placed by (combination, dataset) with their evaluations'
metrics) and the verdict (best combination per metric) read from it. The quality gate decides on this grid and the
reports draw it, so they never disagree about the winner; the gate imports nothing from shared.reports. Pure
functions; nothing here does I/O."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.experiments.results import ExperimentResult, RunResult

Direction = Literal["higher", "lower"]
MetricKey = tuple[str, str]  # (evaluator, metric name)

# Substrings of a metric name that mean "smaller is better"; everything else is higher-better.
LOWER_IS_BETTER = ("error", "loss", "latency", "distance", "duration", "cost", "perplexity")


def better_direction(metric: str) -> Direction:
    """Which way a metric improves: "higher" by default, "lower" when its name contains one of LOWER_IS_BETTER.

    Matched case-insensitively on the metric name, so `mean_squared_error`, `LatencyMs`, `edit_distance`
    and `loss` are lower-better, while `accuracy`, `f1_score` or `groundedness` are higher-better."""
    name = metric.lower()
    return "lower" if any(word in name for word in LOWER_IS_BETTER) else "higher"


def finite(value: Any) -> float | None:
    """The value as a float when it is a real, finite number — NaN or a string never wins a verdict."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def evaluator_name(run: RunResult) -> str:
    return run.evaluator or run.flow


def first_seen(values: Iterator[str]) -> list[str]:
    # dict keeps insertion order: deterministic for the same result, and keeps dataset column order
    return list(dict.fromkeys(values))


# --- metrics ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricColumn:
    evaluator: str
    name: str
    title: str  # the bare name, or "evaluator/name" when two evaluators report the same name

    @property
    def key(self) -> MetricKey:
        return (self.evaluator, self.name)

    @property
    def direction(self) -> Direction:
        return better_direction(self.name)


def metric_columns(result: ExperimentResult) -> list[MetricColumn]:
    keys = list(dict.fromkeys(
        (evaluator_name(run), name) for run in result.evaluation_runs for name in run.metrics
    ))
    counts: dict[str, int] = {}
    for _, name in keys:
        counts[name] = counts.get(name, 0) + 1
    return [MetricColumn(ev, name, name if counts[name] == 1 else f"{ev}/{name}") for ev, name in keys]


# --- variant × metric grid (the HTML tables, charts and verdict) ------------------------------------------


@dataclass
class Combination:
    id: str      # short, stable within one report: "C1", "C2", ... in order of first appearance
    label: str   # RunResult.label: the full node=variant, hyperparameter=value description
    variant: dict[str, str]
    hyperparameters: dict[str, Any]


@dataclass
class Grid:
    combinations: list[Combination]
    datasets: list[str]
    metrics: list[MetricColumn]
    runs: dict[tuple[str, str], RunResult] = field(default_factory=dict)  # (combination id, dataset) -> run
    values: dict[tuple[str, str], dict[MetricKey, float]] = field(default_factory=dict)

    def value(self, combination: Combination, dataset: str, metric: MetricColumn) -> float | None:
        return self.values.get((combination.id, dataset), {}).get(metric.key)


def build_grid(result: ExperimentResult) -> Grid:
    """Standard runs placed by (combination, dataset), with the metrics of their completed evaluations.

    Metrics of a failed standard run or a failed evaluation are left out: they must not win anything."""
    combinations: dict[str, Combination] = {}
    grid = Grid(combinations=[], datasets=first_seen(run.dataset for run in result.standard_runs),
                metrics=metric_columns(result))
    for run in result.standard_runs:
        combination = combinations.get(run.label)
        if combination is None:
            combination = Combination(f"C{len(combinations) + 1}", run.label, run.variant, run.hyperparameters)
            combinations[run.label] = combination
        grid.runs[(combination.id, run.dataset)] = run
        values: dict[MetricKey, float] = {}
        if run.status == "completed":
            for evaluation in result.evaluations_of(run.run_id):
                if evaluation.status != "completed":
                    continue
                for name, raw in evaluation.metrics.items():
                    number = finite(raw)
                    if number is not None:
                        values[(evaluator_name(evaluation), name)] = number
        grid.values[(combination.id, run.dataset)] = values
    grid.combinations = list(combinations.values())
    return grid


def mean_scores(grid: Grid, metric: MetricColumn) -> dict[str, float]:
    """Mean over datasets per combination id, counting only combinations measured on every dataset where the
    metric was measured at all — a combination that failed on the hard dataset cannot win on the easy one."""
    measured = measured_datasets(grid, metric)
    means: dict[str, float] = {}
    for combination in grid.combinations:
        counted = [grid.value(combination, dataset, metric) for dataset in measured]
        values = [value for value in counted if value is not None]
        if values and len(values) == len(counted):
            means[combination.id] = sum(values) / len(values)
    return means


def measured_datasets(grid: Grid, metric: MetricColumn) -> list[str]:
    """The datasets on which at least one combination has a value for `metric`."""
    return [
        dataset for dataset in grid.datasets
        if any(grid.value(combination, dataset, metric) is not None for combination in grid.combinations)
    ]


def best_keys(scores: dict[str, float], direction: Direction) -> list[str]:
    """The keys holding the best score (all of them on a tie)."""
    if not scores:
        return []
    target = max(scores.values()) if direction == "higher" else min(scores.values())
    return [key for key, score in scores.items() if math.isclose(score, target, rel_tol=1e-12, abs_tol=1e-12)]


@dataclass
class Verdict:
    metric: MetricColumn
    best: list[Combination]       # ties are all named
    value: float | None           # the best mean over datasets
    datasets: int                 # how many datasets the mean is over
    runner_up: Combination | None
    runner_up_value: float | None
    per_dataset: list[tuple[str, list[Combination], float]]  # (dataset, best combinations, value)


def verdicts(grid: Grid) -> list[Verdict]:
    by_id = {combination.id: combination for combination in grid.combinations}
    found: list[Verdict] = []
    for metric in grid.metrics:
        means = mean_scores(grid, metric)
        best = best_keys(means, metric.direction)
        rest = {key: value for key, value in means.items() if key not in best}
        runner = best_keys(rest, metric.direction)[:1]
        per_dataset = []
        for dataset in grid.datasets:
            scores = {
                combination.id: value for combination in grid.combinations
                if (value := grid.value(combination, dataset, metric)) is not None
            }
            winners = best_keys(scores, metric.direction)
            if winners:
                per_dataset.append((dataset, [by_id[key] for key in winners], scores[winners[0]]))
        found.append(Verdict(
            metric=metric,
            best=[by_id[key] for key in best],
            value=means[best[0]] if best else None,
            datasets=len(measured_datasets(grid, metric)),
            runner_up=by_id[runner[0]] if runner else None,
            runner_up_value=rest[runner[0]] if runner else None,
            per_dataset=per_dataset,
        ))
    return found
