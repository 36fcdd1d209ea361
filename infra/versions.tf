# Terraform and provider versions, and the (partially configured) state backend.
#
# Terraform 1.10+ because the pipeline authenticates the azurerm backend with the
# refreshable Azure DevOps OIDC flow (ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID).
#
# azurerm 4.42 is the floor because the Key Vault uses `rbac_authorization_enabled`
# (introduced in 4.42; the older `enable_rbac_authorization` is deprecated). The
# upper bound keeps us off 5.x, which renames and removes arguments.

terraform {
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.42"
    }
  }

  # Backend settings (resource group, account, container, key) are passed with
  # -backend-config at `terraform init` time; see infra/README.md. State is read
  # and written with Entra ID (use_azuread_auth), never with an account key.
  backend "azurerm" {}
}
