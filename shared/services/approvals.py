"""Human approval of a registered flow version: ask, decide once, expire.

- request_approval: store the request (id derived from the causing event, so a redelivery asks no second
  time), notify the approvers, return the approval.requested event for the caller to publish. Without a trusted
  identity source (App Service authentication off) it asks nobody: it logs why and returns approval.rejected by
  "system" with the reason, which ends the run at once (retrying would not turn authentication on).
- decide: an approver grants or rejects; the write is conditional on the ETag read, so exactly one decision is
  recorded however many arrive at once. The decision's event is published at once and, should that fail,
  re-sent by the next sweep (its id and time come from the stored record, so a re-send is the same event).
- expire_due: the timer's sweep — pending requests past their expiry become approval.expired (which the
  lifecycle treats as a rejection), and any decision whose event did not go out is sent.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.approvals.identity import ENABLE_HINT, IdentitySource, Principal
from shared.approvals.models import (
    MAX_COMMENT,
    SYSTEM_ACTOR,
    AlreadyDecided,
    ApprovalConfigError,
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalSubject,
    Decision,
    DecisionConflict,
    HistoryEntry,
    InvalidDecision,
    NotAnApprover,
    NotAuthenticated,
    RequestExpired,
)
from shared.approvals.notification import approval_notification
from shared.approvals.store import ApprovalStore, Stored, is_stale
from shared.events import ApprovalExpired, ApprovalGranted, ApprovalRejected, ApprovalRequested, Event
from shared.events.catalogue import ApprovalDecisionPayload, ApprovalRequestedPayload
from shared.events.envelope import derived_event_id
from shared.notifications import Notifier, send
from shared.observability import correlation
from shared.ports import BlobStore, Clock, EventPublisher, PreconditionFailed
from shared.settings import Settings

log = logging.getLogger("genaiops.approvals")

DecisionEvent = ApprovalGranted | ApprovalRejected | ApprovalExpired
_EVENT_FOR_STATUS: dict[str, type[DecisionEvent]] = {
    "granted": ApprovalGranted, "rejected": ApprovalRejected, "expired": ApprovalExpired,
}
_WRITE_ATTEMPTS = 5
ORPHAN_MARKER_GRACE = timedelta(minutes=10)
RESEND_GRACE = timedelta(minutes=1)  # leave a decision's own publish time to finish before the sweep re-sends


class ApprovalSettings(BaseModel):
    """Who approves, how long a request stays open, and whether App Service vouches for who is signed in; from the
    app settings (Settings: APPROVERS, APPROVAL_TIMEOUT_MINUTES, WEBSITE_AUTH_ENABLED, WEBSITE_AUTH_DEFAULT_PROVIDER).
    Where notifications go is the notifier's (shared/notifications.py)."""

    model_config = ConfigDict(frozen=True)

    approvers: list[str] = Field(default_factory=list)
    timeout_minutes: int = Field(default=60, ge=1)
    app_service_auth_enabled: bool = False
    app_service_auth_provider: str = ""

    @classmethod
    def of(cls, settings: Settings) -> ApprovalSettings:
        return cls(approvers=settings.approvers, timeout_minutes=settings.approval_timeout_minutes,
                   app_service_auth_enabled=settings.app_service_auth_enabled,
                   app_service_auth_provider=settings.app_service_auth_provider)

    @field_validator("approvers")
    @classmethod
    def _clean(cls, value: list[str]) -> list[str]:
        return [name.strip() for name in value if name.strip()]

    def approvers_for(self, use_case: str) -> list[str]:
        """One list for every use case today; a per-use-case override slots in here."""
        return list(self.approvers)

    @property
    def timeout(self) -> timedelta:
        return timedelta(minutes=self.timeout_minutes)

    def identity_source(self) -> IdentitySource:
        return IdentitySource.from_platform(self.app_service_auth_enabled, self.app_service_auth_provider)


@dataclass(frozen=True)
class DecisionOutcome:
    request: ApprovalRequest
    event: DecisionEvent


def approval_id_for(causing_event: Event) -> str:
    return derived_event_id(causing_event.id, "approval")


def approval_url(settings: Settings, approval_id: str) -> str:
    return f"{settings.public_base_url}/api/approvals/{approval_id}"


def decision_event(request: ApprovalRequest) -> DecisionEvent:
    """The event for a closed request, rebuilt identically from the stored record every time: a follow-up of
    approval.requested (same correlation, caused by it, id derived from it), stamped with the decision time."""
    event_cls = _EVENT_FOR_STATUS.get(request.status)
    if event_cls is None or request.decided_by is None or request.decided_at is None:
        raise ValueError(f"approval {request.approval_id} is {request.status}: no decision to announce")
    payload = ApprovalDecisionPayload(
        approval_id=request.approval_id, use_case=request.use_case, flow_name=request.flow_name,
        flow_version=request.flow_version, decided_by=request.decided_by, decided_at=request.decided_at,
        comment=request.comment,
    )
    return event_cls(
        id=derived_event_id(request.requested_event_id, event_cls.event_type(), ""),
        correlation_id=request.correlation_id, causation_id=request.requested_event_id,
        occurred_at=request.decided_at, payload=payload,
    )


# --- asking ------------------------------------------------------------------------------------------------

def request_approval(causing_event: Event, subject: ApprovalSubject, *, blobs: BlobStore, clock: Clock,
                     settings: Settings, config: ApprovalSettings,
                     notifier: Notifier) -> ApprovalRequested | ApprovalRejected:
    """Create (once) the approval request for `subject` and return approval.requested for the caller to publish;
    approval.rejected (by "system", with the reason) when no trusted identity source is configured."""
    approvers = config.approvers_for(subject.use_case)
    if not approvers:
        raise ApprovalConfigError("no approvers configured: set APPROVERS to comma-separated principal names")
    now = clock.now()
    approval_id = approval_id_for(causing_event)
    if not config.identity_source().enabled:
        return _refused(causing_event, subject, approval_id, now)
    url = approval_url(settings, approval_id)
    candidate = ApprovalRequest(
        approval_id=approval_id, **subject.model_dump(), approvers=approvers, requested_at=now,
        expires_at=now + config.timeout, correlation_id=causing_event.correlation_id,
        # follow_up() derives the same id: approval.requested is a follow-up of the causing event.
        requested_event_id=derived_event_id(causing_event.id, ApprovalRequested.event_type(), ""),
        history=[HistoryEntry(at=now, action="requested", by=SYSTEM_ACTOR,
                              comment=f"after {causing_event.type} {causing_event.id}")],
    )
    store = ApprovalStore(blobs)
    store.mark_open(approval_id)  # before the request, so no pending request is ever invisible to the sweep
    stored, created = store.create(candidate)
    if not created:
        # A redelivery: answer with what was first stored, and do not notify twice.
        log.info("approval %s already requested; not asking again", approval_id)
        if stored.request.status != "pending" and stored.request.event_published:
            store.close(approval_id)  # re-marked above, but nothing is left for the sweep to do
        return _requested_event(causing_event, stored.request, url)
    log.info("approval %s requested for %s %s v%s, expires %s", approval_id, subject.use_case, subject.flow_name,
             subject.flow_version, candidate.expires_at.isoformat())
    send(notifier, approval_notification(candidate, url))  # best effort: the request stands without it
    return _requested_event(causing_event, candidate, url)


def _refused(causing_event: Event, subject: ApprovalSubject, approval_id: str, now: datetime) -> ApprovalRejected:
    """No request is stored and nobody is notified: with App Service authentication off, anyone holding a
    function key could claim to be an approver. The run ends with the reason instead."""
    reason = (f"approval refused: no trusted identity source (App Service authentication is off, "
              f"WEBSITE_AUTH_ENABLED is not True), so no approver could be told from a function-key holder; "
              f"{ENABLE_HINT}")
    log.error("approval %s for %s %s v%s: %s", approval_id, subject.use_case, subject.flow_name,
              subject.flow_version, reason)
    payload = ApprovalDecisionPayload(
        approval_id=approval_id, use_case=subject.use_case, flow_name=subject.flow_name,
        flow_version=subject.flow_version, decided_by=SYSTEM_ACTOR, decided_at=now, comment=reason[:MAX_COMMENT],
    )
    return causing_event.follow_up(ApprovalRejected, payload)


def _requested_event(causing_event: Event, request: ApprovalRequest, url: str) -> ApprovalRequested:
    payload = ApprovalRequestedPayload(
        approval_id=request.approval_id, use_case=request.use_case, flow_name=request.flow_name,
        flow_version=request.flow_version, approvers=request.approvers, expires_at=request.expires_at,
        report_uri=request.report_uri, approval_url=url,
    )
    event = causing_event.follow_up(ApprovalRequested, payload)
    if event.id != request.requested_event_id:
        raise RuntimeError(f"approval {request.approval_id}: stored event id {request.requested_event_id} "
                           f"does not follow from {causing_event.id}")
    return event


def get_approval(approval_id: str, blobs: BlobStore) -> ApprovalRequest:
    return ApprovalStore(blobs).get(approval_id).request


# --- deciding ----------------------------------------------------------------------------------------------

def decide(approval_id: str, decision: Decision, identity: Principal | None, comment: str, now: datetime, *,
           blobs: BlobStore, publisher: EventPublisher) -> DecisionOutcome:
    """Record one approver's decision. Raises NotAuthenticated (no identity), ApprovalNotFound, NotAnApprover,
    AlreadyDecided, RequestExpired or InvalidDecision — in that order of precedence, so nobody learns more about
    a request than they may."""
    if identity is None:
        raise NotAuthenticated("not signed in: approving needs an approver signed in through App Service "
                               "authentication")
    if decision not in ("granted", "rejected"):
        raise InvalidDecision(f"decision must be 'granted' or 'rejected', not {decision!r}")
    comment = comment.strip()
    store = ApprovalStore(blobs)
    for _ in range(_WRITE_ATTEMPTS):
        current = store.get(approval_id)
        request = current.request
        if not request.is_approver(identity.name):
            raise NotAnApprover(f"{identity.name} is not an approver of this request", request)
        if request.status in ("granted", "rejected"):
            raise AlreadyDecided(f"already {request.status} by {request.decided_by}; a decision is final", request)
        if not request.is_open(now):
            raise RequestExpired(f"the approval expired at {request.expires_at.isoformat()}", request)
        if len(comment) > MAX_COMMENT:
            raise InvalidDecision(f"the comment is longer than {MAX_COMMENT} characters", request)
        try:
            stored = store.replace(request.decided(decision, identity.name, comment, now), current.etag)
        except PreconditionFailed:
            continue  # someone wrote in between: re-read — if it was a decision, the checks above answer 409
        with correlation(request.correlation_id):
            log.info("approval %s %s by %s", approval_id, decision, identity.name)
            return DecisionOutcome(stored.request, _publish(store, stored, publisher))
    raise DecisionConflict("the approval kept changing while deciding; try again")


def _publish(store: ApprovalStore, stored: Stored, publisher: EventPublisher) -> DecisionEvent:
    """Send the closed request's event, then note that it went out and drop its open marker. A failure leaves
    the marker, so the sweep sends it later; the decision itself is already recorded."""
    event = decision_event(stored.request)
    try:
        publisher.publish([event])
    except Exception:  # the decision is stored; the expiry sweep re-sends its event
        log.exception("approval %s: publishing %s failed; the sweep will re-send it", stored.request.approval_id,
                      event.type)
        return event
    # PreconditionFailed: another writer (a sweep re-sending it) got there first; the event is out either way.
    with contextlib.suppress(PreconditionFailed):
        store.replace(stored.request.model_copy(update={"event_published": True}), stored.etag)
    store.close(stored.request.approval_id)
    return event


# --- expiring ----------------------------------------------------------------------------------------------

def expire_due(now: datetime, *, blobs: BlobStore, publisher: EventPublisher) -> list[ApprovalExpired]:
    """Expire pending requests past their time and re-send unsent decision events. Returns the approvals this
    call expired; a second call at the same moment expires nothing more."""
    store = ApprovalStore(blobs)
    expired: list[ApprovalExpired] = []
    for marker in store.open_markers():
        try:
            current = store.get(marker.approval_id)
        except ApprovalNotFound:
            if is_stale(marker, now, ORPHAN_MARKER_GRACE):
                store.close(marker.approval_id)  # its request was never written (the asker gave up)
            continue
        request = current.request
        if request.status == "pending":
            if request.is_open(now):
                continue
            try:
                current = store.replace(request.expired(now), current.etag)
            except PreconditionFailed:
                continue  # a decision landed at this very moment; the next sweep sees it
            with correlation(request.correlation_id):
                log.info("approval %s expired (was due %s)", request.approval_id, request.expires_at.isoformat())
                expired.append(cast(ApprovalExpired, _publish(store, current, publisher)))
        elif not request.event_published:
            if now - request.history[-1].at < RESEND_GRACE:
                continue
            with correlation(request.correlation_id):
                log.info("approval %s: re-sending its %s event", request.approval_id, request.status)
                _publish(store, current, publisher)
        else:
            store.close(request.approval_id)
    return expired
