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
from azure.storage.blob import BlobServiceClient

from localstack.host.app_service_auth import local_session_token
from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack
from shared.services.intake import dataset_uploaded_event
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
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
