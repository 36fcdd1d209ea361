"""Commands: what a person or a schedule asks the application to do, handled through the same message bus as events
(shared/messagebus.py: one handler each, run at most once per idempotency key).

Events say what happened and come from the queue; commands come straight from a trigger (HTTP, timer), are never
put on the queue, and answer their caller: a handler's error reaches the trigger as it was raised.

An approval decision and the expiry tick are keyed by their content: a resubmitted form or a retried tick carries
the same content, so it is not acted on twice; anything else (another comment, another approver, another minute) is
a new command. Feedback is keyed by the client's Idempotency-Key header instead (two identical ratings are two
opinions unless the client says they are one request retried).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.approvals.models import MAX_COMMENT, Decision
from shared.events.envelope import Event
from shared.feedback.submissions import Feedback


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def content_hash(self) -> str:
        """The sha256 of the command's type and content (64 hex characters)."""
        return _sha256(f"{type(self).__name__}|{self.model_dump_json()}")

    def idempotency_key(self) -> str:
        """What makes two commands one (a safe blob name segment); by default, their content."""
        return self.content_hash()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class DecideApproval(Command):
    """An approver grants or rejects a pending approval (POST .../approve or .../reject)."""

    approval_id: str = Field(min_length=1, max_length=256)
    decision: Decision
    approver: str = Field(min_length=1, description="the signed-in principal's name")
    provider: str = ""
    comment: str = Field(default="", max_length=MAX_COMMENT)


class ExpireApprovals(Command):
    """The expiry timer's tick: pending approvals past their time become approval.expired. Keyed by the second (the
    finest NCRONTAB step), so a retried invocation of one tick sweeps once and the next tick always sweeps."""

    tick: datetime

    @field_validator("tick")
    @classmethod
    def _to_the_second(cls, value: datetime) -> datetime:
        return value.replace(microsecond=0)


class SubmitFeedback(Command):
    """One user's feedback on one answer of a deployed flow (POST /api/feedback/{use_case}/{endpoint})."""

    use_case: str = Field(min_length=1, max_length=256)
    endpoint: str = Field(min_length=1, max_length=256)
    caller: str = Field(description="a hash of the caller id, never the id itself")
    submission_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$",
                               description="the request's Idempotency-Key header, else a fresh id")
    feedback: Feedback

    def idempotency_key(self) -> str:
        """One caller's one submission: the same key with other content is refused (PayloadMismatch)."""
        return _sha256(f"{self.caller}|{self.submission_id}")

    def record_id(self) -> str:
        """The stored submission's id: the same for a retried request, so it answers with the same id."""
        return self.idempotency_key()[:32]


Message = Event | Command  # what the message bus handles
