"""Deployment: the Deployer port and the A/B traffic rule (port.py), Azure ML managed and Kubernetes online
endpoints (azureml_deployer.py, kubernetes_deployer.py), and the flow's own image on a managed online endpoint
(container_deployer.py, from the Docker build context in container_build.py). Importing this package loads neither
azure-ai-ml nor promptflow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.deployment.port import (
    Deployed,
    Deployer,
    DeploymentConfig,
    DeploymentError,
    DeploymentFailed,
    DeploymentRequest,
    DeploymentTarget,
    EndpointNotFound,
    InvalidTraffic,
    ScoringTarget,
    SmokeConfig,
    TrafficSplit,
    check_traffic,
    deployment_name_for,
    plan_traffic,
    prior_deployment,
    rollback_traffic,
)

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

    from shared.deployment.azureml_deployer import AzureMLOnlineDeployer

__all__ = [
    "Deployed", "Deployer", "DeploymentConfig", "DeploymentError", "DeploymentFailed", "DeploymentRequest",
    "DeploymentTarget", "EndpointNotFound", "InvalidTraffic", "ScoringTarget", "SmokeConfig", "TrafficSplit",
    "azureml_deployer_for", "check_traffic", "deployment_name_for", "plan_traffic", "prior_deployment",
    "rollback_traffic",
]


def azureml_deployer_for(target: DeploymentTarget, ml_client: MLClient, *, work_dir: Path,
                         app_settings: Mapping[str, str], **options: Any) -> AzureMLOnlineDeployer:
    """The Azure ML deployer for `target` (aml_managed, container or aml_kubernetes), resolving connections
    against `app_settings`; `options` go to its constructor (identity, auth_mode, base_image,
    operation_timeout_seconds, log_lines, traffic_logs)."""
    if target is DeploymentTarget.AML_MANAGED:
        from shared.deployment.azureml_deployer import ManagedOnlineDeployer

        return ManagedOnlineDeployer(ml_client, work_dir=work_dir, app_settings=app_settings, **options)
    if target is DeploymentTarget.CONTAINER:
        from shared.deployment.container_deployer import ContainerOnlineDeployer

        return ContainerOnlineDeployer(ml_client, work_dir=work_dir, app_settings=app_settings, **options)
    if target is DeploymentTarget.AML_KUBERNETES:
        from shared.deployment.kubernetes_deployer import KubernetesOnlineDeployer

        return KubernetesOnlineDeployer(ml_client, work_dir=work_dir, app_settings=app_settings, **options)
    raise ValueError(f"target {target.value} is not served by Azure ML (local: the local stack's deployer)")
