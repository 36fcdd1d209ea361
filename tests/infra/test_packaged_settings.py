"""The settings the packaged-artifact test (tests/packaged) gives the app are Terraform's, fully resolved: every
setting of infra/functionapp.tf for the environment, conditionals decided by its tfvars, no `${...}` left. Fast
(no build, no services), so a Terraform change the fixture cannot resolve fails here first."""

from __future__ import annotations

import pytest

from shared.deployment.port import DeploymentConfig
from shared.monitoring.azure_traffic import LogAnalyticsTrafficStatistics
from shared.monitoring.azureml_production_log import AzureMLProductionLog
from shared.services.monitoring import production_log_for, traffic_statistics_for
from shared.settings import Settings
from tests.fakes.memory import MemoryBlobStore
from tests.infra.test_terraform import function_app_settings
from tests.packaged import app_settings as settings_module
from tests.packaged.app_settings import UnresolvedSetting, app_settings
from tests.packaged.dev_environment import AOAI_ENDPOINT, PIPELINE_INPUTS, terraform_outputs

OUTPUTS = terraform_outputs("https://127.0.0.1:1")
KEY_ONLY = {"AOAI_API_KEY"}  # written only with azure_openai_auth = "key_vault"


@pytest.mark.parametrize("environment", ["pr", "dev", "prod"])
def test_every_setting_terraform_writes_resolves(environment: str) -> None:
    settings = app_settings(environment, PIPELINE_INPUTS, OUTPUTS)
    assert set(settings) == set(function_app_settings()) - KEY_ONLY  # all tfvars use Entra ID for Azure OpenAI
    assert not [name for name, value in settings.items() if "${" in value]
    assert settings["GENAIOPS_ENV"] == environment
    assert settings["AOAI_API_BASE"] == AOAI_ENDPOINT
    assert settings["APPROVERS"] == "alice@contoso.com"
    assert settings["AzureWebJobsStorage__accountName"] == "stgenaiopsdevhost7q2"


def test_the_key_vault_alternative_adds_a_key_vault_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "AOAI_API_KEY" not in app_settings("dev", PIPELINE_INPUTS, OUTPUTS)
    dev = settings_module.tfvars("dev")
    monkeypatch.setattr(settings_module, "tfvars", lambda _: {**dev, "azure_openai_auth": "key_vault"})
    keyed = app_settings("dev", PIPELINE_INPUTS, OUTPUTS)
    assert keyed["AOAI_API_KEY"] == (
        "@Microsoft.KeyVault(SecretUri=https://kv-genaiops-dev-7q2.vault.azure.net/secrets/azure-openai-api-key/)")


def test_an_expression_without_a_value_is_an_error() -> None:
    with pytest.raises(UnresolvedSetting, match=r"azurerm_machine_learning_workspace\.this\.name"):
        app_settings("dev", PIPELINE_INPUTS,
                     {k: v for k, v in OUTPUTS.items() if k != "azurerm_machine_learning_workspace.this.name"})


def test_on_terraforms_settings_the_monitor_reads_log_analytics_and_evaluation_the_collectors_container() -> None:
    """What the Function App does on Azure targets with exactly these settings: error rate and latency from the
    endpoints' traffic log in Terraform's Log Analytics workspace, judged lines from the Azure ML workspace's
    default datastore container, where the data collector writes."""
    settings = Settings(**app_settings("dev", PIPELINE_INPUTS, OUTPUTS))
    azure = DeploymentConfig(target="aml_managed", endpoint_name="math-coding-dev-7q2")

    statistics = traffic_statistics_for(MemoryBlobStore(), settings)(azure)
    assert isinstance(statistics, LogAnalyticsTrafficStatistics)
    assert statistics.workspace_id == OUTPUTS["azurerm_log_analytics_workspace.this.workspace_id"]
    production_log = production_log_for(MemoryBlobStore(), settings.azureml_data_collector_container_url)(azure)
    assert isinstance(production_log, AzureMLProductionLog)
    assert production_log.container.url == (
        "https://stgenaiopsdevaml7q2.blob.core.windows.net/azureml-blobstore-"
        f"{OUTPUTS['azurerm_machine_learning_workspace.this.workspace_id']}")
