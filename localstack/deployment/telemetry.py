"""RequestTelemetry for the local target: what each endpoint's A/B router records, one JSON line per scoring request
(localstack/serving/ab_router.py `JsonlTelemetry`), in the file the endpoint's state names."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from shared.feedback.telemetry import ServedRequests, in_window


class _TelemetryFiles(Protocol):
    def telemetry_file(self, endpoint: str) -> Path: ...


class RouterTelemetry:
    live = True  # the router appends the record before it answers

    def __init__(self, deployer: _TelemetryFiles) -> None:
        self.deployer = deployer

    def served_requests(self, endpoint: str, start: datetime, end: datetime, *,
                        deployment: str | None = None) -> ServedRequests:
        """The router's records in the window; EndpointNotFound when there is no such local endpoint."""
        from localstack.serving.ab_router import read_telemetry

        records = read_telemetry(self.deployer.telemetry_file(endpoint))
        return ServedRequests(requests=in_window(records, start, end, deployment))
