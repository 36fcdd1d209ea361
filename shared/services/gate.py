"""After evaluation: judge the experiment with its quality gate, write the verdict into the report, and say
gate.passed or gate.failed. Only a passing experiment goes on to registration and approval."""

from __future__ import annotations

import json

from pydantic import ValidationError

from shared.blob_layout import DEPLOYMENTS, REPORTS, decision_name, deployed_state_name
from shared.events import EvaluationCompleted, Event, GateFailed, GatePassed
from shared.experiments.config import ExperimentConfigError
from shared.experiments.gate import Baseline, GateConfig, GateConfigError, GateVerdict, evaluate_gate
from shared.experiments.results import ExperimentResult
from shared.ports import BlobNotFound, BlobStore
from shared.reports.writer import report_locations, write_experiment_reports
from shared.services.experiments import ExperimentWorkspace


def deployed_baseline(blobs: BlobStore, use_case: str) -> Baseline | None:
    try:
        data, _ = blobs.read(DEPLOYMENTS, deployed_state_name(use_case))
    except BlobNotFound:
        return None
    return Baseline.model_validate_json(data)


def _gate_config(workspace: ExperimentWorkspace, result: ExperimentResult) -> GateConfig:
    config = workspace.config(result.use_case, result.environment)
    if config.gate is not None:
        return config.gate
    # No gate declared: rank by the first metric measured, with no thresholds (the verdict says so).
    metrics = sorted({name for run in result.evaluation_runs for name in run.metrics})
    return GateConfig(primary_metric=metrics[0] if metrics else "<no metric>")


def _failed_verdict(primary: str, reason: str) -> GateVerdict:
    return GateVerdict(passed=False, primary_metric=primary, best_variant={}, best_hyperparameters={},
                       best_metrics={}, best_value=None, checks=[], reasons=[reason], baseline_version=None)


def judge_experiment(event: EvaluationCompleted, blobs: BlobStore, workspace: ExperimentWorkspace) -> list[Event]:
    use_case, experiment_id = event.payload.use_case, event.payload.experiment_id
    where = report_locations(use_case, experiment_id)
    store = workspace.store
    result = store.result(use_case, experiment_id)
    try:
        gate = _gate_config(workspace, result)
        verdict = evaluate_gate(result, gate, deployed_baseline(blobs, use_case))
    except (ExperimentConfigError, GateConfigError, ValidationError) as problem:
        verdict = _failed_verdict("<invalid gate>", f"gate could not be evaluated: {problem}")
    if not verdict.passed and not verdict.reasons:
        verdict = verdict.model_copy(update={"reasons": ["gate failed"]})
    # The verdict is kept in the experiment store (release reads it there), and projected into the report
    # (page + experiment.json) and beside it as decision.json for people.
    store.save_verdict(use_case, experiment_id, verdict.model_dump(mode="json"))
    write_experiment_reports(result, blobs, {"gate": verdict.model_dump(mode="json")})
    blobs.write(REPORTS, decision_name(use_case, experiment_id), json.dumps(
        {"experiment_id": experiment_id, "use_case": use_case, "gate": verdict.model_dump(mode="json")},
        indent=2).encode())
    payload = {
        "use_case": use_case, "experiment_id": experiment_id, "environment": result.environment,
        "primary_metric": verdict.primary_metric, "best_variant": verdict.best_variant,
        "best_hyperparameters": verdict.best_hyperparameters, "best_value": verdict.best_value,
        "best_metrics": verdict.best_metrics, "reasons": verdict.reasons,
        "checks": [{"metric": c.metric, "comparison": c.comparison, "threshold": c.threshold, "actual": c.actual,
                    "passed": c.passed} for c in verdict.checks],
        "report_uri": f"{where.container}/{where.summary_html}",
    }
    return [event.follow_up(GatePassed if verdict.passed else GateFailed, payload)]
