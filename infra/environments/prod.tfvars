# Production environment: deployed from release tags (v*) or a manual run,
# behind the approval check of the Azure DevOps environment genaiops-prod.
# subscription_id, pipeline_principal_object_id and approvers come from the
# pipeline (TF_VAR_*), see infra/README.md.

environment = "prod"
location    = "eastus2"

storage_replication_type        = "ZRS"
blob_soft_delete_retention_days = 30

max_delivery_count         = 10
duplicate_detection_window = "PT1H"
message_ttl                = "P14D"

function_maximum_instance_count = 100
function_instance_memory_mb     = 4096

log_retention_days                   = 90
key_vault_soft_delete_retention_days = 90

azure_openai_auth = "identity"

# App Service authentication (Entra ID) for approvers. The client id of the
# pre-created app registration comes from the pipeline
# (TF_VAR_approver_auth_client_id); without it auth stays off (plan warns).
approver_auth_enabled = true
