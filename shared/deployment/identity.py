"""Who a deployed flow runs as, and the least roles that identity needs.

azure-ai-ml cannot assign Azure roles (that is the authorization API, done here by Terraform), so the roles are
data: `RoleAssignmentSpec`s the infrastructure turns into `azurerm_role_assignment`s, and that tests can check.

Azure ML online endpoints (managed and Kubernetes):
- system-assigned identity (the default here): Azure ML itself grants AcrPull on the workspace registry, Storage
  Blob Data Reader on the workspace's default storage and AzureML Metrics Writer (preview) on the workspace; the
  endpoint is created with `enforce_access_to_default_secret_stores: enabled`, which also grants it Azure Machine
  Learning Workspace Connection Secrets Reader when the identity creating the endpoint holds that role (the flow's
  connections are workspace connections, pulled at start through PRT_CONFIG_OVERRIDE). Source: Azure ML docs,
  concept-endpoints-online-auth ("Automatic role assignment for endpoint identity").
- user-assigned identity: nothing is automatic; grant the same roles before creating the endpoint, and the
  deployment gets AZURE_CLIENT_ID so the container picks that identity.

Target container (the flow's own image, built by Azure ML into the workspace registry, on a managed online
endpoint): AcrPull on the workspace registry and AzureML Metrics Writer — automatic for a system-assigned identity;
no storage or connection-secrets role, since no model and no workspace connection is read.

Either way, a flow whose connection authenticates with Entra ID instead of a key (`auth_mode: meid_token`, the
shipped default: the app then creates an identity-based workspace connection) also needs Cognitive Services OpenAI
User on the Azure OpenAI account — `roles_for_deployment` adds it from the deployment's connections. Azure ML
never grants that one: a system-assigned identity only exists once the endpoint does, so it is granted after the
endpoint is created (its principal id is on the endpoint), or — better — the endpoint gets a user-assigned identity
holding every role above before it is created (`EndpointIdentity`).

The app's own identity (the Function) creates the endpoint, the deployment and the workspace connections: AzureML
Data Scientist on the workspace covers all three (infra/rbac.tf). Nobody gets Owner or Contributor.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.deployment.port import DeploymentConfig, DeploymentTarget

ACR_PULL = "AcrPull"
STORAGE_BLOB_DATA_READER = "Storage Blob Data Reader"
METRICS_WRITER = "AzureML Metrics Writer (preview)"
CONNECTION_SECRETS_READER = "Azure Machine Learning Workspace Connection Secrets Reader"
KEY_VAULT_SECRETS_USER = "Key Vault Secrets User"
OPENAI_USER = "Cognitive Services OpenAI User"


class EndpointIdentity(BaseModel):
    """A user-assigned managed identity for an endpoint; without one, the endpoint gets a system-assigned one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resource_id: str = Field(description="/subscriptions/.../providers/Microsoft.ManagedIdentity/"
                                         "userAssignedIdentities/<name>")
    client_id: str = Field(description="Set as AZURE_CLIENT_ID in the deployment so the container uses it")


class Scopes(BaseModel):
    """ARM ids of the resources a deployment touches; leave out what the flow does not use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: str | None = None
    container_registry: str | None = None
    storage_account: str | None = None
    key_vault: str | None = None
    openai_account: str | None = None


class RoleAssignmentSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(description="Built-in role name (azurerm_role_assignment.role_definition_name)")
    scope: str
    why: str
    automatic: bool = Field(default=False, description="Azure ML grants it to a system-assigned endpoint identity")


def required_roles(target: DeploymentTarget, scopes: Scopes, *, system_assigned: bool = True,
                   entra_openai: bool = False) -> list[RoleAssignmentSpec]:
    """The least roles the identity running a deployment of `target` needs, for the scopes given."""
    wanted: list[tuple[str, str | None, str, bool]] = []
    if target in (DeploymentTarget.AML_MANAGED, DeploymentTarget.AML_KUBERNETES):
        automatic = system_assigned
        wanted += [
            (ACR_PULL, scopes.container_registry, "pull the deployment's image from the workspace registry",
             automatic),
            (STORAGE_BLOB_DATA_READER, scopes.storage_account, "read the flow (a model) from workspace storage",
             automatic),
            (METRICS_WRITER, scopes.workspace, "write endpoint metrics to the workspace", automatic),
            # Granted on creation only if the creator holds it (enforce_access_to_default_secret_stores); listed
            # as not automatic so infrastructure grants it explicitly.
            (CONNECTION_SECRETS_READER, scopes.workspace, "read the flow's workspace connections at start", False),
        ]
    elif target is DeploymentTarget.CONTAINER:
        wanted += [
            (ACR_PULL, scopes.container_registry, "pull the flow's image from the workspace registry", system_assigned),
            (METRICS_WRITER, scopes.workspace, "write endpoint metrics to the workspace", system_assigned),
        ]
    if entra_openai:
        wanted.append((OPENAI_USER, scopes.openai_account, "call Azure OpenAI with Entra ID instead of a key", False))
    return [RoleAssignmentSpec(role=role, scope=scope, why=why, automatic=automatic)
            for role, scope, why, automatic in wanted if scope]


def roles_for_deployment(config: DeploymentConfig, scopes: Scopes, *,
                         system_assigned: bool = True) -> list[RoleAssignmentSpec]:
    """`required_roles` for a deployment block: Entra ID for Azure OpenAI when one of its connections uses it."""
    entra_openai = any(connection.identity_auth and connection.connection_type == "AzureOpenAIConnection"
                       for connection in config.connections)
    return required_roles(config.target, scopes, system_assigned=system_assigned, entra_openai=entra_openai)
