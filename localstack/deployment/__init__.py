"""The local deployment target: each deployment a flow server on a 127.0.0.1 port, each endpoint an A/B router in
front of them (localstack/serving), and the router's request log as the A/B report's telemetry.

The app's composition root (shared/bootstrap.py) loads `build_local_target` by name from the setting
LOCAL_DEPLOYER_FACTORY, which the local stack writes; shared/ never imports this package.
Importing it loads nothing heavy: the deployer and the processes load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.deployment.targets import TargetAdapters
    from shared.ports import BlobStore, Clock
    from shared.settings import Settings

FACTORY = "localstack.deployment:build_local_target"

__all__ = ["FACTORY", "build_local_target"]


def build_local_target(settings: Settings, blobs: BlobStore, clock: Clock) -> TargetAdapters:
    """One local deployer per process (it holds the flow servers' handles) and its routers' telemetry."""
    from localstack.deployment.local_deployer import LocalDeployer, experiment_connections
    from localstack.deployment.local_state import experiment_mask_fields
    from localstack.deployment.telemetry import RouterTelemetry
    from shared.deployment.targets import TargetAdapters

    deployer = LocalDeployer(blobs, clock, work_dir=settings.work_dir / "deployments",
                             connections_for=experiment_connections(settings.flows_dir, settings.environment),
                             router_seed=settings.local_router_seed,
                             production_log_connection=_storage_connection(settings),
                             mask_fields_for=experiment_mask_fields(settings.flows_dir, settings.environment))
    return TargetAdapters(deployer=deployer, telemetry=RouterTelemetry(deployer))


def _storage_connection(settings: Settings) -> str | None:
    """The app's storage for the routers' production log: the local stack's Azurite connection string."""
    secret = settings.storage_connection_string
    return secret.get_secret_value() if secret else None
