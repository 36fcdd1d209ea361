#!/usr/bin/env bash
# Terraform for one GenAIOps environment, run inside an AzureCLI@2 task
# (service connection with workload identity federation, addSpnToEnvironment: true,
# env SYSTEM_ACCESSTOKEN: $(System.AccessToken)).
#
# usage: tf.sh <pr|dev|prod> <plan|apply|outputs|enable-blob-events>
#   plan                plan only (pull requests: shows the infra change, changes nothing)
#   apply               plan + apply
#   outputs             export the outputs later steps need as pipeline output variables
#   enable-blob-events  after the code is deployed: wait for the blob extension key, then create
#                       the Event Grid subscription (only the first time; a no-op afterwards)
#
# Variables read from the environment (variable group, mapped explicitly by the pipeline):
#   TFSTATE_RESOURCE_GROUP, TFSTATE_STORAGE_ACCOUNT, TFSTATE_CONTAINER   state backend (required)
#   PIPELINE_PRINCIPAL_OBJECT_ID   object id of the events service connection's principal
#   APPROVERS                      comma-separated approver UPNs
#   AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_RESOURCE_ID
set -euo pipefail

env_name="${1:?usage: tf.sh <pr|dev|prod> <plan|apply|outputs|enable-blob-events>}"
action="${2:?usage: tf.sh <pr|dev|prod> <plan|apply|outputs|enable-blob-events>}"
case "$env_name" in pr | dev | prod) ;; *) echo "unknown environment: $env_name" >&2; exit 2 ;; esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root/infra"

# Unset pipeline macros arrive as the literal text "$(NAME)"; treat them as empty.
value_of() {
  local v="${!1:-}"
  [[ "$v" == '$('*')' ]] && v=""
  printf '%s' "$v"
}

# --- Authentication (OIDC, no secret anywhere) ---------------------------------------------
export ARM_USE_OIDC=true
export ARM_CLIENT_ID="${AZURESUBSCRIPTION_CLIENT_ID:-${servicePrincipalId:?run inside AzureCLI@2 with addSpnToEnvironment: true}}"
export ARM_TENANT_ID="${AZURESUBSCRIPTION_TENANT_ID:-${tenantId:?}}"
ARM_SUBSCRIPTION_ID="$(az account show --query id --output tsv)"
export ARM_SUBSCRIPTION_ID
if [[ -n "${AZURESUBSCRIPTION_SERVICE_CONNECTION_ID:-}" && -n "$(value_of SYSTEM_ACCESSTOKEN)" ]]; then
  # Refreshable: provider and backend request a new federated token whenever they need one,
  # so long applies (Azure ML workspace) outlive the 10-minute ID token.
  export ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID="$AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"
  export ARM_OIDC_REQUEST_TOKEN="$SYSTEM_ACCESSTOKEN"
  export ARM_OIDC_REQUEST_URL="${SYSTEM_OIDCREQUESTURI:?}"
else
  echo "##vso[task.logissue type=warning]falling back to the one-shot ID token (valid ~10 minutes)"
  export ARM_OIDC_TOKEN="${idToken:?the service connection must use workload identity federation}"
fi

# --- Inputs ------------------------------------------------------------------------------------
export TF_IN_AUTOMATION=1 TF_INPUT=0
export TF_VAR_subscription_id="$ARM_SUBSCRIPTION_ID"

if [[ -n "$(value_of PIPELINE_PRINCIPAL_OBJECT_ID)" ]]; then
  export TF_VAR_pipeline_principal_object_id="$PIPELINE_PRINCIPAL_OBJECT_ID"
fi
if [[ -n "$(value_of APPROVERS)" ]]; then
  TF_VAR_approvers="$(python3 -c 'import json, sys; print(json.dumps([a.strip() for a in sys.argv[1].split(",") if a.strip()]))' "$APPROVERS")"
  export TF_VAR_approvers
fi
if [[ -n "$(value_of AZURE_OPENAI_ENDPOINT)" ]]; then
  export TF_VAR_azure_openai_endpoint="$AZURE_OPENAI_ENDPOINT"
fi
if [[ -n "$(value_of AZURE_OPENAI_RESOURCE_ID)" ]]; then
  export TF_VAR_azure_openai_resource_id="$AZURE_OPENAI_RESOURCE_ID"
fi
if [[ -n "$(value_of APPROVER_AUTH_CLIENT_ID)" ]]; then
  # Entra app registration for approver sign-in (App Service authentication); created outside Terraform.
  export TF_VAR_approver_auth_client_id="$APPROVER_AUTH_CLIENT_ID"
fi

var_file="environments/${env_name}.tfvars"

for required in TFSTATE_RESOURCE_GROUP TFSTATE_STORAGE_ACCOUNT TFSTATE_CONTAINER; do
  if [[ -z "$(value_of "$required")" ]]; then
    echo "##vso[task.logissue type=error]$required is not set (variable group genaiops-${env_name})"
    exit 1
  fi
done
state_rg="$TFSTATE_RESOURCE_GROUP"
state_account="$TFSTATE_STORAGE_ACCOUNT"
state_container="$TFSTATE_CONTAINER"

# Once infra/.terraform.lock.hcl is committed (infra/README.md: how it is produced), init must not change it.
lockfile=()
if [[ -f .terraform.lock.hcl ]]; then lockfile=(-lockfile=readonly); fi
terraform init -input=false -no-color "${lockfile[@]}" \
  -backend-config="resource_group_name=${state_rg}" \
  -backend-config="storage_account_name=${state_account}" \
  -backend-config="container_name=${state_container}" \
  -backend-config="key=genaiops-${env_name}.tfstate" \
  -backend-config="use_azuread_auth=true" \
  -backend-config="use_oidc=true"

# True once the Functions host has created its blobs_extension system key, i.e. the code with
# the blob trigger is deployed and has started at least once.
blob_extension_key_exists() {
  local app rg key
  app="$(terraform output -raw function_app_name 2>/dev/null)" || return 1
  rg="$(terraform output -raw resource_group_name 2>/dev/null)" || return 1
  key="$(az functionapp keys list --resource-group "$rg" --name "$app" \
    --query "systemKeys.blobs_extension" --output tsv 2>/dev/null)" || return 1
  [[ -n "$key" ]]
}

subscription_flag() {
  if blob_extension_key_exists; then echo true; else echo false; fi
}

case "$action" in
  plan)
    terraform plan -input=false -no-color -lock-timeout=10m -var-file="$var_file" \
      -var="enable_blob_event_subscription=$(subscription_flag)" -out=tfplan
    ;;
  apply)
    terraform plan -input=false -no-color -lock-timeout=10m -var-file="$var_file" \
      -var="enable_blob_event_subscription=$(subscription_flag)" -out=tfplan
    terraform apply -input=false -no-color -lock-timeout=10m tfplan
    ;;
  outputs)
    terraform output -json | python3 "$repo_root/.azure-pipelines/scripts/export_tf_outputs.py"
    ;;
  enable-blob-events)
    if [[ "$(terraform output -raw blob_event_subscription_enabled 2>/dev/null || echo false)" == "true" ]]; then
      echo "Event Grid subscription already in place."
      exit 0
    fi
    host="$(terraform output -raw function_app_default_hostname)"
    # The host creates the key when it starts; wake it and wait (up to ~10 minutes).
    for attempt in $(seq 1 40); do
      if blob_extension_key_exists; then
        terraform apply -input=false -no-color -auto-approve -lock-timeout=10m \
          -var-file="$var_file" -var="enable_blob_event_subscription=true"
        exit 0
      fi
      curl --silent --output /dev/null --max-time 30 "https://${host}/" || true
      echo "waiting for the blobs_extension key (attempt ${attempt}/40)"
      sleep 15
    done
    echo "##vso[task.logissue type=error]the Functions host never created its blobs_extension key; is the blob trigger deployed?"
    exit 1
    ;;
  *)
    echo "unknown action: $action" >&2
    exit 2
    ;;
esac
