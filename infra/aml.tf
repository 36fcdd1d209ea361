# Azure Machine Learning workspace: data assets, the model (flow) registry and
# managed online endpoints. It gets its own storage, vault, Application Insights
# and container registry, so nothing the workspace writes mixes with the app's
# data and no AML-internal role reaches the app's resources.
#
# The workspace uses a system-assigned identity; Azure ML creates that
# identity's role assignments on these four dependencies itself.

resource "azurerm_storage_account" "aml" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_1:Azure ML's own workspace storage with Microsoft-managed keys (workspace-level CMK is an AML feature not used here)
  #checkov:skip=CKV2_AZURE_33:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only
  #checkov:skip=CKV_AZURE_59:Azure ML serverless compute and managed online endpoints reach workspace storage over the public endpoint without a managed VNet
  #checkov:skip=CKV_AZURE_206:Azure ML's scratch and snapshot storage; its content is reproducible from the app's data account
  #checkov:skip=CKV_AZURE_33:classic Storage Analytics queue logging is legacy; AML's queues hold no app data
  #checkov:skip=CKV2_AZURE_40:Azure ML's system datastores use account-key credentials that the AML service brokers (see the comment on shared_access_key_enabled and infra/README.md)
  #checkov:skip=CKV2_AZURE_41:no SAS is issued by this stack; AML's own SAS use is governed by the service

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

  # Soft delete, as on the app's accounts: a deleted flow snapshot or run
  # output stays recoverable.
  blob_properties {
    delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }

    container_delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }
  }

  tags = local.tags
}

resource "azurerm_key_vault" "aml" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_32:Azure ML without a managed VNet reaches its vault over the public endpoint; access is Entra ID RBAC only
  #checkov:skip=CKV_AZURE_109:Azure ML without a managed VNet reaches its vault over the public endpoint; access is Entra ID RBAC only
  #checkov:skip=CKV_AZURE_189:Azure ML without a managed VNet reaches its vault over the public endpoint; access is Entra ID RBAC only

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
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV_AZURE_139:disabling public access needs the Premium SKU and private endpoints; Basic with the admin user off, pulls with managed identities
  #checkov:skip=CKV_AZURE_163:image scanning is Microsoft Defender for Containers, enabled per subscription, not on the registry
  #checkov:skip=CKV_AZURE_164:content trust needs the Premium SKU; images are built by Azure ML from the pinned environment
  #checkov:skip=CKV_AZURE_165:geo-replication needs the Premium SKU; the app and the endpoints run in one region
  #checkov:skip=CKV_AZURE_166:quarantine needs the Premium SKU; images are built by Azure ML, not pushed by people
  #checkov:skip=CKV_AZURE_167:retention policy for untagged manifests needs the Premium SKU
  #checkov:skip=CKV_AZURE_233:zone redundancy needs the Premium SKU; a lost image is rebuilt by Azure ML
  #checkov:skip=CKV_AZURE_237:dedicated data endpoints need the Premium SKU and only matter behind a firewall

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
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV_AZURE_144:public workspace: the Flex app (no VNet) and the pipeline's hosted agents call it; access is Entra ID RBAC (AzureML Data Scientist, rbac.tf)
  #checkov:skip=CKV2_AZURE_49:no managed VNet: see CKV_AZURE_144; online endpoints are reached with Entra ID or endpoint keys
  #checkov:skip=CKV2_AZURE_50:the workspace storage is public for the same reason as the workspace (CKV_AZURE_144); it holds flow snapshots, not the app's data

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

# --- The identity deployed flows run as ------------------------------------------------------------
# Online endpoints the app creates get this user-assigned identity instead of a system-assigned one: a system
# identity exists only once its endpoint does, too late to hold Cognitive Services OpenAI User when the serving
# container first calls Azure OpenAI with Entra ID (the shipped connections do). Nothing is granted
# automatically to a user-assigned identity, so rbac.tf grants exactly what a serving container needs.
resource "azurerm_user_assigned_identity" "endpoints" {
  name                = "id-genaiops-endpoints-${var.environment}"
  resource_group_name = local.rg_name
  location            = local.rg_location
  tags                = local.tags
}
