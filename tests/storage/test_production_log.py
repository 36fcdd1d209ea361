"""Production logs in blob storage (Azurite): the local router's writer and reader, and the Azure ML data
collector's layout read through azure-storage-blob — the real SDK against a real emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.serving.ab_router import ABRouter
from localstack.serving.production_writer import BlobProductionWriter
from localstack.stack import LocalStack
from shared.blob_layout import CANDIDATES, PRODUCTION
from shared.feedback.submissions import Feedback, FeedbackRecord, store_feedback
from shared.feedback.telemetry import TelemetryError
from shared.monitoring.azureml_production_log import AzureMLProductionLog
from shared.monitoring.candidates import export_candidates
from shared.monitoring.production_log import BlobProductionLog, ProductionLine
from shared.ports import BlobStore
from tests.conftest import ManualClock
from tests.feedback_endpoints import Directory

pytestmark = pytest.mark.azurite
T0 = datetime(2026, 3, 4, 10, 59, 58, tzinfo=UTC)


@pytest.fixture
def service(storage_stack: LocalStack) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_stack.storage_connection_string)


def line(endpoint: str, seconds: float, request_id: str, **fields: object) -> ProductionLine:
    return ProductionLine.model_validate({"time": T0 + timedelta(seconds=seconds), "use_case": "math_coding",
                                          "endpoint": endpoint, "request_id": request_id, "deployment": "blue",
                                          "status": 200, "latency_ms": 12.5, **fields})


def test_lines_land_in_hourly_append_blobs_and_read_back_by_window(service: BlobServiceClient, blob_store: BlobStore,
                                                                   unique: str) -> None:
    endpoint = f"ep-{unique}"
    writer = BlobProductionWriter(service, max_blocks=2)
    for index in range(5):  # 10:59:58 .. 11:00:02: two hours
        writer.record(line(endpoint, index, f"r{index}"))
        writer.flush()  # one block per flush: the 10 o'clock blob rolls to a second part after two
    names = sorted(info.name for info in blob_store.list(PRODUCTION, f"math_coding/{endpoint}/"))

    assert names == [f"math_coding/{endpoint}/2026/03/04/10-{writer.writer}-0001.jsonl",
                     f"math_coding/{endpoint}/2026/03/04/11-{writer.writer}-0001.jsonl",
                     f"math_coding/{endpoint}/2026/03/04/11-{writer.writer}-0002.jsonl"]
    reader = BlobProductionLog(blob_store)
    assert [r.request_id for r in reader.lines("math_coding", endpoint, T0, T0 + timedelta(seconds=4))] == \
        ["r0", "r1", "r2", "r3", "r4"]
    assert [r.request_id for r in reader.lines("math_coding", endpoint, T0 + timedelta(seconds=2),
                                               T0 + timedelta(seconds=3))] == ["r2", "r3"]


def test_a_line_appended_twice_is_read_once_and_an_unreachable_storage_costs_bounded_memory(
        service: BlobServiceClient, blob_store: BlobStore, unique: str) -> None:
    endpoint = f"ep-{unique}"
    writer = BlobProductionWriter(service)
    for _ in range(2):  # the same append retried
        writer.record(line(endpoint, 1, "r1"))
        writer.flush()
    assert [r.request_id for r in BlobProductionLog(blob_store).lines("math_coding", endpoint, T0, T0 + timedelta(
        seconds=5))] == ["r1"]

    nowhere = BlobServiceClient("http://127.0.0.1:9/devstoreaccount1", credential=None, retry_total=0)
    stuck = BlobProductionWriter(nowhere, max_pending=3)
    for index in range(5):
        stuck.record(line(endpoint, index, f"lost-{index}"))
        stuck.flush()  # fails: the lines wait for the next flush, at most three of them
    assert stuck.dropped == 2
    assert [queued.request_id for queued in stuck._pending] == ["lost-2", "lost-3", "lost-4"]


def test_the_router_logs_inputs_and_outputs_with_secrets_masked(service: BlobServiceClient, blob_store: BlobStore,
                                                                unique: str) -> None:
    endpoint = f"ep-{unique}"
    writer = BlobProductionWriter(service)
    router = ABRouter(endpoint, None, use_case="math_coding", production=writer, mask_fields=["Email"]).start()
    try:
        router.table.register("blue", "http://127.0.0.1:9")  # nothing listens there: a 502 the log must show
        router.table.set_traffic({"blue": 100})
        status, _, _ = router.score(json.dumps({"question": "1+1", "api_key": "sk-" + "x" * 30,
                                                                "user": {"email": "ann@example.com"}}).encode(),
                                          {}, "req-1")
    finally:
        router.stop()
    writer.close()
    now = datetime.now(UTC)
    [logged] = BlobProductionLog(blob_store).lines("math_coding", endpoint, now - timedelta(minutes=1), now)

    assert (status, logged.status, logged.request_id, logged.deployment) == (502, 502, "req-1", "blue")
    assert logged.failed
    assert logged.latency_ms is not None
    assert "unreachable" in (logged.error or "")
    assert logged.inputs == {"question": "1+1", "api_key": "***", "user": {"email": "***"}}
    assert "error" in logged.outputs


def collector_event(kind: str, request_id: str, moment: datetime, data: object) -> bytes:
    return json.dumps({"specversion": "1.0", "id": f"{kind}-{request_id}", "type": f"azureml.inference.{kind}",
                       "time": moment.isoformat().replace("+00:00", "Z"), "datacontenttype": "application/json",
                       "data": data, "correlationid": request_id}).encode() + b"\n"


def test_the_azure_reader_joins_the_data_collectors_inputs_and_outputs(service: BlobServiceClient,
                                                                       unique: str) -> None:
    container = service.get_container_client(f"azureml-blobstore-{unique}")
    container.create_container()
    hour = "2026/03/04/11"
    moment = datetime(2026, 3, 4, 11, 15, tzinfo=UTC)
    for deployment, request_id in (("blue", "a"), ("green", "b")):
        base = f"modelDataCollector/math-ep/{deployment}"
        container.upload_blob(f"{base}/model_inputs/{hour}/x.jsonl",
                              collector_event("model_inputs", request_id, moment, [{"question": "2*3"}]))
        if deployment == "blue":  # green's answer was never collected
            container.upload_blob(f"{base}/model_outputs/{hour}/y.jsonl",
                                  collector_event("model_outputs", request_id, moment, [{"answer": "6"}]))
    # Two requests sent close together, batched by the collector into one event per collection.
    batched = f"modelDataCollector/math-ep/blue/{{}}/{hour}/z.jsonl"
    container.upload_blob(batched.format("model_inputs"), collector_event(
        "model_inputs", "c", moment + timedelta(minutes=1), [{"question": "1+1"}, {"question": "2+2"}]))
    container.upload_blob(batched.format("model_outputs"), collector_event(
        "model_outputs", "c", moment + timedelta(minutes=1), [{"answer": "2"}, {"answer": "4"}]))
    container.upload_blob("modelDataCollector/math-ep/blue/model_inputs/2026/03/04/09/old.jsonl",
                          collector_event("model_inputs", "old", moment - timedelta(hours=2), []))
    container.upload_blob("modelDataCollector/math-ep/blue/app_traces/2026/03/04/11/t.jsonl", b"{}\n")

    lines = AzureMLProductionLog(container).lines("math_coding", "math-ep", moment - timedelta(minutes=30),
                                                  moment + timedelta(minutes=1))

    # One line per collected row, the flow's inputs and outputs as objects (what an evaluator's mapping reads).
    assert [(r.deployment, r.request_id, r.status, r.inputs, r.outputs) for r in lines] == [
        ("blue", "a", 200, {"question": "2*3"}, {"answer": "6"}),
        ("green", "b", None, {"question": "2*3"}, None),
        ("blue", "c#0", 200, {"question": "1+1"}, {"answer": "2"}),
        ("blue", "c#1", 200, {"question": "2+2"}, {"answer": "4"})]
    assert AzureMLProductionLog(service.get_container_client("missing-container")).lines(
        "math_coding", "math-ep", moment - timedelta(hours=1), moment) == []
    unreachable = BlobServiceClient("http://127.0.0.1:9/devstoreaccount1", credential=None, retry_total=0)
    with pytest.raises(TelemetryError, match="cannot be read: ServiceRequestError"):
        AzureMLProductionLog(unreachable.get_container_client("c")).lines("math_coding", "math-ep", moment, moment)


def test_badly_rated_lines_are_exported_as_a_candidate_dataset(service: BlobServiceClient, blob_store: BlobStore,
                                                               unique: str) -> None:
    endpoint = f"ep-{unique}"
    writer = BlobProductionWriter(service)
    for index, deployment in enumerate(("blue", "green", "green", "blue")):
        writer.record(line(endpoint, index, f"r{index}", deployment=deployment,
                           inputs={"question": f"What is {index} + 1?", "phone": "+44 20 7946 0000"},
                           outputs={"answer": str(index)}))
    writer.flush()
    clock = ManualClock(T0)
    known = Directory.of("math_coding", endpoint, {"blue": 50, "green": 50}, live=False)
    for number, body in enumerate(({"request_id": "r0", "deployment": "blue", "rating": 5},
                                   {"request_id": "r1", "deployment": "green", "rating": 1, "comment": "wrong"},
                                   {"request_id": "r2", "deployment": "green", "thumbs": "down"},
                                   {"request_id": "r3", "deployment": "blue", "rating": 2},
                                   # changed their mind: the latest counts
                                   {"request_id": "r3", "deployment": "blue", "rating": 4})):
        record = FeedbackRecord(**Feedback.model_validate(body).model_dump(), id=f"fb-{number}",
                                use_case="math_coding", endpoint=endpoint, received_at=clock.now(), caller="c")
        store_feedback(record, known, blob_store, clock)
        clock.advance(seconds=1)

    name, rows = export_candidates(blob_store, BlobProductionLog(blob_store), "math_coding", endpoint,
                                   T0, T0 + timedelta(minutes=1), mask_fields=["phone"])

    assert (name, rows) == (f"math_coding/{endpoint}-20260304T110058Z.jsonl", 2)
    exported = [json.loads(row) for row in blob_store.read(CANDIDATES, name)[0].splitlines()]
    assert [(row["question"], row["phone"]) for row in exported] == [("What is 1 + 1?", "***"),
                                                                     ("What is 2 + 1?", "***")]
    assert exported[0]["production"] | {"time": None} == {
        "request_id": "r1", "deployment": "green", "time": None, "status": 200, "outputs": {"answer": "1"},
        "rating": 1, "thumbs": None, "comment": "wrong"}
    assert export_candidates(blob_store, BlobProductionLog(blob_store), "math_coding", endpoint,
                             T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == (None, 0)
