"""The combination × metric tables of the page, and the masked copy of a result that every report is built from.

The CSVs and the HTML page read the same masked result and the same grid, so the numbers a person sees and the
numbers a script reads cannot disagree. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.experiments.results import ExperimentResult, LineResult, RunResult, VariantDefinition
from shared.experiments.scoring import Combination, Grid, best_keys, mean_scores
from shared.redaction import redact, redact_text

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


def _redact_definition(definition: VariantDefinition) -> VariantDefinition:
    return definition.model_copy(update={
        "inputs": redact(definition.inputs),
        "text": redact_text(definition.text) if definition.text else definition.text,
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
        "variant_definitions": [_redact_definition(definition) for definition in result.variant_definitions],
    })
    # Then every other string too (names, labels, variant values...): a known secret is masked wherever it is.
    return Redacted(ExperimentResult.model_validate(redact(by_name.model_dump(mode="json"), by_name=False)))


# --- cells ------------------------------------------------------------------------------------------------


def format_number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


# --- combination × metric tables --------------------------------------------------------------------------

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
    columns = [metric.title for metric in grid.metrics] + ["lines", "failed", "compute", "tokens"]
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
    columns = [metric.title for metric in grid.metrics] + ["lines", "failed", "compute", "tokens"]
    return VariantTable(id="overall", title="All datasets (mean)", columns=columns, rows=rows)
