"""What an Azure ML online deployment of a prompt flow is made of: the endpoint and deployment entities, built the
way Azure ML documents it (prompt-flow/how-to-deploy-to-code). The operations that send them are in
azureml_deployer.py; this module only builds (reading the model registry to reuse a registered flow version).

- model: the flow folder as a custom model with `azureml.promptflow.source_flow_id` (which also lifts the request
  timeout limit to 5 minutes). The registry already registers each flow version so (`azureml:<flow>:<version>`);
  when it has not, the folder is registered inline under the same name and version.
- environment: the prompt flow serving image (pinned: the `deployment:` block's `runtime_image`, default
  PROMPTFLOW_RUNTIME_IMAGE), or a build context on top of it when the flow has a requirements.txt, with the
  inference config Azure ML needs for a custom container (/health, /score on 8080).
- workspace connections: the flow's connections (experiment.yaml `connections:`), created or updated before the
  deployment is sent, since the serving container loads them from the workspace at start. An Azure OpenAI
  connection with `auth_mode: meid_token` is identity-based (Entra ID: the endpoint's identity calls Azure OpenAI);
  otherwise its key comes from the app setting its `${api_key}` placeholder names, and is never logged.
- environment variables: PROMPTFLOW_RUN_MODE=serving, and PRT_CONFIG_OVERRIDE naming the workspace, endpoint and
  deployment so the container pulls the flow's connections from the workspace through the endpoint identity —
  no secret is ever passed to a deployment.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from azure.core.exceptions import AzureError

from shared.deployment.identity import EndpointIdentity
from shared.deployment.port import (
    KEY_VAULT_REFERENCE,
    DeploymentConfig,
    DeploymentError,
    DeploymentRequest,
    DeploymentTarget,
    WorkspaceConnection,
)

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import (
        AzureOpenAIConnection,
        DataCollector,
        Environment,
        Model,
        OnlineDeployment,
        OnlineEndpoint,
    )
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


def spec_hash(request: DeploymentRequest, extra: Mapping[str, Any]) -> str:
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


class AzureMLEntities(ABC):
    """Builds the endpoint and deployment entities; managed and Kubernetes endpoints differ in the classes and a
    few settings (subclasses)."""

    target: ClassVar[DeploymentTarget]

    def __init__(self, ml_client: MLClient, *, work_dir: Path, app_settings: Mapping[str, str],
                 identity: EndpointIdentity | None = None, auth_mode: str = "key",
                 base_image: str | None = None) -> None:
        """`base_image` overrides every deployment's `runtime_image`; `app_settings` (Settings.app_settings) are
        where a connection's `${placeholder}` values are read."""
        if auth_mode not in ("key", "aml_token", "aad_token"):
            raise ValueError(f"auth_mode {auth_mode!r}: use key, aml_token or aad_token")
        self._ml = ml_client
        self._work_dir = Path(work_dir)
        self._identity = identity
        self._auth_mode = auth_mode
        self._base_image = base_image
        self._app_settings = app_settings

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

    # --- the entities --------------------------------------------------------------------------------------

    def _check_target(self, config: DeploymentConfig) -> None:
        if config.target is not self.target:
            raise DeploymentError(f"{type(self).__name__} deploys target {self.target.value}, the request says "
                                  f"{config.target.value}")

    def _new_endpoint(self, config: DeploymentConfig) -> OnlineEndpoint:
        return self._endpoint_class()(**self._endpoint_settings(config), **self._endpoint_extra(config))

    def _new_deployment(self, request: DeploymentRequest) -> tuple[OnlineDeployment, dict[str, str]]:
        """The deployment entity and what it is made of (model, environment, spec hash)."""
        environment, environment_ref = self._environment(request)
        model, model_ref = self._model(request)
        variables = self._environment_variables(request)
        # A changed setting is a changed deployment: the values are non-secret by construction.
        spec = spec_hash(request, {"environment": environment_ref, "model": model_ref, "target": self.target.value,
                                   "identity": self._identity.client_id if self._identity else None,
                                   "variables": variables})
        deployment = self._deployment_class()(model=model, environment=environment,
                                              **self._deployment_settings(request, spec, variables))
        details = {"target": self.target.value, "model": model_ref, "environment": environment_ref,
                   "instance_type": request.config.instance_type, "spec": spec}
        return deployment, details

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

    def _deployment_settings(self, request: DeploymentRequest, spec: str,
                             variables: dict[str, str]) -> dict[str, Any]:
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
            "environment_variables": variables,
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

        # Hourly, said explicitly (RollingRate.HOUR, not exported by azure.ai.ml.constants): the production-log
        # reader (shared/monitoring/azureml_production_log.py) lists .../{yyyy}/{MM}/{dd}/{HH}/ folders.
        return DataCollector(collections={name: DeploymentCollection(enabled="true") for name in DATA_COLLECTIONS},
                             rolling_rate="hour")

    def _model(self, request: DeploymentRequest) -> tuple[Model | str | None, str]:
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

        image = self._base_image or request.config.runtime_image
        requirements = _requirements_file(request.flow_dir)
        if requirements is None:
            return Environment(image=image, inference_config=INFERENCE_CONFIG), image
        context = self._work_dir / "aml-environments" / f"{request.flow_name}-{request.flow_version}"
        if context.exists():
            shutil.rmtree(context)
        context.mkdir(parents=True)
        shutil.copyfile(requirements, context / "requirements.txt")
        (context / "Dockerfile").write_text(
            f"FROM {image}\n"
            "COPY requirements.txt /tmp/flow-requirements.txt\n"
            "RUN pip install --no-cache-dir -r /tmp/flow-requirements.txt\n",
            encoding="utf-8",
        )
        digest = hashlib.sha256(requirements.read_bytes() + image.encode()).hexdigest()[:12]
        environment = Environment(build=BuildContext(path=str(context), dockerfile_path="Dockerfile"),
                                  inference_config=INFERENCE_CONFIG)
        return environment, f"build:{image}+requirements@{digest}"

    def _connection_values(self, connection: WorkspaceConnection) -> dict[str, str]:
        """The connection's fields, `${placeholder}`s read from the app settings they name (may hold a key)."""
        values, missing = dict(connection.values), []
        for field, setting in connection.settings.items():
            value = self._app_settings.get(setting)
            if value is None:
                missing.append(f"{field} -> {setting}")
            else:
                values[field] = value
        if missing:
            raise DeploymentError(f"workspace connection {connection.name}: no value for {', '.join(missing)}; set "
                                  "the app setting(s) named there")
        return values

    def _connection_entity(self, connection: WorkspaceConnection) -> AzureOpenAIConnection:
        """The workspace connection for one of the flow's connections (azure-ai-ml connection entities)."""
        from azure.ai.ml.entities import AadCredentialConfiguration, AzureOpenAIConnection

        if connection.connection_type != "AzureOpenAIConnection":
            raise DeploymentError(f"connection {connection.name}: a {connection.connection_type} is not created in "
                                  "the workspace by the app; create it there once, or leave out connection_type in "
                                  "experiment.yaml to mean a connection that already exists")
        identity = connection.identity_auth
        if identity:  # only the non-secret fields are needed: a key, if one is also written, is not read
            connection = connection.model_copy(update={"settings": {
                field: setting for field, setting in connection.settings.items() if field != "api_key"}})
        values = self._connection_values(connection)
        api_base = values.get("api_base") or values.get("azure_endpoint")
        if not api_base:
            raise DeploymentError(f"connection {connection.name}: no api_base (the Azure OpenAI endpoint)")
        common = {"name": connection.name, "azure_endpoint": api_base, "api_version": values.get("api_version")}
        if identity:
            return AzureOpenAIConnection(**common, credentials=AadCredentialConfiguration())
        if not values.get("api_key"):
            raise DeploymentError(f"connection {connection.name}: neither auth_mode: meid_token nor an api_key "
                                  "placeholder; write one of them in experiment.yaml")
        return AzureOpenAIConnection(**common, api_key=values["api_key"])
