"""Every event of the lifecycle, version 1 (their payloads are in shared.events.payloads).

Adding an event: a payload model, an event class with its `type` literal, an entry in `ALL_EVENTS`.
A breaking payload change is a new `version`; the codec rejects versions it does not know.
"""

# Each event narrows the envelope's `type` and `payload` (a discriminated union); the models are frozen, which pydantic
# knows from model_config and pyright does not, so it calls the narrowing an invariant override.
# pyright: reportIncompatibleVariableOverride=false
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter

from shared.events.envelope import Event

# Metrics and Name are re-exported for shared.approvals, which takes them from here; new code imports payloads.
from shared.events.payloads import (  # noqa: F401
    ApprovalDecisionPayload,
    ApprovalRequestedPayload,
    DataRegisteredPayload,
    DatasetUploadedPayload,
    DeploymentCheckRequestedPayload,
    DeploymentRefPayload,
    DeploymentRequestedPayload,
    DeploymentRolledBackPayload,
    DeploymentUnchangedPayload,
    EvaluationCompletedPayload,
    ExperimentCompletedPayload,
    ExperimentFailedPayload,
    ExperimentItemRequestedPayload,
    ExperimentProgressedPayload,
    ExperimentRequestedPayload,
    ExperimentStageCompletedPayload,
    FlowRegisteredPayload,
    GateVerdictPayload,
    Metrics,
    Name,
    PipelineTriggeredPayload,
    SmokeResultPayload,
    TrafficChangedPayload,
    TrafficFailedPayload,
    TrafficRequestPayload,
)

# --- the events --------------------------------------------------------------------------------

class DatasetUploaded(Event):
    type: Literal["dataset.uploaded"] = "dataset.uploaded"
    payload: DatasetUploadedPayload


class DataRegistered(Event):
    type: Literal["data.registered"] = "data.registered"
    payload: DataRegisteredPayload


class ExperimentRequested(Event):
    type: Literal["experiment.requested"] = "experiment.requested"
    payload: ExperimentRequestedPayload


class ExperimentCompleted(Event):
    type: Literal["experiment.completed"] = "experiment.completed"
    payload: ExperimentCompletedPayload


class ExperimentFailed(Event):
    type: Literal["experiment.failed"] = "experiment.failed"
    payload: ExperimentFailedPayload


class EvaluationCompleted(Event):
    type: Literal["evaluation.completed"] = "evaluation.completed"
    payload: EvaluationCompletedPayload


class ExperimentItemRequested(Event):
    type: Literal["experiment.item_requested"] = "experiment.item_requested"
    payload: ExperimentItemRequestedPayload


class ExperimentStageCompleted(Event):
    type: Literal["experiment.stage_completed"] = "experiment.stage_completed"
    payload: ExperimentStageCompletedPayload


class ExperimentProgressed(Event):
    type: Literal["experiment.progressed"] = "experiment.progressed"
    payload: ExperimentProgressedPayload


class GatePassed(Event):
    type: Literal["gate.passed"] = "gate.passed"
    payload: GateVerdictPayload


class GateFailed(Event):
    type: Literal["gate.failed"] = "gate.failed"
    payload: GateVerdictPayload


class FlowRegistered(Event):
    type: Literal["flow.registered"] = "flow.registered"
    payload: FlowRegisteredPayload


class ApprovalRequested(Event):
    type: Literal["approval.requested"] = "approval.requested"
    payload: ApprovalRequestedPayload


class ApprovalGranted(Event):
    type: Literal["approval.granted"] = "approval.granted"
    payload: ApprovalDecisionPayload


class ApprovalRejected(Event):
    type: Literal["approval.rejected"] = "approval.rejected"
    payload: ApprovalDecisionPayload


class ApprovalExpired(Event):
    type: Literal["approval.expired"] = "approval.expired"
    payload: ApprovalDecisionPayload


class DeploymentRequested(Event):
    type: Literal["deployment.requested"] = "deployment.requested"
    payload: DeploymentRequestedPayload


class DeploymentUnchanged(Event):
    """The gate chose a flow whose registered version already serves: no approval is asked, nothing deploys; a
    pipeline waiting for its deployment takes this as done."""

    type: Literal["deployment.unchanged"] = "deployment.unchanged"
    payload: DeploymentUnchangedPayload


class DeploymentCompleted(Event):
    type: Literal["deployment.completed"] = "deployment.completed"
    payload: DeploymentRefPayload


class DeploymentVerified(Event):
    type: Literal["deployment.verified"] = "deployment.verified"
    payload: DeploymentRefPayload


class SmokePassed(Event):
    type: Literal["smoke.passed"] = "smoke.passed"
    payload: SmokeResultPayload


class SmokeFailed(Event):
    type: Literal["smoke.failed"] = "smoke.failed"
    payload: SmokeResultPayload


class DeploymentRolledBack(Event):
    type: Literal["deployment.rolled_back"] = "deployment.rolled_back"
    payload: DeploymentRolledBackPayload


class DeploymentCheckRequested(Event):
    type: Literal["deployment.check_requested"] = "deployment.check_requested"
    payload: DeploymentCheckRequestedPayload


class DeploymentTrafficRequested(Event):
    type: Literal["deployment.traffic_requested"] = "deployment.traffic_requested"
    payload: TrafficRequestPayload


class DeploymentTrafficChanged(Event):
    type: Literal["deployment.traffic_changed"] = "deployment.traffic_changed"
    payload: TrafficChangedPayload


class DeploymentTrafficFailed(Event):
    type: Literal["deployment.traffic_failed"] = "deployment.traffic_failed"
    payload: TrafficFailedPayload


class PipelineTriggered(Event):
    type: Literal["pipeline.triggered"] = "pipeline.triggered"
    payload: PipelineTriggeredPayload


# Defined in their own module (it builds on the payloads above, hence the import here).
from shared.events.monitoring import MONITORING_EVENTS  # noqa: E402

ALL_EVENTS: tuple[type[Event], ...] = (
    DatasetUploaded, DataRegistered, ExperimentRequested, ExperimentCompleted, ExperimentFailed,
    EvaluationCompleted, ExperimentItemRequested, ExperimentStageCompleted, ExperimentProgressed, GatePassed,
    GateFailed, FlowRegistered, ApprovalRequested, ApprovalGranted, ApprovalRejected, ApprovalExpired,
    DeploymentRequested, DeploymentCompleted, DeploymentVerified, DeploymentUnchanged,
    SmokePassed, SmokeFailed, DeploymentRolledBack, DeploymentTrafficRequested, DeploymentTrafficChanged,
    PipelineTriggered, DeploymentCheckRequested, DeploymentTrafficFailed, *MONITORING_EVENTS,
)
EVENT_TYPES: dict[str, type[Event]] = {cls.event_type(): cls for cls in ALL_EVENTS}
# An experiment's own bookkeeping (a message per work item): journaled, but not what a person follows.
EXPERIMENT_WORK_EVENTS = frozenset({ExperimentItemRequested.event_type(), ExperimentStageCompleted.event_type()})

AnyEvent = Annotated[Union[ALL_EVENTS], Field(discriminator="type")]  # noqa: UP007 - so each event is listed once
ANY_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)  # pyright: ignore[reportArgumentType] - a union built from a tuple


def event_class(event_type: str) -> type[Event]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise KeyError(f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}") from None
