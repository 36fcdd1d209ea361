"""The port that says which endpoints exist: feedback and the A/B report name a use case and an endpoint in their URL,
and both are checked against what the app knows before any storage or filesystem path is built from them.

The implementation (shared/services/ab_testing.py `DeployedEndpoints`) reads the use cases under flows/ and the
endpoint each one deploys to in the app's environment; unknown ones raise EndpointNotFound (HTTP 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.deployment.port import Deployer
from shared.feedback.telemetry import RequestTelemetry


@dataclass(frozen=True)
class KnownEndpoint:
    """A use case's configured endpoint, with the adapters of its deployment target."""

    use_case: str
    endpoint: str
    deployer: Deployer
    telemetry: RequestTelemetry | None  # None: no request telemetry is configured for the target


class EndpointDirectory(Protocol):
    def find(self, use_case: str, endpoint: str) -> KnownEndpoint:
        """The endpoint when `use_case` exists and deploys to `endpoint`; raises EndpointNotFound otherwise."""
        ...
