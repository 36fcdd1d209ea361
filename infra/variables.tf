# Input variables. Per-environment values live in environments/<env>.tfvars;
# values that differ per organisation (subscription, pipeline identity,
# approvers) are passed by the pipeline as TF_VAR_* environment variables.

# --- Where and what ---------------------------------------------------------

variable "subscription_id" {
  description = "Azure subscription that hosts the environment. Also exported to the app as AZURE_SUBSCRIPTION_ID."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F-]{36}$", var.subscription_id))
    error_message = "subscription_id must be a subscription GUID."
  }
}

variable "environment" {
  description = "Lifecycle environment; exported to the app as GENAIOPS_ENV."
  type        = string

  validation {
    condition     = contains(["pr", "dev", "prod"], var.environment)
    error_message = "environment must be one of: pr, dev, prod."
  }
}

variable "location" {
  description = "Azure region. It must offer Flex Consumption, Azure ML and Service Bus Standard."
  type        = string
}

variable "project" {
  description = "Short lowercase project tag used in resource names (storage account names allow 24 characters in total)."
  type        = string
  default     = "genaiops"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,9}$", var.project))
    error_message = "project must be 3-10 lowercase letters/digits and start with a letter."
  }
}

variable "name_suffix" {
  description = "Suffix that makes global names unique. Leave null to derive a stable 6-character suffix from subscription, project and environment."
  type        = string
  default     = null

  validation {
    condition     = var.name_suffix == null || can(regex("^[a-z0-9]{3,6}$", var.name_suffix))
    error_message = "name_suffix must be 3-6 lowercase letters/digits."
  }
}

variable "create_resource_group" {
  description = "Create the resource group (needs subscription-level rights) or use an existing one created by the platform team."
  type        = bool
  default     = true
}

variable "resource_group_name" {
  description = "Resource group name. Null means rg-<project>-<environment>."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- Storage ----------------------------------------------------------------

variable "storage_replication_type" {
  description = "Replication for the host and data storage accounts."
  type        = string
  default     = "LRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "GZRS", "RAGRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be a Standard replication type."
  }
}

variable "blob_soft_delete_retention_days" {
  description = "Days deleted blobs and containers stay recoverable."
  type        = number
  default     = 14

  validation {
    condition     = var.blob_soft_delete_retention_days >= 1 && var.blob_soft_delete_retention_days <= 365
    error_message = "blob_soft_delete_retention_days must be between 1 and 365."
  }
}

# --- Service Bus ------------------------------------------------------------

variable "events_queue_name" {
  description = "Queue that carries every GenAIOps event; exported as EVENTS_QUEUE. The app and the CLI expect genaiops-events."
  type        = string
  default     = "genaiops-events"
}

variable "max_delivery_count" {
  description = "Deliveries before the broker dead-letters a message the app keeps failing on."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_count >= 1 && var.max_delivery_count <= 2000
    error_message = "max_delivery_count must be between 1 and 2000."
  }
}

variable "duplicate_detection_window" {
  description = "ISO 8601 window in which a message whose message_id (= event id) was already accepted is dropped."
  type        = string
  default     = "PT1H"
}

variable "message_ttl" {
  description = "ISO 8601 time to live of an event; expired events are dead-lettered, not dropped."
  type        = string
  default     = "P14D"
}

# --- Function App -------------------------------------------------------------

variable "function_maximum_instance_count" {
  description = "Upper bound of Flex Consumption scale-out."
  type        = number
  default     = 40

  validation {
    condition     = var.function_maximum_instance_count >= 1 && var.function_maximum_instance_count <= 1000
    error_message = "function_maximum_instance_count must be between 1 and 1000."
  }
}

variable "function_instance_memory_mb" {
  description = "Memory per Flex Consumption instance. Prompt flow runs in-process, so 2048 is the practical minimum."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "approvers" {
  description = "Principal names (UPNs) allowed to approve deployments; exported comma-separated as APPROVERS."
  type        = list(string)
  default     = []
}

variable "approver_auth_enabled" {
  description = "Turn on App Service authentication (Easy Auth v2, Entra ID) for approvers. Takes effect only together with approver_auth_client_id."
  type        = bool
  default     = false
}

variable "approver_auth_client_id" {
  description = "Application (client) ID of the pre-created Entra ID app registration approvers sign in with (not a secret). Empty leaves App Service authentication off."
  type        = string
  default     = ""

  validation {
    condition     = var.approver_auth_client_id == "" || can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", trimspace(var.approver_auth_client_id)))
    error_message = "approver_auth_client_id must be empty or an application (client) ID GUID."
  }
}

variable "approver_auth_tenant_id" {
  description = "Entra ID tenant of the approver app registration. Empty means the tenant Terraform runs in."
  type        = string
  default     = ""

  validation {
    condition     = var.approver_auth_tenant_id == "" || can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.approver_auth_tenant_id))
    error_message = "approver_auth_tenant_id must be empty or a tenant GUID."
  }
}

variable "azure_openai_endpoint" {
  description = "Azure OpenAI endpoint (https://<name>.openai.azure.com/); exported as AOAI_API_BASE, the api_base of the flows' aoai connection."
  type        = string
  default     = ""
}

variable "azure_openai_auth" {
  description = "How the app authenticates to Azure OpenAI: identity (Entra ID, preferred) or key_vault (AOAI_API_KEY resolved from Key Vault secret azure-openai-api-key)."
  type        = string
  default     = "identity"

  validation {
    condition     = contains(["identity", "key_vault"], var.azure_openai_auth)
    error_message = "azure_openai_auth must be identity or key_vault."
  }
}

variable "azure_openai_resource_id" {
  description = "Resource ID of the Azure OpenAI account. When set and azure_openai_auth is identity, the app identity gets Cognitive Services OpenAI User on it."
  type        = string
  default     = ""
}

# --- Event Grid (blob trigger) --------------------------------------------------

variable "enable_blob_event_subscription" {
  description = "Create the BlobCreated subscription for container datasets. Needs the function code deployed first (the webhook key only exists then); the pipeline sets it."
  type        = bool
  default     = false
}

variable "blob_trigger_function_name" {
  description = "Name of the blob-triggered function (functions/dataset_uploads.py: dataset_uploaded); the Event Grid webhook targets Host.Functions.<name>."
  type        = string
  default     = "dataset_uploaded"
}

# --- Monitoring & Key Vault ---------------------------------------------------

variable "log_retention_days" {
  description = "Log Analytics retention."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "key_vault_soft_delete_retention_days" {
  description = "Days a deleted vault or secret stays recoverable (purge protection is always on)."
  type        = number
  default     = 90

  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90
    error_message = "key_vault_soft_delete_retention_days must be between 7 and 90."
  }
}

variable "key_vault_secrets_officer_object_ids" {
  description = "Object IDs (people or automation) allowed to set secrets such as azure-openai-api-key in the app vault."
  type        = list(string)
  default     = []
}

# --- CI/CD identity -------------------------------------------------------------

variable "pipeline_principal_object_id" {
  description = "Object ID of the service principal behind the pipeline's events service connection. Empty skips its role assignments."
  type        = string
  default     = ""

  validation {
    condition     = var.pipeline_principal_object_id == "" || can(regex("^[0-9a-fA-F-]{36}$", var.pipeline_principal_object_id))
    error_message = "pipeline_principal_object_id must be empty or an object GUID."
  }
}
