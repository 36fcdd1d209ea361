"""Events of the production monitor (shared/services/monitoring.py) and of the post-production evaluation
(shared/services/production_evaluation.py), registered in the catalogue's ALL_EVENTS.

deployment.degraded: a deployment broke its use case's `monitoring:` thresholds over a window of production
traffic. It carries the evidence (the window's statistics and the thresholds) so the journal says why; with
`auto_rollback` its follow-up is the deployment.traffic_requested that retires it.
production.evaluation_requested: a use case's `monitoring.evaluation` schedule fired (the timer asks; a bus handler
judges, so the long work is retried like any other). production.evaluated: the sampled new lines were judged, the
metrics per deployment are in the payload and the report. production.degraded: a deployment's judged answers broke
a threshold.
"""

# As in catalogue.py: the events narrow the envelope's frozen `type` and `payload`, which pyright calls an override.
# pyright: reportIncompatibleVariableOverride=false
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events.envelope import Event, Payload
from shared.events.payloads import DeploymentNamed, Environment, Name


class WindowStatistics(Payload):
    """One deployment's routed requests over a window (shared.monitoring.window computes them)."""

    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None


class WindowEvidence(WindowStatistics):
    """What the monitor measured: the routed requests of one deployment in [start, end]."""

    start: datetime
    end: datetime


class MonitoringThresholds(Payload):
    min_requests: int = Field(ge=1)
    max_error_rate: float | None = None
    latency_p95_ms: float | None = None


class DeploymentDegradedPayload(DeploymentNamed):
    environment: Environment
    breaches: list[str] = Field(min_length=1, description="One sentence per threshold broken.")
    window: WindowEvidence
    thresholds: MonitoringThresholds
    traffic: dict[str, int] = Field(description="The endpoint's split when the breach was seen.")
    rollback: Literal["requested", "disabled", "impossible"] = Field(
        description="requested: a deployment.traffic_requested (retire) follows; disabled: auto_rollback is off; "
                    "impossible: no other deployment to move the traffic to.")


class DeploymentDegraded(Event):
    type: Literal["deployment.degraded"] = "deployment.degraded"
    payload: DeploymentDegradedPayload


class ProductionEvaluationRequestedPayload(Payload):
    use_case: Name
    environment: Environment
    window_end: datetime = Field(description="The schedule's firing: lines up to it are judged.")


class ProductionEvaluationRequested(Event):
    type: Literal["production.evaluation_requested"] = "production.evaluation_requested"
    payload: ProductionEvaluationRequestedPayload


class DeploymentJudgement(Payload):
    deployment: Name
    lines: int = Field(ge=0, description="Lines judged this run.")
    failed_lines: int = Field(ge=0, description="Lines an evaluator could not score (in the report, with why).")
    metrics: dict[str, float] = Field(default_factory=dict, description="'<evaluator>.<output>' -> mean")


class ProductionEvaluatedPayload(Payload):
    use_case: Name
    endpoint: Name
    environment: Environment
    window_start: datetime
    window_end: datetime
    deployments: list[DeploymentJudgement]
    left_over: int = Field(ge=0, description="Sampled new lines over the cap or past the time budget.")
    report_uri: str


class ProductionEvaluated(Event):
    type: Literal["production.evaluated"] = "production.evaluated"
    payload: ProductionEvaluatedPayload


class MetricBound(Payload):
    metric: str
    min: float | None = None
    max: float | None = None


class ProductionDegradedPayload(DeploymentNamed):
    environment: Environment
    breaches: list[str] = Field(min_length=1, description="One sentence per threshold broken.")
    lines: int = Field(ge=0)
    metrics: dict[str, float]
    thresholds: list[MetricBound]
    window_end: datetime
    report_uri: str


class ProductionDegraded(Event):
    type: Literal["production.degraded"] = "production.degraded"
    payload: ProductionDegradedPayload


MONITORING_EVENTS: tuple[type[Event], ...] = (DeploymentDegraded, ProductionEvaluationRequested,
                                              ProductionEvaluated, ProductionDegraded)
