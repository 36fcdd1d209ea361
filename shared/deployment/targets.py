"""What the composition root needs per deployment target: its Deployer and its RequestTelemetry.

The local target (flow servers behind an A/B router on 127.0.0.1) lives in the local stack, not in shared/: the
setting LOCAL_DEPLOYER_FACTORY names a factory `module:function` (the local stack writes
`localstack.deployment:build_local_target`) called as factory(settings, blobs, clock) -> TargetAdapters. It is
loaded with importlib, so nothing in shared/ imports localstack, and a Function package (which ships no localstack/)
whose settings ask for the local target gets `UnavailableTarget`: every deployment to it ends at once in
deployment.rolled_back with the reason, the A/B report answers with it — no retries, no dead letters.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.deployment.port import (
    DeploymentConfig,
    DeploymentError,
    DeploymentRequest,
    OperationKind,
    OperationState,
    OperationStatus,
    ScoringTarget,
)
from shared.feedback.telemetry import ServedRequests, TelemetryError

if TYPE_CHECKING:
    from shared.deployment.port import Deployer
    from shared.feedback.telemetry import RequestTelemetry

LOCAL_ONLY = "the local target is only available in the local stack"


@dataclass(frozen=True)
class TargetAdapters:
    deployer: Deployer
    telemetry: RequestTelemetry


class UnavailableTarget:
    """A target this app cannot serve: a Deployer whose every operation fails with `reason` (the endpoint step
    fails at once, so the deployment service rolls back without retrying), and a RequestTelemetry that says so."""

    live = False  # nothing is recorded here

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def adapters(self) -> TargetAdapters:
        return TargetAdapters(deployer=self, telemetry=self)

    def begin_endpoint(self, config: DeploymentConfig) -> OperationState:
        return OperationState(kind=OperationKind.ENDPOINT, endpoint=config.endpoint_name,
                              status=OperationStatus.FAILED, message=self.reason)

    def begin_deploy(self, request: DeploymentRequest) -> OperationState:
        raise DeploymentError(self.reason)

    def begin_set_traffic(self, endpoint: str, traffic: dict[str, int]) -> OperationState:
        raise DeploymentError(self.reason)

    def poll(self, state: OperationState) -> OperationState:
        return state

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        return {}  # nothing of this target exists here

    def scoring_request(self, endpoint: str, deployment: str | None = None) -> ScoringTarget:
        raise DeploymentError(self.reason)

    def remove(self, endpoint: str, deployment: str) -> None:
        raise DeploymentError(self.reason)

    def served_requests(self, endpoint: str, start: datetime, end: datetime, *,
                        deployment: str | None = None) -> ServedRequests:
        raise TelemetryError(self.reason)


def load_factory(spec: str) -> Any:
    """The callable named by 'package.module:function'; DeploymentError when it cannot be loaded."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise DeploymentError(f"LOCAL_DEPLOYER_FACTORY={spec!r} is not 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        raise DeploymentError(f"{LOCAL_ONLY} ({missing.name} is not in this package)") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise DeploymentError(f"LOCAL_DEPLOYER_FACTORY={spec!r}: {module_name} has no function {attribute}")
    return factory


def local_target(spec: str | None, *args: Any) -> TargetAdapters:
    """The local target's adapters from the factory `spec` names, or an UnavailableTarget saying why not."""
    if not spec:
        return UnavailableTarget(f"{LOCAL_ONLY} (LOCAL_DEPLOYER_FACTORY is not set)").adapters()
    try:
        factory = load_factory(spec)
    except DeploymentError as unavailable:
        return UnavailableTarget(str(unavailable)).adapters()
    adapters = factory(*args)
    if not isinstance(adapters, TargetAdapters):
        raise TypeError(f"{spec} returned {type(adapters).__name__}, not TargetAdapters")
    return adapters
