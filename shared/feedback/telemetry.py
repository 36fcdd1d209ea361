"""The RequestTelemetry port: the scoring requests an endpoint served, per deployment, over a time window — what the
A/B report counts traffic, errors and latency from, and attributes feedback by (request id).

Adapters: the local A/B router's request log (localstack/deployment/telemetry.py) and Azure ML online endpoints'
traffic log in Log Analytics (shared/feedback/azure_telemetry.py). The composition root picks one per target.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, Field

from shared.deployment.port import DeploymentError

REPORT_WINDOW = timedelta(days=30)  # Log Analytics' default retention: what the A/B report and feedback look back


class ServedRequest(BaseModel):
    """One scoring request as the endpoint (its router, or its traffic log) saw it."""

    time: datetime
    endpoint: str
    request_id: str
    deployment: str | None = Field(description="None when no deployment could be chosen")
    pinned: bool = Field(default=False, description="routed by the azureml-model-deployment header, not the split")
    status: int
    latency_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ServedRequests(BaseModel):
    """The requests found in a window; `warning` says why they may be incomplete (a partial query result)."""

    requests: list[ServedRequest] = Field(default_factory=list)
    warning: str | None = None


class TelemetryError(DeploymentError):
    """The telemetry could not be read at all (the query failed, the log is not reachable)."""


class RequestTelemetry(Protocol):
    # True when a request is in the telemetry before its answer reaches the caller (the local router logs it
    # first), so feedback naming an unknown request id can be refused. False for a log ingested later (Log
    # Analytics takes minutes): there an id not found yet proves nothing.
    live: bool

    def served_requests(self, endpoint: str, start: datetime, end: datetime, *,
                        deployment: str | None = None) -> ServedRequests:
        """The requests `endpoint` served from `start` to `end` (of one deployment when named), oldest first.
        Raises TelemetryError when nothing could be read, EndpointNotFound when the endpoint is unknown."""
        ...


def in_window(records: list[ServedRequest], start: datetime, end: datetime,
              deployment: str | None = None) -> list[ServedRequest]:
    """The records within [start, end] (and of `deployment` when named), oldest first."""
    return sorted((r for r in records if start <= r.time <= end and (deployment is None or r.deployment == deployment)),
                  key=lambda r: r.time)
