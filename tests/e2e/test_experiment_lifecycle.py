"""Uploading a dataset on the local stack runs the experiment of every use case that uses it: blob trigger ->
dataset.uploaded -> intake -> experiment.requested -> real promptflow runs of every variant combination ->
evaluation -> reports in Azurite -> experiment.completed / evaluation.completed in the run's journal."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import requests
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobServiceClient

from localstack.host.app_service_auth import local_session_token
from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack
from shared.events import DeploymentTrafficRequested, GatePassed
from shared.events.codec import encode
from shared.services.intake import dataset_uploaded_event
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ENDPOINT = "math-coding-local"
LIFECYCLE: dict[str, str] = {}  # what the first test deployed, for the A/B test that follows it in this module
DATA = Path(__file__).resolve().parents[2] / "flows" / "math_coding" / "data" / "math_test.jsonl"


def journal(stack: LocalStack, http: requests.Session, correlation_id: str) -> list[dict]:
    key = read_host_keys(stack.storage_connection_string)["default"]
    response = http.get(f"{stack.base_url}/api/runs/{correlation_id}/events", headers={"x-functions-key": key},
                        timeout=10)
    return response.json() if response.status_code == 200 else []


def test_upload_runs_the_experiment_and_writes_reports(stack: LocalStack, storage: BlobServiceClient,
                                                       http: requests.Session) -> None:
    content = DATA.read_bytes()
    etag = storage.get_blob_client("datasets", "math_coding/math_test.jsonl").upload_blob(
        content, overwrite=True)["etag"]
    upload = dataset_uploaded_event("datasets", "math_coding/math_test.jsonl", len(content), etag)
    assert upload is not None

    def outcome() -> dict | None:
        events = journal(stack, http, upload.correlation_id)
        return next((e for e in events if e["type"] in ("evaluation.completed", "experiment.failed")), None)

    final = wait_for(outcome, timeout=240, interval=1, what="the experiment's outcome in the journal")
    assert final["type"] == "evaluation.completed", final
    types = [e["type"] for e in journal(stack, http, upload.correlation_id)]
    assert types[0] == "dataset.uploaded"
    assert {"data.registered", "experiment.requested", "experiment.completed"} <= set(types)

    runs = final["payload"]["runs"]
    assert len(runs) == 4  # 2 x 2 variant combinations on the uploaded dataset only
    assert {run["dataset"] for run in runs} == {"math_test"}
    assert all(run["metrics"]["accuracy"] == 1.0 for run in runs)  # the scripted model always calculates right

    prefix = final["payload"]["report_uri"].removeprefix("reports/").rsplit("/", 1)[0]
    results_csv = storage.get_blob_client("reports", f"{prefix}/results.csv").download_blob().readall().decode()
    rows = list(csv.DictReader(io.StringIO(results_csv)))
    assert len(rows) == 4 * len(content.decode().splitlines())
    answers = [json.loads(line)["answer"] for line in content.decode().splitlines()]
    for row in rows:  # the expected answer the evaluator was given, from its column mapping
        assert row["expected.math_accuracy.groundtruth"] == answers[int(row["line_number"])]
    experiment = json.loads(storage.get_blob_client("reports", f"{prefix}/experiment.json").download_blob().readall())
    assert experiment["decisions"]["request"]["data_sources"] == {
        "data/math_test.jsonl": "blob://datasets/math_coding/math_test.jsonl"}

    # The gate passes (locally it only guards against regressions) and the chosen flow is registered.
    registered = wait_for(lambda: next((e for e in journal(stack, http, upload.correlation_id)
                                        if e["type"] == "flow.registered"), None), timeout=60, what="flow.registered")
    assert "gate.passed" in [e["type"] for e in journal(stack, http, upload.correlation_id)]
    assert registered["payload"]["name"] == "math_coding"
    assert registered["payload"]["variant"] == {"extract_answer": "variant_0", "solve": "variant_0"}
    decision = json.loads(storage.get_blob_client("reports", f"{prefix}/decision.json").download_blob().readall())
    assert decision["gate"]["passed"] is True
    page = storage.get_blob_client("reports", f"{prefix}/summary.html").download_blob().readall().decode()
    for section in ('id="gate"', 'id="lines"', 'id="variant-solve-variant_1"'):  # gate table, lines, prompts
        assert section in page

    # An approver says yes over real HTTP (function key + App Service authentication identity)...
    requested = wait_for(lambda: next((e for e in journal(stack, http, upload.correlation_id)
                                       if e["type"] == "approval.requested"), None), timeout=60,
                         what="approval.requested")
    assert requested["payload"]["flow_version"] == registered["payload"]["version"]
    approval_id = requested["payload"]["approval_id"]
    headers = {"x-functions-key": read_host_keys(stack.storage_connection_string)["default"],
               "Authorization": f"Bearer {local_session_token(stack.storage_connection_string, 'alice@contoso.com')}"}
    answer = http.post(f"{stack.base_url}/api/approvals/{approval_id}/approve", json={"comment": "ship it"},
                       headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert http.post(f"{stack.base_url}/api/approvals/{approval_id}/reject", json={"comment": "too late"},
                     headers=headers, timeout=10).status_code == 409  # a decision is final

    # ... and the deployment is requested for exactly the approved version.
    deployment = wait_for(lambda: next((e for e in journal(stack, http, upload.correlation_id)
                                        if e["type"] == "deployment.requested"), None), timeout=60,
                          what="deployment.requested")
    assert deployment["payload"]["flow_version"] == registered["payload"]["version"]
    assert deployment["payload"]["approval_id"] == approval_id

    # Deployed locally beside nothing (the first version takes all traffic), smoke-tested, verified.
    verified = wait_for(lambda: next((e for e in journal(stack, http, upload.correlation_id)
                                      if e["type"] in ("deployment.verified", "deployment.rolled_back")), None),
                        timeout=180, what="the deployment's outcome")
    assert verified["type"] == "deployment.verified", verified
    assert verified["payload"]["traffic"] == {verified["payload"]["deployment"]: 100}
    LIFECYCLE.update(experiment_id=final["payload"]["experiment_id"], deployment=verified["payload"]["deployment"])
    assert "smoke.passed" in [e["type"] for e in journal(stack, http, upload.correlation_id)]


def test_a_regression_against_the_deployed_version_fails_the_gate(stack: LocalStack, storage: BlobServiceClient,
                                                                  http: requests.Session) -> None:
    # The version serving now was approved with a perfect score: anything less than 0.95 is a regression locally.
    baseline = storage.get_blob_client("deployments", "math_coding/production.json")
    baseline.upload_blob(json.dumps({"flow_version": "7", "metrics": {"math_accuracy.accuracy": 1.0}}),
                         overwrite=True)
    try:
        wrong = b"".join(json.dumps({"question": f"What is {i} + 1?", "answer": "-1"}).encode() + b"\n"
                         for i in range(5))  # every answer in this upload is labelled wrongly: accuracy 0
        etag = storage.get_blob_client("datasets", "math_coding/math_test.jsonl").upload_blob(
            wrong, overwrite=True)["etag"]
        upload = dataset_uploaded_event("datasets", "math_coding/math_test.jsonl", len(wrong), etag)
        assert upload is not None
        verdict = wait_for(lambda: next((e for e in journal(stack, http, upload.correlation_id)
                                         if e["type"] in ("gate.passed", "gate.failed")), None), timeout=120,
                           what="the gate's verdict")
        assert verdict["type"] == "gate.failed"
        assert "deployed version 7" in verdict["payload"]["reasons"][0]
        assert "flow.registered" not in [e["type"] for e in journal(stack, http, upload.correlation_id)]
    finally:
        baseline.delete_blob()


def approve_when_asked(stack: LocalStack, http: requests.Session, correlation_id: str) -> None:
    requested = wait_for(lambda: next((e for e in journal(stack, http, correlation_id)
                                       if e["type"] == "approval.requested"), None), timeout=60,
                         what="approval.requested")
    headers = {"x-functions-key": read_host_keys(stack.storage_connection_string)["default"],
               "Authorization": f"Bearer {local_session_token(stack.storage_connection_string, 'alice@contoso.com')}"}
    answer = http.post(f"{stack.base_url}/api/approvals/{requested['payload']['approval_id']}/approve",
                       json={"comment": "e2e"}, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def ship(stack: LocalStack, http: requests.Session, correlation_id: str, variant: dict[str, str],
         hyperparameters: dict[str, object]) -> dict:
    """A passing gate for another combination of the first experiment: registration, approval, deployment."""
    gate = GatePassed.create({
        "use_case": "math_coding", "experiment_id": LIFECYCLE["experiment_id"], "environment": "local",
        "primary_metric": "accuracy", "best_variant": variant, "best_hyperparameters": hyperparameters,
        "best_value": 1.0, "best_metrics": {"math_accuracy.accuracy": 1.0}, "checks": [],
        "report_uri": "reports/math_coding/summary.html"}, correlation_id=correlation_id)
    message = encode(gate)
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client, \
            client.get_queue_sender("genaiops-events") as sender:
        sender.send_messages(ServiceBusMessage(message.body, message_id=message.message_id))
    approve_when_asked(stack, http, correlation_id)
    return wait_for(lambda: next((e for e in journal(stack, http, correlation_id)
                                  if e["type"] in ("deployment.verified", "deployment.rolled_back")), None),
                    timeout=180, what=f"the deployment of {variant} {hyperparameters}")


@pytest.mark.timeout(600)
def test_second_version_takes_its_share_and_a_broken_one_is_rolled_back(
        stack: LocalStack, storage: BlobServiceClient, http: requests.Session) -> None:
    assert LIFECYCLE, "runs after the lifecycle test, which deploys the first version"
    first = LIFECYCLE["deployment"]
    second = ship(stack, http, "ab-second", {"solve": "variant_1", "extract_answer": "variant_0"}, {})
    assert second["type"] == "deployment.verified"
    new = second["payload"]["deployment"]
    assert second["payload"]["traffic"] == {first: 70, new: 30}  # the prior keeps its configured share

    # Real traffic through the local A/B router.
    state = json.loads(storage.get_blob_client("deployments", f"math_coding/{ENDPOINT}.json").download_blob().readall())
    router = f"http://127.0.0.1:{state['router_port']}/score"
    served: list[tuple[str, str]] = []
    for i in range(240):
        answer = http.post(router, json={"question": f"What is {i} + 1?"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["answer"] == str(i + 1)
        served.append((answer.headers["x-served-by"], answer.headers["x-request-id"]))
    share = sum(1 for deployment, _ in served if deployment == first) / len(served)
    assert 0.62 <= share <= 0.78, share  # 70/30 within a few points

    # Users rate the answers; the A/B report compares the two deployments.
    key = read_host_keys(stack.storage_connection_string)["default"]
    for deployment, request_id in served[:60]:
        rating = 5 if deployment == first else 2
        answer = http.post(f"{stack.base_url}/api/feedback/math_coding/{ENDPOINT}", headers={"x-functions-key": key},
                           json={"request_id": request_id, "deployment": deployment, "rating": rating}, timeout=10)
        assert answer.status_code in (201, 429), answer.text
    report = http.get(f"{stack.base_url}/api/ab-report/math_coding/{ENDPOINT}", params={"format": "json"},
                      headers={"x-functions-key": key}, timeout=30)
    assert report.status_code == 200, report.text
    stats = {d["deployment"]: d for d in report.json()["deployments"]}
    assert stats[first]["requests"] + stats[new]["requests"] >= 240
    html = storage.get_blob_client("reports", f"math_coding/deployments/{ENDPOINT}/ab_report.html")
    assert html.exists()

    # A deliberately broken version: it starts, but its temperature is out of the API's range, so every request
    # is refused by the model.
    broken = ship(stack, http, "ab-broken", {"solve": "variant_0", "extract_answer": "variant_0"},
                  {"solve.temperature": 5.0})
    assert broken["type"] == "deployment.rolled_back"
    assert broken["payload"]["traffic"] == {first: 70, new: 30, broken["payload"]["deployment"]: 0}
    assert "smoke.failed" in [e["type"] for e in journal(stack, http, "ab-broken")]

    # Promote the winner through an event.
    promote = DeploymentTrafficRequested.create({"use_case": "math_coding", "endpoint": ENDPOINT,
                                                 "deployment": first, "action": "promote"}, correlation_id="ab-promote")
    message = encode(promote)
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client, \
            client.get_queue_sender("genaiops-events") as sender:
        sender.send_messages(ServiceBusMessage(message.body, message_id=message.message_id))
    changed = wait_for(lambda: next((e for e in journal(stack, http, "ab-promote")
                                     if e["type"] == "deployment.traffic_changed"), None), timeout=60,
                       what="deployment.traffic_changed")
    assert changed["payload"]["traffic"][first] == 100
