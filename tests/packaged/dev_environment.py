"""The dev environment as the packaged-artifact test deploys it: the pipeline's TF_VAR_* inputs and what
`terraform apply` would have produced (fake names and ids in Azure's shapes)."""

from __future__ import annotations

SUBSCRIPTION = "8f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
APPROVER = "alice@contoso.com"
AOAI_ENDPOINT = "https://oai-genaiops-dev.openai.azure.com/"
ENDPOINT_IDENTITY = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-genaiops-dev/providers/"
                     "Microsoft.ManagedIdentity/userAssignedIdentities/id-genaiops-endpoints-dev")
ENDPOINT_IDENTITY_CLIENT_ID = "0b6f1d2e-3c4a-4b5c-8d6e-7f8091a2b3c4"
LOG_ANALYTICS = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-genaiops-dev/providers/"
                 "Microsoft.OperationalInsights/workspaces/log-genaiops-dev-7q2")

# What the pipeline passes as TF_VAR_* (.azure-pipelines/scripts/tf.sh) for dev.
PIPELINE_INPUTS = {
    "subscription_id": SUBSCRIPTION,
    "approvers": [APPROVER],
    "azure_openai_endpoint": AOAI_ENDPOINT,
    "approver_auth_client_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
}


def terraform_outputs(telemetry_url: str) -> dict[str, str]:
    """What `terraform apply` of dev would have produced: fake names and ids in Azure's shapes."""
    return {
        "azurerm_storage_account.host.name": "stgenaiopsdevhost7q2",
        "azurerm_storage_account.data.primary_blob_endpoint": "https://stgenaiopsdevdata7q2.blob.core.windows.net/",
        "azurerm_storage_account.data.primary_queue_endpoint": "https://stgenaiopsdevdata7q2.queue.core.windows.net/",
        "local.servicebus_fqdn": "sb-genaiops-dev-7q2.servicebus.windows.net",
        "azurerm_servicebus_queue.events.name": "genaiops-events",
        "azurerm_log_analytics_workspace.this.workspace_id": "3d4e5f60-7182-4a3b-9c4d-5e6f708192a3",
        "azurerm_log_analytics_workspace.this.id": LOG_ANALYTICS,
        "local.rg_name": "rg-genaiops-dev",
        "azurerm_machine_learning_workspace.this.name": "mlw-genaiops-dev-7q2",
        "azurerm_machine_learning_workspace.this.workspace_id": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
        "azurerm_storage_account.aml.primary_blob_endpoint": "https://stgenaiopsdevaml7q2.blob.core.windows.net/",
        "azurerm_user_assigned_identity.endpoints.id": ENDPOINT_IDENTITY,
        "azurerm_user_assigned_identity.endpoints.client_id": ENDPOINT_IDENTITY_CLIENT_ID,
        "azurerm_application_insights.this.connection_string": (
            "InstrumentationKey=11111111-2222-4333-8444-555555555555;"
            f"IngestionEndpoint={telemetry_url}/;LiveEndpoint={telemetry_url}/"),
        "local.openai_key_secret_uri": "https://kv-genaiops-dev-7q2.vault.azure.net/secrets/azure-openai-api-key/",
    }
