"""Rows for the reports, as pure functions of an ExperimentResult.

The CSVs and the HTML page read the same rows, so the numbers a person sees and the numbers a script
reads cannot disagree. Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.experiments.results import ExperimentResult, LineResult, RunResult
from shared.redaction import redact, redact_text

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


# --- redaction --------------------------------------------------------------------------------------------


def _redact_line(line: LineResult) -> LineResult:
    return line.model_copy(update={
        "inputs": redact(line.inputs),
        "outputs": redact(line.outputs),
        "error": redact_text(line.error) if line.error else line.error,
    })


def _redact_run(run: RunResult) -> RunResult:
    return run.model_copy(update={
        "hyperparameters": redact(run.hyperparameters),
        "error": redact_text(run.error) if run.error else run.error,
        "lines": [_redact_line(line) for line in run.lines],
    })


@dataclass(frozen=True)
class Redacted:
    """An ExperimentResult that went through `redacted`: the only form the report builders publish.

    A type, not a flag, so an unmasked result cannot be passed off as masked; the writer masks once and
    hands the same copy to every file."""
    result: ExperimentResult


def redacted(result: ExperimentResult | Redacted) -> Redacted:
    """A copy safe to publish: secret-named fields of inputs, outputs, hyperparameters and decisions masked whole,
    and known secret values and credential shapes masked in every string."""
    if isinstance(result, Redacted):
        return result
    by_name = result.model_copy(update={
        "failures": [redact_text(failure) for failure in result.failures],
        "standard_runs": [_redact_run(run) for run in result.standard_runs],
        "evaluation_runs": [_redact_run(run) for run in result.evaluation_runs],
        "decisions": redact(result.decisions),
    })
    # Then every other string too (names, labels, variant values...): a known secret is masked wherever it is.
    return Redacted(ExperimentResult.model_validate(redact(by_name.model_dump(mode="json"), by_name=False)))


# --- cells ------------------------------------------------------------------------------------------------


def csv_cell(value: Any) -> Any:
    """A CSV value: dicts/lists as JSON (so a cell round-trips), booleans as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return value


def finite(value: Any) -> float | None:
    """The value as a float when it is a real, finite number — NaN or a string never wins a verdict."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def evaluator_name(run: RunResult) -> str:
    return run.evaluator or run.flow


def _first_seen(values: Iterator[str]) -> list[str]:
    # dict keeps insertion order: deterministic for the same result, and keeps dataset column order
    return list(dict.fromkeys(values))


def node_names(runs: list[RunResult]) -> list[str]:
    return sorted({node for run in runs for node in run.variant})


# --- results.csv ------------------------------------------------------------------------------------------


def line_scores(result: ExperimentResult, run: RunResult) -> dict[int, dict[str, Any]]:
    """Per-line outputs of the evaluation runs that scored `run`, as {line_number: {score column: value}}."""
    scores: dict[int, dict[str, Any]] = {}
    for evaluation in result.evaluations_of(run.run_id):
        prefix = f"score.{evaluator_name(evaluation)}."
        for line in evaluation.lines:
            for key, value in (line.outputs or {}).items():
                scores.setdefault(line.line_number, {})[prefix + key] = value
    return scores


def results_header(result: ExperimentResult) -> list[str]:
    runs = result.standard_runs
    lines = [line for run in runs for line in run.lines]
    inputs = _first_seen(key for line in lines for key in line.inputs)
    outputs = _first_seen(key for line in lines for key in (line.outputs or {}))
    scores = _first_seen(
        f"score.{evaluator_name(evaluation)}.{key}"
        for evaluation in result.evaluation_runs
        for line in evaluation.lines
        for key in (line.outputs or {})
    )
    return [
        "experiment_id", "run_id", "dataset", "variant",
        *(f"variant.{node}" for node in node_names(runs)),
        "hyperparameters", "line_number",
        *(f"input.{key}" for key in inputs),
        *(f"output.{key}" for key in outputs),
        *scores,
        "error", "duration_ms", "tokens",
    ]


def results_rows(result: ExperimentResult, header: list[str]) -> Iterator[list[Any]]:
    """One row per line of every standard run, in run order then line order — never a page of them."""
    for run in result.standard_runs:
        scores = line_scores(result, run)
        for line in sorted(run.lines, key=lambda item: item.line_number):
            row: dict[str, Any] = {
                "experiment_id": result.experiment_id,
                "run_id": run.run_id,
                "dataset": run.dataset,
                "variant": run.label,
                "hyperparameters": run.hyperparameters,
                "line_number": line.line_number,
                "error": line.error,
                "duration_ms": line.duration_ms,
                "tokens": line.tokens,
            }
            row.update({f"variant.{node}": variant for node, variant in run.variant.items()})
            row.update({f"input.{key}": value for key, value in line.inputs.items()})
            row.update({f"output.{key}": value for key, value in (line.outputs or {}).items()})
            row.update(scores.get(line.line_number, {}))
            yield [csv_cell(row.get(column)) for column in header]


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


def metrics_header(result: ExperimentResult) -> list[str]:
    names = list(dict.fromkeys(name for run in result.evaluation_runs for name in run.metrics))
    return [
        "experiment_id", "run_id", "dataset", "variant",
        *(f"variant.{node}" for node in node_names(result.standard_runs)),
        "hyperparameters", "status", "evaluator", "evaluation_run_id", "evaluation_status",
        *(f"metric.{name}" for name in names),
        "lines", "failed_lines", "duration_seconds", "tokens",
    ]


def metrics_rows(result: ExperimentResult, header: list[str]) -> Iterator[list[Any]]:
    """One row per standard run × evaluation run; a run nobody scored (e.g. it failed) still gets one row."""
    for run in result.standard_runs:
        base: dict[str, Any] = {
            "experiment_id": result.experiment_id,
            "run_id": run.run_id,
            "dataset": run.dataset,
            "variant": run.label,
            "hyperparameters": run.hyperparameters,
            "status": run.status,
            "lines": len(run.lines),
            "failed_lines": run.failed_lines,
            "duration_seconds": run.duration_seconds,
            "tokens": run.tokens,
        }
        base.update({f"variant.{node}": variant for node, variant in run.variant.items()})
        evaluations = result.evaluations_of(run.run_id)
        for evaluation in evaluations or [None]:
            row = dict(base)
            if evaluation is not None:
                row.update({
                    "evaluator": evaluator_name(evaluation),
                    "evaluation_run_id": evaluation.run_id,
                    "evaluation_status": evaluation.status,
                })
                row.update({f"metric.{name}": value for name, value in evaluation.metrics.items()})
            yield [csv_cell(row.get(column)) for column in header]


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
    grid = Grid(combinations=[], datasets=_first_seen(run.dataset for run in result.standard_runs),
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
        if counted and all(value is not None for value in counted):
            means[combination.id] = sum(counted) / len(counted)  # type: ignore[arg-type]
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


@dataclass
class TableCell:
    text: str
    sort_value: str       # what the sorting script compares; numbers as repr, empty sorts last
    best: bool = False
    muted: bool = False


@dataclass
class TableRow:
    combination: Combination
    status: str           # "completed", "failed", or "missing" (no run of this combination on the dataset)
    cells: list[TableCell]


@dataclass
class VariantTable:
    id: str
    title: str
    columns: list[str]    # after the combination column
    rows: list[TableRow]


def format_number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _metric_cells(values: list[float | None], grid: Grid, scores_by_metric: list[dict[str, float]],
                  combination: Combination) -> list[TableCell]:
    cells = []
    for metric, value, scores in zip(grid.metrics, values, scores_by_metric, strict=True):
        best = combination.id in best_keys(scores, metric.direction)
        cells.append(TableCell(format_number(value), "" if value is None else repr(value), best=best,
                               muted=value is None))
    return cells


def dataset_table(grid: Grid, dataset: str) -> VariantTable:
    """Combinations × metrics on one dataset, plus the run's lines, failures, duration and tokens."""
    scores_by_metric = [
        {c.id: v for c in grid.combinations if (v := grid.value(c, dataset, metric)) is not None}
        for metric in grid.metrics
    ]
    rows = []
    for combination in grid.combinations:
        run = grid.runs.get((combination.id, dataset))
        values = [grid.value(combination, dataset, metric) for metric in grid.metrics]
        cells = _metric_cells(values, grid, scores_by_metric, combination)
        if run is None:
            cells += [TableCell("—", "", muted=True) for _ in range(4)]
        else:
            cells += [
                TableCell(f"{len(run.lines):,}", str(len(run.lines))),
                TableCell(f"{run.failed_lines:,}", str(run.failed_lines), muted=run.failed_lines == 0),
                TableCell(f"{run.duration_seconds:.1f}s", repr(run.duration_seconds)),
                TableCell(f"{run.tokens:,}", str(run.tokens)),
            ]
        rows.append(TableRow(combination, run.status if run else "missing", cells))
    columns = [metric.title for metric in grid.metrics] + ["lines", "failed", "duration", "tokens"]
    return VariantTable(id=f"dataset-{grid.datasets.index(dataset) + 1}", title=dataset, columns=columns, rows=rows)


def overall_table(grid: Grid) -> VariantTable:
    """Combinations × metrics as the mean over datasets — the numbers the verdict is decided on."""
    scores_by_metric = [mean_scores(grid, metric) for metric in grid.metrics]
    rows = []
    for combination in grid.combinations:
        values = [scores.get(combination.id) for scores in scores_by_metric]
        runs = [run for dataset in grid.datasets if (run := grid.runs.get((combination.id, dataset)))]
        failed = sum(run.failed_lines for run in runs)
        cells = _metric_cells(values, grid, scores_by_metric, combination)
        cells += [
            TableCell(f"{sum(len(run.lines) for run in runs):,}", str(sum(len(run.lines) for run in runs))),
            TableCell(f"{failed:,}", str(failed), muted=failed == 0),
            TableCell(f"{sum(run.duration_seconds for run in runs):.1f}s", repr(sum(r.duration_seconds for r in runs))),
            TableCell(f"{sum(run.tokens for run in runs):,}", str(sum(run.tokens for run in runs))),
        ]
        status = "failed" if any(run.status == "failed" for run in runs) else "completed"
        rows.append(TableRow(combination, status, cells))
    columns = [metric.title for metric in grid.metrics] + ["lines", "failed", "duration", "tokens"]
    return VariantTable(id="overall", title="All datasets (mean)", columns=columns, rows=rows)


@dataclass
class FailedLine:
    combination: Combination
    run: RunResult
    line_number: int
    error: str


def failed_lines(grid: Grid) -> list[FailedLine]:
    """Every failed line of every standard run, in table order — none left out."""
    found = []
    for combination in grid.combinations:
        for dataset in grid.datasets:
            run = grid.runs.get((combination.id, dataset))
            if run is None:
                continue
            found += [
                FailedLine(combination, run, line.line_number, line.error or "")
                for line in sorted(run.lines, key=lambda item: item.line_number) if line.failed
            ]
    return found


@dataclass
class SampleLine:
    line_number: int
    inputs: str
    outputs: str
    scores: str
    error: str | None


def _compact(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sample_lines(result: ExperimentResult, run: RunResult, limit: int = 5, width: int = 240) -> list[SampleLine]:
    """The first `limit` lines of a run, shortened for reading on the page (results.csv has them all, whole)."""
    scores = line_scores(result, run)
    return [
        SampleLine(
            line_number=line.line_number,
            inputs=_compact(line.inputs, width),
            outputs=_compact(line.outputs, width) if line.outputs is not None else "",
            scores=_compact({k.removeprefix("score."): v for k, v in scores.get(line.line_number, {}).items()}, width)
            if scores.get(line.line_number) else "",
            error=line.error,
        )
        for line in sorted(run.lines, key=lambda item: item.line_number)[:limit]
    ]
