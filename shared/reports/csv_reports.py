"""results.csv and metrics.csv: every row, properly quoted by the csv module, UTF-8.

results.csv has one row per line of every standard run: its inputs, the expected answer the evaluators were given
(`expected.<evaluator>.<input>`, from their column mappings), its outputs and per-line scores. metrics.csv has one
row per standard run × evaluation run."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from shared.experiments.results import ExperimentResult, RunResult
from shared.experiments.scoring import evaluator_name, first_seen
from shared.reports.lines import expected_columns, expected_values, line_scores
from shared.reports.tables import Redacted, redacted


def csv_cell(value: Any) -> Any:
    """A CSV value: dicts/lists as JSON (so a cell round-trips), booleans as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return value


def node_names(runs: list[RunResult]) -> list[str]:
    return sorted({node for run in runs for node in run.variant})


def results_header(result: ExperimentResult) -> list[str]:
    runs = result.standard_runs
    lines = [line for run in runs for line in run.lines]
    inputs = first_seen(key for line in lines for key in line.inputs)
    outputs = first_seen(key for line in lines for key in (line.outputs or {}))
    scores = first_seen(
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
        *expected_columns(result),
        *(f"output.{key}" for key in outputs),
        *scores,
        "error", "duration_ms", "tokens",
    ]


def results_rows(result: ExperimentResult, header: list[str]) -> Iterator[list[Any]]:
    """One row per line of every standard run, in run order then line order — never a page of them."""
    expected = {dataset: expected_values(result, dataset) for dataset in {run.dataset for run in result.standard_runs}}
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
            row.update(expected[run.dataset].get(line.line_number, {}))
            row.update(scores.get(line.line_number, {}))
            yield [csv_cell(row.get(column)) for column in header]


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


def _encode(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # excel dialect: RFC 4180 quoting, so newlines and commas in outputs survive
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def results_csv(result: ExperimentResult | Redacted) -> bytes:
    """Every line of every standard run, with inputs, expected answers, outputs and the per-line scores joined on
    line_number."""
    safe = redacted(result).result
    header = results_header(safe)
    return _encode(header, results_rows(safe, header))


def metrics_csv(result: ExperimentResult | Redacted) -> bytes:
    """One row per standard run × evaluation run, with the aggregated metrics and the run's totals."""
    safe = redacted(result).result
    header = metrics_header(safe)
    return _encode(header, metrics_rows(safe, header))
