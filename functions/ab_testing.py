"""HTTP: user feedback on a deployment's answers, the A/B report comparing an endpoint's deployments, and the
export of the badly rated answers as a candidate dataset. The use case (and endpoint) in the URL are looked up
before anything is read or written: unknown ones get 404 with a JSON error."""

from __future__ import annotations

import json

import azure.functions as func

from shared.bootstrap import get_application

blueprint = func.Blueprint()


@blueprint.route(route="feedback/{use_case}/{endpoint}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def submit_feedback(req: func.HttpRequest) -> func.HttpResponse:
    from shared.feedback.submissions import FeedbackRejected, caller_id

    try:
        feedback_id = get_application().submit_feedback(req.route_params["use_case"], req.route_params["endpoint"],
                                                        req.get_body(), caller_id(dict(req.headers)),
                                                        req.headers.get("idempotency-key"))
    except FeedbackRejected as rejected:
        headers = {"Retry-After": str(rejected.retry_after)} if rejected.retry_after else {}
        return _error(str(rejected), rejected.status, headers)
    return func.HttpResponse(json.dumps({"id": feedback_id}), status_code=201, mimetype="application/json")


@blueprint.route(route="ab-report/{use_case}/{endpoint}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def ab_report(req: func.HttpRequest) -> func.HttpResponse:
    from shared.deployment.port import DeploymentError, EndpointNotFound
    from shared.services.ab_testing import write_ab_report

    app = get_application()
    try:
        known = app.endpoints.find(req.route_params["use_case"], req.route_params["endpoint"])
        report, names = write_ab_report(known, app.blobs, app.clock)
    except EndpointNotFound as unknown:
        return _error(str(unknown), 404)
    except DeploymentError as problem:  # the log cannot be read, no telemetry configured: not the caller's fault
        return _error(str(problem), 503)
    if req.params.get("format") == "json":
        return func.HttpResponse(json.dumps({**report.model_dump(mode="json"), "blobs": names}),
                                 mimetype="application/json")
    from shared.feedback.ab_report import render_html

    return func.HttpResponse(render_html(report), mimetype="text/html")


@blueprint.route(route="candidates/{use_case}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def export_candidates(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.candidate_export import ExportRejected

    try:
        export = get_application().export_candidates(req.route_params["use_case"], req.get_body(),
                                                     req.headers.get("idempotency-key"))
    except ExportRejected as rejected:
        return _error(str(rejected), rejected.status)
    # 201: a dataset was written; 200: nothing matched, so nothing was (the body says so: lines 0, blob null).
    return func.HttpResponse(export.model_dump_json(), status_code=201 if export.blob else 200,
                             mimetype="application/json")


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"error": message}), status_code=status, headers=headers or {},
                             mimetype="application/json")
