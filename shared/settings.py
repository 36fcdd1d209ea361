"""App settings, read from the environment (Azure app settings, or local.settings.json via the local host).

Connection names follow the Functions convention: `<Name>` holds a connection string (local stack),
`<Name>__blobServiceUri` / `<Name>__fullyQualifiedNamespace` select identity-based access (Azure).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

STORAGE_CONNECTION = "GenAIOpsStorage"
SERVICEBUS_CONNECTION = "ServiceBusConnection"
EVENTS_QUEUE_SETTING = "EVENTS_QUEUE"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Literal["pr", "dev", "prod", "local"] = Field(default="local", validation_alias="GENAIOPS_ENV")
    flows_dir: Path = Field(default=Path(__file__).resolve().parent.parent / "flows",
                            validation_alias="GENAIOPS_FLOWS_DIR", description="The use cases (deployed with the app)")
    work_dir: Path = Field(default=Path(tempfile.gettempdir()) / "genaiops-work", validation_alias="GENAIOPS_WORK_DIR",
                           description="Scratch space for materialized flow variants")
    storage_connection_string: SecretStr | None = Field(default=None, validation_alias=STORAGE_CONNECTION)
    storage_blob_uri: str | None = Field(default=None, validation_alias=f"{STORAGE_CONNECTION}__blobServiceUri")
    servicebus_connection_string: SecretStr | None = Field(default=None, validation_alias=SERVICEBUS_CONNECTION)
    servicebus_namespace: str | None = Field(
        default=None, validation_alias=f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace"
    )
    events_queue: str = Field(default="genaiops-events", validation_alias=EVENTS_QUEUE_SETTING)
    appinsights_connection_string: SecretStr | None = Field(
        default=None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:7071",
        validation_alias=AliasChoices("GENAIOPS_PUBLIC_BASE_URL", "WEBSITE_HOSTNAME"),
        description="Where people reach the HTTP functions (approval links in events and notifications).",
    )
    @field_validator("public_base_url")
    @classmethod
    def _with_scheme(cls, value: str) -> str:
        # Azure sets WEBSITE_HOSTNAME without a scheme; links in approval mails must be absolute https URLs.
        value = value.rstrip("/")
        return value if "://" in value else f"https://{value}"

    registry_backend: Literal["blob", "azureml"] = Field(
        default="blob", validation_alias="REGISTRY_BACKEND",
        description="Where data and flow versions are registered: Azure ML, or blob storage (local stack)")
    azure_subscription_id: str | None = Field(default=None, validation_alias="AZURE_SUBSCRIPTION_ID")
    azure_resource_group: str | None = Field(default=None, validation_alias="AZURE_RESOURCE_GROUP")
    azureml_workspace_name: str | None = Field(default=None, validation_alias="AZUREML_WORKSPACE_NAME")

    feedback_rate_per_minute: float = Field(default=30.0, gt=0, validation_alias="FEEDBACK_RATE_PER_MINUTE")
    feedback_burst: int = Field(default=10, ge=1, validation_alias="FEEDBACK_BURST")

    local_router_seed: int | None = Field(
        default=None, validation_alias="LOCAL_ROUTER_SEED",
        description="Seeds the local A/B routers' traffic draw (tests); unset = unpredictable, as in production")

    local_deployer_factory: str | None = Field(
        default=None, validation_alias="LOCAL_DEPLOYER_FACTORY",
        description="module:function building the local target (the local stack sets it; Azure never does)")
    log_analytics_workspace_id: str | None = Field(
        default=None, validation_alias="LOG_ANALYTICS_WORKSPACE_ID",
        description="Where Azure ML endpoints' AmlOnlineEndpointTrafficLog goes (the A/B report and the "
                    "production monitor's error rate and latency read it)")
    azureml_data_collector_container_url: str | None = Field(
        default=None, validation_alias="AZUREML_DATA_COLLECTOR_CONTAINER_URL",
        description="The Azure ML workspace's default blob container, where its endpoints' data collector writes the "
                    "requests and answers post-production evaluation judges")
    log_analytics_workspace_resource_id: str | None = Field(
        default=None, validation_alias="LOG_ANALYTICS_WORKSPACE_RESOURCE_ID",
        description="The same workspace's ARM id: each new endpoint's diagnostic setting sends its traffic log there")

    idempotency_lease_seconds: int = Field(default=600, ge=1, validation_alias="IDEMPOTENCY_LEASE_SECONDS")

    # Approvals (shared/approvals: ApprovalSettings.of(settings)).
    approvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="APPROVERS", description="Comma-separated principal names")
    approval_timeout_minutes: int = Field(default=60, ge=1, validation_alias="APPROVAL_TIMEOUT_MINUTES")
    approval_webhook_url: SecretStr | None = Field(
        default=None, validation_alias="APPROVAL_WEBHOOK_URL", description="Unset: notifications go to the log")
    app_service_auth_enabled: bool = Field(default=False, validation_alias="WEBSITE_AUTH_ENABLED",
                                           description="Set by App Service when its authentication is on")
    app_service_auth_provider: str = Field(default="", validation_alias="WEBSITE_AUTH_DEFAULT_PROVIDER")

    @field_validator("approvers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split(",") if isinstance(value, str) else value

    @field_validator("app_service_auth_enabled", mode="before")
    @classmethod
    def _only_true_is_on(cls, value: object) -> object:
        return value.strip().lower() == "true" if isinstance(value, str) else value

    @field_validator("approval_webhook_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # Azure ML runner (execution.runner azureml/auto): none set = serverless compute, Azure ML picks the VM size.
    azureml_pf_instance_type: str | None = Field(default=None, validation_alias="AZUREML_PF_INSTANCE_TYPE",
                                                 description="Serverless VM size for runs, e.g. Standard_D4as_v4")
    azureml_pf_compute: str | None = Field(default=None, validation_alias="AZUREML_PF_COMPUTE",
                                           description="A compute instance for the run's compute session")
    azureml_pf_runtime: str | None = Field(default=None, validation_alias="AZUREML_PF_RUNTIME",
                                           description="A named prompt flow runtime (then compute is the runtime's)")
    azureml_endpoint_identity_id: str | None = Field(
        default=None, validation_alias="AZUREML_ENDPOINT_IDENTITY_ID",
        description="Resource id of the user-assigned identity deployed flows run as (Terraform creates it)")
    azureml_endpoint_identity_client_id: str | None = Field(
        default=None, validation_alias="AZUREML_ENDPOINT_IDENTITY_CLIENT_ID",
        description="Its client id: AZURE_CLIENT_ID in the deployment, so the container uses that identity")

    # Every app setting as the process had them when these settings were read: what a connection's
    # `${placeholder}` and `<CONNECTION>_<FIELD>` names resolve against, and which values are masked as secrets.
    # Read once here, so the services never look at the process environment (and tests pass a mapping).
    app_settings: Annotated[Mapping[str, str], NoDecode] = Field(default_factory=lambda: dict(os.environ),
                                                                 exclude=True, repr=False)

    @field_validator("app_settings", mode="before")
    @classmethod
    def _snapshot(cls, value: object) -> object:
        # A variable named like the field (APP_SETTINGS, as Flask apps use) is one app setting, not the snapshot.
        return dict(os.environ) if isinstance(value, str) else value

    @property
    def local_stack(self) -> bool:
        """This app runs on the local stack: experiments stack their experiment.local.yaml on top."""
        return self.environment == "local"

    def require_storage(self) -> None:
        if not (self.storage_connection_string or self.storage_blob_uri):
            raise RuntimeError(
                f"no blob storage configured: set {STORAGE_CONNECTION} (connection string) "
                f"or {STORAGE_CONNECTION}__blobServiceUri (managed identity)"
            )

    def require_servicebus(self) -> None:
        if not (self.servicebus_connection_string or self.servicebus_namespace):
            raise RuntimeError(
                f"no Service Bus configured: set {SERVICEBUS_CONNECTION} (connection string) "
                f"or {SERVICEBUS_CONNECTION}__fullyQualifiedNamespace (managed identity)"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
