"""Turning a configured experiment into runs: combinations x datasets, and evaluations of each run's lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.blob_layout import safe_segment
from shared.experiments.config import ExperimentConfig
from shared.experiments.mappings import default_mapping, resolve_inputs
from shared.experiments.results import RunResult
from shared.experiments.runner import RunSpec
from shared.experiments.variants import Combination

Rows = list[dict[str, Any]]


def standard_runs(config: ExperimentConfig, experiment_id: str, combinations: Sequence[tuple[Combination, Path]],
                  rows_by_dataset: Mapping[str, Rows], flow_inputs: Sequence[str]) -> list[RunSpec]:
    specs = []
    for combination, flow_dir in combinations:
        for dataset in config.datasets:
            if dataset.name not in rows_by_dataset:
                continue
            rows = rows_by_dataset[dataset.name]
            mapping = dataset.mappings or default_mapping(flow_inputs, rows[0].keys())
            specs.append(RunSpec(
                run_id=f"{experiment_id}.{safe_segment(combination.id)}.{safe_segment(dataset.name)}",
                kind="standard", flow_dir=flow_dir, flow=config.flow or config.name, dataset=dataset.name,
                rows=[resolve_inputs(mapping, row) for row in rows], variant=combination.variant,
                hyperparameters=combination.hyperparameters,
            ))
    return specs


def evaluation_runs(config: ExperimentConfig, standard: Sequence[RunResult],
                    rows_by_dataset: Mapping[str, Rows]) -> list[RunSpec]:
    """One evaluation run per (standard run, evaluator dataset that references its dataset), over the lines that
    succeeded — a failed line has no outputs to score, and is already counted against the run."""
    specs = []
    for run in standard:
        if run.status != "completed":
            continue
        for evaluator, dataset in config.evaluator_datasets_for(run.dataset):
            data = rows_by_dataset[dataset.name]
            lines = [line for line in run.lines if line.outputs is not None and line.line_number < len(data)]
            if not lines:
                continue
            specs.append(RunSpec(
                run_id=f"{run.run_id}.{safe_segment(evaluator.name)}", kind="evaluation",
                flow_dir=evaluator.flow_dir, flow=evaluator.flow or evaluator.name, dataset=run.dataset,
                rows=[resolve_inputs(dataset.mappings, data[line.line_number], run_outputs=line.outputs,
                                     run_inputs=line.inputs) for line in lines],
                line_numbers=[line.line_number for line in lines],
                variant=run.variant, hyperparameters=run.hyperparameters, evaluator=evaluator.name,
                parent_run_id=run.run_id,
            ))
    return specs


def failures(runs: Sequence[RunResult], max_failure_rate: float) -> list[str]:
    """Why the experiment fails, if it does: a run that failed, or lost more lines than allowed."""
    reasons = []
    for run in runs:
        if run.status == "failed":
            reasons.append(f"run {run.run_id} failed: {run.error}")
        elif run.lines and run.failure_rate > max_failure_rate:
            reasons.append(f"run {run.run_id}: {run.failed_lines}/{len(run.lines)} lines failed "
                           f"({run.failure_rate:.0%} > allowed {max_failure_rate:.0%})")
    return reasons
