# Provider configuration.

provider "azurerm" {
  subscription_id = var.subscription_id

  # Every storage account here either has shared-key access disabled or is
  # managed only through Azure Resource Manager. Talk to storage with Entra ID
  # and never probe the data plane (containers are created through ARM via
  # `storage_account_id`).
  storage_use_azuread = true

  # The deploying identity is scoped to one resource group; it cannot register
  # resource providers at subscription scope. A subscription admin registers
  # them once (list in infra/README.md).
  resource_provider_registrations = "none"

  features {
    key_vault {
      # Purge protection is on: never try to purge, recover instead.
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }

    storage {
      data_plane_available = false
    }

    resource_group {
      prevent_deletion_if_contains_resources = true
    }

    machine_learning {
      purge_soft_deleted_workspace_on_destroy = false
    }
  }
}
