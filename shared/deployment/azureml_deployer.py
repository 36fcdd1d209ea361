"""Deployers on Azure ML online endpoints (azure-ai-ml): the operations shared by managed and Kubernetes online
endpoints, and managed online endpoints. The entities they send are built in azureml_entities.py.

An endpoint creation, a deployment and a traffic update are each a long-running operation (a deployment takes
10-15 minutes, sometimes 30): longer than a Function invocation may run. So `begin_*` sends the PUT and returns at
once — the LRO poller is dropped, never waited on — and `poll` re-reads the entity's `provisioning_state`
(Creating / Updating -> Succeeded | Failed | Canceled). The names in an OperationState are all it takes to find
the operation again from another invocation. A failed deployment carries the tail of its container logs.

Blue/green is the endpoint's `traffic` map: a new deployment starts at 0%, a traffic update rewrites the map (the
SDK drops the 0% entries before sending). `mirror_traffic` (shadow copies) is kept as it is, except that a
deployment given live traffic leaves it: Azure ML lets a deployment take live or mirrored traffic, not both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError
from pydantic import SecretStr

from shared.deployment.azureml_entities import (
    INFERENCE_CONFIG,
    SPEC_TAG,
    AzureMLEntities,
    is_not_found,
)
from shared.deployment.endpoint_logs import EndpointTrafficLogs
from shared.deployment.identity import EndpointIdentity
from shared.deployment.port import (
    DEPLOYMENT_HEADER,
    PROMPTFLOW_RUNTIME_IMAGE,
    DeploymentConfig,
    DeploymentError,
    DeploymentFailed,
    DeploymentRequest,
    DeploymentTarget,
    EndpointNotFound,
    InvalidTraffic,
    OperationKind,
    OperationState,
    OperationStatus,
    ScoringTarget,
    check_traffic,
)
from shared.redaction import redact_text

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import OnlineDeployment, OnlineEndpoint
    from azure.core.credentials import TokenCredential
    from azure.core.polling import LROPoller

__all__ = [
    "INFERENCE_CONFIG",
    "PROMPTFLOW_RUNTIME_IMAGE",
    "SPEC_TAG",
    "AzureMLOnlineDeployer",
    "ManagedOnlineDeployer",
    "azureml_client",
    "is_not_found",
    "workspace_client",
]

log = logging.getLogger(__name__)

# Settings naming the workspace (the same names infra/ exports to the Function App).
SUBSCRIPTION_SETTING = "AZURE_SUBSCRIPTION_ID"
RESOURCE_GROUP_SETTING = "AZURE_RESOURCE_GROUP"
WORKSPACE_SETTING = "AZUREML_WORKSPACE_NAME"

FAILED_STATES = frozenset({"failed", "canceled"})


def provisioning_status(provisioning_state: object) -> OperationStatus:
    """Azure ML's provisioning state as an operation status; anything but a final state is still pending."""
    state = str(provisioning_state or "").lower()
    if state == "succeeded":
        return OperationStatus.SUCCEEDED
    return OperationStatus.FAILED if state in FAILED_STATES else OperationStatus.PENDING


def _message(error: AzureError) -> str:
    return redact_text(str(getattr(error, "message", None) or error))[:2000]


class AzureMLOnlineDeployer(AzureMLEntities):
    """Everything managed and Kubernetes online endpoints share; subclasses name the entity classes."""

    def __init__(self, ml_client: MLClient, *, work_dir: Path, app_settings: Mapping[str, str],
                 identity: EndpointIdentity | None = None, auth_mode: str = "key", base_image: str | None = None,
                 operation_timeout_seconds: float = 300, log_lines: int = 100,
                 traffic_logs: EndpointTrafficLogs | None = None) -> None:
        """`operation_timeout_seconds` bounds the one call that still waits (remove, a clean-up no event handler
        runs); deployments and traffic updates never wait. `traffic_logs` routes each ready endpoint's request log
        to Log Analytics for the A/B report."""
        super().__init__(ml_client, work_dir=work_dir, app_settings=app_settings, identity=identity,
                         auth_mode=auth_mode, base_image=base_image)
        self._timeout = operation_timeout_seconds
        self._log_lines = log_lines
        self._traffic_logs = traffic_logs

    # --- Deployer: started, then polled ----------------------------------------------------------------------

    def begin_endpoint(self, config: DeploymentConfig) -> OperationState:
        self._check_target(config)
        state = OperationState(kind=OperationKind.ENDPOINT, endpoint=config.endpoint_name)
        try:
            entity = self._ml.online_endpoints.get(name=config.endpoint_name)
        except AzureError as error:
            if not is_not_found(error):
                raise
        else:
            self._check_existing_endpoint(entity, config)
            return self._endpoint_state(state, entity)
        log.info("creating endpoint %s (%s)", config.endpoint_name, self.target.value)
        try:
            self._ml.online_endpoints.begin_create_or_update(self._new_endpoint(config))  # polled, not waited on
        except AzureError as error:
            return state.finished(OperationStatus.FAILED,
                                  f"creation of endpoint {config.endpoint_name} failed: {_message(error)}")
        return state

    def begin_deploy(self, request: DeploymentRequest) -> OperationState:
        config = request.config
        self._check_target(config)
        endpoint, name = config.endpoint_name, request.deployment_name
        deployment, details = self._new_deployment(request)
        state = OperationState(kind=OperationKind.DEPLOYMENT, endpoint=endpoint, deployment=name, details=details)
        existing = self._existing_deployment(endpoint, name)
        if existing is not None and (existing.tags or {}).get(SPEC_TAG) == details["spec"] and \
                provisioning_status(existing.provisioning_state) is not OperationStatus.FAILED:
            # This very spec is deployed, or still being deployed by an earlier delivery: sending it again would
            # restart (or conflict with) the operation under way.
            log.info("deployment %s/%s is already this spec; not redeploying", endpoint, name)
            return self._deployment_state(state, existing)
        failure = self._ensure_connections(request)
        if failure:
            return state.finished(OperationStatus.FAILED, failure)
        log.info("deploying %s/%s (%s %s)", endpoint, name, request.flow_name, request.flow_version)
        try:
            self._ml.online_deployments.begin_create_or_update(deployment)  # polled, not waited on
        except AzureError as error:
            return state.finished(OperationStatus.FAILED, f"deployment {endpoint}/{name} failed: {_message(error)}",
                                  self._logs(endpoint, name))
        return state

    def _ensure_connections(self, request: DeploymentRequest) -> str:
        """Create or update the workspace connections the flow needs, before the deployment that loads them at
        start (create_or_update: the same connection again changes nothing). Returns why it failed, or ""."""
        entities = [self._connection_entity(connection) for connection in request.config.connections]
        for entity in entities:
            log.info("workspace connection %s: create or update (%s)", entity.name, type(entity.credentials).__name__)
            try:
                self._ml.connections.create_or_update(entity)
            except AzureError as error:
                return f"workspace connection {entity.name} could not be created or updated: {_message(error)}"
        return ""

    def begin_set_traffic(self, endpoint: str, traffic: dict[str, int]) -> OperationState:
        entity, wanted = self._traffic_update(endpoint, traffic)
        state = OperationState(kind=OperationKind.TRAFFIC, endpoint=endpoint, traffic=wanted)
        try:
            self._ml.online_endpoints.begin_create_or_update(entity)  # polled, not waited on
        except AzureError as error:
            return state.finished(OperationStatus.FAILED, f"traffic of endpoint {endpoint} failed: {_message(error)}")
        return state

    def poll(self, state: OperationState) -> OperationState:
        if not state.pending:
            return state
        if state.kind is OperationKind.DEPLOYMENT:
            existing = self._existing_deployment(state.endpoint, str(state.deployment))
            return state if existing is None else self._deployment_state(state, existing)
        try:
            entity = self._ml.online_endpoints.get(name=state.endpoint)
        except AzureError as error:
            if is_not_found(error):  # not visible yet; the caller's deadline bounds the wait
                return state
            raise
        if state.kind is OperationKind.ENDPOINT:
            return self._endpoint_state(state, entity)
        status = provisioning_status(entity.provisioning_state)
        if status is OperationStatus.FAILED:
            return state.finished(status, f"traffic update of endpoint {state.endpoint} ended "
                                          f"{entity.provisioning_state}")
        live = {str(name): int(share) for name, share in (entity.traffic or {}).items()}
        # Until the update lands, the endpoint may still read Succeeded with the old split.
        applied = all(live.get(name, 0) == share for name, share in state.traffic.items()) and \
            all(share == 0 for name, share in live.items() if name not in state.traffic)
        return state.finished(status) if status is OperationStatus.SUCCEEDED and applied else state

    # --- Deployer: quick calls ---------------------------------------------------------------------------------

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        try:
            entity = self._ml.online_endpoints.get(name=endpoint)
        except AzureError as error:
            if is_not_found(error):
                return {}
            raise
        # The SDK's get lists the deployments and fills in 0 for those without traffic.
        return {str(name): int(share) for name, share in (entity.traffic or {}).items()}

    def scoring_request(self, endpoint: str, deployment: str | None = None) -> ScoringTarget:
        entity = self._endpoint(endpoint)
        if not entity.scoring_uri:
            raise DeploymentError(f"endpoint {endpoint} has no scoring URI yet (provisioning "
                                  f"{entity.provisioning_state})")
        credentials = self._ml.online_endpoints.get_keys(name=endpoint)
        # EndpointAuthKeys (key), EndpointAuthToken (aml_token) or EndpointAadToken (aad_token).
        secret = getattr(credentials, "primary_key", None) or getattr(credentials, "access_token", None)
        if not secret:
            raise DeploymentError(f"endpoint {endpoint} returned no key or token")
        headers = {"Authorization": SecretStr(f"Bearer {secret}"), "Content-Type": SecretStr("application/json")}
        if deployment:
            headers[DEPLOYMENT_HEADER] = SecretStr(deployment)
        return ScoringTarget(url=str(entity.scoring_uri), headers=headers)

    def remove(self, endpoint: str, deployment: str) -> None:
        try:
            entity = self._ml.online_endpoints.get(name=endpoint)
        except AzureError as error:
            if is_not_found(error):
                return
            raise
        share = int((entity.traffic or {}).get(deployment, 0))
        if share:
            raise DeploymentError(f"deployment {endpoint}/{deployment} still serves {share}% of the traffic; move it "
                                  "first (rollback_traffic + begin_set_traffic)")
        if (entity.mirror_traffic or {}).get(deployment):
            entity.mirror_traffic = {k: v for k, v in entity.mirror_traffic.items() if k != deployment}
            self._finish(self._ml.online_endpoints.begin_create_or_update(entity),
                         f"mirror traffic of endpoint {endpoint}")
        try:
            self._finish(self._ml.online_deployments.begin_delete(name=deployment, endpoint_name=endpoint),
                         f"removal of {endpoint}/{deployment}")
        except (AzureError, DeploymentFailed) as error:
            if not is_not_found(error):  # already gone: removal is idempotent
                raise

    # --- internals -----------------------------------------------------------------------------------------------

    def _endpoint_state(self, state: OperationState, entity: OnlineEndpoint) -> OperationState:
        status = provisioning_status(entity.provisioning_state)
        if status is OperationStatus.FAILED:
            return state.finished(status, f"endpoint {state.endpoint} ended {entity.provisioning_state}")
        if status is not OperationStatus.SUCCEEDED:
            return state
        if self._traffic_logs is not None and entity.id:
            self._traffic_logs.ensure(entity.id)
        return state.finished(status)

    def _deployment_state(self, state: OperationState, entity: OnlineDeployment) -> OperationState:
        status = provisioning_status(entity.provisioning_state)
        if status is OperationStatus.FAILED:
            return state.finished(status, f"deployment {state.endpoint}/{state.deployment} ended "
                                          f"{entity.provisioning_state}", self._logs(state.endpoint,
                                                                                     str(state.deployment)))
        return state.finished(status) if status is OperationStatus.SUCCEEDED else state

    def _traffic_update(self, endpoint: str, traffic: dict[str, int]) -> tuple[OnlineEndpoint, dict[str, int]]:
        """The endpoint entity carrying `traffic`, and the full split it asks for (0 for the others)."""
        check_traffic(traffic)
        entity = self._endpoint(endpoint)
        live, mirror = dict(entity.traffic or {}), dict(entity.mirror_traffic or {})
        unknown = sorted(set(traffic) - set(live) - set(mirror))
        if unknown:
            raise InvalidTraffic(f"endpoint {endpoint} has no deployment {', '.join(unknown)}; it has "
                                 f"{', '.join(sorted(set(live) | set(mirror))) or 'none'}")
        wanted = {**{str(name): 0 for name in live}, **traffic}
        entity.traffic = dict(wanted)
        # A deployment takes live or mirrored traffic, never both.
        entity.mirror_traffic = {name: share for name, share in mirror.items() if not traffic.get(name)}
        return entity, wanted

    def _endpoint(self, name: str) -> OnlineEndpoint:
        try:
            return self._ml.online_endpoints.get(name=name)
        except AzureError as error:
            if is_not_found(error):
                raise EndpointNotFound(f"endpoint {name} does not exist") from error
            raise

    def _existing_deployment(self, endpoint: str, name: str) -> OnlineDeployment | None:
        try:
            return self._ml.online_deployments.get(name=name, endpoint_name=endpoint)
        except AzureError as error:
            if is_not_found(error):
                return None
            raise

    def _logs(self, endpoint: str, deployment: str) -> str:
        try:
            text = self._ml.online_deployments.get_logs(name=deployment, endpoint_name=endpoint,
                                                        lines=self._log_lines)
        except Exception as error:  # noqa: BLE001 - logs only decorate the real error; never mask it
            return f"(logs unavailable: {type(error).__name__})"
        return redact_text(str(text))

    def _finish(self, poller: LROPoller[Any], what: str, logs: Callable[[], str] | None = None) -> Any:
        """Wait for one short operation (a removal), bounded by operation_timeout_seconds."""
        try:
            poller.wait(timeout=self._timeout)
            if not poller.done():
                raise DeploymentFailed(f"{what}: not finished after {self._timeout:.0f} s; it goes on in Azure ML — "
                                       "check it there before retrying", logs() if logs else "")
            return poller.result()
        except AzureError as error:
            raise DeploymentFailed(f"{what} failed: {_message(error)}", logs() if logs else "") from error


class ManagedOnlineDeployer(AzureMLOnlineDeployer):
    """Managed online endpoints: Azure ML runs the VMs (instance_type is a VM size)."""

    target = DeploymentTarget.AML_MANAGED

    def _endpoint_class(self) -> type[OnlineEndpoint]:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        return ManagedOnlineEndpoint

    def _deployment_class(self) -> type[OnlineDeployment]:
        from azure.ai.ml.entities import ManagedOnlineDeployment

        return ManagedOnlineDeployment


def azureml_client(subscription_id: str, resource_group: str, workspace_name: str,
                   credential: TokenCredential) -> MLClient:
    from azure.ai.ml import MLClient  # heavy: only when an Azure ML target is used

    return MLClient(credential=credential, subscription_id=subscription_id, resource_group_name=resource_group,
                    workspace_name=workspace_name)


def workspace_client(credential: TokenCredential, subscription_id: str | None, resource_group: str | None,
                     workspace_name: str | None) -> MLClient:
    """The workspace the app settings name (Settings: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP,
    AZUREML_WORKSPACE_NAME); DeploymentError naming the settings that are missing."""
    named = ((SUBSCRIPTION_SETTING, subscription_id), (RESOURCE_GROUP_SETTING, resource_group),
             (WORKSPACE_SETTING, workspace_name))
    missing = [setting for setting, value in named if not value]
    if missing:
        raise DeploymentError(f"Azure ML deployment needs the settings {', '.join(missing)}")
    return azureml_client(str(subscription_id), str(resource_group), str(workspace_name), credential)
