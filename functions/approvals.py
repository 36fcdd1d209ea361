"""HTTP + timer for human approval: azure.functions in and out, the rest in shared/approvals/web.py. No function
key (the notification's link opens in a browser): a person signed in through App Service authentication instead."""

from __future__ import annotations

import azure.functions as func

from shared.approvals import web
from shared.bootstrap import get_application

blueprint = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS  # App Service authentication and the checks in web.py guard these routes


@blueprint.route(route="approvals/{approval_id}", methods=["GET"], auth_level=ANONYMOUS)
def approval(req: func.HttpRequest) -> func.HttpResponse:
    return _response(web.show(_request(req), get_application()))


@blueprint.route(route="approvals/{approval_id}/approve", methods=["POST"], auth_level=ANONYMOUS)
def approve(req: func.HttpRequest) -> func.HttpResponse:
    return _response(web.decide(_request(req), "granted", get_application()))


@blueprint.route(route="approvals/{approval_id}/reject", methods=["POST"], auth_level=ANONYMOUS)
def reject(req: func.HttpRequest) -> func.HttpResponse:
    return _response(web.decide(_request(req), "rejected", get_application()))


@blueprint.timer_trigger(arg_name="timer", schedule="%APPROVAL_EXPIRY_SCHEDULE%", run_on_startup=False)
def expire_approvals(timer: func.TimerRequest) -> None:
    get_application().expire_approvals()


def _request(req: func.HttpRequest) -> web.WebRequest:
    return web.WebRequest(url=req.url, approval_id=req.route_params["approval_id"], params=dict(req.params),
                          headers={name.lower(): value for name, value in req.headers.items()}, body=req.get_body())


def _response(answer: web.WebResponse) -> func.HttpResponse:
    return func.HttpResponse(answer.body or None, status_code=answer.status, mimetype=answer.mimetype,
                             headers=answer.headers)
