"""The settings the packaged-artifact test (tests/packaged) gives the app are Terraform's, fully resolved: every
setting of infra/functionapp.tf for the environment, conditionals decided by its tfvars, no `${...}` left. Fast
(no build, no services), so a Terraform change the fixture cannot resolve fails here first."""

from __future__ import annotations

import pytest

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
