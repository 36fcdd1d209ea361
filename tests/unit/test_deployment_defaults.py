"""Shipped defaults that work in Azure: dev and prod deploy to Azure ML managed online endpoints under names unique
per workspace and environment, on a pinned prompt flow runtime image, and the workspace connections the flow needs
are created or updated before the deployment (tested at the SDK boundary: autospecs of the real operations)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import AadCredentialConfiguration, ApiKeyConfiguration, AzureOpenAIConnection
from azure.core.exceptions import HttpResponseError
from pydantic import ValidationError

from shared.deployment.azureml_deployer import ManagedOnlineDeployer
from shared.deployment.port import (
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    PROMPTFLOW_RUNTIME_IMAGE,
    DeploymentConfig,
    DeploymentError,
    DeploymentTarget,
    OperationStatus,
    WorkspaceConnection,
    default_endpoint_name,
)
from shared.experiments.config import load_experiment
from shared.services.deployment_settings import deployment_config, endpoint_for
from shared.settings import Settings
from tests.unit.test_azureml_deployer import Azure, autospec_client, deploy, managed_endpoint, request, sent, write_flow

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = {"AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "AZURE_RESOURCE_GROUP": "rg-genaiops",
             "AZUREML_WORKSPACE_NAME": "mlw-genaiops"}
AOAI = "https://aoai-genaiops.openai.azure.com/"


def valid(name: str) -> bool:
    return 3 <= len(name) <= MAX_NAME_LENGTH and NAME_PATTERN.match(name) is not None


# --- endpoint names ---------------------------------------------------------------------------------------------


def test_the_endpoint_name_is_the_folder_the_environment_and_a_stable_hash() -> None:
    name = default_endpoint_name("math_coding", "dev", "sub/rg/ws")

    assert name.startswith("math-coding-dev-")
    assert len(name) == len("math-coding-dev-") + 6
    assert valid(name)
    assert default_endpoint_name("math_coding", "dev", "sub/rg/ws") == name  # stable across calls and processes


def test_long_and_odd_folder_names_still_make_valid_names() -> None:
    for folder in ("named_entity_recognition_with_a_very_long_folder_name_indeed", "1st_use_case", "___",
                   "Case.With.Dots", "a", "ends_with_underscore_", "x" * 200):
        for environment in ("dev", "prod", "pr", "local"):
            name = default_endpoint_name(folder, environment, "sub/rg/ws")
            assert valid(name), name
            assert f"-{environment}-" in name


def test_an_unhashed_name_still_fits_the_rules() -> None:
    assert default_endpoint_name("math_coding", "local", hashed=False) == "math-coding-local"
    assert valid(default_endpoint_name("x" * 60, "local", hashed=False))
    assert valid(default_endpoint_name("9_lives", "local", hashed=False))


def test_names_do_not_collide_across_folders_environments_and_workspaces() -> None:
    long = "named_entity_recognition_with_a_very_long_folder_name"
    names = {
        default_endpoint_name("math_coding", "dev", "ws-a"),
        default_endpoint_name("math-coding", "dev", "ws-a"),  # slugs alike
        default_endpoint_name(long + "_one", "dev", "ws-a"),  # cut alike
        default_endpoint_name(long + "_two", "dev", "ws-a"),
        default_endpoint_name("math_coding", "prod", "ws-a"),
        default_endpoint_name("math_coding", "dev", "ws-b"),  # another workspace (the region-unique rule)
        default_endpoint_name("math_coding", "dev", ""),
    }
    assert len(names) == 7


# --- the default target per environment -------------------------------------------------------------------------


@pytest.fixture
def use_case(tmp_path: Path) -> Path:
    """math_coding copied under another folder name: the name comes from the folder, not the yaml `name:`."""
    target = tmp_path / "flows" / "billing_questions"
    shutil.copytree(ROOT / "flows" / "math_coding", target)
    return target


@pytest.mark.parametrize(("environment", "target"), [("dev", DeploymentTarget.AML_MANAGED),
                                                      ("prod", DeploymentTarget.AML_MANAGED),
                                                      ("local", DeploymentTarget.LOCAL),
                                                      ("pr", DeploymentTarget.LOCAL)])
def test_dev_and_prod_deploy_to_azure_ml_by_default_and_local_stays_local(use_case: Path, environment: str,
                                                                            target: DeploymentTarget) -> None:
    config = deployment_config(load_experiment(use_case, environment), environment, WORKSPACE)

    assert config.target is target
    if environment == "local":  # the local stack: no region to be unique in, a name to read
        assert config.endpoint_name == "billing-questions-local"
        return
    assert config.endpoint_name == default_endpoint_name("billing_questions", environment,
                                                         "00000000-0000-0000-0000-000000000000/rg-genaiops/"
                                                         "mlw-genaiops")
    assert config.endpoint_name.startswith(f"billing-questions-{environment}-")


def test_the_workspace_settings_make_the_name_unique_per_workspace(use_case: Path) -> None:
    experiment = load_experiment(use_case, "dev")
    other = {**WORKSPACE, "AZUREML_WORKSPACE_NAME": "mlw-other"}

    assert deployment_config(experiment, "dev", WORKSPACE).endpoint_name != \
        deployment_config(experiment, "dev", other).endpoint_name
    assert valid(deployment_config(experiment, "dev", {}).endpoint_name)  # no settings: use case + environment


def test_a_failure_events_endpoint_is_the_one_this_apps_settings_name(use_case: Path) -> None:
    """The workspace comes from Settings.app_settings, never the process: two apps in one process name their own."""
    settings = Settings(environment="dev", flows_dir=use_case.parent, app_settings=WORKSPACE)
    other = settings.model_copy(update={"app_settings": {**WORKSPACE, "AZUREML_WORKSPACE_NAME": "mlw-other"}})

    expected = deployment_config(load_experiment(use_case, "dev"), "dev", WORKSPACE).endpoint_name
    assert endpoint_for(settings, "billing_questions", "dev") == expected
    assert endpoint_for(other, "billing_questions", "dev") != expected


def test_a_deployment_block_still_decides(use_case: Path) -> None:
    (use_case / "experiment.dev.yaml").write_text("deployment:\n  target: aml_kubernetes\n  compute: k8s\n"
                                                  "  endpoint_name: billing-dev\n")
    config = deployment_config(load_experiment(use_case, "dev"), "dev", WORKSPACE)

    assert (config.target, config.endpoint_name, config.compute) == (DeploymentTarget.AML_KUBERNETES, "billing-dev",
                                                                     "k8s")


@pytest.mark.parametrize("use_case_name", ["math_coding", "named_entity_recognition"])
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_shipped_use_cases_deploy_to_azure_ml_with_an_identity_based_connection(use_case_name: str,
                                                                                      environment: str) -> None:
    config = deployment_config(load_experiment(ROOT / "flows" / use_case_name, environment), environment, WORKSPACE)

    assert config.target is DeploymentTarget.AML_MANAGED
    assert valid(config.endpoint_name)
    assert config.runtime_image == PROMPTFLOW_RUNTIME_IMAGE
    [aoai] = config.connections
    assert (aoai.name, aoai.connection_type, aoai.identity_auth) == ("aoai", "AzureOpenAIConnection", True)
    assert aoai.settings == {"api_base": "AOAI_API_BASE"}  # where the value is read, never the value


# --- the runtime image ------------------------------------------------------------------------------------------


def test_the_runtime_image_is_pinned_and_configurable() -> None:
    assert ":latest" not in PROMPTFLOW_RUNTIME_IMAGE
    assert DeploymentConfig(endpoint_name="e-dev").runtime_image == PROMPTFLOW_RUNTIME_IMAGE
    digest = "mcr.microsoft.com/azureml/promptflow/promptflow-runtime@sha256:" + "a" * 64
    assert DeploymentConfig(endpoint_name="e-dev", runtime_image=digest).runtime_image == digest
    for floating in ("mcr.microsoft.com/azureml/promptflow/promptflow-runtime:latest",
                     "mcr.microsoft.com/azureml/promptflow/promptflow-runtime"):
        with pytest.raises(ValidationError, match="pinned tag or digest"):
            DeploymentConfig(endpoint_name="e-dev", runtime_image=floating)


def test_the_deployment_runs_on_the_configured_image(tmp_path: Path) -> None:
    client = autospec_client()
    Azure(client, endpoint=managed_endpoint())
    deployer = ManagedOnlineDeployer(client, app_settings={}, work_dir=tmp_path / "work")
    image = "mcr.microsoft.com/azureml/promptflow/promptflow-runtime:20240619.v2"

    deploy(deployer, request(write_flow(tmp_path / "bare", requirements=None), runtime_image=image))
    assert sent(client.online_deployments).environment.image == image

    deploy(deployer, request(write_flow(tmp_path / "reqs"), deployment="v-4", version="4", runtime_image=image))
    dockerfile = (tmp_path / "work" / "aml-environments" / "math_coding-4" / "Dockerfile").read_text()
    assert dockerfile.splitlines()[0] == f"FROM {image}"


# --- workspace connections --------------------------------------------------------------------------------------

IDENTITY = WorkspaceConnection(name="aoai", connection_type="AzureOpenAIConnection",
                               values={"api_version": "2024-02-01", "api_type": "azure", "auth_mode": "meid_token"},
                               settings={"api_base": "AOAI_API_BASE"})
KEYED = WorkspaceConnection(name="aoai", connection_type="AzureOpenAIConnection",
                            values={"api_version": "2024-02-01", "api_type": "azure"},
                            settings={"api_base": "AOAI_API_BASE", "api_key": "AOAI_API_KEY"})


def azure_with_order(client: MLClient) -> list[str]:
    """The order of the calls that matter: connections, then the deployment."""
    calls: list[str] = []
    Azure(client, endpoint=managed_endpoint())
    deployment_put = client.online_deployments.begin_create_or_update.side_effect

    def put_deployment(deployment: Any, **kwargs: Any) -> Any:
        calls.append("deployment")
        return deployment_put(deployment, **kwargs)

    client.online_deployments.begin_create_or_update.side_effect = put_deployment
    client.connections.create_or_update.side_effect = lambda entity, **_: calls.append("connection") or entity
    return calls


def test_an_identity_based_connection_is_created_before_the_deployment(tmp_path: Path) -> None:
    client = autospec_client()
    calls = azure_with_order(client)
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "work",
                                     app_settings={"AOAI_API_BASE": AOAI, "AOAI_API_KEY": "sk-not-used-9d1"})

    state = deploy(deployer, request(write_flow(tmp_path / "f"), connections=(IDENTITY,)))

    assert state.status is OperationStatus.SUCCEEDED
    assert calls == ["connection", "deployment"]
    entity = client.connections.create_or_update.call_args.args[0]
    assert isinstance(entity, AzureOpenAIConnection)
    assert (entity.name, entity.type, entity.target, entity.api_base, entity.api_version) == (
        "aoai", "azure_open_ai", AOAI, AOAI, "2024-02-01")
    assert isinstance(entity.credentials, AadCredentialConfiguration)
    assert entity._to_rest_object().properties.auth_type == "AAD"
    assert "sk-not-used-9d1" not in repr(entity._to_rest_object().as_dict())


def test_a_key_connection_takes_its_key_from_the_settings_and_never_logs_it(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    client = autospec_client()
    azure_with_order(client)
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "work",
                                     app_settings={"AOAI_API_BASE": AOAI, "AOAI_API_KEY": "sk-live-4b7e"})

    with caplog.at_level(logging.DEBUG):
        deploy(deployer, request(write_flow(tmp_path / "f"), connections=(KEYED,)))

    entity = client.connections.create_or_update.call_args.args[0]
    assert isinstance(entity.credentials, ApiKeyConfiguration)
    assert entity.credentials.key == "sk-live-4b7e"
    assert entity.target == AOAI
    assert "sk-live-4b7e" not in caplog.text


def test_connections_are_sent_again_with_each_new_deployment_and_not_on_a_redelivery(tmp_path: Path) -> None:
    client = autospec_client()
    azure_with_order(client)
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "work", app_settings={"AOAI_API_BASE": AOAI})
    flow = write_flow(tmp_path / "f")

    deploy(deployer, request(flow, connections=(IDENTITY,)))
    deployer.begin_deploy(request(flow, connections=(IDENTITY,)))  # the same spec, redelivered
    assert client.connections.create_or_update.call_count == 1
    deploy(deployer, request(flow, version="4", deployment="v-4", connections=(IDENTITY,)))
    first, second = (call.args[0] for call in client.connections.create_or_update.call_args_list)
    assert first._to_rest_object().as_dict() == second._to_rest_object().as_dict()  # create_or_update: idempotent


def test_a_missing_setting_refuses_the_deployment_and_names_the_setting(tmp_path: Path) -> None:
    client = autospec_client()
    Azure(client, endpoint=managed_endpoint())
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "work", app_settings={"AOAI_API_BASE": AOAI})

    with pytest.raises(DeploymentError, match="AOAI_API_KEY"):
        deployer.begin_deploy(request(write_flow(tmp_path / "f"), connections=(KEYED,)))
    client.connections.create_or_update.assert_not_called()
    client.online_deployments.begin_create_or_update.assert_not_called()


def test_a_connection_type_the_app_does_not_create_is_refused(tmp_path: Path) -> None:
    client = autospec_client()
    Azure(client, endpoint=managed_endpoint())
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "work", app_settings={})
    custom = WorkspaceConnection(name="search", connection_type="CustomConnection")

    with pytest.raises(DeploymentError, match="CustomConnection"):
        deployer.begin_deploy(request(write_flow(tmp_path / "f"), connections=(custom,)))
    client.online_deployments.begin_create_or_update.assert_not_called()


def test_a_connection_the_workspace_refuses_fails_the_deployment_before_it_is_sent(tmp_path: Path) -> None:
    client = autospec_client()
    Azure(client, endpoint=managed_endpoint())
    client.connections.create_or_update.side_effect = HttpResponseError("Forbidden: no connections/write")
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "work", app_settings={"AOAI_API_BASE": AOAI})

    state = deployer.begin_deploy(request(write_flow(tmp_path / "f"), connections=(IDENTITY,)))

    assert state.status is OperationStatus.FAILED
    assert "workspace connection aoai" in state.message
    assert "Forbidden" in state.message
    client.online_deployments.begin_create_or_update.assert_not_called()


# --- the endpoint identity's roles ------------------------------------------------------------------------------


def test_an_identity_based_connection_adds_openai_user_to_the_endpoint_identitys_roles() -> None:
    from shared.deployment.identity import OPENAI_USER, Scopes, roles_for_deployment

    scopes = Scopes(workspace="/ws", container_registry="/acr", storage_account="/st", openai_account="/aoai")
    entra = DeploymentConfig(target="aml_managed", endpoint_name="e-dev", connections=(IDENTITY,))
    keyed = DeploymentConfig(target="aml_managed", endpoint_name="e-dev", connections=(KEYED,))

    [openai] = [role for role in roles_for_deployment(entra, scopes) if role.role == OPENAI_USER]
    assert (openai.scope, openai.automatic) == ("/aoai", False)  # Azure ML never grants it
    assert OPENAI_USER not in {role.role for role in roles_for_deployment(keyed, scopes)}
