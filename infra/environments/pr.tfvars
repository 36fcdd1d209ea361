# Pull-request environment: one shared, long-lived stack that PR builds deploy
# to in turn (the Azure DevOps environment genaiops-pr holds an exclusive lock).
# subscription_id, pipeline_principal_object_id and approvers come from the
# pipeline (TF_VAR_*), see infra/README.md.

environment = "pr"
location    = "eastus2"

storage_replication_type        = "LRS"
blob_soft_delete_retention_days = 7

max_delivery_count         = 10
duplicate_detection_window = "PT1H"
message_ttl                = "P7D"

function_maximum_instance_count = 10
function_instance_memory_mb     = 2048

log_retention_days                   = 30
key_vault_soft_delete_retention_days = 7

azure_openai_auth = "identity"

# No human approvals in the PR environment (it stops at gate.passed).
approver_auth_enabled = false
