"""Target container for real up to the Azure ML boundary: `pf flow build --format docker` runs on the math_coding
flow, and the deployment azure-ai-ml is asked for carries that build context as its environment (Azure ML builds
the image into the workspace's registry), no model, no workspace connection, and only non-secret settings. The
workspace is tests/fakes/azure_sdk.AzureMLWorkspace: autospecs of the real operations on a real MLClient."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml
from azure.ai.ml import MLClient

from shared.deployment.azureml_entities import INFERENCE_CONFIG
from shared.deployment.container_deployer import ContainerOnlineDeployer
from shared.deployment.identity import EndpointIdentity
from shared.deployment.port import (
    DeploymentConfig,
    DeploymentError,
    DeploymentRequest,
    OperationStatus,
    WorkspaceConnection,
)
from shared.experiments.variants import discover_variants, expand, materialize
from tests.fakes.azure_sdk import AzureMLWorkspace, FakeCredential

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "flows" / "math_coding" / "flows" / "standard"
SENTINEL_KEY = "sk-sentinel-must-not-leak-0123456789"
API_BASE = "https://oai-genaiops-dev.openai.azure.com/"
IDENTITY = EndpointIdentity(resource_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
                                        "userAssignedIdentities/id-endpoints", client_id="endpoint-client-id")
# As experiment.yaml ships it: Entra ID, api_base from a setting; a key setting beside it must not be passed on.
ENTRA = WorkspaceConnection(name="aoai", connection_type="AzureOpenAIConnection",
                            values={"api_version": "2024-02-01", "api_type": "azure", "auth_mode": "meid_token"},
                            settings={"api_base": "AOAI_API_BASE", "api_key": "AOAI_API_KEY"})
SETTINGS = {"AOAI_API_BASE": API_BASE, "AOAI_API_KEY": SENTINEL_KEY}


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    combination = expand(discover_variants(FLOW))[0]
    return materialize(FLOW, combination, tmp_path_factory.mktemp("variant") / "standard")


@pytest.fixture
def workspace(tmp_path: Path) -> AzureMLWorkspace:
    return AzureMLWorkspace(tmp_path / "aml")


@pytest.fixture
def client(workspace: AzureMLWorkspace) -> MLClient:
    return workspace.attach(MLClient(FakeCredential(), "sub", "rg-genaiops-dev", "mlw-genaiops-dev"))


def deployer_for(client: MLClient, work_dir: Path, settings: dict[str, str] | None = None) -> ContainerOnlineDeployer:
    return ContainerOnlineDeployer(client, work_dir=work_dir, identity=IDENTITY,
                                   app_settings=SETTINGS if settings is None else settings)


def request_for(flow_dir: Path, *connections: WorkspaceConnection) -> DeploymentRequest:
    config = DeploymentConfig(target="container", endpoint_name="math-coding-dev-7q2", connections=connections)
    return DeploymentRequest(use_case="math_coding", flow_name="math_coding", flow_version="3", flow_dir=flow_dir,
                             deployment_name="math-coding-v3", config=config)


@pytest.fixture
def deployed(client: MLClient, workspace: AzureMLWorkspace, flow_dir: Path,
             tmp_path: Path) -> tuple[ContainerOnlineDeployer, DeploymentRequest]:
    deployer, request = deployer_for(client, tmp_path / "work"), request_for(flow_dir, ENTRA)
    endpoint = deployer.begin_endpoint(request.config)
    assert deployer.poll(endpoint).status is OperationStatus.SUCCEEDED
    state = deployer.begin_deploy(request)
    assert deployer.poll(state).status is OperationStatus.SUCCEEDED, state.message
    return deployer, request


def test_the_deployment_is_the_flows_own_image_built_by_azure_ml(
        deployed: tuple[ContainerOnlineDeployer, DeploymentRequest], workspace: AzureMLWorkspace) -> None:
    sent = workspace.deployments[("math-coding-dev-7q2", "math-coding-v3")]
    assert sent.model is None  # the flow is inside the image
    assert sent.environment.build.dockerfile_path == "Dockerfile"
    assert sent.environment.inference_config == INFERENCE_CONFIG
    uploaded = workspace.build_contexts[("math-coding-dev-7q2", "math-coding-v3")]
    assert (uploaded / "Dockerfile").read_text().count("FROM ") == 1
    assert (uploaded / "flow" / "flow.dag.yaml").is_file()
    assert (uploaded / "runit").is_dir()
    # Entra ID: the connection in the image reads its endpoint from the environment and has no key at all.
    connection = yaml.safe_load((uploaded / "connections" / "aoai.yaml").read_text())
    assert connection["api_base"] == "${env:AOAI_API_BASE}"
    assert connection["auth_mode"] == "meid_token"
    assert not connection.get("api_key")
    assert workspace.connections == {}  # nothing created in the workspace


def test_the_container_gets_its_settings_and_identity_but_no_secret(
        deployed: tuple[ContainerOnlineDeployer, DeploymentRequest], workspace: AzureMLWorkspace) -> None:
    variables = dict(workspace.deployments[("math-coding-dev-7q2", "math-coding-v3")].environment_variables)
    assert variables["AOAI_API_BASE"] == API_BASE
    assert variables["AZURE_CLIENT_ID"] == "endpoint-client-id"  # DefaultAzureCredential picks the endpoint identity
    assert "PRT_CONFIG_OVERRIDE" not in variables  # no workspace connection to pull
    assert "AOAI_API_KEY" not in variables
    for path in workspace.build_contexts[("math-coding-dev-7q2", "math-coding-v3")].rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes(), path
    assert SENTINEL_KEY not in (workspace.state_dir / "calls.jsonl").read_text()


def test_a_redelivered_deploy_does_not_send_it_again_and_the_endpoint_serves_it(
        deployed: tuple[ContainerOnlineDeployer, DeploymentRequest], workspace: AzureMLWorkspace) -> None:
    deployer, request = deployed
    again = deployer.begin_deploy(request)
    assert again.status is OperationStatus.SUCCEEDED
    calls = (workspace.state_dir / "calls.jsonl").read_text().count("online_deployments.begin_create_or_update")
    assert calls == 1
    deployer.poll(deployer.begin_set_traffic("math-coding-dev-7q2", {"math-coding-v3": 100}))
    target = deployer.scoring_request("math-coding-dev-7q2", "math-coding-v3")
    answer = requests.post(target.url, headers=target.http_headers(), json={"question": "1+1"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"answer", "reasoning"}  # the outputs the flow in the image declares


def test_a_key_based_connection_is_refused_before_anything_is_built(
        client: MLClient, workspace: AzureMLWorkspace, flow_dir: Path, tmp_path: Path) -> None:
    keyed = ENTRA.model_copy(update={"values": {"api_version": "2024-02-01", "api_type": "azure"}})
    deployer = deployer_for(client, tmp_path / "work")
    deployer.begin_endpoint(request_for(flow_dir, keyed).config)
    with pytest.raises(DeploymentError, match="meid_token") as refused:
        deployer.begin_deploy(request_for(flow_dir, keyed))
    assert SENTINEL_KEY not in str(refused.value)
    assert not workspace.deployments
    assert not (tmp_path / "work" / "container-contexts").exists()


def test_a_setting_the_image_reads_must_be_set(client: MLClient, workspace: AzureMLWorkspace, flow_dir: Path,
                                               tmp_path: Path) -> None:
    deployer = deployer_for(client, tmp_path / "work", settings={})
    deployer.begin_endpoint(request_for(flow_dir, ENTRA).config)
    with pytest.raises(DeploymentError, match="AOAI_API_BASE"):
        deployer.begin_deploy(request_for(flow_dir, ENTRA))
    assert not workspace.deployments
