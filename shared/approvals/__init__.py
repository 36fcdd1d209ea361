"""Human approval of a registered flow version before it is deployed.

    store.py         approvals/{approval_id}.json with ETag-conditional transitions (a decision lands once)
    models.py        the stored request, what it asks about, and the errors the HTTP layer maps to status codes
    identity.py      the approver, from App Service authentication headers
    notification.py  what approvers are told (sent through shared/notifications.py: a log line or a webhook)
    page.py          the HTML page approvers open (templates/approval.html.j2)
    web.py           the approval routes' HTTP, framework-free; decisions go to the bus as DecideApproval commands

The use cases over them (request_approval, decide, expire_due, ApprovalSettings) are in shared/services/approvals.py.
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

__all__ = [
    "AlreadyDecided",
    "ApprovalConfigError",
    "ApprovalError",
    "ApprovalNotFound",
    "ApprovalRequest",
    "ApprovalSubject",
    "Decision",
    "DecisionConflict",
    "InvalidDecision",
    "NotAnApprover",
    "NotAuthenticated",
    "Principal",
    "RequestExpired",
    "principal_from_headers",
]
