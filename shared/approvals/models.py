"""An approval request as it is stored (approvals/{approval_id}.json), what it asks about, and the errors the
HTTP layer maps to status codes. Transitions return new frozen copies; the store writes them with ETags."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.catalogue import Metrics, Name

ApprovalStatus = Literal["pending", "granted", "rejected", "expired"]
Decision = Literal["granted", "rejected"]
# Alphanumeric at both ends, so the id is its own blob path segment (safe_segment leaves it unchanged).
APPROVAL_ID_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
MAX_COMMENT = 2000  # the decision events' comment limit
SYSTEM_ACTOR = "system"  # who "decides" an expiry


def same_principal(a: str, b: str) -> bool:
    """Principal names (UPNs, e-mail addresses) compare case-insensitively, as Entra ID treats them."""
    return a.strip().casefold() == b.strip().casefold()


class ApprovalSubject(BaseModel):
    """What is being approved: a registered flow version and the evidence for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    use_case: Name
    flow_name: Name
    flow_version: str = Field(min_length=1, max_length=128)
    metrics: Metrics = Field(default_factory=dict)
    gate_summary: list[str] = Field(default_factory=list, description="The quality gate's verdict, one line each.")
    report_uri: str = ""


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    action: ApprovalStatus | Literal["requested"]
    by: str
    comment: str = ""


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    approval_id: str = Field(pattern=APPROVAL_ID_PATTERN)
    use_case: Name
    flow_name: Name
    flow_version: str
    approvers: list[str] = Field(min_length=1)
    requested_at: datetime
    expires_at: datetime
    status: ApprovalStatus = "pending"
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str = Field(default="", max_length=MAX_COMMENT)
    metrics: Metrics = Field(default_factory=dict)
    gate_summary: list[str] = Field(default_factory=list)
    report_uri: str = ""
    correlation_id: str
    requested_event_id: str = Field(description="The approval.requested event; decision events follow from it.")
    event_published: bool = Field(default=False, description="The decision's event reached the publisher.")
    history: list[HistoryEntry] = Field(default_factory=list)

    def is_approver(self, principal_name: str) -> bool:
        return any(same_principal(principal_name, approver) for approver in self.approvers)

    def is_open(self, now: datetime) -> bool:
        """Still decidable: pending and not past its expiry (the timer may not have marked it yet)."""
        return self.status == "pending" and now < self.expires_at

    def decided(self, decision: Decision, by: str, comment: str, now: datetime) -> ApprovalRequest:
        return self._close(decision, by, comment, decided_at=now, recorded_at=now)

    def expired(self, now: datetime) -> ApprovalRequest:
        # decided_at is when it expired, not when the sweep noticed; the history keeps both.
        return self._close("expired", SYSTEM_ACTOR, "no decision before the approval expired",
                           decided_at=self.expires_at, recorded_at=now)

    def _close(self, status: ApprovalStatus, by: str, comment: str, *, decided_at: datetime,
               recorded_at: datetime) -> ApprovalRequest:
        entry = HistoryEntry(at=recorded_at, action=status, by=by, comment=comment)
        return self.model_copy(update={
            "status": status, "decided_by": by, "decided_at": decided_at, "comment": comment,
            "event_published": False, "history": [*self.history, entry],
        })


# --- errors: each carries the HTTP status the functions map it to ------------------------------------------

class ApprovalError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, request: ApprovalRequest | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class InvalidDecision(ApprovalError):
    pass


class NotAuthenticated(ApprovalError):
    status, code = 401, "unauthenticated"


class IdentitySourceMissing(ApprovalError):
    """No trusted identity source: App Service authentication is off, so X-MS-CLIENT-PRINCIPAL* headers are
    whatever the caller sent. Nobody can decide until it is on (a key holder must never pose as an approver)."""

    status, code = 503, "identity_source_missing"


class NotAnApprover(ApprovalError):
    status, code = 403, "forbidden"


class CrossSiteRequest(ApprovalError):
    """A decision posted from another site's page: refused whoever is signed in (CSRF)."""

    status, code = 403, "cross_site"


class ApprovalNotFound(ApprovalError):
    status, code = 404, "not_found"


class AlreadyDecided(ApprovalError):
    status, code = 409, "already_decided"


class DecisionConflict(ApprovalError):
    """Kept losing ETag races to writers that were not decisions; the caller may simply retry."""

    status, code = 409, "conflict"


class RequestExpired(ApprovalError):
    status, code = 410, "expired"


class ApprovalConfigError(RuntimeError):
    """The app is not configured to ask for approvals (e.g. APPROVERS is empty)."""
