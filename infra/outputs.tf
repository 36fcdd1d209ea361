# Outputs read by the pipeline (deploy target, CLI environment) and by people.

output "resource_group_name" {
  description = "Resource group of the environment (AZURE_RESOURCE_GROUP)."
  value       = local.rg_name
}

output "function_app_name" {
  description = "Function App to zip-deploy to."
  value       = azurerm_function_app_flex_consumption.this.name
}

output "function_app_default_hostname" {
  description = "Default hostname of the Function App (HTTP approvals, feedback)."
  value       = azurerm_function_app_flex_consumption.this.default_hostname
}

output "approver_auth_redirect_uri" {
  description = "Web redirect URI to register on the approver Entra ID app registration (Easy Auth callback)."
  value       = "https://${azurerm_function_app_flex_consumption.this.default_hostname}/.auth/login/aad/callback"
}

output "function_app_principal_id" {
  description = "Object ID of the Function App's system-assigned identity."
  value       = local.function_principal_id
}

output "data_storage_account_name" {
  description = "Data storage account (datasets, runs, reports, audit, ...)."
  value       = azurerm_storage_account.data.name
}

output "data_storage_blob_endpoint" {
  description = "Blob endpoint of the data account (GenAIOpsStorage__blobServiceUri for the CLI)."
  value       = azurerm_storage_account.data.primary_blob_endpoint
}

output "servicebus_namespace_fqdn" {
  description = "Service Bus namespace FQDN (ServiceBusConnection__fullyQualifiedNamespace for the CLI)."
  value       = local.servicebus_fqdn
}

output "events_queue_name" {
  description = "Queue that carries GenAIOps events (EVENTS_QUEUE)."
  value       = azurerm_servicebus_queue.events.name
}

output "key_vault_uri" {
  description = "URI of the app Key Vault (holds azure-openai-api-key when azure_openai_auth = key_vault)."
  value       = azurerm_key_vault.app.vault_uri
}

output "aml_workspace_name" {
  description = "Azure ML workspace (AZUREML_WORKSPACE_NAME)."
  value       = azurerm_machine_learning_workspace.this.name
}

output "blob_event_subscription_enabled" {
  description = "Whether BlobCreated events on container datasets are delivered to the Function App."
  value       = var.enable_blob_event_subscription
}
