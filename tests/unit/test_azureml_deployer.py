"""The managed online endpoint deployer at the SDK boundary.

A real MLClient (fake credential, no network) whose online_endpoints / online_deployments / models operations are
autospecs of the real classes, so a call with a wrong signature fails; the entities handed to them are real SDK
objects, checked field by field and serialized with the SDK's own REST mapping. The not-found and traffic paths
also run through the real operations against a fake HTTP transport, so they see what the SDK really sends and
raises (the zero-traffic entries it fills in on get and strips on update)."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    BuildContext,
    DataCollector,
    EndpointAadToken,
    EndpointAuthKeys,
    EndpointAuthToken,
    Environment,
    KubernetesOnlineEndpoint,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineDeployment,
    OnlineEndpoint,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.ai.ml.operations import (
    ModelOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
    WorkspaceConnectionsOperations,
)
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse

from shared.deployment import (
    DeploymentConfig,
    DeploymentError,
    DeploymentFailed,
    DeploymentRequest,
    EndpointNotFound,
    InvalidTraffic,
    azureml_deployer_for,
    plan_traffic,
)
from shared.deployment.azureml_deployer import (
    INFERENCE_CONFIG,
    PROMPTFLOW_RUNTIME_IMAGE,
    SPEC_TAG,
    AzureMLOnlineDeployer,
    ManagedOnlineDeployer,
    is_not_found,
    workspace_client,
)
from shared.deployment.endpoint_logs import EndpointTrafficLogs
from shared.deployment.identity import EndpointIdentity
from shared.deployment.port import OperationKind, OperationState, OperationStatus
from tests.fakes.azure_sdk import FakeCredential, not_found, poller

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
SCORING_URI = "https://math-coding-dev.westeurope.inference.ml.azure.com/score"
ENDPOINT_ID = ("/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w"
               "/onlineEndpoints/")
UAI = ("/subscriptions/0/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/flows")


# --- the SDK boundary: autospecs ----------------------------------------------------------------------------------


def ml_client(transport: RequestsTransport | None = None) -> MLClient:
    extra = {"transport": transport} if transport else {}
    return MLClient(FakeCredential(), SUBSCRIPTION, "rg-genaiops", "mlw-genaiops", **extra)


def autospec_client() -> MLClient:
    client = ml_client()
    client._online_endpoints = create_autospec(OnlineEndpointOperations, instance=True)
    client._online_deployments = create_autospec(OnlineDeploymentOperations, instance=True)
    client._models = create_autospec(ModelOperations, instance=True)
    client._connections = create_autospec(WorkspaceConnectionsOperations, instance=True)
    return client


def sent(operation: Any) -> Any:
    """The entity the last call of an autospecced begin_create_or_update received."""
    return operation.begin_create_or_update.call_args.args[0]


def write_flow(root: Path, requirements: str | None = "promptflow-tools==1.6.1\n") -> Path:
    root.mkdir(parents=True)
    (root / "flow.dag.yaml").write_text("environment:\n  python_requirements_txt: requirements.txt\n"
                                        "inputs: {question: {type: string}}\noutputs: {}\nnodes: []\n")
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return root


def request(flow_dir: Path, *, version: str = "3", deployment: str = "v-3", **config: Any) -> DeploymentRequest:
    block = {"target": "aml_managed", "endpoint_name": "math-coding-dev", **config}
    return DeploymentRequest(use_case="math_coding", flow_name="math_coding", flow_version=version,
                             flow_dir=flow_dir, deployment_name=deployment, config=DeploymentConfig(**block))


def managed_endpoint(traffic: dict[str, int] | None = None, mirror: dict[str, int] | None = None,
                     **extra: Any) -> ManagedOnlineEndpoint:
    return ManagedOnlineEndpoint(name="math-coding-dev", traffic=traffic or {}, mirror_traffic=mirror or {},
                                 scoring_uri=SCORING_URI, **{"provisioning_state": "Succeeded", **extra})


class Azure:
    """The autospecced operations, answering like a workspace with the given endpoint and deployments.

    Each PUT is accepted at once (a poller nobody has to wait on) and then takes effect over `progress` GETs of the
    entity, which read "Creating"/"Updating" meanwhile — the way the service reports a long operation under way.
    A deployment in `failing` ends "Failed"."""

    def __init__(self, client: MLClient, endpoint: OnlineEndpoint | None,
                 deployments: dict[str, OnlineDeployment] | None = None, model: Model | None = None, *,
                 progress: int = 0, failing: frozenset[str] = frozenset()) -> None:
        self.client, self.endpoint, self.deployments = client, endpoint, dict(deployments or {})
        self.progress, self.failing = progress, failing
        self.updating: dict[str, tuple[int, Any]] = {}  # what -> (GETs left, the entity once done)
        endpoints, deployments_ops, models = client.online_endpoints, client.online_deployments, client.models
        endpoints.get.side_effect = self._get_endpoint
        endpoints.begin_create_or_update.side_effect = self._put_endpoint
        deployments_ops.get.side_effect = self._get_deployment
        deployments_ops.begin_create_or_update.side_effect = self._put_deployment
        deployments_ops.get_logs.return_value = "booting\nerror: api_key=sk-live-123 rejected\n"
        models.get.side_effect = (lambda **_: model) if model else not_found("model")

    def _tick(self, what: str) -> None:
        left, done = self.updating.get(what, (0, None))
        if done is None:
            return
        if left > 0:
            self.updating[what] = (left - 1, done)
            return
        del self.updating[what]
        if what == "endpoint":
            self.endpoint = done
        else:
            done._provisioning_state = "Failed" if what in self.failing else "Succeeded"
            self.deployments[what] = done
            if self.endpoint is not None:
                self.endpoint.traffic = {**(self.endpoint.traffic or {}), what: (self.endpoint.traffic or {}).get(
                    what, 0)}  # the service lists every deployment, at 0 when it has no traffic

    def _get_endpoint(self, name: str, **_: Any) -> OnlineEndpoint:
        self._tick("endpoint")
        if self.endpoint is None or self.endpoint.name != name:
            raise not_found("endpoint")
        return self.endpoint

    def _put_endpoint(self, endpoint: OnlineEndpoint, **_: Any) -> Any:
        # The service answers with the endpoint as stored, scoring URI included.
        extra = {"compute": endpoint.compute} if isinstance(endpoint, KubernetesOnlineEndpoint) else {}
        stored = type(endpoint)(
            name=endpoint.name, auth_mode=endpoint.auth_mode, identity=endpoint.identity,
            traffic=dict(endpoint.traffic or {}), mirror_traffic=dict(endpoint.mirror_traffic or {}),
            scoring_uri=SCORING_URI, provisioning_state="Succeeded", id=ENDPOINT_ID + endpoint.name, **extra)
        if self.endpoint is not None:  # an update: the old one reads Updating until it lands
            self.endpoint._provisioning_state = "Updating" if self.progress else "Succeeded"
            stored.traffic = {**dict.fromkeys(self.endpoint.traffic or {}, 0), **stored.traffic}
        elif self.progress:
            self.endpoint = type(endpoint)(name=endpoint.name, scoring_uri=None, provisioning_state="Creating",
                                           **extra)
        self.updating["endpoint"] = (self.progress, stored)
        return poller(stored)

    def _get_deployment(self, name: str, endpoint_name: str, **_: Any) -> OnlineDeployment:
        self._tick(name)
        if name not in self.deployments:
            raise not_found("deployment")
        return self.deployments[name]

    def _put_deployment(self, deployment: OnlineDeployment, **_: Any) -> Any:
        if self.progress:
            deployment._provisioning_state = "Creating" if deployment.name not in self.deployments else "Updating"
            self.deployments[deployment.name] = deployment
        self.updating[deployment.name] = (self.progress, deployment)
        return poller(deployment)


def deploy(deployer: AzureMLOnlineDeployer, deployment: DeploymentRequest) -> OperationState:
    """The deployment service's first two steps, against a workspace that answers at once."""
    assert deployer.poll(deployer.begin_endpoint(deployment.config)).status is OperationStatus.SUCCEEDED
    return deployer.poll(deployer.begin_deploy(deployment))


@pytest.fixture
def client() -> MLClient:
    return autospec_client()


@pytest.fixture
def deployer(client: MLClient, tmp_path: Path) -> ManagedOnlineDeployer:
    return ManagedOnlineDeployer(client, app_settings={}, work_dir=tmp_path / "work")


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    return write_flow(tmp_path / "math_coding")


def rest_of(deployment: OnlineDeployment) -> dict[str, Any]:
    """The deployment as the SDK puts it on the wire, once its model and environment are resolved to ids (the
    SDK's upload step, skipped here)."""
    deployment.model = "azureml:/subscriptions/0/models/math_coding/versions/3"
    deployment.environment = "azureml:/subscriptions/0/environments/flow-env/versions/1"
    return deployment._to_rest_object(location="westeurope").as_dict()


# --- deploy: the entities ---------------------------------------------------------------------------------------


def test_deploy_creates_the_endpoint_with_key_auth_and_a_system_assigned_identity(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=None)

    deployed = deploy(deployer, request(flow))

    endpoint = sent(client.online_endpoints)
    assert isinstance(endpoint, ManagedOnlineEndpoint)
    assert endpoint.name == "math-coding-dev"
    assert endpoint.auth_mode == "key"
    assert endpoint.identity.type == "system_assigned"
    # Lets the system-assigned identity read the workspace connections the flow uses.
    assert endpoint.properties == {"enforce_access_to_default_secret_stores": "enabled"}
    assert not endpoint.traffic
    rest = endpoint._to_rest_online_endpoint(location="westeurope")
    assert rest.identity.type == "SystemAssigned"
    assert client.online_endpoints.get(name="math-coding-dev").scoring_uri == SCORING_URI
    assert (deployed.endpoint, deployed.deployment) == ("math-coding-dev", "v-3")


def test_deploy_builds_the_deployment_the_way_azure_ml_serves_a_prompt_flow(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint({"v-2": 100}))

    deploy(deployer, request(flow, instance_type="Standard_DS4_v2", instance_count=3, request_timeout_ms=120000,
                            max_concurrent_requests_per_instance=4,
                            environment_variables={"PROMPTFLOW_RESPONSE_INCLUDED_FIELDS": '["answer"]'}))

    deployment = sent(client.online_deployments)
    assert isinstance(deployment, ManagedOnlineDeployment)
    assert (deployment.name, deployment.endpoint_name) == ("v-3", "math-coding-dev")
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS4_v2", 3)
    assert deployment.app_insights_enabled is True
    assert deployment.data_collector is None
    assert isinstance(deployment.request_settings, OnlineRequestSettings)
    assert deployment.request_settings.request_timeout_ms == 120000
    assert deployment.request_settings.max_concurrent_requests_per_instance == 4
    assert deployment.environment_variables == {
        "PROMPTFLOW_RUN_MODE": "serving",
        "PRT_CONFIG_OVERRIDE": f"deployment.subscription_id={SUBSCRIPTION},deployment.resource_group=rg-genaiops,"
                               "deployment.workspace_name=mlw-genaiops,deployment.endpoint_name=math-coding-dev,"
                               "deployment.deployment_name=v-3",
        "PROMPTFLOW_RESPONSE_INCLUDED_FIELDS": '["answer"]',
    }
    assert deployment.tags["genaiops.flow_version"] == "3"
    assert re.fullmatch(r"[0-9a-f]{16}", deployment.tags[SPEC_TAG])


def test_probes_give_the_container_the_smoke_tests_readiness_budget(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())

    deploy(deployer, request(flow, smoke={"readiness_timeout_seconds": 300}))

    deployment = sent(client.online_deployments)
    readiness, liveness = deployment.readiness_probe, deployment.liveness_probe
    assert isinstance(readiness, ProbeSettings)
    assert (readiness.period, readiness.failure_threshold) == (10, 30)  # 30 x 10 s = the 300 s budget
    assert (liveness.period, liveness.failure_threshold, liveness.timeout) == (10, 30, 5)


def test_the_deployment_serializes_with_the_settings_on_the_wire(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())

    deploy(deployer, request(flow, request_timeout_ms=90000, data_collection=True))

    properties = rest_of(sent(client.online_deployments))["properties"]
    assert properties["endpointComputeType"] == "Managed"
    assert properties["requestSettings"] == {"maxConcurrentRequestsPerInstance": 1, "requestTimeout": "PT1M30S"}
    assert properties["readinessProbe"]["period"] == "PT10S"
    assert properties["appInsightsEnabled"] is True
    assert properties["instanceType"] == "Standard_DS3_v2"
    assert properties["dataCollector"]["collections"] == {
        name: {"dataCollectionMode": "enabled"} for name in ("model_inputs", "model_outputs", "app_traces")}
    assert properties["dataCollector"]["rollingRate"] == "hour"  # the reader's {yyyy}/{MM}/{dd}/{HH} folders


def test_data_collection_turns_on_the_collector_and_promptflows_flag(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())

    deploy(deployer, request(flow, data_collection=True, app_insights_enabled=False))

    deployment = sent(client.online_deployments)
    assert isinstance(deployment.data_collector, DataCollector)
    assert {name: c.enabled for name, c in deployment.data_collector.collections.items()} == {
        "model_inputs": "true", "model_outputs": "true", "app_traces": "true"}
    assert deployment.data_collector.rolling_rate == "hour"
    assert deployment.environment_variables["PROMPTFLOW_MDC_ENABLE"] == "true"
    assert deployment.app_insights_enabled is False


def test_an_unregistered_flow_is_registered_inline_as_a_prompt_flow_model(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())

    deployed = deploy(deployer, request(flow))

    client.models.get.assert_called_once_with(name="math_coding", version="3")
    model = sent(client.online_deployments).model
    assert isinstance(model, Model)
    assert (model.name, model.version, model.type) == ("math_coding", "3", "custom_model")
    assert Path(model.path) == flow
    assert model.properties == {"azureml.promptflow.source_flow_id": "math_coding"}
    assert deployed.details["model"] == "azureml:math_coding:3"


def test_a_registered_flow_version_is_deployed_by_reference(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    registered = Model(name="math_coding", version="3", path="azureml://somewhere",
                       properties={"azureml.promptflow.source_flow_id": "math_coding"})
    Azure(client, endpoint=managed_endpoint(), model=registered)

    deploy(deployer, request(flow))

    assert sent(client.online_deployments).model == "azureml:math_coding:3"


def test_the_environment_installs_the_flows_requirements_on_the_serving_image(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())

    deploy(deployer, request(flow))

    environment = sent(client.online_deployments).environment
    assert isinstance(environment, Environment)
    assert isinstance(environment.build, BuildContext)
    assert environment.inference_config == INFERENCE_CONFIG
    assert INFERENCE_CONFIG["scoring_route"] == {"path": "/score", "port": 8080}
    context = Path(environment.build.path)
    assert (context / "requirements.txt").read_text() == "promptflow-tools==1.6.1\n"
    dockerfile = (context / environment.build.dockerfile_path).read_text().splitlines()
    assert dockerfile[0] == f"FROM {PROMPTFLOW_RUNTIME_IMAGE}"
    assert any(line.startswith("RUN pip install") and "requirements" in line for line in dockerfile)


def test_a_flow_without_requirements_runs_on_the_serving_image_as_is(
        deployer: ManagedOnlineDeployer, client: MLClient, tmp_path: Path) -> None:
    flow = write_flow(tmp_path / "bare", requirements="# nothing\n")
    Azure(client, endpoint=managed_endpoint())

    deployed = deploy(deployer, request(flow))

    environment = sent(client.online_deployments).environment
    assert environment.image == PROMPTFLOW_RUNTIME_IMAGE
    assert environment.build is None
    assert environment.inference_config == INFERENCE_CONFIG
    assert deployed.details["environment"] == PROMPTFLOW_RUNTIME_IMAGE


def test_a_user_assigned_identity_goes_on_the_endpoint_and_into_the_container(
        client: MLClient, tmp_path: Path, flow: Path) -> None:
    deployer = ManagedOnlineDeployer(client, app_settings={}, work_dir=tmp_path / "work", auth_mode="aml_token",
                                     identity=EndpointIdentity(resource_id=UAI, client_id="1111-client"))
    Azure(client, endpoint=None)

    deploy(deployer, request(flow))

    endpoint = sent(client.online_endpoints)
    assert endpoint.auth_mode == "aml_token"
    assert endpoint.identity.type == "user_assigned"
    assert [identity.resource_id for identity in endpoint.identity.user_assigned_identities] == [UAI]
    assert endpoint.properties == {}  # the secret-store flag only works for system-assigned identities
    assert endpoint._to_rest_online_endpoint(location="westeurope").identity.type == "UserAssigned"
    assert sent(client.online_deployments).environment_variables["AZURE_CLIENT_ID"] == "1111-client"


# --- deploy: traffic, idempotency, failures ---------------------------------------------------------------------


def test_a_new_deployment_starts_at_zero_and_the_endpoints_traffic_is_untouched(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint({"v-2": 100}))

    deployed = deploy(deployer, request(flow))

    client.online_endpoints.begin_create_or_update.assert_not_called()
    assert deployed.status is OperationStatus.SUCCEEDED
    assert deployer.get_traffic("math-coding-dev") == {"v-2": 100, "v-3": 0}


def test_a_redelivered_deploy_of_the_same_spec_does_not_redeploy(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint({"v-2": 100}))
    deploy(deployer, request(flow))
    first = sent(client.online_deployments)
    first._provisioning_state = "Succeeded"
    Azure(client, endpoint=managed_endpoint({"v-2": 100, "v-3": 0}), deployments={"v-3": first})
    client.online_deployments.begin_create_or_update.reset_mock()

    again = deploy(deployer, request(flow))

    client.online_deployments.begin_create_or_update.assert_not_called()
    assert again.details["spec"] == first.tags[SPEC_TAG]


def test_a_changed_spec_or_a_failed_earlier_attempt_is_deployed_again(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())
    deploy(deployer, request(flow))
    failed = sent(client.online_deployments)
    failed._provisioning_state = "Failed"
    Azure(client, endpoint=managed_endpoint(), deployments={"v-3": failed})
    client.online_deployments.begin_create_or_update.reset_mock()
    deploy(deployer, request(flow))
    client.online_deployments.begin_create_or_update.assert_called_once()

    succeeded = sent(client.online_deployments)
    succeeded._provisioning_state = "Succeeded"
    Azure(client, endpoint=managed_endpoint(), deployments={"v-3": succeeded})
    client.online_deployments.begin_create_or_update.reset_mock()
    deploy(deployer, request(flow, instance_count=2))
    client.online_deployments.begin_create_or_update.assert_called_once()


def test_smoke_settings_other_than_the_readiness_budget_do_not_trigger_a_redeploy(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())
    deploy(deployer, request(flow))
    first = sent(client.online_deployments)
    first._provisioning_state = "Succeeded"
    Azure(client, endpoint=managed_endpoint(), deployments={"v-3": first})
    client.online_deployments.begin_create_or_update.reset_mock()

    deploy(deployer, request(flow, smoke={"samples": 20, "latency_budget_ms": 500}, traffic={"new": 50, "current": 50}))
    client.online_deployments.begin_create_or_update.assert_not_called()
    deploy(deployer, request(flow, smoke={"readiness_timeout_seconds": 900}))
    client.online_deployments.begin_create_or_update.assert_called_once()


def test_a_refused_deployment_reports_the_error_and_the_redacted_log_tail(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())
    client.online_deployments.begin_create_or_update.side_effect = HttpResponseError(
        message="BadArgument: instance type not available")

    state = deploy(deployer, request(flow))

    assert state.status is OperationStatus.FAILED
    assert "BadArgument" in state.message
    client.online_deployments.get_logs.assert_called_once_with(name="v-3", endpoint_name="math-coding-dev",
                                                               lines=100)
    assert "booting" in state.logs
    assert "sk-live-123" not in state.logs


# --- begin and poll: nothing waits --------------------------------------------------------------------------------


def test_begin_deploy_returns_at_once_and_poll_follows_the_provisioning_state(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint({"v-2": 100}), progress=3)
    pollers: list[Any] = []
    put = client.online_deployments.begin_create_or_update.side_effect
    client.online_deployments.begin_create_or_update.side_effect = lambda d, **kw: pollers.append(put(d)) or \
        pollers[-1]

    state = deployer.begin_deploy(request(flow))

    assert (state.kind, state.status) == (OperationKind.DEPLOYMENT, OperationStatus.PENDING)
    seen = []
    while state.pending:
        state = deployer.poll(OperationState.model_validate_json(state.model_dump_json()))  # as persisted
        seen.append(state.status)
    assert seen == [OperationStatus.PENDING] * 3 + [OperationStatus.SUCCEEDED]
    assert len(pollers) == 1
    # The LRO poller is dropped: never waited on, never asked for its result.
    assert not pollers[0].wait.called
    assert not pollers[0].result.called
    deployed = client.online_deployments.get(name="v-3", endpoint_name="math-coding-dev")
    assert state.details["spec"] == deployed.tags[SPEC_TAG]


def test_the_endpoint_is_created_without_waiting(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=None, progress=2)

    state = deployer.begin_endpoint(request(Path("unused")).config)

    assert (state.kind, state.status) == (OperationKind.ENDPOINT, OperationStatus.PENDING)
    assert deployer.poll(state).pending
    assert deployer.poll(state).pending
    assert deployer.poll(state).status is OperationStatus.SUCCEEDED
    assert deployer.begin_endpoint(request(Path("unused")).config).status is OperationStatus.SUCCEEDED


def test_an_endpoint_once_ready_has_its_traffic_log_routed_to_log_analytics(client: MLClient, tmp_path: Path) -> None:
    traffic_logs = create_autospec(EndpointTrafficLogs, instance=True)
    deployer = ManagedOnlineDeployer(client, app_settings={}, work_dir=tmp_path, traffic_logs=traffic_logs)
    Azure(client, endpoint=None, progress=1)

    state = deployer.begin_endpoint(request(Path("unused")).config)
    state = deployer.poll(state)
    traffic_logs.ensure.assert_not_called()  # still creating: nothing to attach a setting to
    assert deployer.poll(state).status is OperationStatus.SUCCEEDED

    traffic_logs.ensure.assert_called_once_with(ENDPOINT_ID + "math-coding-dev")


def test_a_deployment_that_ends_failed_is_reported_with_its_logs(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint(), progress=1, failing=frozenset({"v-3"}))

    state = deployer.begin_deploy(request(flow))
    state = deployer.poll(state)
    assert state.pending
    state = deployer.poll(state)

    assert state.status is OperationStatus.FAILED
    assert "ended Failed" in state.message
    assert "booting" in state.logs
    assert "sk-live-123" not in state.logs


def test_a_deployment_under_way_is_not_sent_again(deployer: ManagedOnlineDeployer, client: MLClient,
                                                  flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint(), progress=5)
    deployer.begin_deploy(request(flow))

    again = deployer.begin_deploy(request(flow))  # a redelivered start while Azure ML still works on it

    client.online_deployments.begin_create_or_update.assert_called_once()
    assert again.pending


def test_a_traffic_update_is_pending_until_the_endpoint_reports_the_split(
        deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-2": 100, "v-3": 0}), progress=2)

    state = deployer.begin_set_traffic("math-coding-dev", {"v-2": 70, "v-3": 30})

    assert (state.kind, state.traffic) == (OperationKind.TRAFFIC, {"v-2": 70, "v-3": 30})
    assert sent(client.online_endpoints).traffic == {"v-2": 70, "v-3": 30}
    assert deployer.poll(state).pending
    assert deployer.poll(state).pending
    assert deployer.poll(state).status is OperationStatus.SUCCEEDED
    assert deployer.get_traffic("math-coding-dev") == {"v-2": 70, "v-3": 30}


def test_deploy_refuses_settings_azure_ml_cannot_honour(deployer: ManagedOnlineDeployer, client: MLClient,
                                                        flow: Path) -> None:
    Azure(client, endpoint=managed_endpoint())
    with pytest.raises(DeploymentError, match="PRT_CONFIG_OVERRIDE"):
        deploy(deployer, request(flow, environment_variables={"PRT_CONFIG_OVERRIDE": "x"}))
    with pytest.raises(DeploymentError, match="Key Vault references"):
        deploy(deployer, request(flow, environment_variables={
            "AOAI_API_KEY": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/k/)"}))
    client.online_deployments.begin_create_or_update.assert_not_called()


def test_deploy_refuses_another_target_and_another_kind_of_endpoint(
        deployer: ManagedOnlineDeployer, client: MLClient, flow: Path) -> None:
    with pytest.raises(DeploymentError, match="aml_kubernetes"):
        deploy(deployer, request(flow, target="aml_kubernetes", compute="k8s-dev"))
    Azure(client, endpoint=KubernetesOnlineEndpoint(name="math-coding-dev", compute="k8s-dev"))
    with pytest.raises(DeploymentError, match="KubernetesOnlineEndpoint"):
        deploy(deployer, request(flow))
    client.online_deployments.begin_create_or_update.assert_not_called()


# --- traffic ---------------------------------------------------------------------------------------------------


def test_set_traffic_keeps_both_shares(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-2": 100, "v-3": 0}))

    state = deployer.begin_set_traffic("math-coding-dev", plan_traffic({"v-2": 100, "v-3": 0}, "v-3",
                                                                       request_split(30)))

    endpoint = sent(client.online_endpoints)
    assert endpoint.traffic == {"v-2": 70, "v-3": 30}
    assert deployer.poll(state).status is OperationStatus.SUCCEEDED
    assert deployer.get_traffic("math-coding-dev") == {"v-2": 70, "v-3": 30}


def test_set_traffic_zeroes_deployments_it_does_not_name_and_moves_mirrored_ones_to_live(
        deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 20, "v-2": 80}, mirror={"v-3": 10}))

    deployer.begin_set_traffic("math-coding-dev", {"v-2": 70, "v-3": 30})

    endpoint = sent(client.online_endpoints)
    assert endpoint.traffic == {"v-1": 0, "v-2": 70, "v-3": 30}
    assert endpoint.mirror_traffic == {}  # live or mirrored, never both


def test_set_traffic_keeps_an_unrelated_mirror(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100, "v-2": 0}, mirror={"v-9": 10}))
    deployer.begin_set_traffic("math-coding-dev", {"v-1": 70, "v-2": 30})
    assert sent(client.online_endpoints).mirror_traffic == {"v-9": 10}


def test_set_traffic_refuses_bad_splits_before_calling_azure(deployer: ManagedOnlineDeployer,
                                                             client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100}))
    with pytest.raises(InvalidTraffic, match="sum to 100"):
        deployer.begin_set_traffic("math-coding-dev", {"v-1": 60})
    with pytest.raises(InvalidTraffic, match="no deployment v-7"):
        deployer.begin_set_traffic("math-coding-dev", {"v-1": 50, "v-7": 50})
    client.online_endpoints.begin_create_or_update.assert_not_called()


def test_traffic_of_a_missing_endpoint(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=None)
    assert deployer.get_traffic("math-coding-dev") == {}
    with pytest.raises(EndpointNotFound):
        deployer.begin_set_traffic("math-coding-dev", {"v-1": 100})


def request_split(new: int) -> Any:
    from shared.deployment import TrafficSplit

    return TrafficSplit(new=new, current=100 - new)


# --- scoring ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [
    EndpointAuthKeys(primary_key="key-1", secondary_key="key-2"),
    EndpointAuthToken(access_token="key-1"),
    EndpointAadToken(AccessToken("key-1", int(time.time()) + 600)),
])
def test_scoring_request_carries_the_key_or_token_and_pins_the_deployment(
        deployer: ManagedOnlineDeployer, client: MLClient, credentials: Any) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100}))
    client.online_endpoints.get_keys.return_value = credentials

    target = deployer.scoring_request("math-coding-dev", "v-1")

    client.online_endpoints.get_keys.assert_called_once_with(name="math-coding-dev")
    assert target.url == SCORING_URI
    assert target.http_headers() == {"Authorization": "Bearer key-1", "Content-Type": "application/json",
                                     "azureml-model-deployment": "v-1"}
    assert "key-1" not in repr(target)
    assert "key-1" not in target.model_dump_json()


def test_scoring_request_without_a_deployment_goes_through_the_split(deployer: ManagedOnlineDeployer,
                                                                     client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100}))
    client.online_endpoints.get_keys.return_value = EndpointAuthKeys(primary_key="key-1")
    assert "azureml-model-deployment" not in deployer.scoring_request("math-coding-dev").http_headers()


def test_scoring_request_for_a_missing_endpoint(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=None)
    with pytest.raises(EndpointNotFound):
        deployer.scoring_request("math-coding-dev")


# --- remove ----------------------------------------------------------------------------------------------------


def test_remove_deletes_an_idle_deployment(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100, "v-2": 0}))
    client.online_deployments.begin_delete.return_value = poller()

    deployer.remove("math-coding-dev", "v-2")

    client.online_deployments.begin_delete.assert_called_once_with(name="v-2", endpoint_name="math-coding-dev")


def test_remove_refuses_a_deployment_that_still_serves(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 70, "v-2": 30}))
    with pytest.raises(DeploymentError, match="still serves 30%"):
        deployer.remove("math-coding-dev", "v-2")
    client.online_deployments.begin_delete.assert_not_called()


def test_remove_drops_a_mirror_first(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100}, mirror={"v-2": 10}))
    client.online_deployments.begin_delete.return_value = poller()
    deployer.remove("math-coding-dev", "v-2")
    assert sent(client.online_endpoints).mirror_traffic == {}
    client.online_deployments.begin_delete.assert_called_once()


@pytest.mark.parametrize("gone", ["endpoint", "deployment at start", "deployment while deleting"])
def test_remove_of_something_already_gone_is_not_an_error(deployer: ManagedOnlineDeployer, client: MLClient,
                                                          gone: str) -> None:
    Azure(client, endpoint=None if gone == "endpoint" else managed_endpoint({"v-1": 100}))
    if gone == "deployment at start":
        client.online_deployments.begin_delete.side_effect = not_found("deployment")
    else:
        client.online_deployments.begin_delete.return_value = poller(error=not_found("deployment"))
    deployer.remove("math-coding-dev", "v-2")
    # Nothing is deleted once the endpoint is gone; otherwise the delete is asked for once and its "not found" ends it.
    assert client.online_deployments.begin_delete.call_count == (0 if gone == "endpoint" else 1)


def test_remove_reports_other_failures(deployer: ManagedOnlineDeployer, client: MLClient) -> None:
    Azure(client, endpoint=managed_endpoint({"v-1": 100}))
    client.online_deployments.begin_delete.return_value = poller(error=HttpResponseError(message="Conflict"))
    with pytest.raises(DeploymentFailed, match="Conflict"):
        deployer.remove("math-coding-dev", "v-2")


# --- wiring ----------------------------------------------------------------------------------------------------


def test_the_factory_picks_the_deployer_by_target(client: MLClient, tmp_path: Path) -> None:
    from shared.deployment import DeploymentTarget
    from shared.deployment.container_deployer import ContainerOnlineDeployer
    from shared.deployment.kubernetes_deployer import KubernetesOnlineDeployer

    assert type(azureml_deployer_for(DeploymentTarget.AML_MANAGED, client, app_settings={}, work_dir=tmp_path)) is \
        ManagedOnlineDeployer
    assert type(azureml_deployer_for(DeploymentTarget.AML_KUBERNETES, client, app_settings={}, work_dir=tmp_path)) is \
        KubernetesOnlineDeployer
    assert type(azureml_deployer_for(DeploymentTarget.CONTAINER, client, app_settings={}, work_dir=tmp_path)) is \
        ContainerOnlineDeployer
    with pytest.raises(ValueError, match="not served by Azure ML"):
        azureml_deployer_for(DeploymentTarget.LOCAL, client, app_settings={}, work_dir=tmp_path)


def test_the_client_comes_from_the_workspace_settings() -> None:
    client = workspace_client(FakeCredential(), SUBSCRIPTION, "rg", "ws")
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (SUBSCRIPTION, "rg", "ws")
    with pytest.raises(DeploymentError, match="AZUREML_WORKSPACE_NAME"):
        workspace_client(FakeCredential(), SUBSCRIPTION, "rg", None)


def test_importing_the_package_loads_no_heavy_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys, shared.deployment; "
            "print(any(m.startswith(('azure.ai.ml', 'promptflow')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


# --- through the real operations (fake HTTP transport) ------------------------------------------------------------


class Routes(HTTPAdapter):
    """Answers by method and URL path suffix; records each request and its JSON body. Never touches the network."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[dict[str, Any] | None], tuple[int, Any]]]) -> None:
        super().__init__()
        self.routes, self.seen = routes, []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        path = requests.utils.urlparse(request.url).path
        body = json.loads(request.body) if request.body else None
        self.seen.append((request.method, path, body))
        for (method, suffix), answer in self.routes.items():
            if request.method == method and path.endswith(suffix):
                status, payload = answer(body)
                break
        else:
            status, payload = 404, {"error": {"code": "NotFound", "message": f"no route for {path}"}}
        data = json.dumps(payload).encode()
        raw = HTTPResponse(body=io.BytesIO(data), status=status, preload_content=False,
                           headers={"Content-Type": "application/json", "Content-Length": str(len(data))})
        return self.build_response(request, raw)


def transport_client(routes: Routes) -> MLClient:
    session = requests.Session()
    session.mount("https://", routes)
    return ml_client(RequestsTransport(session=session, session_owner=False))


WORKSPACE_PATH = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-genaiops/providers/" \
                 "Microsoft.MachineLearningServices/workspaces/mlw-genaiops"


def endpoint_json(traffic: dict[str, int]) -> dict[str, Any]:
    return {"id": f"{WORKSPACE_PATH}/onlineEndpoints/math-coding-dev", "name": "math-coding-dev",
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints", "location": "westeurope",
            "kind": "Managed", "identity": {"type": "SystemAssigned"},
            "properties": {"authMode": "Key", "scoringUri": SCORING_URI, "traffic": traffic, "mirrorTraffic": {},
                           "provisioningState": "Succeeded"}}


def deployment_json(name: str) -> dict[str, Any]:
    return {"id": f"{WORKSPACE_PATH}/onlineEndpoints/math-coding-dev/deployments/{name}", "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
            "location": "westeurope", "sku": {"name": "Default", "capacity": 1},
            "properties": {"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2",
                           "scaleSettings": {"scaleType": "Default"}, "provisioningState": "Succeeded"}}


def workspace_routes(traffic: dict[str, int], deployments: list[str]) -> Routes:
    state = {"traffic": dict(traffic)}

    def put(body: dict[str, Any] | None) -> tuple[int, Any]:
        state["traffic"] = dict((body or {}).get("properties", {}).get("traffic") or {})
        return 200, endpoint_json(state["traffic"])

    return Routes({
        ("GET", "/workspaces/mlw-genaiops"): lambda _: (200, {"id": WORKSPACE_PATH, "name": "mlw-genaiops",
                                                              "location": "westeurope", "properties": {}}),
        ("GET", "/onlineEndpoints/math-coding-dev"): lambda _: (200, endpoint_json(state["traffic"])),
        ("GET", "/onlineEndpoints/math-coding-dev/deployments"): lambda _: (
            200, {"value": [deployment_json(name) for name in deployments]}),
        ("PUT", "/onlineEndpoints/math-coding-dev"): put,
    })


def test_real_sdk_lists_idle_deployments_at_zero() -> None:
    routes = workspace_routes({"v-2": 100}, ["v-2", "v-3"])
    deployer = ManagedOnlineDeployer(transport_client(routes), app_settings={}, work_dir=Path("unused"))
    assert deployer.get_traffic("math-coding-dev") == {"v-2": 100, "v-3": 0}


def test_real_sdk_sends_both_shares_and_strips_zeroes() -> None:
    routes = workspace_routes({"v-1": 10, "v-2": 90}, ["v-1", "v-2", "v-3"])
    deployer = ManagedOnlineDeployer(transport_client(routes), app_settings={}, work_dir=Path("unused"))

    state = deployer.begin_set_traffic("math-coding-dev", {"v-2": 70, "v-3": 30})

    puts = [body for method, _, body in routes.seen if method == "PUT"]
    assert len(puts) == 1
    assert puts[0]["properties"]["traffic"] == {"v-2": 70, "v-3": 30}  # v-1's 0 is not sent
    assert state.traffic == {"v-1": 0, "v-2": 70, "v-3": 30}  # what poll waits to see, 0 included


@pytest.mark.parametrize(("operation", "call"), [
    ("endpoint", lambda c: c.online_endpoints.get(name="math-coding-dev")),
    ("deployment", lambda c: c.online_deployments.get(name="v-3", endpoint_name="math-coding-dev")),
    ("model", lambda c: c.models.get(name="math_coding", version="3")),
    ("delete", lambda c: c.online_deployments.begin_delete(name="v-3", endpoint_name="math-coding-dev")),
])
def test_real_sdk_not_found_is_recognised(operation: str, call: Callable[[MLClient], Any]) -> None:
    client = transport_client(Routes({}))
    with pytest.raises(HttpResponseError) as error:
        call(client)
    assert is_not_found(error.value)


def test_real_sdk_missing_endpoint_means_no_traffic_and_nothing_to_remove() -> None:
    routes = Routes({})
    deployer = ManagedOnlineDeployer(transport_client(routes), app_settings={}, work_dir=Path("unused"))
    assert deployer.get_traffic("math-coding-dev") == {}
    deployer.remove("math-coding-dev", "v-3")
    assert [method for method, _, _ in routes.seen] == ["GET", "GET"]


def test_a_forbidden_answer_is_not_mistaken_for_not_found() -> None:
    routes = Routes({("GET", "/onlineEndpoints/math-coding-dev"): lambda _: (
        403, {"error": {"code": "AuthorizationFailed", "message": "no"}})})
    deployer = ManagedOnlineDeployer(transport_client(routes), app_settings={}, work_dir=Path("unused"))
    with pytest.raises(HttpResponseError):
        deployer.get_traffic("math-coding-dev")


# --- identity: the least roles, as data ----------------------------------------------------------------------------


def test_endpoint_identity_roles_are_the_least_that_work() -> None:
    from shared.deployment import DeploymentTarget
    from shared.deployment.identity import Scopes, required_roles

    scopes = Scopes(workspace="/ws", container_registry="/acr", storage_account="/st", key_vault="/kv",
                    openai_account="/aoai")
    managed = {(r.role, r.scope, r.automatic) for r in required_roles(DeploymentTarget.AML_MANAGED, scopes)}
    assert managed == {("AcrPull", "/acr", True), ("Storage Blob Data Reader", "/st", True),
                       ("AzureML Metrics Writer (preview)", "/ws", True),
                       ("Azure Machine Learning Workspace Connection Secrets Reader", "/ws", False)}
    user_assigned = required_roles(DeploymentTarget.AML_KUBERNETES, scopes, system_assigned=False)
    assert not any(role.automatic for role in user_assigned)
    container = {(r.role, r.scope) for r in required_roles(DeploymentTarget.CONTAINER, scopes, entra_openai=True)}
    # The flow's own image: no model to read from storage, no workspace connection to read.
    assert container == {("AcrPull", "/acr"), ("AzureML Metrics Writer (preview)", "/ws"),
                         ("Cognitive Services OpenAI User", "/aoai")}
    every = [r.role for target in DeploymentTarget for r in required_roles(target, scopes, entra_openai=True)]
    assert not {"Owner", "Contributor", "User Access Administrator"} & set(every)
    assert required_roles(DeploymentTarget.CONTAINER, Scopes(container_registry="/acr"))[0].role == "AcrPull"
