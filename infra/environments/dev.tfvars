# Development environment: every merge to main is deployed here.
# subscription_id, pipeline_principal_object_id and approvers come from the
# pipeline (TF_VAR_*), see infra/README.md.

environment = "dev"
location    = "eastus2"

storage_replication_type        = "LRS"
blob_soft_delete_retention_days = 14

max_delivery_count         = 10
duplicate_detection_window = "PT1H"
message_ttl                = "P14D"

function_maximum_instance_count = 20
function_instance_memory_mb     = 2048

log_retention_days                   = 30
key_vault_soft_delete_retention_days = 30

azure_openai_auth = "identity"

# App Service authentication (Entra ID) for approvers. The client id of the
# pre-created app registration comes from the pipeline
# (TF_VAR_approver_auth_client_id); without it auth stays off (plan warns).
approver_auth_enabled = true
