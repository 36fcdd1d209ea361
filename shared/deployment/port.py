"""The deployment port: what a deployer does (deploy at 0%, split traffic, hand out a scoring target, remove), the
`deployment:` block of experiment.yaml that configures it, and the A/B traffic rule.

    deployment:                      # per environment through experiment.<env>.yaml (the overlay replaces the block)
      target: aml_managed            # local | aml_managed | aml_kubernetes | container
      endpoint_name: math-coding-dev
      traffic: {new: 30, current: 70}
      instance_type: Standard_DS3_v2
      instance_count: 1
      request_timeout_ms: 60000
      environment_variables: {PROMPTFLOW_RESPONSE_INCLUDED_FIELDS: '["answer"]'}
      smoke: {samples: 5, latency_budget_ms: 10000, readiness_timeout_seconds: 600}

Every adapter creates a new deployment with 0% of the traffic; the service then applies `plan_traffic` after the
smoke test passes, or `rollback_traffic` when it fails. The reference template reads the prior deployment's share
and then overwrites it; here both shares are honoured as configured.

Long operations do not block: `begin_*` starts one and returns its OperationState at once, `poll` re-reads it.
An Azure ML deployment takes longer than one Function invocation may run, so the deployment service persists the
state and polls again from a scheduled message (shared/services/deployments.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.redaction import register_secrets

# Azure ML's rule for endpoint and deployment names (azure.ai.ml EndpointConfigurations: 3-32 characters, a letter
# first, letters/digits/hyphens, no trailing hyphen). Applied to every target so a name that works locally also
# works in Azure.
NAME_PATTERN = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
MIN_NAME_LENGTH, MAX_NAME_LENGTH = 3, 32
# Prompt flow deployments accept up to 5 minutes per request on Azure ML managed online endpoints.
MAX_REQUEST_TIMEOUT_MS = 300_000
DEPLOYMENT_HEADER = "azureml-model-deployment"  # pins a request to one deployment of an endpoint
# An App Service Key Vault reference: the platform resolves it, the value never sits in config.
_CREDENTIAL_HEADER = re.compile(r"authorization|key|token|secret|signature", re.IGNORECASE)
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(.+\)$")
_SECRET_SETTING = re.compile(r"(^|_)(API_?KEY|KEY|SECRET|PASSWORD|PASSWD|TOKEN|CONNECTION_?STRING|CREDENTIALS?)$",
                             re.IGNORECASE)


class DeploymentError(RuntimeError):
    """A deployment that could not be done; the message says what to change."""


class EndpointNotFound(DeploymentError, LookupError):
    pass


class DeploymentFailed(DeploymentError):
    """The platform refused or failed the deployment; `logs` holds the tail of its container logs (redacted)."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


class InvalidTraffic(ValueError):
    pass


class DeploymentTarget(StrEnum):
    """Where a flow is served. aml_managed: promptflow's serving image with the flow as a model; container: the
    flow's own image (`pf flow build --format docker`), built by Azure ML into the workspace's registry, on a
    managed online endpoint; aml_kubernetes: a Kubernetes online endpoint; local: the local stack's servers."""

    LOCAL = "local"
    AML_MANAGED = "aml_managed"
    AML_KUBERNETES = "aml_kubernetes"
    CONTAINER = "container"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrafficSplit(_Block):
    """The new deployment's share and the share the deployment serving most traffic now keeps."""

    new: int = Field(default=30, ge=0, le=100)
    current: int = Field(default=70, ge=0, le=100)

    @model_validator(mode="after")
    def _sums_to_100(self) -> TrafficSplit:
        if self.new + self.current != 100:
            raise ValueError(f"traffic new ({self.new}) + current ({self.current}) must be 100")
        return self


class SmokeConfig(_Block):
    samples: int = Field(default=5, ge=1, description="Requests from the use case's sample data")
    latency_budget_ms: int = Field(default=10_000, ge=1)
    readiness_timeout_seconds: int = Field(default=600, ge=1)


# The prompt flow serving image, pinned (Azure ML tags it <yyyymmdd>.v<n>; tags are listed at
# https://mcr.microsoft.com/v2/azureml/promptflow/promptflow-runtime/tags/list). `latest` would change what a
# deployment runs without any change here; a newer image is chosen on purpose, through `runtime_image`.
PROMPTFLOW_RUNTIME_IMAGE = "mcr.microsoft.com/azureml/promptflow/promptflow-runtime:20241031.v1"
_PINNED_IMAGE = re.compile(r"^[a-z0-9][a-z0-9.:/_-]*(?:@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
_ENVIRONMENT_SLUG = re.compile(r"[^a-z0-9]+")
ENDPOINT_HASH_LENGTH = 6


def default_endpoint_name(use_case: str, environment: str, scope: str = "", *, hashed: bool = True) -> str:
    """`<use case>-<environment>-<hash>`, within Azure ML's endpoint name rules (3-32 characters, a letter first,
    letters, digits and hyphens). The use case is its folder name (underscores become hyphens, cut to fit); the hash
    is of `scope` (the subscription, resource group and workspace when known), the whole folder name and the
    environment, so names differ per workspace and environment — managed online endpoint names must be unique in
    the region — and two folders that slug or cut alike still get different names. `hashed=False` (the local
    stack, where none of that applies): `<use case>-<environment>`."""
    digest = hashlib.sha256("\n".join((scope, use_case, environment)).encode()).hexdigest()[:ENDPOINT_HASH_LENGTH]
    env = _ENVIRONMENT_SLUG.sub("", environment.lower())[:8] or "env"
    slug = _ENVIRONMENT_SLUG.sub("-", use_case.lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"uc-{slug}".rstrip("-")
    if not hashed:
        return check_name(f"{slug[:MAX_NAME_LENGTH - len(env) - 1].rstrip('-')}-{env}", "endpoint_name")
    slug = slug[:MAX_NAME_LENGTH - len(env) - ENDPOINT_HASH_LENGTH - 2].rstrip("-")
    return check_name(f"{slug}-{env}-{digest}", "endpoint_name")


class WorkspaceConnection(_Block):
    """A connection the flow needs where it is served (Azure ML: a workspace connection, created or updated before
    each deployment). No secret: `settings` names the app setting that holds a `${placeholder}` field's value."""

    name: str
    connection_type: str
    values: dict[str, str] = Field(default_factory=dict, description="Fields written as literals in experiment.yaml")
    settings: dict[str, str] = Field(default_factory=dict, description="field -> the app setting holding its value")

    @property
    def identity_auth(self) -> bool:
        """Entra ID (the caller's identity) instead of a key: `auth_mode: meid_token` on the connection."""
        return self.values.get("auth_mode", "").lower() == "meid_token"


class DeploymentConfig(_Block):
    target: DeploymentTarget = DeploymentTarget.LOCAL
    endpoint_name: str
    traffic: TrafficSplit = Field(default_factory=TrafficSplit)
    instance_type: str = Field(default="Standard_DS3_v2",
                               description="A VM size; for aml_kubernetes an instance type defined on the cluster")
    instance_count: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=60_000, ge=1, le=MAX_REQUEST_TIMEOUT_MS)
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    environment_variables: dict[str, str] = Field(
        default_factory=dict, description="Non-secret settings; a secret only as an App Service Key Vault reference"
    )
    app_insights_enabled: bool = True
    data_collection: bool = False
    compute: str | None = Field(default=None, description="The Kubernetes compute name, for aml_kubernetes")
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)
    runtime_image: str = Field(default=PROMPTFLOW_RUNTIME_IMAGE,
                               description="The prompt flow serving image (Azure ML), with a pinned tag or digest")
    connections: tuple[WorkspaceConnection, ...] = Field(
        default=(), description="Set from the experiment's connections: (not written in the deployment: block)")

    @field_validator("runtime_image")
    @classmethod
    def _runtime_image(cls, value: str) -> str:
        if not _PINNED_IMAGE.match(value) or value.endswith(":latest"):
            raise ValueError(f"runtime_image {value!r} must name a pinned tag or digest (e.g. "
                             f"{PROMPTFLOW_RUNTIME_IMAGE}), not latest or no tag")
        return value

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, value: str) -> str:
        return check_name(value, "endpoint_name")

    @field_validator("environment_variables")
    @classmethod
    def _no_plain_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        plain = sorted(name for name, item in value.items()
                       if _SECRET_SETTING.search(name) and not KEY_VAULT_REFERENCE.match(item))
        if plain:
            raise ValueError(
                f"{', '.join(plain)} look like secrets: experiment.yaml must not hold them. Use a workspace "
                "connection (Azure ML), or a Key Vault reference '@Microsoft.KeyVault(SecretUri=...)' (App Service)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _kubernetes_instance_type(cls, data: object) -> object:
        # The VM-size default means nothing on a cluster; Azure ML's default instance type does.
        if isinstance(data, dict) and data.get("target") in (DeploymentTarget.AML_KUBERNETES, "aml_kubernetes"):
            return {"instance_type": "defaultinstancetype", **data}
        return data

    @model_validator(mode="after")
    def _per_target(self) -> DeploymentConfig:
        if self.target is DeploymentTarget.AML_KUBERNETES:
            if not self.compute:
                raise ValueError("target aml_kubernetes needs 'compute': the Kubernetes compute attached to the "
                                 "workspace")
            if self.instance_type.lower().startswith("standard_"):
                raise ValueError(f"instance_type {self.instance_type!r} is a VM size; aml_kubernetes needs an "
                                 "instance type defined on the cluster (e.g. defaultinstancetype)")
        return self


class DeploymentRequest(_Block):
    use_case: str
    flow_name: str
    flow_version: str
    flow_dir: Path = Field(description="The registered flow's files, variant baked in")
    deployment_name: str
    config: DeploymentConfig

    @field_validator("deployment_name")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        return check_name(value, "deployment_name")


class Deployed(_Block):
    endpoint: str
    deployment: str
    scoring_uri: str
    traffic: dict[str, int] = Field(description="The endpoint's traffic after the deploy (the new one at 0)")
    details: dict[str, str] = Field(default_factory=dict, description="e.g. model, environment or image reference")


class ScoringTarget(_Block):
    """Where and how to call an endpoint. Header values may hold a key or token: never log or store them."""

    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    def http_headers(self) -> dict[str, str]:
        # An endpoint key must not come back in a logged answer; Content-Type's value is no secret to mask everywhere.
        register_secrets(value for name, value in self.headers.items() if _CREDENTIAL_HEADER.search(name))
        return {name: value.get_secret_value() for name, value in self.headers.items()}


class OperationKind(StrEnum):
    ENDPOINT = "endpoint"
    DEPLOYMENT = "deployment"
    TRAFFIC = "traffic"


class OperationStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OperationState(_Block):
    """A started long operation: enough to find it again from another invocation (it is persisted as JSON).
    Azure ML is polled by re-reading the entity's provisioning state, so its names are all it takes."""

    kind: OperationKind
    endpoint: str
    deployment: str | None = None
    status: OperationStatus = OperationStatus.PENDING
    message: str = Field(default="", description="Why it failed")
    logs: str = Field(default="", description="The tail of a failed deployment's container logs (redacted)")
    traffic: dict[str, int] = Field(default_factory=dict, description="The split a traffic operation applies")
    details: dict[str, str] = Field(default_factory=dict, description="e.g. model, environment, spec")

    @property
    def pending(self) -> bool:
        return self.status is OperationStatus.PENDING

    def finished(self, status: OperationStatus, message: str = "", logs: str = "") -> OperationState:
        return self.model_copy(update={"status": status, "message": message, "logs": logs})


class Deployer(Protocol):
    def begin_endpoint(self, config: DeploymentConfig) -> OperationState:
        """Start creating the endpoint when it does not exist (succeeded at once when it does); do not wait."""
        ...

    def begin_deploy(self, request: DeploymentRequest) -> OperationState:
        """Start creating or updating the deployment, at 0% traffic, on an existing endpoint; do not wait."""
        ...

    def begin_set_traffic(self, endpoint: str, traffic: dict[str, int]) -> OperationState:
        """Start applying a split (summing to 100); do not wait."""
        ...

    def poll(self, state: OperationState) -> OperationState:
        """The operation's state now (a local deployer's operations are never pending)."""
        ...

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        """Every deployment's share, 0 included; {} when the endpoint does not exist."""
        ...

    def scoring_request(self, endpoint: str, deployment: str | None = None) -> ScoringTarget:
        """The URL and headers (key or token) to call the endpoint; `deployment` pins one deployment."""
        ...

    def remove(self, endpoint: str, deployment: str) -> None:
        """Delete a deployment that serves no traffic; a missing one is not an error."""
        ...


# --- names ---------------------------------------------------------------------------------------------------------


def check_name(value: str, what: str = "name") -> str:
    if not MIN_NAME_LENGTH <= len(value) <= MAX_NAME_LENGTH or not NAME_PATTERN.match(value):
        raise ValueError(f"{what} {value!r} must be {MIN_NAME_LENGTH}-{MAX_NAME_LENGTH} characters: a letter first, "
                         "then letters, digits or hyphens, not ending with a hyphen (Azure ML's rule)")
    return value


def deployment_name_for(version: str) -> str:
    """`v<version>` made valid for Azure ML: "12" -> "v12", "3" -> "v-3" (3 characters at least), "1.2" -> "v1-2";
    a version too long keeps a hash so two versions never share a name."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-zA-Z0-9]+", "-", str(version))).strip("-")
    if not slug:
        raise ValueError(f"version {version!r} has no letters or digits to name a deployment after")
    name = f"v{slug}" if len(slug) >= 2 else f"v-{slug}"
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha256(str(version).encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME_LENGTH - 9].rstrip('-')}-{digest}"
    return check_name(name, "deployment name")


# --- the A/B rule ------------------------------------------------------------------------------------------------


def _check_current(current: Mapping[str, int]) -> None:
    negative = sorted(name for name, share in current.items() if share < 0)
    if negative:
        raise InvalidTraffic(f"negative traffic for {', '.join(negative)}")


def prior_deployment(current: Mapping[str, int], new_deployment: str) -> str | None:
    """The deployment other than `new_deployment` that serves the most traffic now (ties: the first by name)."""
    _check_current(current)
    serving = sorted((name for name, share in current.items() if name != new_deployment and share > 0),
                     key=lambda name: (-current[name], name))
    return serving[0] if serving else None


def plan_traffic(current: Mapping[str, int], new_deployment: str, split: TrafficSplit) -> dict[str, int]:
    """The split after a new deployment: it gets `split.new`, the prior deployment (the one serving most traffic)
    keeps `split.current`, every other deployment goes to 0. With no prior deployment serving, the new one gets 100.
    Every deployment in `current` stays in the result; the result always sums to 100."""
    if not new_deployment:
        raise InvalidTraffic("the new deployment needs a name")
    prior = prior_deployment(current, new_deployment)
    plan = dict.fromkeys(current, 0)
    if prior is None:
        plan[new_deployment] = 100
        return plan
    plan[new_deployment] = split.new
    plan[prior] = split.current
    return plan


def rollback_traffic(current: Mapping[str, int], failed_deployment: str, *, prior: str | None = None) -> dict[str, int]:
    """The split after `failed_deployment` failed: it goes to 0 and its share goes back to the prior deployment —
    `prior` when given (pass `prior_deployment(before, new)` kept from before the switch), else the other deployment
    serving most traffic, else the only other deployment. With no other deployment at all, everything is 0: there
    is nothing left worth serving. Raises InvalidTraffic when the prior cannot be told (several idle deployments)."""
    _check_current(current)
    plan = dict(current)
    plan.setdefault(failed_deployment, 0)
    share = plan[failed_deployment]
    plan[failed_deployment] = 0
    if prior is None:
        others = sorted(name for name in plan if name != failed_deployment)
        prior = prior_deployment(current, failed_deployment)
        if prior is None and len(others) == 1:
            prior = others[0]
        if prior is None and others and share:
            raise InvalidTraffic(f"cannot tell which of {', '.join(others)} served before {failed_deployment}; "
                                 "pass prior=")
    elif prior == failed_deployment:
        raise InvalidTraffic(f"prior {prior!r} is the failed deployment itself")
    if prior is not None:
        plan[prior] = plan.get(prior, 0) + share
    return plan


def check_traffic(traffic: Mapping[str, int]) -> dict[str, int]:
    """A split a platform accepts: whole percentages 0-100 summing to 100 (or all 0: nothing serves)."""
    bad = sorted(name for name, share in traffic.items() if not 0 <= share <= 100)
    if bad:
        raise InvalidTraffic(f"traffic for {', '.join(bad)} must be between 0 and 100")
    total = sum(traffic.values())
    if total not in (0, 100):
        raise InvalidTraffic(f"traffic must sum to 100, got {total}: {dict(traffic)}")
    return dict(traffic)
