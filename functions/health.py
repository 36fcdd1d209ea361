"""HTTP: GET /api/health — liveness plus storage reachability and the last timer tick."""

from __future__ import annotations

import json

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()


@blueprint.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = get_application().health()
    status = 200 if report["status"] == "ok" else 503
    return func.HttpResponse(json.dumps(report), status_code=status, mimetype="application/json")
