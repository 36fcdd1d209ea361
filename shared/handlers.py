"""Event type -> handler. Each handler is a few lines: unpack the event, call one service, return follow-ups.

This table is the one hop from an event type to the code that handles it, and FAILURE_EVENTS the one hop from an
event type to the event that ends its run when its handler fails for good (shared/failures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.approvals.notifiers import Notifier
from shared.approvals.service import ApprovalSettings
from shared.deployment.port import deployment_name_for
from shared.events import (
    ApprovalGranted,
    DatasetUploaded,
    DeploymentRequested,
    DeploymentRolledBack,
    DeploymentTrafficRequested,
    EvaluationCompleted,
    Event,
    ExperimentFailed,
    ExperimentItemRequested,
    ExperimentRequested,
    ExperimentStageCompleted,
    FlowRegistered,
    GatePassed,
    PipelineTriggered,
)
from shared.events.catalogue import DeploymentCheckRequested, DeploymentTrafficFailed
from shared.events.monitoring import ProductionEvaluationRequested
from shared.ports import BlobStore, Clock, EventPublisher
from shared.registry.port import Registry
from shared.services import intake
from shared.services.ab_testing import change_traffic, check_traffic_change
from shared.services.deployment_settings import endpoint_for
from shared.services.deployments import DeploymentWorkspace, check_deployment, deploy_approved_flow
from shared.services.experiment_items import run_item
from shared.services.experiment_requests import requests_for_pipeline, requests_for_upload
from shared.services.experiments import (
    ExperimentWorkspace,
    advance_experiment,
    experiment_id_for,
    plan_experiment,
)
from shared.services.gate import judge_experiment
from shared.services.monitoring import production_log_for
from shared.services.production_evaluation import evaluate_production
from shared.services.registration import register_chosen_flow, register_upload
from shared.services.release import ask_for_approval, deployment_for
from shared.settings import Settings


@dataclass(frozen=True)
class Dependencies:
    """The ports a handler may pass on to its service."""

    settings: Settings
    blobs: BlobStore
    publisher: EventPublisher
    clock: Clock
    experiments: ExperimentWorkspace
    registry: Registry
    approvals: ApprovalSettings
    notifier: Notifier
    deployments: DeploymentWorkspace


Handler = Callable[[Event, Dependencies], Sequence[Event]]


def on_dataset_uploaded(event: DatasetUploaded, deps: Dependencies) -> Sequence[Event]:
    report = intake.check_dataset(event, deps.blobs, deps.clock, deps.settings.flows_dir, deps.settings.environment)
    if report.status != "valid":
        return []  # the intake report says why; nothing downstream runs on a broken or misplaced dataset
    registered = register_upload(event, report, deps.registry)
    return [registered, *requests_for_upload(event, deps.settings.flows_dir, deps.settings.environment)]


def on_pipeline_triggered(event: PipelineTriggered, deps: Dependencies) -> Sequence[Event]:
    return requests_for_pipeline(event)


def on_experiment_requested(event: ExperimentRequested, deps: Dependencies) -> Sequence[Event]:
    return plan_experiment(event, deps.blobs, deps.clock, deps.experiments, deps.registry)


def on_experiment_item_requested(event: ExperimentItemRequested, deps: Dependencies) -> Sequence[Event]:
    return run_item(event, deps.clock, deps.experiments)


def on_experiment_stage_completed(event: ExperimentStageCompleted, deps: Dependencies) -> Sequence[Event]:
    return advance_experiment(event, deps.blobs, deps.clock, deps.experiments)


def on_evaluation_completed(event: EvaluationCompleted, deps: Dependencies) -> Sequence[Event]:
    return judge_experiment(event, deps.blobs, deps.settings.flows_dir, deps.experiments.store)


def on_gate_passed(event: GatePassed, deps: Dependencies) -> Sequence[Event]:
    return register_chosen_flow(event, deps.experiments.store, deps.registry, flows_root=deps.settings.flows_dir,
                                work_root=deps.settings.work_dir)


def on_flow_registered(event: FlowRegistered, deps: Dependencies) -> Sequence[Event]:
    return [ask_for_approval(event, blobs=deps.blobs, store=deps.experiments.store, clock=deps.clock,
                             settings=deps.settings, config=deps.approvals, notifier=deps.notifier)]


def on_approval_granted(event: ApprovalGranted, deps: Dependencies) -> Sequence[Event]:
    return [deployment_for(event, deps.settings)]


def on_deployment_requested(event: DeploymentRequested, deps: Dependencies) -> Sequence[Event]:
    return deploy_approved_flow(event, deps.blobs, deps.registry, deps.deployments, deps.clock)


def on_deployment_check_requested(event: DeploymentCheckRequested, deps: Dependencies) -> Sequence[Event]:
    if event.payload.kind == "traffic":  # a promote/retire waiting for the endpoint's new split
        return check_traffic_change(event, deps.blobs, deps.deployments, deps.clock, deps.settings.environment)
    return check_deployment(event, deps.blobs, deps.registry, deps.deployments, deps.clock)


def on_traffic_requested(event: DeploymentTrafficRequested, deps: Dependencies) -> Sequence[Event]:
    return change_traffic(event, deps.blobs, deps.deployments, deps.clock, deps.settings.environment)


def on_production_evaluation_requested(event: ProductionEvaluationRequested, deps: Dependencies) -> Sequence[Event]:
    return evaluate_production(event, deps.blobs, deps.clock, deps.experiments.runner, deps.experiments.secrets_env,
                               deps.settings.flows_dir, production_log_for(deps.blobs))


# Keys narrow the event type each handler receives.
HANDLERS: dict[type[Event], Handler] = {
    DatasetUploaded: on_dataset_uploaded,  # type: ignore[dict-item]
    PipelineTriggered: on_pipeline_triggered,  # type: ignore[dict-item]
    ExperimentRequested: on_experiment_requested,  # type: ignore[dict-item]
    ExperimentItemRequested: on_experiment_item_requested,  # type: ignore[dict-item]
    ExperimentStageCompleted: on_experiment_stage_completed,  # type: ignore[dict-item]
    EvaluationCompleted: on_evaluation_completed,  # type: ignore[dict-item]
    GatePassed: on_gate_passed,  # type: ignore[dict-item]
    FlowRegistered: on_flow_registered,  # type: ignore[dict-item]
    ApprovalGranted: on_approval_granted,  # type: ignore[dict-item]
    DeploymentRequested: on_deployment_requested,  # type: ignore[dict-item]
    DeploymentCheckRequested: on_deployment_check_requested,  # type: ignore[dict-item]
    DeploymentTrafficRequested: on_traffic_requested,  # type: ignore[dict-item]
    ProductionEvaluationRequested: on_production_evaluation_requested,  # type: ignore[dict-item]
}


# --- the event that ends a run whose handler failed for good ------------------------------------------------
# Each takes (the event being handled, the reason, the dependencies). A stage missing here (dataset.uploaded,
# pipeline.triggered, flow.registered, approval.granted, deployment.check_requested — a check cannot say it rolled
# back when it could not act) gets a dead-letter record journaled under the run's correlation id instead.

FailureEvent = Callable[[Event, str, Dependencies], Event]


def _request_failed(event: ExperimentRequested, reason: str, deps: Dependencies) -> Event:
    return event.follow_up(ExperimentFailed, {"use_case": event.payload.use_case,
                                              "experiment_id": experiment_id_for(event), "reasons": [reason]})


def _experiment_failed(event: Event, reason: str, deps: Dependencies) -> Event:
    """For an event of an experiment under way: its payload names the use case and the experiment."""
    return event.follow_up(ExperimentFailed, {**event.payload.model_dump(include={"use_case", "experiment_id"}),
                                              "reasons": [reason]})


def _deployment_rolled_back(event: DeploymentRequested, reason: str, deps: Dependencies) -> Event:
    # It failed before any traffic moved: the prior deployments keep theirs (not looked up: `traffic` is empty).
    request = event.payload
    return event.follow_up(DeploymentRolledBack, {
        "use_case": request.use_case, "deployment": deployment_name_for(request.flow_version),
        "endpoint": endpoint_for(deps.settings.flows_dir, request.use_case, request.environment),
        "reason": f"deployment failed: {reason}", "traffic": {}})


def _traffic_failed(event: DeploymentTrafficRequested, reason: str, deps: Dependencies) -> Event:
    return event.follow_up(DeploymentTrafficFailed, {**event.payload.model_dump(), "traffic": {}, "reason": reason})


FAILURE_EVENTS: dict[type[Event], FailureEvent] = {
    ExperimentRequested: _request_failed,  # type: ignore[dict-item]
    ExperimentItemRequested: _experiment_failed,
    ExperimentStageCompleted: _experiment_failed,
    EvaluationCompleted: _experiment_failed,
    GatePassed: _experiment_failed,  # registering the chosen flow: the experiment's run ends there
    DeploymentRequested: _deployment_rolled_back,  # type: ignore[dict-item]
    DeploymentTrafficRequested: _traffic_failed,  # type: ignore[dict-item]
}
