"""HTTP: GET /api/runs/{correlation_id}/events — a run's event journal, for pipelines and dashboards
(function key required: it exposes what the system decided). An id no event could carry, or one without events,
is 404 with a JSON error."""

from __future__ import annotations

import json

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()
MAX_CORRELATION_ID = 128  # as the event envelope allows


@blueprint.route(route="runs/{correlation_id}/events", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def run_events(req: func.HttpRequest) -> func.HttpResponse:
    correlation_id = req.route_params["correlation_id"]
    events = get_application().journal.events_for(correlation_id) if len(correlation_id) <= MAX_CORRELATION_ID else []
    if not events:
        return func.HttpResponse(json.dumps({"error": f"no events for run {correlation_id[:MAX_CORRELATION_ID]!r}"}),
                                 status_code=404, mimetype="application/json")
    return func.HttpResponse(json.dumps([event.model_dump(mode="json") for event in events]),
                             mimetype="application/json")
