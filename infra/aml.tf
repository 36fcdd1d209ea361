# Azure Machine Learning workspace: data assets, the model (flow) registry and
# managed online endpoints. It gets its own storage, vault, Application Insights
# and container registry, so nothing the workspace writes mixes with the app's
# data and no AML-internal role reaches the app's resources.
#
# The workspace uses a system-assigned identity; Azure ML creates that
# identity's role assignments on these four dependencies itself.

resource "azurerm_storage_account" "aml" {
  name                = "st${local.compact}m"
  resource_group_name = local.rg_name
  location            = local.rg_location

  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false

  # Left enabled on purpose: the workspace's system datastores default to
  # credential (account key) access, which the AML service itself brokers
  # (callers need `datastores/listsecrets/action`, part of AzureML Data
  # Scientist). Nothing outside AML is given these keys. See README.
  shared_access_key_enabled = true

  tags = local.tags
}

resource "azurerm_key_vault" "aml" {
  name                = "kv${local.compact}m"
  resource_group_name = local.rg_name
  location            = local.rg_location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = "standard"

  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = var.key_vault_soft_delete_retention_days

  tags = local.tags
}

resource "azurerm_application_insights" "aml" {
  name                = "appi-${local.name}-aml"
  resource_group_name = local.rg_name
  location            = local.rg_location

  application_type = "web"
  workspace_id     = azurerm_log_analytics_workspace.this.id

  tags = local.tags
}

resource "azurerm_container_registry" "aml" {
  name                = "cr${local.compact}"
  resource_group_name = local.rg_name
  location            = local.rg_location
  sku                 = "Basic"

  # Azure ML builds and pulls images with managed identities when the admin
  # user is disabled ("bring an existing ACR with the admin user disabled").
  admin_enabled = false

  tags = local.tags
}

resource "azurerm_machine_learning_workspace" "this" {
  name                = "mlw-${local.name}"
  resource_group_name = local.rg_name
  location            = local.rg_location

  application_insights_id = azurerm_application_insights.aml.id
  key_vault_id            = azurerm_key_vault.aml.id
  storage_account_id      = azurerm_storage_account.aml.id
  container_registry_id   = azurerm_container_registry.aml.id

  public_network_access_enabled = true
  v1_legacy_mode_enabled        = false
  sku_name                      = "Basic"

  identity {
    type = "SystemAssigned"
  }

  tags = local.tags
}
