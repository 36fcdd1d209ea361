"""Events of the production monitor (shared/services/monitoring.py), registered in the catalogue's ALL_EVENTS.

deployment.degraded: a deployment broke its use case's `monitoring:` thresholds over a window of production
traffic. It carries the evidence (the window's statistics and the thresholds) so the journal says why; with
`auto_rollback` its follow-up is the deployment.traffic_requested that retires it.
"""

# As in catalogue.py: the events narrow the envelope's frozen `type` and `payload`, which pyright calls an override.
# pyright: reportIncompatibleVariableOverride=false
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events.envelope import Event, Payload
from shared.events.payloads import DeploymentNamed, Environment


class WindowEvidence(Payload):
    """What the monitor measured: the routed requests of one deployment in [start, end]."""

    start: datetime
    end: datetime
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None


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


MONITORING_EVENTS: tuple[type[Event], ...] = (DeploymentDegraded,)
