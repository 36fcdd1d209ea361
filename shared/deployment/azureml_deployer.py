"""Deployers on Azure ML online endpoints (azure-ai-ml): the shared base, and managed online endpoints.

A prompt flow deploys the way Azure ML documents it (prompt-flow/how-to-deploy-to-code):
- model: the flow folder as a custom model with `azureml.promptflow.source_flow_id` (which also lifts the request
  timeout limit to 5 minutes). The registry already registers each flow version so (`azureml:<flow>:<version>`);
  when it has not, the folder is registered inline under the same name and version.
- environment: the prompt flow serving image, or a build context on top of it when the flow has a
  requirements.txt, with the inference config Azure ML needs for a custom container (/health, /score on 8080).
- environment variables: PROMPTFLOW_RUN_MODE=serving, and PRT_CONFIG_OVERRIDE naming the workspace, endpoint and
  deployment so the container pulls the flow's connections from the workspace through the endpoint identity —
  no secret is ever passed to a deployment.

Blue/green is the endpoint's `traffic` map: a new deployment starts at 0%, `set_traffic` rewrites the map (the SDK
drops the 0% entries before sending). `mirror_traffic` (shadow copies) is kept as it is, except that a deployment
given live traffic leaves it: Azure ML lets a deployment take live or mirrored traffic, not both.

Every long operation is an LRO; we wait for it up to `operation_timeout_seconds` (Azure ML deployments take 10-15
minutes) and turn a failure into DeploymentFailed with the tail of the deployment's container logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from azure.core.exceptions import AzureError

from shared.deployment.identity import EndpointIdentity
from shared.deployment.port import (
    DEPLOYMENT_HEADER,
    KEY_VAULT_REFERENCE,
    Deployed,
    DeploymentConfig,
    DeploymentError,
    DeploymentFailed,
    DeploymentRequest,
    DeploymentTarget,
    EndpointNotFound,
    InvalidTraffic,
    ScoringTarget,
    check_traffic,
)
from shared.redaction import redact_text

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import DataCollector, Environment, Model, OnlineDeployment, OnlineEndpoint
    from azure.core.credentials import TokenCredential
    from azure.core.polling import LROPoller

log = logging.getLogger(__name__)

# Settings naming the workspace (the same names infra/ exports to the Function App).
SUBSCRIPTION_SETTING = "AZURE_SUBSCRIPTION_ID"
RESOURCE_GROUP_SETTING = "AZURE_RESOURCE_GROUP"
WORKSPACE_SETTING = "AZUREML_WORKSPACE_NAME"

PROMPTFLOW_RUNTIME_IMAGE = "mcr.microsoft.com/azureml/promptflow/promptflow-runtime:latest"
SERVING_PORT = 8080
INFERENCE_CONFIG = {
    "liveness_route": {"path": "/health", "port": SERVING_PORT},
    "readiness_route": {"path": "/health", "port": SERVING_PORT},
    "scoring_route": {"path": "/score", "port": SERVING_PORT},
}
SOURCE_FLOW_PROPERTY = "azureml.promptflow.source_flow_id"
SPEC_TAG = "genaiops.spec"
# Set by the deployer; a user value would break connections or identity, so experiment.yaml may not set them.
RESERVED_VARIABLES = frozenset({"PROMPTFLOW_RUN_MODE", "PRT_CONFIG_OVERRIDE", "AZURE_CLIENT_ID",
                                "PROMPTFLOW_MDC_ENABLE"})
# What promptflow's serving app writes through the Azure ML data collector (promptflow.core._serving.monitor).
DATA_COLLECTIONS = ("model_inputs", "model_outputs", "app_traces")
PROBE_PERIOD_SECONDS = 10
FAILED_STATES = frozenset({"failed", "canceled"})


def is_not_found(error: BaseException) -> bool:
    """The SDK reports a missing resource as ResourceNotFoundError, or (assets) a RESOURCE_NOT_FOUND
    ValidationException, sometimes wrapped; follow the chain."""
    from azure.ai.ml.exceptions import ValidationErrorType, ValidationException
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ResourceNotFoundError):
            return True
        if isinstance(seen, HttpResponseError) and seen.status_code == 404:
            return True
        if isinstance(seen, ValidationException) and seen.error_type == ValidationErrorType.RESOURCE_NOT_FOUND:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _spec_hash(request: DeploymentRequest, extra: Mapping[str, Any]) -> str:
    """What the deployment is made of; equal hash = nothing to update (a redelivered event changes nothing)."""
    # Traffic and the smoke test's own settings do not change the deployment; its readiness budget does (probes).
    config = request.config.model_dump(mode="json", exclude={"traffic": True,
                                                             "smoke": {"samples": True, "latency_budget_ms": True}})
    body = {"flow": request.flow_name, "version": request.flow_version, "config": config, **extra}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _requirements_file(flow_dir: Path) -> Path | None:
    """The flow's requirements (flow.dag.yaml environment.python_requirements_txt, else requirements.txt), if it
    names any package."""
    name = "requirements.txt"
    dag = flow_dir / "flow.dag.yaml"
    if dag.is_file():
        environment = (yaml.safe_load(dag.read_text(encoding="utf-8")) or {}).get("environment") or {}
        name = str(environment.get("python_requirements_txt") or name)
    path = flow_dir / name
    if not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return path if any(line and not line.startswith("#") for line in lines) else None


class AzureMLOnlineDeployer(ABC):
    """Everything managed and Kubernetes online endpoints share; subclasses build the two entities."""

    target: ClassVar[DeploymentTarget]

    def __init__(self, ml_client: MLClient, *, work_dir: Path, identity: EndpointIdentity | None = None,
                 auth_mode: str = "key", base_image: str = PROMPTFLOW_RUNTIME_IMAGE,
                 operation_timeout_seconds: float = 1800, log_lines: int = 100) -> None:
        if auth_mode not in ("key", "aml_token", "aad_token"):
            raise ValueError(f"auth_mode {auth_mode!r}: use key, aml_token or aad_token")
        self._ml = ml_client
        self._work_dir = Path(work_dir)
        self._identity = identity
        self._auth_mode = auth_mode
        self._base_image = base_image
        self._timeout = operation_timeout_seconds
        self._log_lines = log_lines

    # --- Deployer ---------------------------------------------------------------------------------------------

    def deploy(self, request: DeploymentRequest) -> Deployed:
        config = request.config
        if config.target is not self.target:
            raise DeploymentError(f"{type(self).__name__} deploys target {self.target.value}, the request says "
                                  f"{config.target.value}")
        endpoint = self._ensure_endpoint(config)
        environment, environment_ref = self._environment(request)
        model, model_ref = self._model(request)
        spec = _spec_hash(request, {"environment": environment_ref, "model": model_ref, "target": self.target.value,
                                    "identity": self._identity.client_id if self._identity else None})
        name = request.deployment_name
        existing = self._existing_deployment(config.endpoint_name, name)
        if existing is not None and (existing.tags or {}).get(SPEC_TAG) == spec and \
                str(existing.provisioning_state or "").lower() == "succeeded":
            log.info("deployment %s/%s is already this spec; not redeploying", config.endpoint_name, name)
        else:
            deployment = self._deployment_class()(model=model, environment=environment,
                                                  **self._deployment_settings(request, spec))
            log.info("deploying %s/%s (%s %s)", config.endpoint_name, name, request.flow_name, request.flow_version)
            result = self._finish(self._ml.online_deployments.begin_create_or_update(deployment),
                                  f"deployment {config.endpoint_name}/{name}",
                                  lambda: self._logs(config.endpoint_name, name))
            state = str(getattr(result, "provisioning_state", None) or "").lower()
            if state in FAILED_STATES:
                raise DeploymentFailed(f"deployment {config.endpoint_name}/{name} ended {state}",
                                       self._logs(config.endpoint_name, name))
        return Deployed(
            endpoint=config.endpoint_name, deployment=name, scoring_uri=str(endpoint.scoring_uri or ""),
            traffic=self.get_traffic(config.endpoint_name),
            details={"target": self.target.value, "model": model_ref, "environment": environment_ref,
                     "instance_type": config.instance_type, "spec": spec},
        )

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        try:
            entity = self._ml.online_endpoints.get(name=endpoint)
        except AzureError as error:
            if is_not_found(error):
                return {}
            raise
        # The SDK's get lists the deployments and fills in 0 for those without traffic.
        return {str(name): int(share) for name, share in (entity.traffic or {}).items()}

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> dict[str, int]:
        check_traffic(traffic)
        entity = self._endpoint(endpoint)
        live, mirror = dict(entity.traffic or {}), dict(entity.mirror_traffic or {})
        unknown = sorted(set(traffic) - set(live) - set(mirror))
        if unknown:
            raise InvalidTraffic(f"endpoint {endpoint} has no deployment {', '.join(unknown)}; it has "
                                 f"{', '.join(sorted(set(live) | set(mirror))) or 'none'}")
        entity.traffic = {**dict.fromkeys(live, 0), **traffic}
        # A deployment takes live or mirrored traffic, never both.
        entity.mirror_traffic = {name: share for name, share in mirror.items() if not traffic.get(name)}
        self._finish(self._ml.online_endpoints.begin_create_or_update(entity), f"traffic of endpoint {endpoint}")
        return self.get_traffic(endpoint)

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
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
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
                                  "first (rollback_traffic + set_traffic)")
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

    # --- what managed and Kubernetes endpoints do differently ------------------------------------------------

    @abstractmethod
    def _endpoint_class(self) -> type[OnlineEndpoint]: ...

    @abstractmethod
    def _deployment_class(self) -> type[OnlineDeployment]: ...

    def _endpoint_extra(self, config: DeploymentConfig) -> dict[str, Any]:
        return {}

    def _check_existing_endpoint(self, entity: OnlineEndpoint, config: DeploymentConfig) -> None:
        """Refuse an endpoint that exists with another kind (managed vs Kubernetes); subclasses check more."""
        expected = self._endpoint_class()
        if not isinstance(entity, expected):
            raise DeploymentError(f"endpoint {config.endpoint_name} exists as a {type(entity).__name__}, but "
                                  f"target {self.target.value} needs a {expected.__name__}; use another endpoint_name")

    # --- building blocks -----------------------------------------------------------------------------------

    def _endpoint_settings(self, config: DeploymentConfig) -> dict[str, Any]:
        from azure.ai.ml.entities import IdentityConfiguration, ManagedIdentityConfiguration

        if self._identity is None:
            identity = IdentityConfiguration(type="system_assigned")
            # Grants the system-assigned identity the workspace connection secrets reader role, so the flow's
            # connections load at start (only works for system-assigned identities).
            properties = {"enforce_access_to_default_secret_stores": "enabled"}
        else:
            identity = IdentityConfiguration(
                type="user_assigned",
                user_assigned_identities=[ManagedIdentityConfiguration(resource_id=self._identity.resource_id)],
            )
            properties = {}
        return {"name": config.endpoint_name, "auth_mode": self._auth_mode, "identity": identity,
                "properties": properties, "description": "Prompt flow endpoint managed by GenAIOps Functions",
                "tags": {"genaiops.managed": "true"}}

    def _deployment_settings(self, request: DeploymentRequest, spec: str) -> dict[str, Any]:
        from azure.ai.ml.entities import OnlineRequestSettings, ProbeSettings

        config = request.config
        readiness_failures = max(1, math.ceil(config.smoke.readiness_timeout_seconds / PROBE_PERIOD_SECONDS))
        return {
            "name": request.deployment_name,
            "endpoint_name": config.endpoint_name,
            "description": f"{request.flow_name} version {request.flow_version} ({request.use_case})",
            "tags": {"genaiops.use_case": request.use_case, "genaiops.flow": request.flow_name,
                     "genaiops.flow_version": request.flow_version, SPEC_TAG: spec},
            "instance_type": config.instance_type,
            "instance_count": config.instance_count,
            "environment_variables": self._environment_variables(request),
            "app_insights_enabled": config.app_insights_enabled,
            "request_settings": OnlineRequestSettings(
                request_timeout_ms=config.request_timeout_ms,
                max_concurrent_requests_per_instance=config.max_concurrent_requests_per_instance,
            ),
            # Ready within the smoke test's readiness budget, or the deployment fails.
            "readiness_probe": ProbeSettings(initial_delay=10, period=PROBE_PERIOD_SECONDS, timeout=5,
                                             success_threshold=1, failure_threshold=readiness_failures),
            # Restart only after 5 minutes of failed health checks: workers busy with slow LLM calls are not dead.
            "liveness_probe": ProbeSettings(initial_delay=10, period=PROBE_PERIOD_SECONDS, timeout=5,
                                            success_threshold=1, failure_threshold=30),
            "data_collector": self._data_collector() if config.data_collection else None,
        }

    def _environment_variables(self, request: DeploymentRequest) -> dict[str, str]:
        config = request.config
        user = dict(config.environment_variables)
        reserved = sorted(RESERVED_VARIABLES.intersection(user))
        if reserved:
            raise DeploymentError(f"environment_variables may not set {', '.join(reserved)}: the deployer sets them")
        references = sorted(name for name, value in user.items() if KEY_VAULT_REFERENCE.match(value))
        if references:
            raise DeploymentError(f"{', '.join(references)}: Azure ML does not resolve Key Vault references (App "
                                  "Service does); keep secrets in workspace connections")
        override = ",".join(f"deployment.{key}={value}" for key, value in (
            ("subscription_id", self._ml.subscription_id), ("resource_group", self._ml.resource_group_name),
            ("workspace_name", self._ml.workspace_name), ("endpoint_name", config.endpoint_name),
            ("deployment_name", request.deployment_name)))
        variables = {"PROMPTFLOW_RUN_MODE": "serving", "PRT_CONFIG_OVERRIDE": override, **user}
        if self._identity is not None:
            variables["AZURE_CLIENT_ID"] = self._identity.client_id
        if config.data_collection:
            variables["PROMPTFLOW_MDC_ENABLE"] = "true"
        return variables

    @staticmethod
    def _data_collector() -> DataCollector:
        from azure.ai.ml.entities import DataCollector, DeploymentCollection

        return DataCollector(collections={name: DeploymentCollection(enabled="true") for name in DATA_COLLECTIONS})

    def _model(self, request: DeploymentRequest) -> tuple[Model | str, str]:
        """The registered flow version when the registry made one, else the flow folder registered inline."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        reference = f"azureml:{request.flow_name}:{request.flow_version}"
        try:
            registered = self._ml.models.get(name=request.flow_name, version=request.flow_version)
            return str(registered.id or reference), reference
        except AzureError as error:
            if not is_not_found(error):
                raise
        if not (request.flow_dir / "flow.dag.yaml").is_file() and not (request.flow_dir / "flow.flex.yaml").is_file():
            raise DeploymentError(f"{request.flow_dir} is not a flow folder (no flow.dag.yaml or flow.flex.yaml)")
        model = Model(name=request.flow_name, version=request.flow_version, type=AssetTypes.CUSTOM_MODEL,
                      path=str(request.flow_dir), properties={SOURCE_FLOW_PROPERTY: request.flow_name},
                      description=f"Prompt flow {request.flow_name} version {request.flow_version}")
        return model, reference

    def _environment(self, request: DeploymentRequest) -> tuple[Environment, str]:
        """The serving image; with the flow's requirements installed on top when it has any (docs: 'deploy with a
        custom environment'). The build context is content-addressed by the SDK: same files, same environment."""
        from azure.ai.ml.entities import BuildContext, Environment

        requirements = _requirements_file(request.flow_dir)
        if requirements is None:
            return Environment(image=self._base_image, inference_config=INFERENCE_CONFIG), self._base_image
        context = self._work_dir / "aml-environments" / f"{request.flow_name}-{request.flow_version}"
        if context.exists():
            shutil.rmtree(context)
        context.mkdir(parents=True)
        shutil.copyfile(requirements, context / "requirements.txt")
        (context / "Dockerfile").write_text(
            f"FROM {self._base_image}\n"
            "COPY requirements.txt /tmp/flow-requirements.txt\n"
            "RUN pip install --no-cache-dir -r /tmp/flow-requirements.txt\n",
            encoding="utf-8",
        )
        digest = hashlib.sha256(requirements.read_bytes() + self._base_image.encode()).hexdigest()[:12]
        environment = Environment(build=BuildContext(path=str(context), dockerfile_path="Dockerfile"),
                                  inference_config=INFERENCE_CONFIG)
        return environment, f"build:{self._base_image}+requirements@{digest}"

    def _ensure_endpoint(self, config: DeploymentConfig) -> OnlineEndpoint:
        try:
            entity = self._ml.online_endpoints.get(name=config.endpoint_name)
        except AzureError as error:
            if not is_not_found(error):
                raise
        else:
            self._check_existing_endpoint(entity, config)
            return entity
        log.info("creating endpoint %s (%s)", config.endpoint_name, self.target.value)
        created = self._endpoint_class()(**self._endpoint_settings(config), **self._endpoint_extra(config))
        return self._finish(self._ml.online_endpoints.begin_create_or_update(created),
                            f"creation of endpoint {config.endpoint_name}")

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
        try:
            poller.wait(timeout=self._timeout)
            if not poller.done():
                raise DeploymentFailed(f"{what}: not finished after {self._timeout:.0f} s; it goes on in Azure ML — "
                                       "check it there before retrying", logs() if logs else "")
            return poller.result()
        except AzureError as error:
            message = redact_text(str(getattr(error, "message", None) or error))[:2000]
            raise DeploymentFailed(f"{what} failed: {message}", logs() if logs else "") from error


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


def azureml_client_from_env(credential: TokenCredential, env: Mapping[str, str] | None = None) -> MLClient:
    """The workspace named by AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME."""
    env = os.environ if env is None else env
    missing = [name for name in (SUBSCRIPTION_SETTING, RESOURCE_GROUP_SETTING, WORKSPACE_SETTING) if not env.get(name)]
    if missing:
        raise DeploymentError(f"Azure ML deployment needs the settings {', '.join(missing)}")
    return azureml_client(env[SUBSCRIPTION_SETTING], env[RESOURCE_GROUP_SETTING], env[WORKSPACE_SETTING], credential)
