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
