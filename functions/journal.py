"""HTTP: GET /api/runs/{correlation_id}/events — a run's event journal, for pipelines and dashboards
(function key required: it exposes what the system decided)."""

from __future__ import annotations

import json

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()


@blueprint.route(route="runs/{correlation_id}/events", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def run_events(req: func.HttpRequest) -> func.HttpResponse:
    events = get_application().journal.events_for(req.route_params["correlation_id"])
    body = json.dumps([event.model_dump(mode="json") for event in events])
    return func.HttpResponse(body, status_code=200 if events else 404, mimetype="application/json")
