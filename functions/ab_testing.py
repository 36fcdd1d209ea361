"""HTTP: user feedback on a deployment's answers, and the A/B report comparing an endpoint's deployments."""

from __future__ import annotations

import json

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()


@blueprint.route(route="feedback/{use_case}/{endpoint}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def submit_feedback(req: func.HttpRequest) -> func.HttpResponse:
    from shared.feedback.service import FeedbackRejected, caller_id

    app = get_application()
    try:
        record = app.feedback.submit(req.route_params["use_case"], req.route_params["endpoint"], req.get_body(),
                                     caller_id(dict(req.headers)))
    except FeedbackRejected as rejected:
        headers = {"Retry-After": str(int(rejected.retry_after or 1))} if rejected.status == 429 else {}
        return func.HttpResponse(json.dumps({"error": str(rejected)}), status_code=rejected.status, headers=headers,
                                 mimetype="application/json")
    return func.HttpResponse(json.dumps({"id": record.id}), status_code=201, mimetype="application/json")


@blueprint.route(route="ab-report/{use_case}/{endpoint}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def ab_report(req: func.HttpRequest) -> func.HttpResponse:
    from shared.deployment.port import DeploymentError
    from shared.feedback.telemetry import TelemetryError
    from shared.services.ab_testing import deployer_of, telemetry_of, write_ab_report

    app = get_application()
    use_case, endpoint = req.route_params["use_case"], req.route_params["endpoint"]
    workspace, flows, environment = app.deps.deployments, app.settings.flows_dir, app.settings.environment
    try:
        report, names = write_ab_report(use_case, endpoint, app.blobs, app.clock,
                                        deployer_of(workspace, flows, use_case, environment),
                                        telemetry_of(workspace, flows, use_case, environment))
    except TelemetryError as problem:  # the log could not be read: not the caller's fault
        return func.HttpResponse(json.dumps({"error": str(problem)}), status_code=503, mimetype="application/json")
    except DeploymentError as problem:
        return func.HttpResponse(json.dumps({"error": str(problem)}), status_code=404, mimetype="application/json")
    if req.params.get("format") == "json":
        return func.HttpResponse(json.dumps({**report.model_dump(mode="json"), "blobs": names}),
                                 mimetype="application/json")
    from shared.feedback.ab_report import render_html

    return func.HttpResponse(render_html(report), mimetype="text/html")
