"""The record of a deployment in progress, `deployments/{use_case}/operations/{request_id}.json`: what was asked,
what served before, the step it is at, the long operation it waits for, and its deadline. The deployment service
re-reads it on every scheduled check, so no invocation has to outlive an Azure operation. A traffic request
(promote / retire) keeps a smaller record of the same kind beside it, checked by the same events (`kind` traffic).

Redelivery: the record numbers its checks and keeps the follow-up events of the last event it handled. A check
whose number is not the awaited one changes nothing; the last handled event, delivered again (its handler crashed
before the bus recorded it), re-sends the very same follow-ups. Writes carry the record's ETag, so two deliveries
handled at the same moment cannot both advance it.
"""

# Each record kind narrows `kind` to its own literal (a discriminated union of frozen models; see events/catalogue.py).
# pyright: reportIncompatibleVariableOverride=false
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.blob_layout import DEPLOYMENTS, deployment_record_name
from shared.deployment.port import OperationState
from shared.events import Event
from shared.events.catalogue import DeploymentCheckRequested
from shared.events.codec import decode
from shared.events.payloads import DeploymentRequestedPayload, TrafficRequestPayload
from shared.ports import BlobNotFound, BlobStore, PreconditionFailed


class Step(StrEnum):
    ENDPOINT = "endpoint"        # the endpoint is being created (or exists)
    DEPLOYMENT = "deployment"    # the new deployment is being created, at 0 % traffic
    READY = "ready"              # it is up; waiting until it answers
    SMOKE = "smoke"              # the smoke test, pinned to it
    TRAFFIC = "traffic"          # the configured split is being applied
    ROLLBACK = "rollback"        # the prior's share is being given back
    VERIFIED = "verified"        # done: deployment.verified
    ROLLED_BACK = "rolled_back"  # done: deployment.rolled_back


FINAL_STEPS = frozenset({Step.VERIFIED, Step.ROLLED_BACK})


class RecordChanged(RuntimeError):
    """Another delivery advanced the record meanwhile; the bus retries this one, which then finds it handled."""


class CheckedRecord(BaseModel):
    """What every record driven by scheduled `deployment.check_requested` events keeps: the long operation it waits
    for and its deadline, the numbering of its checks, and the follow-ups of the last event it handled."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["deployment", "traffic"] = Field(description="What it drives (the event that started it)")
    request_id: str = Field(description="The id of the event that started it: names the record")
    endpoint: str
    deployment: str
    operation: OperationState | None = Field(default=None, description="The long operation the step waits for")
    step_started_at: datetime
    deadline: datetime = Field(description="Past it, a pending operation counts as failed")
    step_checks: int = Field(default=0, description="Checks spent waiting in this step (sets the back-off)")
    checks: int = Field(default=0, description="The number of the last check scheduled: the one awaited")
    outbox_cause: str = Field(default="", description="The last event handled")
    outbox: list[str] = Field(default_factory=list, description="Its follow-up events, as sent")

    @property
    def use_case(self) -> str:
        raise NotImplementedError

    @property
    def final(self) -> bool:
        raise NotImplementedError

    def replay(self, event: Event) -> list[Event] | None:
        """What to answer `event` with when it needs no new work: the stored follow-ups when it is the last event
        handled, [] when it is stale (an old or unknown check, or the record is final); None: handle it."""
        if event.id == self.outbox_cause:
            return [decode(body) for body in self.outbox]
        if isinstance(event, DeploymentCheckRequested) and event.payload.attempt == self.checks and not self.final:
            return None
        return []

    def next_check(self, cause: Event, now: datetime, first_seconds: float, max_seconds: float) -> Event:
        """The check awaited next, scheduled 15 s, 30 s, then every 60 s (by default) into the current step."""
        delay = min(max_seconds, first_seconds * 2 ** self.step_checks)
        self.checks += 1
        self.step_checks += 1
        return cause.follow_up(DeploymentCheckRequested, {
            "kind": self.kind, "use_case": self.use_case, "endpoint": self.endpoint, "deployment": self.deployment,
            "request_id": self.request_id, "attempt": self.checks, "not_before": now + timedelta(seconds=delay),
        }, key=f"{self.request_id}:{self.checks}")

    def remember(self, cause: Event, events: list[Event]) -> None:
        """Keep `cause`'s follow-ups, so its redelivery re-sends the very same events."""
        self.outbox_cause, self.outbox = cause.id, [event.model_dump_json() for event in events]


class DeploymentRecord(CheckedRecord):
    """A deployment.requested in progress."""

    kind: Literal["deployment"] = "deployment"  # records written before traffic records existed have none
    request: DeploymentRequestedPayload
    prior_traffic: dict[str, int] = Field(description="The endpoint's traffic before anything changed")
    metrics: dict[str, float] = Field(description="What the version was approved on (for production.json)")
    step: Step
    reason: str = Field(default="", description="Why it is rolling back")

    @property
    def use_case(self) -> str:
        return self.request.use_case

    @property
    def final(self) -> bool:
        return self.step in FINAL_STEPS

    def enter(self, step: Step, now: datetime, budget_seconds: float,
              operation: OperationState | None = None) -> None:
        self.step, self.operation, self.step_started_at = step, operation, now
        self.deadline, self.step_checks = now + timedelta(seconds=budget_seconds), 0


class TrafficRecord(CheckedRecord):
    """A deployment.traffic_requested (promote / retire) in progress: one traffic operation, then an outcome."""

    kind: Literal["traffic"] = "traffic"
    request: TrafficRequestPayload
    outcome: Literal["pending", "changed", "failed"] = "pending"

    @property
    def use_case(self) -> str:
        return self.request.use_case

    @property
    def final(self) -> bool:
        return self.outcome != "pending"


R = TypeVar("R", bound=CheckedRecord)


class RecordStore:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def load(self, use_case: str, request_id: str, kind: type[R]) -> tuple[R, str] | None:
        try:
            data, etag = self.blobs.read(DEPLOYMENTS, deployment_record_name(use_case, request_id))
        except BlobNotFound:
            return None
        return kind.model_validate_json(data), etag

    def resume(self, check: DeploymentCheckRequested, kind: type[R],
               advance: Callable[[R, str], list[Event]]) -> list[Event]:
        """A scheduled check: nothing when no record was started under its id, the same events again when this
        check was already handled, else `advance(record, etag)`."""
        found = self.load(check.payload.use_case, check.payload.request_id, kind)
        if found is None:
            return []  # nothing was ever started under this id
        record, etag = found
        answer = record.replay(check)
        return answer if answer is not None else advance(record, etag)

    def save(self, record: CheckedRecord, etag: str | None) -> str:
        """Create (etag None) or replace the version read; RecordChanged when another delivery got there first."""
        name = deployment_record_name(record.use_case, record.request_id)
        try:
            return self.blobs.write(DEPLOYMENTS, name, record.model_dump_json(indent=2).encode(),
                                    if_match=etag, if_absent=etag is None)
        except PreconditionFailed:
            raise RecordChanged(f"{DEPLOYMENTS}/{name} changed while this delivery handled it") from None
