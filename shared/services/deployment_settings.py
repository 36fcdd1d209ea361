"""Where a use case deploys: its `deployment:` block (per environment through the overlays) on top of the defaults —
the target for the environment, the endpoint named after the use-case folder — and the workspace connections its
flow needs there."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from shared.deployment.azureml_deployer import RESOURCE_GROUP_SETTING, SUBSCRIPTION_SETTING, WORKSPACE_SETTING
from shared.deployment.port import DeploymentConfig, DeploymentTarget, WorkspaceConnection, default_endpoint_name
from shared.experiments.config import ExperimentConfig, ExperimentConfigError, load_experiment
from shared.experiments.connections import field_variable
from shared.settings import Settings

# Environments that run in Azure deploy to Azure ML managed online endpoints unless their `deployment:` block says
# otherwise; the others (local, pr — which stops at the gate) default to the local stack's target.
AZURE_ML_ENVIRONMENTS = frozenset({"dev", "prod"})
LOCAL_ENVIRONMENT = "local"


def workspace_scope(app_settings: Mapping[str, str]) -> str:
    """The workspace the app deploys to (subscription/resource group/workspace from the app settings), or ""."""
    parts = [app_settings.get(name, "") for name in (SUBSCRIPTION_SETTING, RESOURCE_GROUP_SETTING, WORKSPACE_SETTING)]
    return "/".join(parts).lower() if any(parts) else ""


def workspace_connections(config: ExperimentConfig,
                          app_settings: Mapping[str, str]) -> tuple[WorkspaceConnection, ...]:
    """The experiment's connections a serving deployment needs; a `${placeholder}` field, and a field its own
    `<CONNECTION>_<FIELD>` app setting overrides, names the setting holding its value (`${api_base}` in `aoai` ->
    AOAI_API_BASE), never the value. A connection without connection_type already exists where the flow runs and
    is left alone."""
    connections = []
    for connection in config.connections:
        if connection.connection_type is None:
            continue
        values, named = {}, {}
        for field, value in connection.fields.items():
            variable = field_variable(connection.name, field, value, app_settings)
            if variable is None:
                values[field] = value
            else:
                named[field] = variable
        connections.append(WorkspaceConnection(name=connection.name, connection_type=connection.connection_type,
                                               values=values, settings=named))
    return tuple(connections)


def deployment_config(config: ExperimentConfig, environment: str,
                      app_settings: Mapping[str, str]) -> DeploymentConfig:
    """The `deployment:` block (per environment through the overlays) on top of the defaults: dev and prod deploy
    to an Azure ML managed online endpoint, other environments locally; the endpoint is named after the use-case
    folder, the environment and a hash of the workspace (default_endpoint_name; in the local stack without the
    hash: `math-coding-local`), unless the block names it. `app_settings` (Settings.app_settings) name the workspace
    and the connections' settings."""
    defaults = {
        "target": DeploymentTarget.AML_MANAGED if environment in AZURE_ML_ENVIRONMENTS else DeploymentTarget.LOCAL,
        "endpoint_name": _default_endpoint(config.base_dir.name, environment, app_settings),
    }
    try:
        return DeploymentConfig.model_validate({**defaults, **(config.deployment or {}),
                                                "connections": workspace_connections(config, app_settings)})
    except ValidationError as invalid:  # a configuration problem like any other: a person has to fix the yaml
        problems = [".".join(["deployment", *map(str, error["loc"])]) + f": {error['msg']}"
                    for error in invalid.errors()]
        raise ExperimentConfigError(f"{config.base_dir.name}: invalid deployment block: {'; '.join(problems)}",
                                    problems) from None


def _default_endpoint(folder: str, environment: str, app_settings: Mapping[str, str]) -> str:
    return default_endpoint_name(folder, environment, workspace_scope(app_settings),
                                 hashed=environment != LOCAL_ENVIRONMENT)


def endpoint_for(settings: Settings, use_case: str, environment: str) -> str:
    """The endpoint a deployment of the use case goes to — its folder's default name when its configuration cannot
    be read (that is what a failure event names then)."""
    try:
        config = load_experiment(settings.flows_dir / use_case, environment, local=settings.local_stack)
        return deployment_config(config, environment, settings.app_settings).endpoint_name
    except ExperimentConfigError:
        return _default_endpoint(use_case, environment, settings.app_settings)
