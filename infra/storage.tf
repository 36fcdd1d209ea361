# Storage for the Function App host and for GenAIOps data.
#
# Both accounts are Entra-ID-only: shared keys are off, so no connection string
# exists anywhere (app settings, pipeline, state). Containers are created
# through Azure Resource Manager (`storage_account_id`), which works with keys
# disabled.

locals {
  # Containers of the data account; the app's blob layout (see DESIGN.md).
  data_containers = [
    "datasets",            # uploads; BlobCreated here triggers data registration
    "runs",                # run outputs and per-variant line results
    "reports",             # summary.html, metrics.csv, results.csv, decision.json
    "registry",            # local registry (data + flow versions)
    "approvals",           # approval state
    "deployments",         # deployment and traffic state
    "feedback",            # end-user feedback
    "audit",               # outcome records the pipeline's `wait` reads
    "system",              # internal state, Event Grid dead letters
    "production",          # requests served by local endpoints (shared/monitoring), hourly append blobs
    "datasets-candidates", # production lines with bad ratings, exported for a person to label
  ]

  # Flex Consumption pulls the app package from this container.
  deployment_container_name = "app-package"
}

# --- Host storage (AzureWebJobsStorage + deployment package) -------------------

resource "azurerm_storage_account" "host" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys: a customer-managed key would add a Key Vault key and identity for host state (leases, receipts, the package) with no requirement for it
  #checkov:skip=CKV2_AZURE_33:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only; shared keys are disabled
  #checkov:skip=CKV_AZURE_59:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only; shared keys are disabled and no blob is public
  #checkov:skip=CKV_AZURE_206:replication is var.storage_replication_type: LRS for pr/dev, ZRS for prod (environments/*.tfvars)
  #checkov:skip=CKV_AZURE_33:classic Storage Analytics queue logging is legacy; the host's queues hold no business data

  name                = "st${local.compact}h"
  resource_group_name = local.rg_name
  location            = local.rg_location

  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type
  access_tier              = "Hot"

  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  allow_nested_items_to_be_public = false

  blob_properties {
    # No versioning here: the host writes leases and blob receipts constantly.
    delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }

    container_delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }
  }

  tags = local.tags
}

resource "azurerm_storage_container" "deployment" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_21:blob read logging (diagnostic settings) of the deployment package would log every instance start; not needed

  name                  = local.deployment_container_name
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

# --- Data storage (datasets, runs, reports, registry, ...) ---------------------

resource "azurerm_storage_account" "data" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys: no customer-managed-key requirement for datasets and reports; adding one needs a Key Vault key, an identity and a rotation process
  #checkov:skip=CKV2_AZURE_33:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only; shared keys are disabled
  #checkov:skip=CKV_AZURE_59:no virtual network in this design: Flex runs without VNet integration here, so the app reaches it over the public endpoint; access is Entra ID RBAC only; the pipeline (hosted agents) uploads datasets and reads audit records over it; shared keys are disabled and no blob is public
  #checkov:skip=CKV_AZURE_206:replication is var.storage_replication_type: LRS for pr/dev, ZRS for prod (environments/*.tfvars)
  #checkov:skip=CKV_AZURE_33:classic Storage Analytics queue logging is legacy; the only queue is the blob trigger's poison queue

  name                = "st${local.compact}d"
  resource_group_name = local.rg_name
  location            = local.rg_location

  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type
  access_tier              = "Hot"

  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  allow_nested_items_to_be_public = false

  blob_properties {
    versioning_enabled  = true
    change_feed_enabled = true

    delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }

    container_delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }
  }

  tags = local.tags
}

resource "azurerm_storage_container" "data" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV2_AZURE_21:read requests are not logged: every decision and event is already journaled to audit/ and the blob versions/change feed keep history; read logs would add cost without a consumer

  for_each = toset(local.data_containers)

  name                  = each.value
  storage_account_id    = azurerm_storage_account.data.id
  container_access_type = "private"
}

locals {
  # Role assignment scopes for single containers (Resource Manager form).
  datasets_container_scope = "${azurerm_storage_account.data.id}/blobServices/default/containers/datasets"
  audit_container_scope    = "${azurerm_storage_account.data.id}/blobServices/default/containers/audit"
  system_container_scope   = "${azurerm_storage_account.data.id}/blobServices/default/containers/system"
}

# --- Lifecycle: idempotency records expire ------------------------------------

locals {
  # The app treats a completed idempotency record older than this as absent
  # (shared/idempotency.py IDEMPOTENCY_TTL; a test keeps the two equal); the
  # rule below then deletes it. Lifecycle runs about once a day, so a record
  # can outlive its TTL by a day or so — the app's own expiry check is what
  # counts, the rule only keeps the prefix from growing without end.
  idempotency_ttl_days = 7
  # Production request logs: the monitor looks back minutes, a person hours or days.
  production_log_days = 30
}

resource "azurerm_storage_management_policy" "data" {
  storage_account_id = azurerm_storage_account.data.id

  rule {
    name    = "expire-idempotency-records"
    enabled = true

    filters {
      prefix_match = ["system/idempotency/"]
      blob_types   = ["blockBlob"]
    }

    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = local.idempotency_ttl_days
      }

      # Versioning is on for this account: every claim and completion of a
      # record leaves a previous version behind.
      version {
        delete_after_days_since_creation = local.idempotency_ttl_days
      }
    }
  }

  rule {
    name    = "expire-production-logs"
    enabled = true

    filters {
      prefix_match = ["production/"]
      blob_types   = ["appendBlob"]
    }

    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = local.production_log_days
      }
    }
  }
}
