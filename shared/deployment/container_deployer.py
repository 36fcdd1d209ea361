"""Target `container`: the flow's own Docker image, built by Azure ML into the workspace's registry and served on a
managed online endpoint — blue/green traffic, probes, polling and smoke tests exactly as for aml_managed.

What differs from aml_managed (promptflow's serving image with the flow as a model):
- environment: the flow's build context (container_build.py, `pf flow build --format docker`) as an Azure ML
  build context. Azure ML builds the image on its own compute and pushes it to the workspace's container registry
  — no Docker in a Function, no registry credentials here — and the endpoint identity pulls it (AcrPull).
- model: none; the flow is inside the image.
- connections: none in the workspace; the image carries each connection as YAML whose setting-backed fields are
  `${env:SETTING}` references, resolved when the container starts. The deployment gets those settings' values from
  the app's settings — only non-secret ones: a key-based connection is refused (use `auth_mode: meid_token`, the
  endpoint identity then calls Azure OpenAI with Entra ID; or target aml_managed, whose workspace connection keeps
  the key out of the deployment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from shared.deployment.azureml_deployer import ManagedOnlineDeployer
from shared.deployment.azureml_entities import INFERENCE_CONFIG
from shared.deployment.port import (
    DeploymentError,
    DeploymentRequest,
    DeploymentTarget,
    WorkspaceConnection,
)
from shared.experiments.config import is_secret_field

if TYPE_CHECKING:
    from azure.ai.ml.entities import Environment

CONTEXTS = "container-contexts"
BUILD_RECORD = "build.json"
WORKSPACE_CONNECTIONS = "PRT_CONFIG_OVERRIDE"  # the runtime image's way to pull workspace connections; not used here


def _identity_free(connection: WorkspaceConnection) -> WorkspaceConnection:
    """An Entra ID connection needs no key: a key setting written beside `auth_mode: meid_token` is not passed."""
    if not connection.identity_auth:
        return connection
    return connection.model_copy(update={"settings": {
        field: setting for field, setting in connection.settings.items() if not is_secret_field(field)}})


class ContainerOnlineDeployer(ManagedOnlineDeployer):
    """A managed online endpoint serving the flow's own image (see the module docstring)."""

    target = DeploymentTarget.CONTAINER

    def _context_dir(self, request: DeploymentRequest) -> Path:
        return self._work_dir / CONTEXTS / f"{request.flow_name}-{request.flow_version}"

    def _connections(self, request: DeploymentRequest) -> list[WorkspaceConnection]:
        connections = [_identity_free(connection) for connection in request.config.connections]
        keyed = sorted(f"{connection.name}.{field}" for connection in connections
                       for field in connection.settings if is_secret_field(field))
        if keyed:
            raise DeploymentError(
                f"target container passes no secret to a deployment, and {', '.join(keyed)} is a key: give the "
                "connection `auth_mode: meid_token` (the endpoint identity calls Azure OpenAI with Entra ID), or use "
                "target aml_managed (the key stays in a workspace connection)")
        return connections

    def _environment(self, request: DeploymentRequest) -> tuple[Environment, str]:
        from azure.ai.ml.entities import BuildContext, Environment

        from shared.deployment.container_build import build_container_context

        # Rebuilt on every delivery (the folder is replaced), so the context never outlives a half-written build.
        context = build_container_context(request.flow_dir, flow_name=request.flow_name,
                                          version=request.flow_version, output_dir=self._context_dir(request),
                                          connections=self._connections(request))
        environment = Environment(build=BuildContext(path=str(context.context_dir), dockerfile_path="Dockerfile"),
                                  inference_config=INFERENCE_CONFIG,
                                  description=f"{request.flow_name} {request.flow_version}: pf flow build image")
        # The flow version names the flow's content; the promptflow pin is the rest of what goes into the image.
        return environment, f"image:{request.flow_name}-{request.flow_version}+promptflow=={context.promptflow_version}"

    def _model(self, request: DeploymentRequest) -> tuple[None, str]:
        return None, "in the image"

    def _ensure_connections(self, request: DeploymentRequest) -> str:
        return ""  # the image carries its connections; nothing is created in the workspace

    def _environment_variables(self, request: DeploymentRequest) -> dict[str, str]:
        """The base variables without the workspace-connection override, and the values of the settings the
        context just built (`_environment` runs first) says the container reads."""
        variables = {name: value for name, value in super()._environment_variables(request).items()
                     if name != WORKSPACE_CONNECTIONS}
        record = json.loads((self._context_dir(request) / BUILD_RECORD).read_text(encoding="utf-8"))
        wanted = [name for name in record["required_settings"] if name not in variables]
        missing = [name for name in wanted if not self._app_settings.get(name)]
        if missing:
            raise DeploymentError(f"the flow's image reads {', '.join(missing)} at start; set the app setting(s) "
                                  "(the same ones the experiments read)")
        return {**variables, **{name: str(self._app_settings[name]) for name in wanted}}
