# Key Vault for the app's own secrets (e.g. azure-openai-api-key when the
# OpenAI account does not accept Entra ID). Access is Azure RBAC only.

data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "app" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_32:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only and Key Vault references resolve over it
  #checkov:skip=CKV_AZURE_109:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only; a firewall would block the Flex app, whose outbound addresses are not fixed
  #checkov:skip=CKV_AZURE_189:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only and Key Vault references resolve over it

  name                = "kv${local.compact}"
  resource_group_name = local.rg_name
  location            = local.rg_location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = "standard"

  # RBAC instead of access policies: a Contributor on the vault cannot grant
  # itself data access, and every grant is visible as a role assignment.
  rbac_authorization_enabled = true

  purge_protection_enabled   = true
  soft_delete_retention_days = var.key_vault_soft_delete_retention_days

  public_network_access_enabled = true

  tags = local.tags
}

locals {
  # Versionless secret URI: App Service picks up a new secret version without
  # a redeploy (within 24 hours, or on restart).
  openai_key_secret_uri = "${azurerm_key_vault.app.vault_uri}secrets/azure-openai-api-key/"
}
