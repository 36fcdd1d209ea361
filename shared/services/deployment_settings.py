"""Where a use case deploys: its `deployment:` block (per environment through the overlays) on top of the defaults —
the target for the environment, the endpoint named after the use-case folder — and the workspace connections its
flow needs there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from shared.deployment.azureml_deployer import RESOURCE_GROUP_SETTING, SUBSCRIPTION_SETTING, WORKSPACE_SETTING
from shared.deployment.port import DeploymentConfig, DeploymentTarget, WorkspaceConnection, default_endpoint_name
from shared.experiments.config import ExperimentConfig, ExperimentConfigError, load_experiment
from shared.experiments.connections import field_variable

if TYPE_CHECKING:
    from shared.settings import Settings

# Environments that run in Azure deploy to Azure ML managed online endpoints unless their `deployment:` block says
# otherwise; the others (local, pr — which stops at the gate) default to the local stack's target.
AZURE_ML_ENVIRONMENTS = frozenset({"dev", "prod"})
LOCAL_ENVIRONMENT = "local"


def workspace_scope(settings: Mapping[str, str] | None = None) -> str:
    """The workspace the app deploys to (subscription/resource group/workspace from the app settings), or ""."""
    settings = os.environ if settings is None else settings
    parts = [settings.get(name, "") for name in (SUBSCRIPTION_SETTING, RESOURCE_GROUP_SETTING, WORKSPACE_SETTING)]
    return "/".join(parts).lower() if any(parts) else ""


def workspace_settings(settings: Settings) -> dict[str, str]:
    """The workspace's app settings from `settings` rather than the process environment: all deployment_config needs
    to name a use case's target and endpoint (connections it reads from them are not needed then)."""
    return {SUBSCRIPTION_SETTING: settings.azure_subscription_id or "",
            RESOURCE_GROUP_SETTING: settings.azure_resource_group or "",
            WORKSPACE_SETTING: settings.azureml_workspace_name or ""}


def workspace_connections(config: ExperimentConfig,
                          settings: Mapping[str, str] | None = None) -> tuple[WorkspaceConnection, ...]:
    """The experiment's connections a serving deployment needs; a `${placeholder}` field, and a field its own
    `<CONNECTION>_<FIELD>` app setting overrides, names the setting holding its value (`${api_base}` in `aoai` ->
    AOAI_API_BASE), never the value. A connection without connection_type already exists where the flow runs and
    is left alone."""
    env = os.environ if settings is None else settings
    connections = []
    for connection in config.connections:
        if connection.connection_type is None:
            continue
        values, named = {}, {}
        for field, value in connection.fields.items():
            variable = field_variable(connection.name, field, value, env)
            if variable is None:
                values[field] = value
            else:
                named[field] = variable
        connections.append(WorkspaceConnection(name=connection.name, connection_type=connection.connection_type,
                                               values=values, settings=named))
    return tuple(connections)


def deployment_config(config: ExperimentConfig, environment: str,
                      settings: Mapping[str, str] | None = None) -> DeploymentConfig:
    """The `deployment:` block (per environment through the overlays) on top of the defaults: dev and prod deploy
    to an Azure ML managed online endpoint, other environments locally; the endpoint is named after the use-case
    folder, the environment and a hash of the workspace (default_endpoint_name; in the local stack without the
    hash: `math-coding-local`), unless the block names it."""
    defaults = {
        "target": DeploymentTarget.AML_MANAGED if environment in AZURE_ML_ENVIRONMENTS else DeploymentTarget.LOCAL,
        "endpoint_name": _default_endpoint(config.base_dir.name, environment, settings),
    }
    try:
        return DeploymentConfig.model_validate({**defaults, **(config.deployment or {}),
                                                "connections": workspace_connections(config, settings)})
    except ValidationError as invalid:  # a configuration problem like any other: a person has to fix the yaml
        problems = [".".join(["deployment", *map(str, error["loc"])]) + f": {error['msg']}"
                    for error in invalid.errors()]
        raise ExperimentConfigError(f"{config.base_dir.name}: invalid deployment block: {'; '.join(problems)}",
                                    problems) from None


def _default_endpoint(folder: str, environment: str, settings: Mapping[str, str] | None) -> str:
    return default_endpoint_name(folder, environment, workspace_scope(settings),
                                 hashed=environment != LOCAL_ENVIRONMENT)


def endpoint_for(flows_root: Path, use_case: str, environment: str) -> str:
    """The endpoint a deployment of the use case goes to — its folder's default name when its configuration cannot
    be read (that is what a failure event names then)."""
    try:
        return deployment_config(load_experiment(flows_root / use_case, environment), environment).endpoint_name
    except ExperimentConfigError:
        return _default_endpoint(use_case, environment, None)
