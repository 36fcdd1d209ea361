"""Commands: what a person or a schedule asks the application to do, handled through the same message bus as events
(shared/messagebus.py: one handler each, run at most once per idempotency key).

Events say what happened and come from the queue; commands come straight from a trigger (HTTP, timer), are never
put on the queue, and answer their caller: a handler's error reaches the trigger as it was raised.

The idempotency key is the command's content: a resubmitted form or a retried request carries the same content,
so it is not acted on twice; anything else (another comment, another approver, another tick) is a new command.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.approvals.models import MAX_COMMENT, Decision
from shared.events.envelope import Event
from shared.feedback.service import Feedback


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def idempotency_key(self) -> str:
        """The sha256 of the command's type and content (64 hex characters: a safe blob name segment)."""
        content = f"{type(self).__name__}|{self.model_dump_json()}"
        return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


class DecideApproval(Command):
    """An approver grants or rejects a pending approval (POST .../approve or .../reject)."""

    approval_id: str = Field(min_length=1, max_length=256)
    decision: Decision
    approver: str = Field(min_length=1, description="the signed-in principal's name")
    provider: str = ""
    comment: str = Field(default="", max_length=MAX_COMMENT)


class ExpireApprovals(Command):
    """The expiry timer's tick: pending approvals past their time become approval.expired. Keyed by the minute, so
    a retried invocation of one tick sweeps once."""

    tick: datetime

    @field_validator("tick")
    @classmethod
    def _to_the_minute(cls, value: datetime) -> datetime:
        return value.replace(second=0, microsecond=0)


class SubmitFeedback(Command):
    """One user's feedback on one answer of a deployed flow (POST /api/feedback/{use_case}/{endpoint})."""

    use_case: str = Field(min_length=1, max_length=256)
    endpoint: str = Field(min_length=1, max_length=256)
    caller: str = Field(description="a hash of the caller id, never the id itself")
    feedback: Feedback

    def record_id(self) -> str:
        """The stored submission's id: the same for a retried request, so it answers with the same id."""
        return self.idempotency_key()[:32]


Message = Event | Command  # what the message bus handles
