"""The Kubernetes online endpoint deployer at the SDK boundary: the same autospecced operations as the managed
one (see test_azureml_deployer.py); here, what differs — the compute, the cluster's instance types, the
Kubernetes entities — and that the shared behaviour (traffic, not-found) holds for it too."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    DataCollector,
    Environment,
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    ManagedOnlineEndpoint,
    OnlineRequestSettings,
)

from shared.deployment import DeploymentError, EndpointNotFound, TrafficSplit, plan_traffic, rollback_traffic
from shared.deployment.azureml_deployer import INFERENCE_CONFIG, AzureMLOnlineDeployer
from shared.deployment.kubernetes_deployer import KubernetesOnlineDeployer
from shared.deployment.port import OperationStatus
from tests.unit.test_azureml_deployer import (
    SCORING_URI,
    SUBSCRIPTION,
    Azure,
    autospec_client,
    deploy,
    poller,
    request,
    rest_of,
    sent,
    write_flow,
)

K8S = {"target": "aml_kubernetes", "compute": "k8s-dev"}


@pytest.fixture
def client() -> MLClient:
    return autospec_client()


@pytest.fixture
def deployer(client: MLClient, tmp_path: Path) -> KubernetesOnlineDeployer:
    return KubernetesOnlineDeployer(client, app_settings={}, work_dir=tmp_path / "work")


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    return write_flow(tmp_path / "math_coding")


def k8s_endpoint(traffic: dict[str, int] | None = None, compute: str = "k8s-dev") -> KubernetesOnlineEndpoint:
    return KubernetesOnlineEndpoint(name="math-coding-dev", compute=compute, traffic=traffic or {},
                                    scoring_uri=SCORING_URI, provisioning_state="Succeeded")


def test_it_shares_the_azure_ml_base_rather_than_copying_it() -> None:
    assert issubclass(KubernetesOnlineDeployer, AzureMLOnlineDeployer)
    own = {name for name in vars(KubernetesOnlineDeployer) if not name.startswith(("__", "_abc_"))}
    assert own <= {"target", "_endpoint_class", "_deployment_class", "_endpoint_extra", "_check_existing_endpoint"}


def test_deploy_creates_a_kubernetes_endpoint_on_the_configured_compute(
        deployer: KubernetesOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=None)

    deployed = deploy(deployer, request(flow, **K8S))

    endpoint = sent(client.online_endpoints)
    assert isinstance(endpoint, KubernetesOnlineEndpoint)
    assert endpoint.compute == "k8s-dev"
    assert endpoint.auth_mode == "key"
    assert endpoint.identity.type == "system_assigned"
    assert endpoint.properties == {"enforce_access_to_default_secret_stores": "enabled"}
    assert client.online_endpoints.get(name="math-coding-dev").scoring_uri == SCORING_URI
    assert deployed.details["target"] == "aml_kubernetes"


def test_deploy_uses_the_clusters_instance_type_and_the_shared_settings(
        deployer: KubernetesOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=k8s_endpoint({"v-2": 100}))

    deploy(deployer, request(flow, **K8S, instance_count=2, request_timeout_ms=30000, data_collection=True,
                            environment_variables={"PROMPTFLOW_WORKER_NUM": "2"}))

    deployment = sent(client.online_deployments)
    assert isinstance(deployment, KubernetesOnlineDeployment)
    assert (deployment.name, deployment.endpoint_name) == ("v-3", "math-coding-dev")
    assert (deployment.instance_type, deployment.instance_count) == ("defaultinstancetype", 2)
    assert isinstance(deployment.request_settings, OnlineRequestSettings)
    assert deployment.request_settings.request_timeout_ms == 30000
    assert deployment.readiness_probe.failure_threshold == 60
    assert deployment.app_insights_enabled is True
    assert isinstance(deployment.data_collector, DataCollector)
    variables = deployment.environment_variables
    assert variables["PROMPTFLOW_RUN_MODE"] == "serving"
    assert variables["PROMPTFLOW_WORKER_NUM"] == "2"
    assert variables["PROMPTFLOW_MDC_ENABLE"] == "true"
    assert f"deployment.subscription_id={SUBSCRIPTION}" in variables["PRT_CONFIG_OVERRIDE"]
    assert isinstance(deployment.environment, Environment)
    assert deployment.environment.inference_config == INFERENCE_CONFIG
    assert Path(deployment.model.path) == flow

    properties = rest_of(deployment)["properties"]
    assert properties["endpointComputeType"] == "Kubernetes"
    assert properties["instanceType"] == "defaultinstancetype"
    assert properties["requestSettings"]["requestTimeout"] == "PT30S"
    assert "model_inputs" in properties["dataCollector"]["collections"]


def test_a_custom_cluster_instance_type_is_passed_through(deployer: KubernetesOnlineDeployer, client: MLClient,
                                                          flow: Path) -> None:
    Azure(client, endpoint=k8s_endpoint())
    deploy(deployer, request(flow, **K8S, instance_type="cpu-small"))
    assert sent(client.online_deployments).instance_type == "cpu-small"


def test_an_endpoint_on_another_cluster_or_a_managed_endpoint_is_refused(
        deployer: KubernetesOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=k8s_endpoint(compute="/subscriptions/0/resourceGroups/rg/providers/"
                                                "Microsoft.MachineLearningServices/workspaces/ws/computes/k8s-prod"))
    with pytest.raises(DeploymentError, match="runs on compute k8s-prod"):
        deploy(deployer, request(flow, **K8S))

    Azure(client, endpoint=ManagedOnlineEndpoint(name="math-coding-dev"))
    with pytest.raises(DeploymentError, match="ManagedOnlineEndpoint"):
        deploy(deployer, request(flow, **K8S))
    client.online_deployments.begin_create_or_update.assert_not_called()


def test_the_same_compute_given_as_an_arm_id_is_accepted(deployer: KubernetesOnlineDeployer, client: MLClient,
                                                         flow: Path) -> None:
    Azure(client, endpoint=k8s_endpoint(compute="/subscriptions/0/resourceGroups/rg/providers/"
                                                "Microsoft.MachineLearningServices/workspaces/ws/computes/k8s-dev"))
    deploy(deployer, request(flow, **K8S))
    client.online_deployments.begin_create_or_update.assert_called_once()


def test_a_managed_request_is_refused(deployer: KubernetesOnlineDeployer, flow: Path) -> None:
    with pytest.raises(DeploymentError, match="aml_managed"):
        deploy(deployer, request(flow))


def test_traffic_update_keeps_both_shares_and_rollback_restores_the_prior(
        deployer: KubernetesOnlineDeployer, client: MLClient) -> None:
    azure = Azure(client, endpoint=k8s_endpoint({"v-2": 100, "v-3": 0}))

    state = deployer.begin_set_traffic("math-coding-dev", plan_traffic(deployer.get_traffic("math-coding-dev"),
                                                                       "v-3", TrafficSplit(new=20, current=80)))
    assert sent(client.online_endpoints).traffic == {"v-2": 80, "v-3": 20}
    assert isinstance(azure.endpoint, KubernetesOnlineEndpoint)
    assert deployer.poll(state).status is OperationStatus.SUCCEEDED
    applied = deployer.get_traffic("math-coding-dev")
    assert applied == {"v-2": 80, "v-3": 20}

    restored = deployer.poll(deployer.begin_set_traffic("math-coding-dev", rollback_traffic(applied, "v-3")))
    assert restored.status is OperationStatus.SUCCEEDED
    assert deployer.get_traffic("math-coding-dev") == {"v-2": 100, "v-3": 0}
    client.online_deployments.begin_delete.return_value = poller()
    deployer.remove("math-coding-dev", "v-3")
    client.online_deployments.begin_delete.assert_called_once_with(name="v-3", endpoint_name="math-coding-dev")


def test_not_found_is_handled_like_managed_endpoints(deployer: KubernetesOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=None)
    assert deployer.get_traffic("math-coding-dev") == {}
    deployer.remove("math-coding-dev", "v-3")
    with pytest.raises(EndpointNotFound):
        deployer.scoring_request("math-coding-dev")
