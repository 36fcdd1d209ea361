"""Approvals from the console: list and show read the approval store; approve and reject go through the app's
HTTP routes as a signed-in person — the same check of who decides as the approval page gets.

Who you are: on the local stack the console signs in like a browser (`/.auth/login/local?user=...`, whose session
cookie it keeps); against Azure it sends a bearer token that App Service authentication accepts for the approver
app registration (`--token` or GENAIOPS_APPROVER_TOKEN)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from shared.approvals.models import ApprovalRequest
from shared.approvals.store import ApprovalStore

LOCAL_SIGN_IN = "/.auth/login/local"
TIMEOUT_SECONDS = 30


class ApprovalError(RuntimeError):
    """The app refused the decision; the message says why (its HTTP status and error)."""


def open_requests(store: ApprovalStore) -> list[ApprovalRequest]:
    """Requests still waiting for a decision, oldest first."""
    now = datetime.now(UTC)
    found = [store.get(marker.approval_id).request for marker in store.open_markers()]
    return sorted((request for request in found if request.is_open(now)), key=lambda request: request.requested_at)


def signed_in_session(base_url: str, *, user: str | None, token: str | None) -> requests.Session:
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
        return session
    if not user:
        raise ApprovalError("say who decides: --as NAME on the local stack, or --token (GENAIOPS_APPROVER_TOKEN) "
                            "for App Service authentication in Azure")
    answer = session.get(f"{base_url}{LOCAL_SIGN_IN}", params={"user": user, "redirect": "/"},
                         allow_redirects=False, timeout=TIMEOUT_SECONDS)
    if answer.status_code != 302 or not session.cookies:
        raise ApprovalError(f"local sign-in as {user} failed: HTTP {answer.status_code} {answer.text[:200]}")
    return session


def decide(session: requests.Session, base_url: str, approval_id: str, decision: str, comment: str) -> dict[str, Any]:
    answer = session.post(f"{base_url}/api/approvals/{approval_id}/{decision}", json={"comment": comment},
                          timeout=TIMEOUT_SECONDS)
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code != 200:
        raise ApprovalError(f"HTTP {answer.status_code}: {body.get('error') or answer.text[:300]}")
    return body
