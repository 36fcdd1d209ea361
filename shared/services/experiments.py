"""Run an experiment: every variant combination over every selected dataset, then every evaluator over every
run's lines, then the reports — and say what happened as events.

A configuration or data problem fails the experiment with its reason (experiment.failed + an error report);
it is never retried. Infrastructure problems (storage, the runner crashing) raise, so the message is retried.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.events import (
    EvaluationCompleted,
    Event,
    ExperimentCompleted,
    ExperimentFailed,
    ExperimentRequested,
)
from shared.experiments.config import ExperimentConfig, ExperimentConfigError, load_experiment
from shared.experiments.connections import connection_specs
from shared.experiments.datasets import DatasetError, load_dataset
from shared.experiments.mappings import MappingError
from shared.experiments.planning import evaluation_runs, failures, standard_runs
from shared.experiments.results import ExperimentResult, RunResult
from shared.experiments.runner import ExecutionLimits, FlowRunner
from shared.experiments.variants import FlowVariantsError, discover_variants, expand, flow_inputs, materialize
from shared.ports import BlobStore, Clock
from shared.registry.port import Registry
from shared.reports.writer import ReportLocations, write_experiment_reports
from shared.services.registration import register_datasets

log = logging.getLogger("genaiops.experiments")
SETUP_ERRORS = (ExperimentConfigError, FlowVariantsError, DatasetError, MappingError)


@dataclass(frozen=True)
class ExperimentWorkspace:
    """Where experiments come from and run: the use cases (flows/) and a scratch folder for materialized flows."""

    flows_root: Path
    work_root: Path
    runner: FlowRunner
    secrets_env: Mapping[str, str]


def experiment_id_for(event: ExperimentRequested) -> str:
    """Deterministic per request: a redelivered request rewrites the same reports instead of adding new ones."""
    return f"{event.occurred_at:%Y%m%d-%H%M%S}-{event.id[:8]}"


def run_experiment(event: ExperimentRequested, blobs: BlobStore, clock: Clock, workspace: ExperimentWorkspace,
                   registry: Registry) -> list[Event]:
    request = event.payload
    experiment_id = experiment_id_for(event)
    started = clock.now()
    try:
        config = load_experiment(workspace.flows_root / request.use_case, request.environment)
        result = _execute(config, experiment_id, event, blobs, workspace, registry, started, clock)
    except SETUP_ERRORS as problem:
        log.warning("experiment %s of %s cannot run: %s", experiment_id, request.use_case, problem)
        result = ExperimentResult(
            experiment_id=experiment_id, use_case=request.use_case, environment=request.environment,
            status="failed", failures=[str(problem)], standard_runs=[], started_at=started, finished_at=clock.now(),
            decisions={"request": request.model_dump(mode="json")},
        )
    reports = write_experiment_reports(result, blobs)
    return _outcome_events(event, result, reports)


def _execute(config: ExperimentConfig, experiment_id: str, event: ExperimentRequested, blobs: BlobStore,
             workspace: ExperimentWorkspace, registry: Registry, started: Any, clock: Clock) -> ExperimentResult:
    request = event.payload
    selected = set(request.datasets or [d.name for d in config.datasets])
    unknown = selected - {d.name for d in config.datasets}
    if unknown:
        raise ExperimentConfigError(f"{request.use_case}: no standard dataset named {', '.join(sorted(unknown))}")
    standard_data = {d.name: load_dataset(d, blobs, request.data_sources)
                     for d in config.datasets if d.name in selected}
    evaluation_data = {d.name: load_dataset(d, blobs, request.data_sources)
                       for name in selected for _, d in config.evaluator_datasets_for(name)}
    data_versions = register_datasets(registry, request.use_case, [*standard_data.values(), *evaluation_data.values()])
    standard_rows = {name: data.rows for name, data in standard_data.items()}
    evaluation_rows = {name: data.rows for name, data in evaluation_data.items()}
    combinations = expand(discover_variants(config.flow_dir), config.variants, config.hyperparameters)
    scratch = workspace.work_root / request.use_case / experiment_id
    materialized = [(c, materialize(config.flow_dir, c, scratch / c.id)) for c in combinations]
    limits = ExecutionLimits(concurrency=config.execution.concurrency,
                             line_timeout_seconds=config.execution.line_timeout_seconds)
    connections = connection_specs(config, workspace.secrets_env)
    log.info("experiment %s: %d combination(s) x %d dataset(s)", experiment_id, len(combinations), len(selected))
    try:
        standard = workspace.runner.run_all(
            standard_runs(config, experiment_id, materialized, standard_rows, flow_inputs(config.flow_dir)),
            connections, limits)
        evaluations = workspace.runner.run_all(evaluation_runs(config, standard, evaluation_rows), connections, limits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reasons = failures([*standard, *evaluations], config.execution.max_failure_rate)
    return ExperimentResult(
        experiment_id=experiment_id, use_case=request.use_case, environment=request.environment,
        status="failed" if reasons else "completed", failures=reasons, standard_runs=standard,
        evaluation_runs=evaluations, started_at=started, finished_at=clock.now(),
        decisions={**_decisions(config, event, combinations_count=len(combinations)), "data_versions": data_versions},
    )


def _decisions(config: ExperimentConfig, event: ExperimentRequested, combinations_count: int) -> dict[str, Any]:
    return {
        "request": event.payload.model_dump(mode="json"),
        "requested_by_event": event.id,
        "config_files": [str(path.relative_to(config.base_dir.parent)) for path in config.config_files],
        "variant_mode": config.variants.mode,
        "combinations": combinations_count,
        "hyperparameters": config.hyperparameters,
        "max_failure_rate": config.execution.max_failure_rate,
        "concurrency": config.execution.concurrency,
    }


def _summaries(runs: list[RunResult], evaluations: list[RunResult]) -> list[dict[str, Any]]:
    """One summary per standard run, with the metrics of every evaluation of it (prefixed by evaluator)."""
    prefixed = len({evaluation.evaluator for evaluation in evaluations}) > 1  # keep names apart across evaluators
    summaries = []
    for run in runs:
        metrics = {f"{ev.evaluator}.{name}" if prefixed else name: value
                   for ev in evaluations if ev.parent_run_id == run.run_id for name, value in ev.metrics.items()}
        summaries.append({"run_id": run.run_id, "variant": run.variant, "dataset": run.dataset, "status": run.status,
                          "lines": len(run.lines), "failed_lines": run.failed_lines, "metrics": metrics})
    return summaries


def _outcome_events(event: ExperimentRequested, result: ExperimentResult, reports: ReportLocations) -> list[Event]:
    report_uri = f"{reports.container}/{reports.summary_html}"
    use_case = event.payload.use_case
    if result.status == "failed":
        return [event.follow_up(ExperimentFailed, {"use_case": use_case, "experiment_id": result.experiment_id,
                                                   "reasons": result.failures[:50]})]
    runs = _summaries(result.standard_runs, result.evaluation_runs)
    completed = event.follow_up(ExperimentCompleted, {"use_case": use_case, "experiment_id": result.experiment_id,
                                                      "runs": runs, "report_uri": report_uri})
    if not result.evaluation_runs:
        return [completed]
    evaluated = completed.follow_up(EvaluationCompleted, {"use_case": use_case, "experiment_id": result.experiment_id,
                                                          "runs": runs, "report_uri": report_uri})
    return [completed, evaluated]
