# Event Grid delivery of BlobCreated (container `datasets`) to the blob trigger.
#
# On Flex Consumption the blob trigger only supports source = EventGrid: the
# storage account publishes BlobCreated through a system topic to the blob
# extension's webhook,
#   https://<host>/runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<blobs_extension key>
#
# The `blobs_extension` system key is created by the Functions host the first
# time it starts with a blob trigger, i.e. after the code is deployed, and
# Event Grid validates the webhook when the subscription is created. So the
# topic is created on every apply, the subscription only once
# enable_blob_event_subscription = true; the pipeline turns it on after the
# first successful code deployment (see azure-pipelines.yml and README).

resource "azurerm_eventgrid_system_topic" "data_storage" {
  name                = "evgt-${local.name}"
  resource_group_name = local.rg_name
  location            = local.rg_location

  source_resource_id = azurerm_storage_account.data.id
  topic_type         = "Microsoft.Storage.StorageAccounts"

  # Used only to write undeliverable events into container `system`.
  identity {
    type = "SystemAssigned"
  }

  tags = local.tags
}

data "azurerm_function_app_host_keys" "this" {
  count = var.enable_blob_event_subscription ? 1 : 0

  name                = azurerm_function_app_flex_consumption.this.name
  resource_group_name = local.rg_name
}

resource "azurerm_eventgrid_system_topic_event_subscription" "datasets_blob_created" {
  count = var.enable_blob_event_subscription ? 1 : 0

  name                = "datasets-blob-created"
  system_topic        = azurerm_eventgrid_system_topic.data_storage.name
  resource_group_name = local.rg_name

  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  subject_filter {
    subject_begins_with = "/blobServices/default/containers/datasets/blobs/"
    case_sensitive      = false
  }

  webhook_endpoint {
    url                               = "https://${azurerm_function_app_flex_consumption.this.default_hostname}/runtime/webhooks/blobs?functionName=Host.Functions.${var.blob_trigger_function_name}&code=${data.azurerm_function_app_host_keys.this[0].blobs_extension_key}"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  # Events that still cannot be delivered land in data/system/ instead of being lost.
  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.data.id
    storage_blob_container_name = azurerm_storage_container.data["system"].name
  }

  depends_on = [azurerm_role_assignment.eventgrid_deadletter_writer]
}
