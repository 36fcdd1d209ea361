"""Turning a configured experiment into stages of bounded work items: combinations x datasets (standard), then
evaluations of each run's finished lines, and the RunResults the items add up to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.blob_layout import safe_segment
from shared.experiments.config import ExperimentConfig
from shared.experiments.mappings import default_mapping, resolve_inputs
from shared.experiments.results import LineResult, RunResult
from shared.experiments.runner import RunSpec
from shared.experiments.store import ItemOutcome, PlannedRun, RunMetrics, RunnerKind, StagePlan, WorkItem
from shared.experiments.variants import Combination

Rows = list[dict[str, Any]]


def standard_dataset_key(dataset: str) -> str:
    """Store key of a standard dataset's mapped flow inputs."""
    return f"standard-{dataset}"


def reference_dataset_key(dataset: str) -> str:
    """Store key of an evaluator dataset's raw rows."""
    return f"reference-{dataset}"


def evaluation_inputs_key(run_id: str) -> str:
    """Store key of an evaluation run's inputs, by line number."""
    return f"evaluation-{run_id}"


def shard(run: PlannedRun, lines_per_item: int, runner: RunnerKind = "local") -> list[WorkItem]:
    """A local run is cut into items of `lines_per_item` lines; an Azure ML run is one item (one job)."""
    numbers = run.line_numbers
    size = len(numbers) if runner == "azureml" else lines_per_item
    return [WorkItem(item_id=f"{run.run_id}.{start:06d}", run_id=run.run_id, line_numbers=numbers[start:start + size],
                     runner=runner) for start in range(0, len(numbers), max(size, 1))]


def runner_for(config: ExperimentConfig, lines: int, remote_available: bool) -> RunnerKind:
    mode = config.execution.runner
    if mode == "auto":
        return "azureml" if remote_available and lines >= config.execution.azureml_min_lines else "local"
    return mode


def standard_stage(config: ExperimentConfig, experiment_id: str, combinations: Sequence[Combination],
                   rows_by_dataset: Mapping[str, Rows], flow_inputs: Sequence[str],
                   remote_available: bool = False) -> tuple[StagePlan, dict[str, Rows]]:
    """Every combination over every selected dataset, and each dataset's rows mapped to the flow's inputs."""
    mapped: dict[str, Rows] = {}
    runs: list[PlannedRun] = []
    items: list[WorkItem] = []
    for dataset in config.datasets:
        if dataset.name not in rows_by_dataset:
            continue
        rows = rows_by_dataset[dataset.name]
        mapping = dataset.mappings or default_mapping(flow_inputs, rows[0].keys())
        mapped[dataset.name] = [resolve_inputs(mapping, row) for row in rows]
    for combination in combinations:
        for dataset in config.datasets:
            if dataset.name not in mapped:
                continue
            run = PlannedRun(run_id=f"{experiment_id}.{safe_segment(combination.id)}.{safe_segment(dataset.name)}",
                             kind="standard", flow=config.flow or config.name, dataset=dataset.name,
                             variant=combination.variant, hyperparameters=combination.hyperparameters,
                             line_numbers=list(range(len(mapped[dataset.name]))))
            runs.append(run)
            items += shard(run, config.execution.lines_per_item,
                           runner_for(config, len(run.line_numbers), remote_available))
    return StagePlan(stage="standard", runs=runs, items=items), mapped


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


def evaluation_stage(config: ExperimentConfig, specs: Sequence[RunSpec], remote_available: bool = False) -> StagePlan:
    runs = [PlannedRun(run_id=spec.run_id, kind="evaluation", flow=spec.flow, dataset=spec.dataset,
                       variant=spec.variant, hyperparameters=spec.hyperparameters, evaluator=spec.evaluator,
                       parent_run_id=spec.parent_run_id, line_numbers=list(spec.line_numbers or []))
            for spec in specs]
    items = [item for run in runs for item in shard(
        run, config.execution.lines_per_item, runner_for(config, len(run.line_numbers), remote_available))]
    return StagePlan(stage="evaluation", runs=runs, items=items)


def run_spec(run: PlannedRun, flow_dir: Path, rows: Mapping[int, dict[str, Any]], lines: Sequence[int]) -> RunSpec:
    """The runner's view of (some lines of) a planned run."""
    return RunSpec(run_id=run.run_id, kind=run.kind, flow_dir=flow_dir, flow=run.flow, dataset=run.dataset,
                   rows=[rows[number] for number in lines], line_numbers=list(lines), variant=run.variant,
                   hyperparameters=run.hyperparameters, evaluator=run.evaluator, parent_run_id=run.parent_run_id)


def run_results(stage: StagePlan, outcomes: Sequence[ItemOutcome], started_at: Any,
                metrics: Mapping[str, RunMetrics] | None = None) -> list[RunResult]:
    """The stage's runs, each from the lines of its finished items (and, for evaluations, its metrics)."""
    by_run: dict[str, list[ItemOutcome]] = {}
    for outcome in outcomes:
        by_run.setdefault(outcome.run_id, []).append(outcome)
    results = []
    for run in stage.runs:
        items = by_run.get(run.run_id, [])
        lines: list[LineResult] = sorted((c.line for item in items for c in item.lines), key=lambda x: x.line_number)
        start_error = next((item.error for item in items if item.error), None)
        aggregated = (metrics or {}).get(run.run_id, RunMetrics())
        run_metrics = {**{k: v for item in items for k, v in item.metrics.items()}, **aggregated.metrics}
        error = start_error or aggregated.error
        results.append(RunResult(
            run_id=run.run_id, kind=run.kind, flow=run.flow, dataset=run.dataset, variant=run.variant,
            hyperparameters=run.hyperparameters, evaluator=run.evaluator, parent_run_id=run.parent_run_id,
            status="failed" if error else "completed", error=error, lines=[] if start_error else lines,
            metrics=run_metrics, started_at=started_at,
            # Compute time of the run's own lines, not the wall time it shared with every other run.
            duration_seconds=sum(line.duration_ms for line in lines) / 1000,
        ))
    return results


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
