# The GenAIOps Function App: Linux, Python 3.11, Flex Consumption, system-
# assigned identity, identity-based connections only.

resource "azurerm_service_plan" "this" {
  # Static scan (checkov, `make lint`) suppressions, each with its reason:
  #checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per event; always-ready instances would be a standing cost for a batch/event workload
  #checkov:skip=CKV_AZURE_225:not zone redundant: an event-driven batch app; at-least-once delivery and checkpointed items survive an instance or zone loss by redelivery

  name                = "asp-${local.name}"
  resource_group_name = local.rg_name
  location            = local.rg_location

  os_type  = "Linux"
  sku_name = "FC1" # Flex Consumption

  tags = local.tags
}

locals {
  # Exactly the settings the code, its bindings and the Functions host read,
  # and no more: tests/infra/test_settings_contract.py compares this map with
  # what shared/settings.py, the bindings and the flows' connections read, in
  # both directions. No secrets: connections name an endpoint and the runtime
  # authenticates with the app's managed identity.
  function_app_settings_base = {
    # Host storage, identity-based (roles: rbac.tf, "Host storage").
    #
    # The empty AzureWebJobsStorage stays, on purpose, until the provider can
    # express identity-based host storage. storage_authentication_type =
    # "SystemAssignedIdentity" below only sets how the *deployment package* is
    # read: on every create/update the released azurerm 4.x provider still
    # writes AzureWebJobsStorage itself, as a key-based connection string built
    # from storage_container_endpoint with an empty AccountKey (provider source:
    # ExpandSiteConfigFunctionFlexConsumptionApp; issues #29149, #29693, #30732,
    # #33211). The host prefers a non-empty AzureWebJobsStorage over the
    # __accountName form, and the account has shared keys disabled, so dropping
    # this line breaks the host. The empty value overrides the provider's and
    # makes the host use __accountName + __credential. Cost: the provider does
    # not read the empty value back, so every plan shows an in-place update of
    # app_settings (#33211). Remove the line when azurerm ships the backend
    # storage options of PR #29099 (identity-based AzureWebJobsStorage without
    # an injected connection string); infra/README.md "Host storage" says how.
    "AzureWebJobsStorage"              = ""
    "AzureWebJobsStorage__accountName" = azurerm_storage_account.host.name
    "AzureWebJobsStorage__credential"  = "managedidentity"

    # Data storage: connection "GenAIOpsStorage" (blob trigger with
    # source=EventGrid, blob clients). The queue URI is where the blob
    # extension keeps its poison queue.
    "GenAIOpsStorage__blobServiceUri"  = azurerm_storage_account.data.primary_blob_endpoint
    "GenAIOpsStorage__queueServiceUri" = azurerm_storage_account.data.primary_queue_endpoint

    # Service Bus: connection "ServiceBusConnection" (trigger + sender).
    "ServiceBusConnection__fullyQualifiedNamespace" = local.servicebus_fqdn
    "EVENTS_QUEUE"                                  = azurerm_servicebus_queue.events.name

    "GENAIOPS_ENV" = var.environment

    # APPLICATIONINSIGHTS_CONNECTION_STRING is set through
    # site_config.application_insights_connection_string below (the provider
    # owns that key); Entra ID auth for ingestion:
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" = "Authorization=AAD"

    # The A/B report reads Azure ML endpoints' AmlOnlineEndpointTrafficLog from
    # this workspace (shared/feedback/azure_telemetry.py).
    "LOG_ANALYTICS_WORKSPACE_ID" = azurerm_log_analytics_workspace.this.workspace_id
    # ...and each online endpoint the app creates gets a diagnostic setting sending that log here
    # (shared/deployment/endpoint_logs.py).
    "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID" = azurerm_log_analytics_workspace.this.id

    "AZURE_SUBSCRIPTION_ID"  = var.subscription_id
    "AZURE_RESOURCE_GROUP"   = local.rg_name
    "AZUREML_WORKSPACE_NAME" = azurerm_machine_learning_workspace.this.name

    # The identity deployed flows run as (aml.tf): it holds its roles before
    # the app creates an endpoint (shared/deployment/identity.py).
    "AZUREML_ENDPOINT_IDENTITY_ID"        = azurerm_user_assigned_identity.endpoints.id
    "AZUREML_ENDPOINT_IDENTITY_CLIENT_ID" = azurerm_user_assigned_identity.endpoints.client_id

    # Where the endpoints' data collector writes model inputs/outputs: the workspace's default blob datastore
    # (the production monitor reads it, shared/monitoring/azureml_production_log.py).
    "AZUREML_DATA_COLLECTOR_CONTAINER_URL" = "${azurerm_storage_account.aml.primary_blob_endpoint}azureml-blobstore-${azurerm_machine_learning_workspace.this.workspace_id}"

    # The flows' `aoai` connection (flows/*/experiment.yaml) reads ${api_base}
    # / ${api_key} as AOAI_API_BASE / AOAI_API_KEY (secret_variable in
    # shared/experiments/config.py).
    "AOAI_API_BASE" = var.azure_openai_endpoint

    # Data assets and flow versions go to the Azure ML workspace above.
    "REGISTRY_BACKEND" = "azureml"

    "HEARTBEAT_SCHEDULE"       = "0 */5 * * * *"
    "APPROVAL_EXPIRY_SCHEDULE" = "0 */1 * * * *"
    "MONITORING_SCHEDULE"      = "0 */1 * * * *"
    "APPROVAL_TIMEOUT_MINUTES" = "60"

    "APPROVERS" = join(",", var.approvers)
  }

  # Key-based Azure OpenAI only when asked for: the key stays in Key Vault and
  # App Service resolves the reference with the app identity (Key Vault
  # Secrets User), so the value never appears in Terraform or the portal.
  function_app_settings_openai_key = var.azure_openai_auth == "key_vault" ? {
    "AOAI_API_KEY" = "@Microsoft.KeyVault(SecretUri=${local.openai_key_secret_uri})"
  } : {}
}

resource "azurerm_function_app_flex_consumption" "this" {
  name                = "func-${local.name}"
  resource_group_name = local.rg_name
  location            = local.rg_location
  service_plan_id     = azurerm_service_plan.this.id

  runtime_name    = "python"
  runtime_version = "3.11"

  maximum_instance_count = var.function_maximum_instance_count
  instance_memory_in_mb  = var.function_instance_memory_mb

  # Deployment package, read with the app's own identity (Storage Blob Data
  # Owner on the host account, rbac.tf).
  storage_container_type      = "blobContainer"
  storage_container_endpoint  = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type = "SystemAssignedIdentity"

  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false

  identity {
    type = "SystemAssigned"
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.this.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
  }

  app_settings = merge(
    local.function_app_settings_base,
    local.function_app_settings_openai_key,
  )

  # App Service authentication (Easy Auth v2) with Entra ID, so the approval
  # routes receive X-MS-CLIENT-PRINCIPAL / X-MS-CLIENT-PRINCIPAL-NAME for a
  # signed-in approver (sign-in: /.auth/login/aad). It never blocks a request:
  # AllowAnonymous keeps health, feedback, the Event Grid webhook and pipeline
  # calls working (function keys still protect the routes) and the app itself
  # answers 401 to a decision without an identity. Only present when
  # local.approver_auth_enabled (switch + client id of a pre-created app
  # registration); no client secret: ID-token (implicit) sign-in.
  dynamic "auth_settings_v2" {
    for_each = local.approver_auth_enabled ? [local.approver_auth_client_id] : []

    content {
      auth_enabled           = true
      require_authentication = false
      unauthenticated_action = "AllowAnonymous"
      default_provider       = "azureactivedirectory"
      require_https          = true

      active_directory_v2 {
        client_id            = auth_settings_v2.value
        tenant_auth_endpoint = local.approver_auth_tenant_endpoint
        allowed_audiences    = ["api://${auth_settings_v2.value}"]
      }

      # No token store: the app only needs the principal headers, and a
      # token store on Flex would need a SAS-based blob setting.
      login {
        token_store_enabled = false
      }
    }
  }

  tags = local.tags
}

locals {
  approver_auth_client_id = trimspace(var.approver_auth_client_id)
  approver_auth_enabled   = var.approver_auth_enabled && local.approver_auth_client_id != ""
  approver_auth_tenant_id = var.approver_auth_tenant_id != "" ? var.approver_auth_tenant_id : data.azurerm_client_config.current.tenant_id
  # Entra ID v2 issuer (public cloud).
  approver_auth_tenant_endpoint = "https://login.microsoftonline.com/${local.approver_auth_tenant_id}/v2.0"
}

# Warn (not fail) when an environment asks for Easy Auth but no client id was
# passed: the app then answers 401 to every decision.
check "approver_auth_client_id_set" {
  assert {
    condition     = !var.approver_auth_enabled || local.approver_auth_client_id != ""
    error_message = "approver_auth_enabled is true but approver_auth_client_id is empty: App Service authentication stays off and approval decisions get 401. Set TF_VAR_approver_auth_client_id (see infra/README.md)."
  }
}
