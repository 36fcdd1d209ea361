"""Message type -> handler, for events and commands. Each handler is a few lines: unpack the message, call one
service, return follow-up events. A handler names the ports it needs as keyword-only parameters (`blobs`, `clock`,
`settings`, ...); the message bus injects exactly those, once, when it is built (shared/messagebus.py).

HANDLERS is the one hop from a message type to the code that handles it, and FAILURE_EVENTS the one hop from an
event type to the event that ends its run when its handler fails for good (shared/failures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Concatenate, TypeVar

from shared.approvals.identity import Principal
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
from shared.events.commands import DecideApproval, ExpireApprovals, Message, SubmitFeedback
from shared.events.monitoring import DeploymentDegraded, ProductionDegraded, ProductionEvaluationRequested
from shared.feedback.endpoints import EndpointDirectory
from shared.feedback.submissions import FeedbackRecord, store_feedback
from shared.notifications import Notifier
from shared.ports import BlobStore, Clock, EventPublisher
from shared.registry.port import Registry
from shared.services import intake
from shared.services.ab_testing import change_traffic, check_traffic_change
from shared.services.alerts import alert_degraded, alert_judged_degraded
from shared.services.approvals import ApprovalSettings, decide, expire_due
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

# Typed routes: `route` checks (statically) that the handler takes the message type it is filed under; the table
# itself holds them as plain callables, since the bus injects each one's keyword parameters at bootstrap.
M = TypeVar("M", bound=Message)
Handler = Callable[..., Sequence[Event]]
FailureEvent = Callable[..., Event]


def route(message_type: type[M],
          handler: Callable[Concatenate[M, ...], Sequence[Event]]) -> tuple[type[Message], Handler]:
    return message_type, handler


def on_dataset_uploaded(event: DatasetUploaded, *, blobs: BlobStore, clock: Clock, settings: Settings,
                        registry: Registry) -> Sequence[Event]:
    report = intake.check_dataset(event, blobs, clock, settings.flows_dir, settings.environment)
    if report.status != "valid":
        return []  # the intake report says why; nothing downstream runs on a broken or misplaced dataset
    registered = register_upload(event, report, registry)
    return [registered, *requests_for_upload(event, settings.flows_dir, settings.environment)]


def on_pipeline_triggered(event: PipelineTriggered) -> Sequence[Event]:
    return requests_for_pipeline(event)


def on_experiment_requested(event: ExperimentRequested, *, blobs: BlobStore, clock: Clock,
                            experiments: ExperimentWorkspace, registry: Registry) -> Sequence[Event]:
    return plan_experiment(event, blobs, clock, experiments, registry)


def on_experiment_item_requested(event: ExperimentItemRequested, *, clock: Clock,
                                 experiments: ExperimentWorkspace) -> Sequence[Event]:
    return run_item(event, clock, experiments)


def on_experiment_stage_completed(event: ExperimentStageCompleted, *, blobs: BlobStore, clock: Clock,
                                  experiments: ExperimentWorkspace) -> Sequence[Event]:
    return advance_experiment(event, blobs, clock, experiments)


def on_evaluation_completed(event: EvaluationCompleted, *, blobs: BlobStore,
                            experiments: ExperimentWorkspace) -> Sequence[Event]:
    return judge_experiment(event, blobs, experiments)


def on_gate_passed(event: GatePassed, *, settings: Settings, experiments: ExperimentWorkspace,
                   registry: Registry) -> Sequence[Event]:
    return register_chosen_flow(event, experiments.store, registry, flows_root=settings.flows_dir,
                                work_root=settings.work_dir, local=settings.local_stack)


def on_flow_registered(event: FlowRegistered, *, blobs: BlobStore, clock: Clock, settings: Settings,
                       experiments: ExperimentWorkspace, approvals: ApprovalSettings,
                       notifier: Notifier) -> Sequence[Event]:
    return [ask_for_approval(event, blobs=blobs, store=experiments.store, clock=clock, settings=settings,
                             config=approvals, notifier=notifier)]


def on_approval_granted(event: ApprovalGranted, *, settings: Settings) -> Sequence[Event]:
    return [deployment_for(event, settings)]


def on_deployment_requested(event: DeploymentRequested, *, blobs: BlobStore, clock: Clock, registry: Registry,
                            deployments: DeploymentWorkspace) -> Sequence[Event]:
    return deploy_approved_flow(event, blobs, registry, deployments, clock)


def on_deployment_check_requested(event: DeploymentCheckRequested, *, blobs: BlobStore, clock: Clock,
                                  settings: Settings, registry: Registry,
                                  deployments: DeploymentWorkspace) -> Sequence[Event]:
    if event.payload.kind == "traffic":  # a promote/retire waiting for the endpoint's new split
        return check_traffic_change(event, blobs, deployments, clock, settings.environment)
    return check_deployment(event, blobs, registry, deployments, clock)


def on_traffic_requested(event: DeploymentTrafficRequested, *, blobs: BlobStore, clock: Clock, settings: Settings,
                         deployments: DeploymentWorkspace) -> Sequence[Event]:
    return change_traffic(event, blobs, deployments, clock, settings.environment)


def on_production_evaluation_requested(event: ProductionEvaluationRequested, *, blobs: BlobStore, clock: Clock,
                                       settings: Settings, experiments: ExperimentWorkspace) -> Sequence[Event]:
    return evaluate_production(event, blobs, clock, experiments.runner, experiments.secrets_env, settings.flows_dir,
                               production_log_for(blobs, settings.azureml_data_collector_container_url))


def on_deployment_degraded(event: DeploymentDegraded, *, notifier: Notifier, settings: Settings) -> Sequence[Event]:
    alert_degraded(event, notifier, settings)
    return []  # the rollback, when there is one, is the monitor's own follow-up (deployment.traffic_requested)


def on_production_degraded(event: ProductionDegraded, *, notifier: Notifier, settings: Settings) -> Sequence[Event]:
    alert_judged_degraded(event, notifier, settings)
    return []


# --- commands: their caller gets the handler's error as raised -------------------------------------------------
# An approval publishes its own decision event (its record notes whether the event went out, and the expiry sweep
# re-sends one that did not), so these return no follow-ups for the bus to publish.

def on_decide_approval(command: DecideApproval, *, blobs: BlobStore, clock: Clock,
                       publisher: EventPublisher) -> Sequence[Event]:
    decide(command.approval_id, command.decision, Principal(command.approver, command.provider), command.comment,
           clock.now(), blobs=blobs, publisher=publisher)
    return []


def on_expire_approvals(command: ExpireApprovals, *, blobs: BlobStore, clock: Clock,
                        publisher: EventPublisher) -> Sequence[Event]:
    expire_due(clock.now(), blobs=blobs, publisher=publisher)
    return []


def on_submit_feedback(command: SubmitFeedback, *, blobs: BlobStore, clock: Clock,
                       endpoints: EndpointDirectory) -> Sequence[Event]:
    record = FeedbackRecord(**command.feedback.model_dump(), id=command.record_id(), use_case=command.use_case,
                            endpoint=command.endpoint, received_at=clock.now(), caller=command.caller)
    store_feedback(record, endpoints, blobs, clock)
    return []


HANDLERS: dict[type[Message], Handler] = dict([
    route(DatasetUploaded, on_dataset_uploaded),
    route(PipelineTriggered, on_pipeline_triggered),
    route(ExperimentRequested, on_experiment_requested),
    route(ExperimentItemRequested, on_experiment_item_requested),
    route(ExperimentStageCompleted, on_experiment_stage_completed),
    route(EvaluationCompleted, on_evaluation_completed),
    route(GatePassed, on_gate_passed),
    route(FlowRegistered, on_flow_registered),
    route(ApprovalGranted, on_approval_granted),
    route(DeploymentRequested, on_deployment_requested),
    route(DeploymentCheckRequested, on_deployment_check_requested),
    route(DeploymentTrafficRequested, on_traffic_requested),
    route(ProductionEvaluationRequested, on_production_evaluation_requested),
    route(DeploymentDegraded, on_deployment_degraded),
    route(ProductionDegraded, on_production_degraded),
    route(DecideApproval, on_decide_approval),
    route(ExpireApprovals, on_expire_approvals),
    route(SubmitFeedback, on_submit_feedback),
])


# --- the event that ends a run whose handler failed for good ------------------------------------------------
# Each takes (the event being handled, the reason) and names the dependencies it needs, as handlers do. A stage
# missing here (dataset.uploaded, pipeline.triggered, flow.registered, approval.granted, deployment.check_requested
# — a check cannot say it rolled back when it could not act) gets a dead-letter record journaled under the run's
# correlation id instead.

E = TypeVar("E", bound=Event)


def failing(event_type: type[E],
            failure: Callable[Concatenate[E, str, ...], Event]) -> tuple[type[Event], FailureEvent]:
    return event_type, failure


def _request_failed(event: ExperimentRequested, reason: str) -> Event:
    return event.follow_up(ExperimentFailed, {"use_case": event.payload.use_case,
                                              "experiment_id": experiment_id_for(event), "reasons": [reason]})


def _experiment_failed(event: Event, reason: str) -> Event:
    """For an event of an experiment under way: its payload names the use case and the experiment."""
    return event.follow_up(ExperimentFailed, {**event.payload.model_dump(include={"use_case", "experiment_id"}),
                                              "reasons": [reason]})


def _deployment_rolled_back(event: DeploymentRequested, reason: str, *, settings: Settings) -> Event:
    # It failed before any traffic moved: the prior deployments keep theirs (not looked up: `traffic` is empty).
    request = event.payload
    return event.follow_up(DeploymentRolledBack, {
        "use_case": request.use_case, "deployment": deployment_name_for(request.flow_version),
        "endpoint": endpoint_for(settings, request.use_case, request.environment),
        "reason": f"deployment failed: {reason}", "traffic": {}})


def _traffic_failed(event: DeploymentTrafficRequested, reason: str) -> Event:
    return event.follow_up(DeploymentTrafficFailed, {**event.payload.model_dump(), "traffic": {}, "reason": reason})


FAILURE_EVENTS: dict[type[Event], FailureEvent] = dict([
    failing(ExperimentRequested, _request_failed),
    failing(ExperimentItemRequested, _experiment_failed),
    failing(ExperimentStageCompleted, _experiment_failed),
    failing(EvaluationCompleted, _experiment_failed),
    failing(GatePassed, _experiment_failed),  # registering the chosen flow: the experiment's run ends there
    failing(DeploymentRequested, _deployment_rolled_back),
    failing(DeploymentTrafficRequested, _traffic_failed),
])
