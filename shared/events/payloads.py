"""The bodies of the lifecycle's events, and the names they share. Payloads name things, they never carry secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from shared.events.envelope import Payload

Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
Environment = Literal["pr", "dev", "prod", "local"]


def _no_dot_segments(name: str) -> str:
    if any(part in {".", ".."} for part in name.split("/")):
        raise ValueError("'.' and '..' path segments are not blob names (Azure refuses them; a URL resolves them)")
    return name


# Any name Azure accepts (spaces, unicode, up to 1,024 characters): names derived from it are made safe where they
# are used (shared.blob_layout), so an unusual upload gets its intake report instead of a poisoned trigger.
BlobName = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_dot_segments)]
VariantSelection = dict[str, str]  # node name -> variant id, e.g. {"extract": "variant_1"}
Metrics = dict[str, float]


# --- datasets and data registration -------------------------------------------------------------

class DatasetUploadedPayload(Payload):
    container: Name
    blob_name: BlobName = Field(description="Path inside the container, e.g. 'math_coding/math_data.jsonl'.")
    use_case: BlobName | None = Field(default=None, description="First folder of the blob path, when there is one.")
    dataset: BlobName = Field(description="Path below the first folder without '.jsonl' ('/' between sub-folders).")
    size_bytes: int = Field(ge=0)
    etag: str


class DataRegisteredPayload(Payload):
    name: Name
    version: str
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    source: str
    created: bool = Field(description="False when the content was unchanged and the latest version was reused.")


# --- experiments and evaluation ----------------------------------------------------------------

class ExperimentRequestedPayload(Payload):
    use_case: Name
    environment: Environment = "dev"
    datasets: list[Name] | None = Field(default=None, description="Only these datasets; all when omitted.")
    data_sources: dict[str, str] = Field(
        default_factory=dict,
        description="Configured dataset source -> blob://container/path that replaces it (an upload).",
    )
    reason: Literal["dataset", "pipeline", "manual"] = "manual"
    build: dict[str, str] = Field(default_factory=dict,
                                  description="git_commit / build_id / pipeline of the pipeline run that asked.")


class RunSummary(Payload):
    run_id: str
    variant: VariantSelection
    dataset: Name
    status: Literal["completed", "failed"]
    lines: int = Field(ge=0)
    failed_lines: int = Field(ge=0)
    metrics: Metrics = Field(default_factory=dict)


class ExperimentCompletedPayload(Payload):
    use_case: Name
    experiment_id: str
    runs: list[RunSummary]
    report_uri: str


class ExperimentFailedPayload(Payload):
    use_case: Name
    experiment_id: str | None = None
    reasons: list[str] = Field(min_length=1)


class EvaluationCompletedPayload(Payload):
    use_case: Name
    experiment_id: str
    runs: list[RunSummary]
    report_uri: str


WorkStage = Literal["standard", "evaluation"]


class ExperimentItemRequestedPayload(Payload):
    """A bounded piece of an experiment (some lines of one run) for whichever instance takes it."""

    use_case: Name
    experiment_id: str
    stage: WorkStage
    item_id: str
    part: int = Field(default=0, ge=0, description="Continuations of an item that ran out of its time budget.")
    not_before: datetime | None = Field(default=None, description="Deliver no earlier (a scheduled re-check).")


class ExperimentStageCompletedPayload(Payload):
    use_case: Name
    experiment_id: str
    stage: WorkStage


class ExperimentProgressedPayload(Payload):
    use_case: Name
    experiment_id: str
    stage: WorkStage
    items_done: int = Field(ge=0)
    items_total: int = Field(ge=0)
    lines_done: int = Field(ge=0)
    lines_total: int = Field(ge=0)


# --- quality gate and flow registration --------------------------------------------------------

class GateCheck(Payload):
    metric: str
    comparison: Literal[">=", "<=", ">", "<", "max_drop"]
    threshold: float
    actual: float | None
    passed: bool


class GateVerdictPayload(Payload):
    use_case: Name
    experiment_id: str
    environment: Environment = "dev"
    primary_metric: str
    best_variant: VariantSelection
    best_hyperparameters: dict[str, Any] = Field(default_factory=dict)
    best_value: float | None
    best_metrics: Metrics = Field(default_factory=dict)
    checks: list[GateCheck]
    reasons: list[str] = Field(default_factory=list)
    report_uri: str


class FlowRegisteredPayload(Payload):
    use_case: Name
    experiment_id: str
    name: Name
    version: str
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    variant: VariantSelection
    metrics: Metrics
    created: bool


class DeploymentUnchangedPayload(Payload):
    use_case: Name
    flow_name: Name
    flow_version: str
    reason: str = Field(description="Why nothing is approved or deployed: the version that serves already.")


# --- approval ------------------------------------------------------------------------------------

class ApprovalRequestedPayload(Payload):
    approval_id: str
    use_case: Name
    flow_name: Name
    flow_version: str
    approvers: list[str] = Field(min_length=1)
    expires_at: datetime
    report_uri: str
    approval_url: str


class ApprovalDecisionPayload(Payload):
    approval_id: str
    use_case: Name
    flow_name: Name
    flow_version: str
    decided_by: str
    decided_at: datetime
    comment: str = Field(default="", max_length=2000)


# --- deployment and verification ---------------------------------------------------------------

class DeploymentRequestedPayload(Payload):
    use_case: Name
    flow_name: Name
    flow_version: str
    environment: Environment
    approval_id: str | None = None


class DeploymentNamed(Payload):
    """The deployment a payload is about (its fields come first in every subclass)."""

    use_case: Name
    endpoint: Name
    deployment: Name


class DeploymentRefPayload(DeploymentNamed):
    flow_version: str
    traffic: dict[str, int] = Field(description="Deployment name -> percent of traffic; sums to 100.")


class SmokeResultPayload(DeploymentNamed):
    checks_passed: int = Field(ge=0)
    checks_failed: int = Field(ge=0)
    failures: list[str] = Field(default_factory=list)
    report_uri: str


class DeploymentRolledBackPayload(DeploymentNamed):
    reason: str
    traffic: dict[str, int]


class DeploymentCheckRequestedPayload(DeploymentNamed):
    """Look at a deployment (`kind` deployment) or a traffic request (`kind` traffic) in progress again, not before
    `not_before` (the bus's scheduled delivery). `attempt` numbers the checks: one already handled changes nothing."""

    kind: Literal["deployment", "traffic"] = "deployment"
    request_id: str = Field(description="The deployment.requested (or traffic_requested) event's id: names the record.")
    attempt: int = Field(ge=1)
    not_before: datetime


class TrafficRequestPayload(DeploymentNamed):
    action: Literal["promote", "retire"] = Field(
        description="promote: this deployment takes 100%; retire: it goes to 0% and its share back to the others")


class TrafficChangedPayload(TrafficRequestPayload):
    traffic: dict[str, int]


class TrafficFailedPayload(TrafficChangedPayload):
    reason: str = Field(description="Why the split was not applied; `traffic` is what the endpoint reports now.")


# --- posted by CI/CD pipelines -----------------------------------------------------------------

class PipelineTriggeredPayload(Payload):
    pipeline: Name
    run_id: str = Field(min_length=1, max_length=128)
    commit: str = Field(default="", max_length=64)
    branch: str = Field(default="", max_length=256)
    environment: Environment
    use_cases: list[Name] = Field(min_length=1)
