"""Deployed flows run as a user-assigned identity Terraform creates with its roles, before any endpoint exists;
the app reads it from the settings Terraform writes."""

from __future__ import annotations

from shared.bootstrap import endpoint_identity
from shared.settings import Settings
from tests.infra.test_terraform import function_app_settings, resources

IDENTITY = "${azurerm_user_assigned_identity.endpoints.principal_id}"


def test_the_endpoint_identity_holds_what_a_serving_container_needs() -> None:
    grants = {(body["role_definition_name"], body["scope"]) for body in resources("azurerm_role_assignment").values()
              if body["principal_id"] == IDENTITY}
    assert grants == {
        ("AcrPull", "${azurerm_container_registry.aml.id}"),
        ("Storage Blob Data Reader", "${azurerm_storage_account.aml.id}"),
        ("AzureML Metrics Writer (preview)", "${azurerm_machine_learning_workspace.this.id}"),
        ("Azure Machine Learning Workspace Connection Secrets Reader",
         "${azurerm_machine_learning_workspace.this.id}"),
        ("Cognitive Services OpenAI User", "${var.azure_openai_resource_id}"),
    }


def test_terraform_hands_the_identity_to_the_app_and_the_app_uses_it() -> None:
    written = function_app_settings()
    assert written["AZUREML_ENDPOINT_IDENTITY_ID"] == "${azurerm_user_assigned_identity.endpoints.id}"
    assert written["AZUREML_ENDPOINT_IDENTITY_CLIENT_ID"] == "${azurerm_user_assigned_identity.endpoints.client_id}"
    resource_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
    identity = endpoint_identity(Settings.model_validate({"AZUREML_ENDPOINT_IDENTITY_ID": resource_id,
                                                         "AZUREML_ENDPOINT_IDENTITY_CLIENT_ID": "client-id"}))
    assert identity is not None
    assert (identity.resource_id, identity.client_id) == (resource_id, "client-id")
    assert endpoint_identity(Settings.model_validate({})) is None  # Azure ML then makes a system identity
