"""Composition root: the real adapters, built from settings once per process on first use — not at import,
so importing function_app.py (the cold start) stays cheap. Heavy SDKs load here, lazily."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.application import Application
    from shared.deployment.identity import EndpointIdentity
    from shared.deployment.port import Deployer
    from shared.experiments.remote_runner import RemoteFlowRunner
    from shared.feedback.telemetry import RequestTelemetry
    from shared.notifications import Notifier
    from shared.ports import BlobStore, Clock, EventPublisher
    from shared.registry.port import Registry
    from shared.services.ab_testing import DeployedEndpoints
    from shared.services.approvals import ApprovalSettings
    from shared.services.deployments import DeploymentWorkspace
    from shared.services.experiments import ExperimentWorkspace
    from shared.settings import Settings


@lru_cache(maxsize=1)
def get_application() -> Application:
    from shared.adapters.servicebus import ServiceBusPublisher, servicebus_client
    from shared.observability import configure_telemetry, install_masking
    from shared.settings import get_settings

    settings = get_settings()
    install_masking(settings.app_settings)  # in Azure the worker owns the log handlers; the masking must reach them
    configure_telemetry(settings.appinsights_connection_string)
    return build_application(settings, ServiceBusPublisher(servicebus_client(settings), settings.events_queue))


def build_application(settings: Settings, bus: EventPublisher) -> Application:
    """The application on the real adapters, publishing to `bus` (Service Bus in the Function App; a queue in
    memory for `genaiops run`, which drives an experiment on one machine through the same entry point)."""
    from shared.adapters.azure_blob import AzureBlobStore, blob_service_client
    from shared.adapters.clock import SystemClock
    from shared.adapters.promptflow_runner import PromptflowRunner
    from shared.application import Application

    clock = SystemClock()
    blobs = AzureBlobStore(blob_service_client(settings))
    return Application(settings, blobs, bus, clock, PromptflowRunner(), build_registry(settings, blobs, clock),
                       build_deployments(settings, blobs, clock), remote_runner=build_remote_runner(settings))


def build_remote_runner(settings: Settings) -> RemoteFlowRunner | None:
    """The Azure ML runner when a workspace is configured (it connects on first use); None keeps every run local."""
    if not settings.azureml_workspace_name:
        return None
    from shared.adapters.azureml_runner import azureml_runner_from_settings
    from shared.adapters.credentials import azure_credential

    return azureml_runner_from_settings(settings, azure_credential())


@dataclass(frozen=True)
class HandlerDependencies:
    """Everything a handler may name. The bus injects, by name, only the fields a handler's signature asks for;
    the application and the tests' buses build this one set."""

    settings: Settings
    blobs: BlobStore
    clock: Clock
    experiments: ExperimentWorkspace
    registry: Registry
    approvals: ApprovalSettings
    notifier: Notifier  # approvals waiting, deployments degraded
    deployments: DeploymentWorkspace
    endpoints: DeployedEndpoints  # what feedback may rate

    def by_name(self) -> dict[str, object]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def handler_dependencies(settings: Settings, blobs: BlobStore, clock: Clock, experiments: ExperimentWorkspace,
                         registry: Registry, deployments: DeploymentWorkspace) -> HandlerDependencies:
    from shared.notifications import notifier_for
    from shared.services.ab_testing import DeployedEndpoints
    from shared.services.approvals import ApprovalSettings

    return HandlerDependencies(settings, blobs, clock, experiments, registry, ApprovalSettings.of(settings),
                               notifier_for(settings.approval_webhook_url), deployments,
                               DeployedEndpoints(deployments, settings.environment))


def build_deployments(settings: Settings, blobs: BlobStore, clock: Clock) -> DeploymentWorkspace:
    """A deployer and a request telemetry per target: the local target from the factory LOCAL_DEPLOYER_FACTORY
    names (the local stack's; absent from the Function package), Azure ML deployers and their traffic log on
    demand."""
    from shared.deployment.port import DeploymentConfig, DeploymentTarget
    from shared.deployment.targets import UnavailableTarget, local_target
    from shared.services.deployments import DeploymentWorkspace
    from shared.smoke.tester import SmokeTester

    local = local_target(settings.local_deployer_factory, settings, blobs, clock)

    def deployer_for(config: DeploymentConfig) -> Deployer:
        if config.target is DeploymentTarget.LOCAL:
            return local.deployer
        from shared.adapters.credentials import azure_credential
        from shared.deployment import azureml_deployer_for
        from shared.deployment.azureml_deployer import workspace_client
        from shared.deployment.endpoint_logs import endpoint_traffic_logs

        credential = azure_credential()
        client = workspace_client(credential, settings.azure_subscription_id, settings.azure_resource_group,
                                  settings.azureml_workspace_name)
        return azureml_deployer_for(config.target, client, work_dir=settings.work_dir / "deployments",
                                    app_settings=settings.app_settings, identity=endpoint_identity(settings),
                                    traffic_logs=endpoint_traffic_logs(
                                        credential, settings.azure_subscription_id,
                                        settings.log_analytics_workspace_resource_id))

    def telemetry_for(config: DeploymentConfig) -> RequestTelemetry:
        if config.target is DeploymentTarget.LOCAL:
            return local.telemetry
        if not settings.log_analytics_workspace_id:
            return UnavailableTarget("LOG_ANALYTICS_WORKSPACE_ID is not set: the A/B report reads Azure ML endpoints' "
                                     "traffic from that Log Analytics workspace")
        return _log_analytics(settings.log_analytics_workspace_id)

    return DeploymentWorkspace(flows_root=settings.flows_dir, work_root=settings.work_dir, deployer_for=deployer_for,
                               tester=SmokeTester(blobs, clock), app_settings=settings.app_settings,
                               local_stack=settings.local_stack, telemetry_for=telemetry_for)


@lru_cache(maxsize=4)
def _log_analytics(workspace_id: str) -> RequestTelemetry:
    from shared.adapters.credentials import azure_credential
    from shared.feedback.azure_telemetry import LogAnalyticsTelemetry

    return LogAnalyticsTelemetry.from_credential(azure_credential(), workspace_id)


def endpoint_identity(settings: Settings) -> EndpointIdentity | None:
    """The user-assigned identity deployed flows run as, when Terraform made one (it holds its roles before the
    endpoint exists); None leaves Azure ML to create a system-assigned identity per endpoint."""
    if not (settings.azureml_endpoint_identity_id and settings.azureml_endpoint_identity_client_id):
        return None
    from shared.deployment.identity import EndpointIdentity

    return EndpointIdentity(resource_id=settings.azureml_endpoint_identity_id,
                            client_id=settings.azureml_endpoint_identity_client_id)


def build_registry(settings: Settings, blobs: BlobStore, clock: Clock) -> Registry:
    if settings.registry_backend == "blob":
        from shared.registry.blob_registry import BlobRegistry

        return BlobRegistry(blobs, clock)
    from shared.adapters.credentials import azure_credential
    from shared.registry.azureml_registry import azureml_registry_from_settings, https_paths

    missing = [name for name, value in (("AZURE_SUBSCRIPTION_ID", settings.azure_subscription_id),
                                        ("AZURE_RESOURCE_GROUP", settings.azure_resource_group),
                                        ("AZUREML_WORKSPACE_NAME", settings.azureml_workspace_name)) if not value]
    if missing or not settings.storage_blob_uri:
        needed = ", ".join(missing or ["GenAIOpsStorage__blobServiceUri"])
        raise RuntimeError(f"REGISTRY_BACKEND=azureml needs {needed}")
    # Data assets point at the uploaded blobs over https; the workspace identity reads them (Storage Blob Data Reader).
    return azureml_registry_from_settings(
        str(settings.azure_subscription_id), str(settings.azure_resource_group), str(settings.azureml_workspace_name),
        azure_credential(), datastore_uri_for=https_paths(settings.storage_blob_uri))
