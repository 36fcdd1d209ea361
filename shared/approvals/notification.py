"""What approvers are told when a flow version waits for them (sent through shared/notifications.py)."""

from __future__ import annotations

from shared.approvals.models import ApprovalRequest
from shared.notifications import Notification


def approval_notification(request: ApprovalRequest, approval_url: str) -> Notification:
    lines = [f"{request.use_case}: flow {request.flow_name} version {request.flow_version} waits for approval."]
    if request.metrics:
        lines.append("Metrics: " + ", ".join(f"{name} {value:.4g}" for name, value in sorted(request.metrics.items())))
    lines.extend(f"Gate: {line}" for line in request.gate_summary)
    lines.append(f"Approvers: {', '.join(request.approvers)}")
    lines.append(f"Expires: {request.expires_at.isoformat(timespec='seconds')}")
    return Notification(
        kind="approval.requested", subject=request.approval_id,
        title=f"Approval needed: {request.use_case} {request.flow_name} v{request.flow_version}",
        text="\n".join(lines), link=approval_url,
        facts={"approval_id": request.approval_id, "use_case": request.use_case, "flow": request.flow_name,
               "version": request.flow_version, "approvers": request.approvers,
               "expires_at": request.expires_at.isoformat()})
