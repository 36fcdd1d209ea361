"""POST /api/candidates/{use_case} over real HTTP through the local host: production lines the router would have
logged and the users' ratings are seeded in Azurite, and the route writes the badly rated ones, masked, to
datasets-candidates/ — what `genaiops candidates export` writes. A use case of its own (a copy of math_coding), so
no other test's ratings are in its export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localstack.host.keys import read_host_keys
from localstack.llm.scripted import ScriptedLLM
from localstack.serving.production_writer import BlobProductionWriter
from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.clock import SystemClock
from shared.blob_layout import CANDIDATES
from shared.feedback.submissions import Feedback, FeedbackRecord, store_feedback
from shared.monitoring.production_log import ProductionLine
from tests.e2e.conftest import running_stack
from tests.e2e.production import monitored_copy
from tests.feedback_endpoints import Directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
USE_CASE, ENDPOINT = "candidates_math", "candidates-math-local"  # the endpoint: the folder's name, locally
MONITORING = """
monitoring:
  schedule: "0 0 0 1 1 *"
  mask_fields: [phone]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[LocalStack]:
    flows = monitored_copy(tmp_path_factory.mktemp("flows"), USE_CASE, MONITORING)
    with running_stack(tmp_path_factory.mktemp("candidates"), llm, GENAIOPS_FLOWS_DIR=str(flows)) as started:
        yield started


def seed(stack: LocalStack, now: datetime) -> None:
    """Five answers of the endpoint: rated 1, rated 5, thumbs down, not rated, and rated 1 ten days ago."""
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    blobs, writer = AzureBlobStore(service), BlobProductionWriter(service)
    answers = [("wrong", timedelta(hours=2), {"rating": 1, "comment": "that is not 42"}),
               ("right", timedelta(hours=1), {"rating": 5}), ("down", timedelta(hours=3), {"thumbs": "down"}),
               ("unrated", timedelta(hours=4), None), ("long-ago", timedelta(days=10), {"rating": 1})]
    known = Directory.of(USE_CASE, ENDPOINT, {"blue": 100}, live=False)
    for request_id, ago, rating in answers:
        writer.record(ProductionLine(time=now - ago, use_case=USE_CASE, endpoint=ENDPOINT, request_id=request_id,
                                     deployment="blue", status=200, latency_ms=80.0,
                                     inputs={"question": f"What is 6 * 7 ({request_id})?", "phone": "+44 20 7946"},
                                     outputs={"answer": "41"}))
        if rating is not None:
            feedback = Feedback.model_validate({"request_id": request_id, "deployment": "blue", **rating})
            store_feedback(FeedbackRecord(**feedback.model_dump(), id=f"fb-{request_id}", use_case=USE_CASE,
                                          endpoint=ENDPOINT, received_at=now - ago, caller="e2e"),
                           known, blobs, SystemClock())
    writer.flush()


def test_the_route_exports_the_badly_rated_answers(stack: LocalStack) -> None:
    now = datetime.now(UTC)
    seed(stack, now)
    url = f"{stack.base_url}/api/candidates/{USE_CASE}"
    key = {"x-functions-key": read_host_keys(stack.storage_connection_string)["default"]}

    answer = requests.post(url, json={"max_rating": 2}, headers={**key, "Idempotency-Key": "e2e-export-1"},
                           timeout=60)

    assert answer.status_code == 201, answer.text
    export = answer.json()
    assert (export["use_case"], export["endpoint"], export["lines"], export["replayed"]) == (
        USE_CASE, ENDPOINT, 2, False)
    assert export["blob"].startswith(f"{CANDIDATES}/{USE_CASE}/{ENDPOINT}-")
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    data = service.get_blob_client(CANDIDATES, export["blob"].split("/", 1)[1]).download_blob().readall()
    rows = [json.loads(line) for line in data.splitlines()]
    assert [(row["question"], row["phone"]) for row in rows] == [("What is 6 * 7 (down)?", "***"),
                                                                 ("What is 6 * 7 (wrong)?", "***")]
    assert rows[1]["production"] | {"time": None} == {
        "request_id": "wrong", "deployment": "blue", "time": None, "status": 200, "outputs": {"answer": "41"},
        "rating": 1, "thumbs": None, "comment": "that is not 42"}

    # The same request retried: the first answer, nothing exported again.
    again = requests.post(url, json={"max_rating": 2}, headers={**key, "Idempotency-Key": "e2e-export-1"},
                          timeout=60)
    assert (again.status_code, again.json()) == (201, {**export, "replayed": True})
    assert len(list(service.get_container_client(CANDIDATES).list_blobs(f"{USE_CASE}/"))) == 1

    # Nothing in the last half hour: 200, no file.
    since = (now - timedelta(minutes=30)).isoformat()
    empty = requests.post(url, json={"since": since}, headers=key, timeout=60)
    assert empty.status_code == 200, empty.text
    assert (empty.json()["lines"], empty.json()["blob"]) == (0, None)


@pytest.mark.parametrize(("path", "body", "headers", "status", "error"), [
    (USE_CASE, b'{"days": 0}', {}, 400, "days: Input should be greater than 0"),
    (USE_CASE, b"not json", {}, 400, "the export's filters must be a JSON object"),
    (USE_CASE, b'{"max_rating": 2}', {"Idempotency-Key": "e2e-export-2"}, 422, "other filters"),
    ("no_such_use_case", b"", {}, 404, "no use case 'no_such_use_case'"),
    ("..%2F..%2Fetc", b"", {}, 404, "no use case"),
])
def test_refused_requests_say_why(stack: LocalStack, path: str, body: bytes, headers: dict[str, str], status: int,
                                  error: str) -> None:
    key = read_host_keys(stack.storage_connection_string)["default"]
    if status == 422:  # the key taken by other filters first
        requests.post(f"{stack.base_url}/api/candidates/{USE_CASE}", data=b'{"max_rating": 1}', timeout=60,
                      headers={"x-functions-key": key, **headers})
    answer = requests.post(f"{stack.base_url}/api/candidates/{path}", data=body, timeout=60,
                           headers={"x-functions-key": key, "Content-Type": "application/json", **headers})
    assert answer.status_code == status, answer.text
    assert error in answer.json()["error"]


def test_the_route_needs_a_function_key(stack: LocalStack) -> None:
    answer = requests.post(f"{stack.base_url}/api/candidates/{USE_CASE}", json={}, timeout=30)
    assert answer.status_code == 401
