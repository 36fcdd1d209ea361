"""The approval routes' HTTP, without a web framework: a parsed request in, a response out (functions/approvals.py
only translates both to and from azure.functions).

    GET  /api/approvals/{approval_id}           JSON, or the approval page (Accept: text/html, ?format=html)
    POST /api/approvals/{approval_id}/approve   JSON or form body: {"comment": "..."}
    POST /api/approvals/{approval_id}/reject

Errors map from shared.approvals' exceptions: 400 bad body, 401 no/forged identity (a browser asking for the page
is sent to sign in instead), 403 not an approver or cross-site, 404 unknown id, 409 already decided, 410 expired,
503 no trusted identity source (App Service authentication off: then the X-MS-CLIENT-PRINCIPAL* headers are
whatever the caller sent, so every approval route refuses — a function-key holder never poses as an approver).
A decision is a DecideApproval command handled through the message bus: the very same form posted again is
answered from its record, not decided twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.approvals import identity
from shared.approvals.models import (
    MAX_COMMENT,
    ApprovalError,
    ApprovalRequest,
    CrossSiteRequest,
    Decision,
    IdentitySourceMissing,
    InvalidDecision,
    NotAuthenticated,
)
from shared.approvals.page import render_approval_page, wants_html
from shared.approvals.store import check_approval_id
from shared.events.commands import DecideApproval
from shared.ports import BlobStore, Clock
from shared.services.approvals import ApprovalSettings, decision_event, get_approval
from shared.settings import Settings

log = logging.getLogger("genaiops.approvals")


class ApprovalApp(Protocol):
    """What the routes need from the application (shared/application.py)."""

    settings: Settings
    blobs: BlobStore
    clock: Clock
    approvals: ApprovalSettings

    def decide_approval(self, command: DecideApproval) -> ApprovalRequest: ...


@dataclass(frozen=True)
class WebRequest:
    url: str
    approval_id: str
    headers: Mapping[str, str]  # names in lower case
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: str = ""
    mimetype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    comment: str = Field(default="", max_length=MAX_COMMENT)


def show(req: WebRequest, app: ApprovalApp) -> WebResponse:
    html = _wants_html(req)
    source = app.approvals.identity_source()
    try:
        viewer = source.principal(req.headers)  # before the id is looked up: nothing leaks to strangers
        request = get_approval(req.approval_id, app.blobs)
    except NotAuthenticated as problem:
        if html:
            return WebResponse(302, mimetype="text/plain", headers={
                "Location": source.sign_in_url(return_path(req)), "Cache-Control": "no-store"})
        return _error(req, app, problem, html=False)
    except ApprovalError as problem:
        return _error(req, app, problem, html=False)
    if html:
        return _page(req, app, request, viewer=viewer)
    return _json({**request.model_dump(mode="json"), "open": request.is_open(app.clock.now())})


def decide(req: WebRequest, decision: Decision, app: ApprovalApp) -> WebResponse:
    html = _wants_html(req)  # a browser posting the form without JavaScript gets the page back
    try:
        source = app.approvals.identity_source()
        source.require()
        origins = identity.request_origins(req.url, req.headers, app.settings.public_base_url)
        if identity.is_cross_site(req.headers, origins):
            raise CrossSiteRequest("decisions must be posted from the approval page itself")
        comment = comment_of(req)
        approver = source.principal(req.headers)
        check_approval_id(req.approval_id)  # before the command, whose model would refuse it with a 500
        request = app.decide_approval(DecideApproval(approval_id=req.approval_id, decision=decision,
                                                     approver=approver.name, provider=approver.provider,
                                                     comment=comment))
    except ApprovalError as problem:
        return _error(req, app, problem, html=html)
    if html:
        return _page(req, app, request)
    event = decision_event(request)  # rebuilt from the record: the event the decision published
    return _json({"approval": request.model_dump(mode="json"), "event": {"id": event.id, "type": event.type}})


def comment_of(req: WebRequest) -> str:
    """The optional comment of a JSON or form body; InvalidDecision (400) for anything else."""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = req.body or b""
    try:
        if not raw.strip():
            body: Any = {}
        elif content_type == "application/x-www-form-urlencoded":
            body = {name: values[-1] for name, values in parse_qs(raw.decode()).items()}
        else:
            body = json.loads(raw)
        return DecisionBody.model_validate(body).comment
    except (ValueError, RecursionError, ValidationError) as bad:  # JSON, UTF-8, huge numbers; [[[... too deep
        message = f"the comment must be text of at most {MAX_COMMENT} characters" if isinstance(
            bad, ValidationError) else "the body must be JSON or a form with an optional 'comment'"
        raise InvalidDecision(message) from None


def page_path(url: str) -> str:
    """The GET page's own path, also when the form fallback posted to .../approve or .../reject."""
    path = urlsplit(url).path.rstrip("/")
    head, _, last = path.rpartition("/")
    return head if last in ("approve", "reject") else path


def return_path(req: WebRequest) -> str:
    """Where sign-in comes back to: the page itself, without any function key the link may have carried."""
    query = [(name, value) for name, value in parse_qsl(urlsplit(req.url).query) if name != "code"]
    if not any(name == "format" for name, _ in query):
        query.append(("format", "html"))
    return f"{page_path(req.url)}?{urlencode(query)}"


def _wants_html(req: WebRequest) -> bool:
    return wants_html(req.headers.get("accept"), req.params.get("format"))


def _page(req: WebRequest, app: ApprovalApp, request: ApprovalRequest, error: ApprovalError | None = None,
          status: int = 200, viewer: identity.Principal | None = None) -> WebResponse:
    page = render_approval_page(request, now=app.clock.now(), page_path=page_path(req.url),
                                viewer=viewer or app.approvals.identity_source().viewer(req.headers), error=error)
    return WebResponse(status, page.body, "text/html", dict(page.headers))


def _error(req: WebRequest, app: ApprovalApp, problem: ApprovalError, *, html: bool) -> WebResponse:
    if isinstance(problem, IdentitySourceMissing):
        log.error("approval route refused: %s", problem.message)
    if html and problem.request is not None:
        return _page(req, app, problem.request, problem, problem.status)
    body: dict[str, Any] = {"error": problem.code, "message": problem.message}
    if isinstance(problem, NotAuthenticated):
        body["sign_in"] = app.approvals.identity_source().sign_in_url(return_path(req))  # relative to this origin
    if problem.request is not None and problem.status in (409, 410):
        body["approval"] = problem.request.model_dump(mode="json")  # lets the page show what was decided
    return _json(body, problem.status)


def _json(body: dict[str, Any], status: int = 200) -> WebResponse:
    return WebResponse(status, json.dumps(body), headers={"Cache-Control": "no-store"})
