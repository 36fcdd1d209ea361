# Every role assignment of this stack, in one place for review.
#
# Rules: data-plane roles only, scoped to the single resource (or container /
# queue) that needs them; never Owner, Contributor or User Access
# Administrator. infra/README.md explains why each one is the least privilege
# that works. tests/infra/test_terraform.py fails the build on a forbidden role.

locals {
  function_principal_id = azurerm_function_app_flex_consumption.this.identity[0].principal_id
  pipeline_enabled      = var.pipeline_principal_object_id != ""
  openai_role_enabled   = var.azure_openai_auth == "identity" && var.azure_openai_resource_id != ""
}

# --- Function App identity --------------------------------------------------------

# Host storage (AzureWebJobsStorage, identity-based) -----------------------------------
#
# The Functions docs ("Connecting to host storage with an identity", and the blob
# extension's permissions table: "the AzureWebJobsStorage connection is used
# internally for blobs and queues that enable the trigger ... The required
# permissions are covered by the Storage Blob Data Owner, Storage Queue Data
# Contributor, and Storage Account Contributor roles") list these three roles for
# an identity-based AzureWebJobsStorage in an app with a blob trigger
# (functions/dataset_uploads.py). All three are scoped to the host account only,
# which holds nothing but host state and the deployment package.

# Blob Data Owner: host leases (singleton/timer locks), blob receipts of the blob
# trigger, host keys (azure-webjobs-secrets), and the Flex deployment package,
# which the platform reads with this identity (storage_authentication_type).
resource "azurerm_role_assignment" "func_host_blob_owner" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions host storage: Flex deployment package, leases, host keys and blob receipts."
}

# Queue Data Contributor: the host's internal queues for the blob trigger
# (the blob extension's dispatch queue lives on AzureWebJobsStorage).
resource "azurerm_role_assignment" "func_host_queue_contributor" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions host storage: the blob trigger's internal queues."
}

# Storage Account Contributor: the account-level (management-plane) operations
# the blob extension makes on AzureWebJobsStorage; the docs name this role for
# that case. It is a management role on this one account: it could list
# account keys, but shared-key access is disabled on the account (storage.tf),
# so a key gives no data access. No role on the data account is management-plane.
resource "azurerm_role_assignment" "func_host_account_contributor" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Account Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions host storage: account properties the blob trigger reads at start-up."
}

# Data storage: read uploads, write runs/reports/registry/approvals/audit.
resource "azurerm_role_assignment" "func_data_blob_contributor" {
  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: read datasets, write runs, reports, registry, approvals and audit records."
}

# Data storage queues: the blob extension's poison queue for the blob trigger.
resource "azurerm_role_assignment" "func_data_queue_contributor" {
  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: blob trigger poison queue on the data account."
}

# Events queue (queue scope, not namespace): Azure Service Bus Data Owner.
#
# Decision: Data Owner on the queue, not Data Receiver + Data Sender. Flex
# Consumption scales with target-based scaling only, and the Service Bus
# extension's target scaler gets the queue length from the queue's runtime
# properties (ServiceBusAdministrationClient.GetQueueRuntimePropertiesAsync),
# which needs the Manage right; with Listen only it logs "does not have 'Manage
# Claim' ... Unable to determine active message count" and rethrows, so the
# scale controller gets no queue length to size a backlog by (an experiment
# fans out N item events at once) and cannot scale out on it reliably. The
# Functions docs list Data Receiver or Data Owner for the trigger; Data Owner is
# the only built-in data role with Manage. Scoped to this one queue, it covers
# receive (trigger), send (follow-up events) and reading/managing this queue
# only: no other entity in the namespace is reachable, and SAS is disabled.
resource "azurerm_role_assignment" "func_events_owner" {
  scope                = azurerm_servicebus_queue.events.id
  role_definition_name = "Azure Service Bus Data Owner"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: trigger on, publish to and scale by the length of the genaiops-events queue."
}

# App vault: read secrets (Key Vault references, azure-openai-api-key).
resource "azurerm_role_assignment" "func_kv_secrets_user" {
  scope                = azurerm_key_vault.app.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: read app secrets and resolve Key Vault references."
}

# Azure ML: data assets, models (flows), online endpoints and deployments; also
# the Azure ML runner's prompt flow runs (submit, status, details, metrics) — its
# flow/data uploads go to the workspace datastore, whose key this role brokers.
resource "azurerm_role_assignment" "func_aml_data_scientist" {
  scope                = azurerm_machine_learning_workspace.this.id
  role_definition_name = "AzureML Data Scientist"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: register data and flows, manage and score online endpoints."
}

# Each online endpoint the app creates gets a diagnostic setting that sends its
# traffic log to Log Analytics (shared/deployment/endpoint_logs.py). Writing it
# takes Microsoft.Insights/diagnosticSettings/write on the endpoint and, to name
# the workspace as destination, workspaces/read + workspaces/sharedKeys/action
# on the workspace: Monitoring Contributor at each scope, the narrowest built-in
# role holding them (Log Analytics Contributor would add workspace management).
resource "azurerm_role_assignment" "func_aml_monitoring_contributor" {
  scope                = azurerm_machine_learning_workspace.this.id
  role_definition_name = "Monitoring Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: route each online endpoint's traffic log to Log Analytics."
}

resource "azurerm_role_assignment" "func_logs_monitoring_contributor" {
  scope                = azurerm_log_analytics_workspace.this.id
  role_definition_name = "Monitoring Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: name this workspace as the endpoints' diagnostic destination."
}

# --- Azure ML workspace identity ------------------------------------------------------

# Prompt flow runs on serverless compute read the uploaded flow snapshot and data
# (JSONL) from the workspace storage as the workspace identity when access is by
# Entra ID rather than the account key. Azure ML's automatic assignments for this
# identity are management-plane; this is the data-plane read, on this account only.
resource "azurerm_role_assignment" "aml_workspace_blob_reader" {
  scope                = azurerm_storage_account.aml.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_machine_learning_workspace.this.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Azure ML workspace: prompt flow runs read their flow snapshot and data from workspace storage."
}

# The production monitor reads what online endpoints' data collector writes to the workspace storage.
resource "azurerm_role_assignment" "func_aml_blob_reader" {
  scope                = azurerm_storage_account.aml.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: read endpoints' collected model inputs and outputs (production monitor)."
}

# Application Insights with local auth disabled: Entra-ID telemetry ingestion.
resource "azurerm_role_assignment" "func_appinsights_publisher" {
  scope                = azurerm_application_insights.this.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: send telemetry to Application Insights with Entra ID."
}

# Azure OpenAI with Entra ID (optional; the account may live elsewhere).
resource "azurerm_role_assignment" "func_openai_user" {
  count = local.openai_role_enabled ? 1 : 0

  scope                = var.azure_openai_resource_id
  role_definition_name = "Cognitive Services OpenAI User"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: call Azure OpenAI deployments with Entra ID."
}

# --- CI/CD pipeline identity (events service connection) -----------------------------

# Post pipeline.triggered (and other) events.
resource "azurerm_role_assignment" "pipeline_events_sender" {
  count = local.pipeline_enabled ? 1 : 0

  scope                = azurerm_servicebus_queue.events.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = var.pipeline_principal_object_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps pipeline: publish events to the genaiops-events queue."
}

# Read outcome records (container audit) while waiting, and linked reports.
resource "azurerm_role_assignment" "pipeline_data_blob_reader" {
  count = local.pipeline_enabled ? 1 : 0

  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = var.pipeline_principal_object_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps pipeline: read outcome records and reports."
}

# `shared.cli publish` journals every event it sends to audit/{correlation_id}/ before
# sending it (the record `wait` later reads), so the pipeline must write there too;
# container scope keeps it out of runs, reports, registry, approvals, ...
resource "azurerm_role_assignment" "pipeline_audit_blob_contributor" {
  count = local.pipeline_enabled ? 1 : 0

  scope                = local.audit_container_scope
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = var.pipeline_principal_object_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps pipeline: journal published events (container audit only)."

  depends_on = [azurerm_storage_container.data]
}

# Upload datasets; container scope, so it cannot touch any other container.
resource "azurerm_role_assignment" "pipeline_datasets_blob_contributor" {
  count = local.pipeline_enabled ? 1 : 0

  scope                = local.datasets_container_scope
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = var.pipeline_principal_object_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps pipeline: upload datasets (container datasets only)."

  depends_on = [azurerm_storage_container.data]
}

# --- Event Grid system topic ---------------------------------------------------------

# Write dead-lettered BlobCreated events; container scope (system) only.
resource "azurerm_role_assignment" "eventgrid_deadletter_writer" {
  scope                = local.system_container_scope
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_system_topic.data_storage.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Event Grid system topic: dead-letter undeliverable BlobCreated events into container system."

  depends_on = [azurerm_storage_container.data]
}

# The A/B report reads the endpoints' request logs (AmlOnlineEndpointTrafficLog) from Log Analytics with a KQL
# query (shared/feedback/azure_telemetry.py): read-only, on this one workspace.
resource "azurerm_role_assignment" "func_log_analytics_reader" {
  scope                = azurerm_log_analytics_workspace.this.id
  role_definition_name = "Log Analytics Reader"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
  description          = "GenAIOps Functions: the A/B report's query of online endpoint request logs."
}

# --- Deployed flows (online endpoints' user-assigned identity, aml.tf) ---------------------------------
# What Azure ML would grant a system-assigned endpoint identity, plus Azure OpenAI: pull the serving image, read
# the model from the workspace storage, write metrics, read the workspace connections' secrets, call Azure OpenAI.

resource "azurerm_role_assignment" "endpoints_acr_pull" {
  scope                = azurerm_container_registry.aml.id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Deployed flows: pull the serving image from the workspace registry."
}

resource "azurerm_role_assignment" "endpoints_model_reader" {
  scope                = azurerm_storage_account.aml.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Deployed flows: read the registered flow (model) from the workspace storage."
}

resource "azurerm_role_assignment" "endpoints_metrics_writer" {
  scope                = azurerm_machine_learning_workspace.this.id
  role_definition_name = "AzureML Metrics Writer (preview)"
  principal_id         = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Deployed flows: write metrics to the workspace."
}

resource "azurerm_role_assignment" "endpoints_connection_secrets" {
  scope                = azurerm_machine_learning_workspace.this.id
  role_definition_name = "Azure Machine Learning Workspace Connection Secrets Reader"
  principal_id         = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Deployed flows: resolve the flow's workspace connections at start."
}

resource "azurerm_role_assignment" "endpoints_openai_user" {
  count = local.openai_role_enabled ? 1 : 0

  scope                = var.azure_openai_resource_id
  role_definition_name = "Cognitive Services OpenAI User"
  principal_id         = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Deployed flows: call Azure OpenAI deployments with Entra ID."
}

# --- People / automation that maintain app secrets -----------------------------------

resource "azurerm_role_assignment" "kv_secrets_officers" {
  for_each = toset(var.key_vault_secrets_officer_object_ids)

  scope                = azurerm_key_vault.app.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = each.value
  description          = "Maintains GenAIOps app secrets such as azure-openai-api-key."
}
