"""Human approval of a registered flow version before it is deployed.

    service.py    request_approval / decide / expire_due: the orchestration, over injected ports
    store.py      approvals/{approval_id}.json with ETag-conditional transitions (a decision lands once)
    models.py     the stored request, what it asks about, and the errors the HTTP layer maps to status codes
    identity.py   the approver, from App Service authentication headers
    notifiers.py  telling approvers: a log line or a webhook
    page.py       the HTML page approvers open (templates/approval.html.j2)
    web.py        the approval routes' HTTP, framework-free; decisions go to the bus as DecideApproval commands
"""

from shared.approvals.identity import Principal, principal_from_headers
from shared.approvals.models import (
    AlreadyDecided,
    ApprovalConfigError,
    ApprovalError,
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalSubject,
    Decision,
    DecisionConflict,
    InvalidDecision,
    NotAnApprover,
    NotAuthenticated,
    RequestExpired,
)
from shared.approvals.notifiers import LogNotifier, Notifier, WebhookNotifier
from shared.approvals.service import (
    ApprovalSettings,
    DecisionOutcome,
    decide,
    expire_due,
    get_approval,
    notifier_for,
    request_approval,
)

__all__ = [
    "AlreadyDecided",
    "ApprovalConfigError",
    "ApprovalError",
    "ApprovalNotFound",
    "ApprovalRequest",
    "ApprovalSettings",
    "ApprovalSubject",
    "Decision",
    "DecisionConflict",
    "DecisionOutcome",
    "InvalidDecision",
    "LogNotifier",
    "NotAnApprover",
    "NotAuthenticated",
    "Notifier",
    "Principal",
    "RequestExpired",
    "WebhookNotifier",
    "decide",
    "expire_due",
    "get_approval",
    "notifier_for",
    "principal_from_headers",
    "request_approval",
]
