"""HTTP + timer for human approval. The routes need no function key (auth level anonymous, so the link in the
notification opens in a browser): they need a person signed in through App Service authentication instead.

    GET  /api/approvals/{approval_id}           JSON, or the approval page (Accept: text/html, ?format=html)
    POST /api/approvals/{approval_id}/approve   JSON or form body: {"comment": "..."}
    POST /api/approvals/{approval_id}/reject
    timer %APPROVAL_EXPIRY_SCHEDULE%            pending requests past their expiry -> approval.expired

Errors map from shared.approvals' exceptions: 400 bad body, 401 no/forged identity (a browser asking for the page
is sent to sign in instead), 403 not an approver or cross-site, 404 unknown id, 409 already decided, 410 expired,
503 no trusted identity source (App Service authentication off: then the X-MS-CLIENT-PRINCIPAL* headers are
whatever the caller sent, so every approval route refuses — a function-key holder never poses as an approver).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import azure.functions as func
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
from shared.approvals.service import decide, expire_due, get_approval
from shared.bootstrap import get_application

log = logging.getLogger("genaiops.approvals")
blueprint = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS  # App Service authentication and the checks below guard these routes


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    comment: str = Field(default="", max_length=MAX_COMMENT)


@blueprint.route(route="approvals/{approval_id}", methods=["GET"], auth_level=ANONYMOUS)
def approval(req: func.HttpRequest) -> func.HttpResponse:
    app = get_application()
    html = _wants_html(req)
    try:
        viewer = _source().principal(req.headers)  # before the id is looked up: nothing leaks to strangers
        request = get_approval(req.route_params["approval_id"], app.blobs)
    except NotAuthenticated as problem:
        if html:
            return _sign_in_redirect(req)
        return _error(problem, html=False, req=req)
    except ApprovalError as problem:
        return _error(problem, html=False, req=req)
    if html:
        return _page(req, request, viewer=viewer)
    return _json({**request.model_dump(mode="json"), "open": request.is_open(app.clock.now())})


@blueprint.route(route="approvals/{approval_id}/approve", methods=["POST"], auth_level=ANONYMOUS)
def approve(req: func.HttpRequest) -> func.HttpResponse:
    return _decide(req, "granted")


@blueprint.route(route="approvals/{approval_id}/reject", methods=["POST"], auth_level=ANONYMOUS)
def reject(req: func.HttpRequest) -> func.HttpResponse:
    return _decide(req, "rejected")


@blueprint.timer_trigger(arg_name="timer", schedule="%APPROVAL_EXPIRY_SCHEDULE%", run_on_startup=False)
def expire_approvals(timer: func.TimerRequest) -> None:
    app = get_application()
    expire_due(app.clock.now(), blobs=app.blobs, publisher=app.publisher)


def _decide(req: func.HttpRequest, decision: Decision) -> func.HttpResponse:
    app = get_application()
    html = _wants_html(req)  # a browser posting the form without JavaScript gets the page back
    try:
        source = _source()
        source.require()
        origins = identity.request_origins(req.url, req.headers, app.settings.public_base_url)
        if identity.is_cross_site(req.headers, origins):
            raise CrossSiteRequest("decisions must be posted from the approval page itself")
        comment = _comment(req)
        approver = source.principal(req.headers)
        outcome = decide(req.route_params["approval_id"], decision, approver, comment, app.clock.now(),
                         blobs=app.blobs, publisher=app.publisher)
    except ApprovalError as problem:
        return _error(problem, html=html, req=req)
    if html:
        return _page(req, outcome.request)
    return _json({"approval": outcome.request.model_dump(mode="json"),
                  "event": {"id": outcome.event.id, "type": outcome.event.type}})


def _comment(req: func.HttpRequest) -> str:
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = req.get_body() or b""
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


def _wants_html(req: func.HttpRequest) -> bool:
    return wants_html(req.headers.get("accept"), req.params.get("format"))


def _source() -> identity.IdentitySource:
    """Trusted only when the platform (or the local host emulating it) says App Service authentication is on."""
    return get_application().deps.approvals.identity_source()


def _return_path(req: func.HttpRequest) -> str:
    """Where sign-in comes back to: the page itself, without any function key the link may have carried."""
    query = [(name, value) for name, value in parse_qsl(urlsplit(req.url).query) if name != "code"]
    if not any(name == "format" for name, _ in query):
        query.append(("format", "html"))
    return f"{_page_path(req)}?{urlencode(query)}"


def _sign_in_redirect(req: func.HttpRequest) -> func.HttpResponse:
    """A browser opening the link before signing in: App Service's sign-in, then back to the page."""
    return func.HttpResponse(status_code=302, headers={"Location": _source().sign_in_url(_return_path(req)),
                                                       "Cache-Control": "no-store"})


def _page(req: func.HttpRequest, request: ApprovalRequest, error: ApprovalError | None = None,
          status: int = 200, viewer: identity.Principal | None = None) -> func.HttpResponse:
    page = render_approval_page(request, now=get_application().clock.now(), page_path=_page_path(req),
                                viewer=viewer or _source().viewer(req.headers), error=error)
    return func.HttpResponse(page.body, status_code=status, mimetype="text/html", headers=page.headers)


def _page_path(req: func.HttpRequest) -> str:
    """The GET page's own path, also when the form fallback posted to .../approve or .../reject."""
    path = urlsplit(req.url).path.rstrip("/")
    head, _, last = path.rpartition("/")
    return head if last in ("approve", "reject") else path


def _error(problem: ApprovalError, *, html: bool, req: func.HttpRequest | None = None) -> func.HttpResponse:
    if isinstance(problem, IdentitySourceMissing):
        log.error("approval route refused: %s", problem.message)
    if html and req is not None and problem.request is not None:
        return _page(req, problem.request, problem, problem.status)
    body: dict[str, Any] = {"error": problem.code, "message": problem.message}
    if isinstance(problem, NotAuthenticated) and req is not None:
        body["sign_in"] = _source().sign_in_url(_return_path(req))  # relative to this app's own origin
    if problem.request is not None and problem.status in (409, 410):
        body["approval"] = problem.request.model_dump(mode="json")  # lets the page show what was decided
    return _json(body, problem.status)


def _json(body: dict[str, Any], status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers={"Cache-Control": "no-store"})
