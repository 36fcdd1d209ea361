"""Deployer on Azure ML Kubernetes online endpoints: an AKS or Arc cluster attached to the workspace as a
Kubernetes compute, driven through the same SDK calls as managed endpoints (see azureml_deployer.py).

What differs: the endpoint names its `compute`; `instance_type` names an instance type defined on the cluster
(Azure ML's `defaultinstancetype` when the config leaves it out), not a VM size; and mirror traffic does not exist
on Kubernetes endpoints, so only live traffic is ever set (the base class never adds mirror entries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.deployment.azureml_deployer import AzureMLOnlineDeployer
from shared.deployment.port import DeploymentConfig, DeploymentError, DeploymentTarget

if TYPE_CHECKING:
    from azure.ai.ml.entities import OnlineDeployment, OnlineEndpoint


class KubernetesOnlineDeployer(AzureMLOnlineDeployer):
    target = DeploymentTarget.AML_KUBERNETES

    def _endpoint_class(self) -> type[OnlineEndpoint]:
        from azure.ai.ml.entities import KubernetesOnlineEndpoint

        return KubernetesOnlineEndpoint

    def _deployment_class(self) -> type[OnlineDeployment]:
        from azure.ai.ml.entities import KubernetesOnlineDeployment

        return KubernetesOnlineDeployment

    def _endpoint_extra(self, config: DeploymentConfig) -> dict[str, Any]:
        return {"compute": config.compute}

    def _check_existing_endpoint(self, entity: OnlineEndpoint, config: DeploymentConfig) -> None:
        super()._check_existing_endpoint(entity, config)
        # The service reports the compute as an ARM id; the config names it.
        compute = str(getattr(entity, "compute", None) or "").rstrip("/").rsplit("/", 1)[-1]
        if compute and compute != config.compute:
            raise DeploymentError(f"endpoint {config.endpoint_name} runs on compute {compute}, the config says "
                                  f"{config.compute}; an endpoint cannot move between clusters")
