"""Experiments as a persisted state machine on the bus.

    experiment.requested         plan: data snapshot, every combination x dataset, cut into work items  (here)
    experiment.item_requested    run some lines of one run, checkpointing each       (services/experiment_items)
    experiment.stage_completed   standard -> plan and fan out the evaluations; evaluation -> finish      (here)

A configuration or data problem fails the experiment with its reason (experiment.failed + an error report);
it is never retried. Infrastructure problems (storage, the bus) raise, so the message is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.events import (
    EvaluationCompleted,
    Event,
    ExperimentCompleted,
    ExperimentFailed,
    ExperimentRequested,
    ExperimentStageCompleted,
)
from shared.experiments.config import ExperimentConfig, ExperimentConfigError, load_experiment
from shared.experiments.connections import connection_specs
from shared.experiments.datasets import DatasetError, load_dataset
from shared.experiments.mappings import MappingError
from shared.experiments.planning import (
    evaluation_inputs_key,
    evaluation_runs,
    evaluation_stage,
    failures,
    reference_dataset_key,
    run_results,
    run_spec,
    standard_dataset_key,
    standard_stage,
)
from shared.experiments.provenance import evaluator_mappings, variant_definitions
from shared.experiments.remote_runner import RemoteFlowRunner
from shared.experiments.results import ExperimentResult, RunResult
from shared.experiments.runner import ExecutionLimits, FlowRunner
from shared.experiments.store import ExperimentPlan, ExperimentStore, ItemOutcome, PlannedRun, RunMetrics, StagePlan
from shared.experiments.variants import FlowVariantsError, discover_variants, expand, flow_inputs
from shared.ports import BlobStore, Clock
from shared.registry.port import Registry
from shared.reports.writer import ReportLocations, write_experiment_reports
from shared.services.experiment_fanout import item_requests, progress_event
from shared.services.registration import register_datasets

log = logging.getLogger("genaiops.experiments")
SETUP_ERRORS = (ExperimentConfigError, FlowVariantsError, DatasetError, MappingError)


@dataclass(frozen=True)
class ExperimentWorkspace:
    """Where experiments come from, run and are kept: the use cases (flows/), a scratch folder for materialized
    flows, the runner(s), the settings secrets resolve from, and the experiment store."""

    flows_root: Path
    work_root: Path
    runner: FlowRunner
    secrets_env: Mapping[str, str]  # the app settings (Settings.app_settings)
    store: ExperimentStore
    local_stack: bool  # Settings.local_stack: experiments stack experiment.local.yaml on top
    remote: RemoteFlowRunner | None = None

    def config(self, use_case: str, environment: str) -> ExperimentConfig:
        return load_experiment(self.flows_root / use_case, environment, local=self.local_stack)


def experiment_id_for(event: ExperimentRequested) -> str:
    """Deterministic per request: a redelivered request reuses the same plan and reports."""
    return f"{event.occurred_at:%Y%m%d-%H%M%S}-{event.id[:8]}"


def plan_experiment(event: ExperimentRequested, blobs: BlobStore, clock: Clock, workspace: ExperimentWorkspace,
                    registry: Registry) -> list[Event]:
    """Write the plan and the data every item reads, and send the standard work items."""
    request = event.payload
    experiment_id = experiment_id_for(event)
    started = clock.now()
    try:
        config = workspace.config(request.use_case, request.environment)
        plan = _plan(config, experiment_id, event, blobs, workspace, registry, started)
    except SETUP_ERRORS as problem:
        log.warning("experiment %s of %s cannot run: %s", experiment_id, request.use_case, problem)
        result = ExperimentResult(
            experiment_id=experiment_id, use_case=request.use_case, environment=request.environment,
            status="failed", failures=[str(problem)], standard_runs=[], started_at=started, finished_at=clock.now(),
            decisions={"request": request.model_dump(mode="json")},
        )
        workspace.store.save_result(result)
        return _outcome_events(event, result, write_experiment_reports(result, blobs))
    log.info("experiment %s: %d run(s) in %d work item(s)", experiment_id, len(plan.standard.runs),
             len(plan.standard.items))
    return [progress_event(event, plan, plan.standard, done=[], clock=clock, store=workspace.store),
            *item_requests(event, plan, plan.standard)]


def _plan(config: ExperimentConfig, experiment_id: str, event: ExperimentRequested, blobs: BlobStore,
          workspace: ExperimentWorkspace, registry: Registry, started: datetime) -> ExperimentPlan:
    request = event.payload
    existing = workspace.store.find_plan(request.use_case, experiment_id)
    if existing is not None:  # a redelivery: keep the data snapshot the items may already be reading
        return existing
    selected = set(request.datasets or [d.name for d in config.datasets])
    unknown = selected - {d.name for d in config.datasets}
    if unknown:
        raise ExperimentConfigError(f"{request.use_case}: no standard dataset named {', '.join(sorted(unknown))}")
    standard_data = {d.name: load_dataset(d, blobs, request.data_sources)
                     for d in config.datasets if d.name in selected}
    reference_data = {d.name: load_dataset(d, blobs, request.data_sources)
                      for name in selected for _, d in config.evaluator_datasets_for(name)}
    data_versions = register_datasets(registry, request.use_case, [*standard_data.values(), *reference_data.values()])
    connection_specs(config, workspace.secrets_env)  # a missing secret fails the request now, not in every item
    combinations = expand(discover_variants(config.flow_dir), config.variants, config.hyperparameters)
    stage, mapped = standard_stage(config, experiment_id, combinations,
                                   {name: data.rows for name, data in standard_data.items()},
                                   flow_inputs(config.flow_dir), remote_available=workspace.remote is not None)
    store = workspace.store
    # The data first, the plan last: a plan that exists always has its data beside it.
    for name, rows in mapped.items():
        store.save_rows(request.use_case, experiment_id, standard_dataset_key(name), rows)
    for name, data in reference_data.items():
        store.save_rows(request.use_case, experiment_id, reference_dataset_key(name), data.rows)
    execution = config.execution
    return store.save_plan(ExperimentPlan(
        experiment_id=experiment_id, use_case=request.use_case, environment=request.environment,
        requested_by=event.id, correlation_id=event.correlation_id, started_at=started,
        datasets=[d.name for d in config.datasets if d.name in selected], concurrency=execution.concurrency,
        line_timeout_seconds=execution.line_timeout_seconds, item_seconds=execution.item_seconds,
        max_failure_rate=execution.max_failure_rate,
        decisions={**_decisions(config, event, combinations_count=len(combinations)), "data_versions": data_versions},
        standard=stage,
    ))


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
        "lines_per_item": config.execution.lines_per_item,
    }


def advance_experiment(event: ExperimentStageCompleted, blobs: BlobStore, clock: Clock,
                       workspace: ExperimentWorkspace) -> list[Event]:
    """The last item of a stage landed: after the standard stage, evaluate; after the evaluation stage, finish."""
    use_case, experiment_id = event.payload.use_case, event.payload.experiment_id
    store = workspace.store
    plan = store.plan(use_case, experiment_id)
    config = workspace.config(use_case, plan.environment)
    standard = run_results(plan.standard, store.item_outcomes(use_case, experiment_id, "standard"), plan.started_at)
    if event.payload.stage == "standard":
        references = {dataset.name: store.rows(use_case, experiment_id, reference_dataset_key(dataset.name))
                      for name in plan.datasets for _, dataset in config.evaluator_datasets_for(name)}
        specs = evaluation_runs(config, standard, references)
        if specs:
            for spec in specs:  # the inputs first, the stage plan last (as with the plan itself)
                store.save_rows(use_case, experiment_id, evaluation_inputs_key(spec.run_id),
                                [{"line_number": n, "inputs": row}
                                 for n, row in zip(spec.line_numbers or [], spec.rows, strict=True)])
            stage = store.save_evaluation_plan(use_case, experiment_id, evaluation_stage(
                config, specs, remote_available=workspace.remote is not None))
            return [progress_event(event, plan, stage, done=[], clock=clock, store=store),
                    *item_requests(event, plan, stage)]
        evaluations: list[RunResult] = []
    else:
        evaluations = _evaluations(config, plan, store.evaluation_plan(use_case, experiment_id), workspace)
    return _finish(event, plan, config, standard, evaluations, blobs, clock, store)


def _evaluations(config: ExperimentConfig, plan: ExperimentPlan, stage: StagePlan,
                 workspace: ExperimentWorkspace) -> list[RunResult]:
    """Evaluation runs from their items' lines, with the metrics their aggregation nodes (log_metric) computed
    over all of a run's lines — by the item that finished the run, or here if that instance died first."""
    store = workspace.store
    outcomes = store.item_outcomes(plan.use_case, plan.experiment_id, "evaluation")
    metrics = store.run_metrics(plan.use_case, plan.experiment_id)
    for run in stage.runs:
        if run.run_id not in metrics:
            metrics[run.run_id] = aggregate_run(config, plan, run, [o for o in outcomes if o.run_id == run.run_id],
                                                workspace)
    return run_results(stage, outcomes, plan.started_at, metrics)


def aggregate_run(config: ExperimentConfig, plan: ExperimentPlan, run: PlannedRun, items: Sequence[ItemOutcome],
                  workspace: ExperimentWorkspace) -> RunMetrics:
    """An evaluation run's aggregation nodes over the lines of all its items (nothing when Azure ML computed the
    metrics, the run never started, or it is not an evaluation)."""
    if any(item.metrics for item in items) or any(item.error for item in items) or run.evaluator is None:
        return RunMetrics(run_id=run.run_id)
    evaluator = next(e for e in config.evaluators if e.name == run.evaluator)
    checkpoints = [c for item in items for c in item.lines]
    limits = ExecutionLimits(concurrency=plan.concurrency, line_timeout_seconds=plan.line_timeout_seconds)
    values, error = workspace.runner.aggregate(
        run_spec(run, evaluator.flow_dir, {}, []), [c.line for c in checkpoints if c.line.error is None],
        {c.line.line_number: c.aggregation_inputs for c in checkpoints if c.aggregation_inputs is not None},
        connection_specs(config, workspace.secrets_env), limits)
    return RunMetrics(run_id=run.run_id, metrics=values, error=error)


def _finish(event: Event, plan: ExperimentPlan, config: ExperimentConfig, standard: list[RunResult],
            evaluations: list[RunResult], blobs: BlobStore, clock: Clock, store: ExperimentStore) -> list[Event]:
    reasons = failures([*standard, *evaluations], plan.max_failure_rate)
    result = ExperimentResult(
        experiment_id=plan.experiment_id, use_case=plan.use_case, environment=plan.environment,
        status="failed" if reasons else "completed", failures=reasons, standard_runs=standard,
        evaluation_runs=evaluations, started_at=plan.started_at, finished_at=clock.now(), decisions=plan.decisions,
        evaluator_mappings=evaluator_mappings(config, plan.datasets),
        variant_definitions=variant_definitions(config.flow_dir),
    )
    store.save_result(result)  # the state the gate and registration read; the reports are its projection
    return _outcome_events(event, result, write_experiment_reports(result, blobs))


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


def _outcome_events(event: Event, result: ExperimentResult, reports: ReportLocations) -> list[Event]:
    report_uri = f"{reports.container}/{reports.summary_html}"
    use_case = result.use_case
    if result.status == "failed":
        return [event.follow_up(ExperimentFailed, {"use_case": use_case, "experiment_id": result.experiment_id,
                                                   "reasons": result.failures[:50]})]
    runs = _summaries(result.standard_runs, result.evaluation_runs)
    completed = event.follow_up(ExperimentCompleted, {"use_case": use_case, "experiment_id": result.experiment_id,
                                                      "runs": runs, "report_uri": report_uri})
    # Announced even when no evaluator ran (a pr overlay with `evaluators:` empty): the gate still gives a verdict,
    # so a pipeline waiting for one never waits in vain.
    evaluated = completed.follow_up(EvaluationCompleted, {"use_case": use_case, "experiment_id": result.experiment_id,
                                                          "runs": runs, "report_uri": report_uri})
    return [completed, evaluated]

