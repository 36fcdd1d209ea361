# Logs and telemetry for the Function App (Entra-ID-only ingestion).

resource "azurerm_log_analytics_workspace" "this" {
  name                = "log-${local.name}"
  resource_group_name = local.rg_name
  location            = local.rg_location

  sku               = "PerGB2018"
  retention_in_days = var.log_retention_days

  # Workspace keys cannot be used to send or query data.
  local_authentication_enabled = false

  tags = local.tags
}

resource "azurerm_application_insights" "this" {
  name                = "appi-${local.name}"
  resource_group_name = local.rg_name
  location            = local.rg_location

  application_type = "web"
  workspace_id     = azurerm_log_analytics_workspace.this.id

  # Instrumentation-key ingestion is refused: the app authenticates with its
  # managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD)
  # and needs Monitoring Metrics Publisher on this resource (rbac.tf).
  local_authentication_disabled = true

  tags = local.tags
}
