"""One real event through the whole app: blob upload -> blob trigger -> dataset.uploaded on the bus ->
Service Bus trigger -> handler -> JSON record in blob storage; plus dead-lettering, exactly-once handling
under redelivery, HTTP auth levels and the timer — all on Azurite, the AMQP broker and the local host."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from datetime import datetime, timedelta

import pytest
import requests
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.storage.blob import BlobServiceClient

from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack
from shared.blob_layout import AUDIT, REPORTS, SYSTEM, dead_letter_prefix, intake_report_name
from shared.events import DatasetUploaded
from shared.events.codec import encode
from shared.services.intake import dataset_uploaded_event
from tests.e2e.conftest import E2E_MAX_DELIVERY_COUNT, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
QUEUE = "genaiops-events"


def read_json(storage: BlobServiceClient, container: str, name: str) -> dict:
    return json.loads(storage.get_blob_client(container, name).download_blob().readall())


def read_dead_letter(storage: BlobServiceClient, message_id: str) -> dict:
    """The latest dead-letter record of a message id (records are named by the id's hash and sequence number)."""
    names = sorted(blob.name for blob in storage.get_container_client(SYSTEM).list_blobs(
        name_starts_with=dead_letter_prefix(QUEUE, message_id)))
    return read_json(storage, SYSTEM, names[-1])


def send_raw(stack: LocalStack, message: ServiceBusMessage) -> None:
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client, \
            client.get_queue_sender(QUEUE) as sender:
        sender.send_messages(message)


def test_dataset_upload_travels_through_blob_trigger_bus_and_handler(stack: LocalStack,
                                                                     storage: BlobServiceClient) -> None:
    content = b"".join(json.dumps({"question": f"{i}+{i}", "answer": str(2 * i)}).encode() + b"\n"
                       for i in range(25))
    storage.get_blob_client("datasets", "math_coding/backbone_sums.jsonl").upload_blob(content, overwrite=True)

    report = wait_for(lambda: read_json(storage, REPORTS, intake_report_name("math_coding/backbone_sums.jsonl")),
                      what="the intake report written by the Service Bus-triggered handler")
    assert report["status"] == "valid"
    assert report["rows"] == 25
    assert report["content_hash"] == "sha256:" + hashlib.sha256(content).hexdigest()

    # The event went through the journal, so a pipeline can follow it by correlation id.
    journal = list(storage.get_container_client(AUDIT).list_blobs())
    assert any("-dataset.uploaded-" in blob.name for blob in journal)


def test_same_blob_version_fires_once_and_a_new_version_fires_again(stack: LocalStack,
                                                                    storage: BlobServiceClient) -> None:
    blob = storage.get_blob_client("datasets", "backbone/versions.jsonl")
    blob.upload_blob(b'{"v": 1}\n', overwrite=True)
    first = wait_for(lambda: read_json(storage, REPORTS, intake_report_name("backbone/versions.jsonl")),
                     what="first version's report")
    blob.upload_blob(b'{"v": 2}\n{"v": 3}\n', overwrite=True)
    second = wait_for(lambda: (r := read_json(storage, REPORTS, intake_report_name("backbone/versions.jsonl")))
                      ["rows"] == 2 and r, what="second version's report")
    assert first["etag"] != second["etag"]
    receipts = [b.name for b in storage.get_container_client("azure-webjobs-hosts").list_blobs(
        name_starts_with="blobreceipts/") if b.name.endswith("backbone/versions.jsonl")]
    assert len(receipts) == 2  # one receipt per blob version


def test_malformed_message_is_dead_lettered_with_its_reason(stack: LocalStack, storage: BlobServiceClient) -> None:
    send_raw(stack, ServiceBusMessage(b'{"type": "experiment.exploded", "payload": {"api_key": "s3cr3t"}}',
                                      message_id="malformed-1", correlation_id="corr-malformed-1",
                                      subject="experiment.exploded", content_type="application/json",
                                      application_properties={"event_type": "experiment.exploded"}))
    letter = wait_for(lambda: read_dead_letter(storage, "malformed-1"),
                      what="the dead-letter record")
    assert letter["reason"] == "UnknownEventType"
    assert "experiment.exploded" in letter["description"]
    assert letter["delivery_count"] == 1  # recorded on the first delivery, not retried
    assert "s3cr3t" not in json.dumps(letter)
    # The broker's properties are kept: what the message said it was, and which run it belonged to.
    assert (letter["message_id"], letter["correlation_id"], letter["subject"], letter["content_type"]) == (
        "malformed-1", "corr-malformed-1", "experiment.exploded", "application/json")
    assert letter["properties"]["event_type"] == "experiment.exploded"
    assert isinstance(letter["sequence_number"], int)


def test_redelivered_event_is_processed_once(stack: LocalStack, storage: BlobServiceClient) -> None:
    content = b'{"x": 1}\n'
    blob = storage.get_blob_client("datasets", "manual/once.jsonl")
    etag = blob.upload_blob(content, overwrite=True)["etag"]
    report_name = intake_report_name("manual/once.jsonl")
    # The blob trigger publishes this upload's event; wait until it has been handled.
    wait_for(lambda: read_json(storage, REPORTS, report_name), what="first handling")
    first = storage.get_blob_client(REPORTS, report_name).get_blob_properties()

    # The very same event (same id) is delivered again, twice — as after a lost settlement or a retrying sender.
    original = dataset_uploaded_event("datasets", "manual/once.jsonl", len(content), etag)
    assert original is not None
    message = encode(original)
    for _ in range(2):
        send_raw(stack, ServiceBusMessage(message.body, message_id=message.message_id))

    host_log = stack.log_file("host")
    wait_for(lambda: host_log.read_text().count(f"{original.id} was already handled") >= 2,
             what="both duplicates to be recognised")
    again = storage.get_blob_client(REPORTS, report_name).get_blob_properties()
    assert again.etag == first.etag  # the handler did not run again


def test_failing_handler_is_retried_then_dead_lettered_by_the_broker(stack: LocalStack) -> None:
    # A well-formed event whose dataset blob does not exist: the handler raises, the host abandons, the broker
    # redelivers, and after MaxDeliveryCount moves it to the dead-letter queue with the reason.
    event = DatasetUploaded.create({"container": "datasets", "blob_name": "ghost/missing.jsonl", "dataset": "missing",
                                    "size_bytes": 1, "etag": "0x0"}, correlation_id="ghost")
    message = encode(event)
    send_raw(stack, ServiceBusMessage(message.body, message_id=message.message_id))

    def dead_lettered() -> list:
        with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client, \
                client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            return [m for m in receiver.peek_messages(max_message_count=50) if m.message_id == event.id]

    letters = wait_for(dead_lettered, timeout=60, what="broker dead-lettering after max delivery count")
    assert letters[0].dead_letter_reason == "MaxDeliveryCountExceeded"
    assert letters[0].delivery_count >= E2E_MAX_DELIVERY_COUNT


def test_http_routes_honour_auth_levels(stack: LocalStack, http: requests.Session) -> None:
    health = http.get(f"{stack.base_url}/api/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["storage"] == "ok"

    route = f"{stack.base_url}/api/runs/ghost/events"
    assert http.get(route, timeout=10).status_code == 401
    assert http.get(route, headers={"x-functions-key": "wrong"}, timeout=10).status_code == 401
    key = read_host_keys(stack.storage_connection_string)["default"]
    wait_for(lambda: http.get(route, headers={"x-functions-key": key}, timeout=10).status_code == 200,
             what="the ghost run's journal")
    events = http.get(route, params={"code": key}, timeout=10).json()
    assert events[0]["type"] == "dataset.uploaded"
    assert http.get(f"{stack.base_url}/api/nowhere", timeout=10).status_code == 404


def test_timer_trigger_fires_on_its_schedule(stack: LocalStack, http: requests.Session) -> None:
    ticks = {wait_for(lambda: http.get(f"{stack.base_url}/api/health", timeout=10).json()["timer"],
                      what="a first heartbeat")}
    wait_for(lambda: ticks.add(http.get(f"{stack.base_url}/api/health", timeout=10).json()["timer"]) or len(ticks) > 1,
             what="a second heartbeat, 2 s later")
    # `*/2 * * * * *`: the host fires on even seconds, each scheduled time once (a slow run may skip one, as in Azure).
    fired = [datetime.fromisoformat(at) for at in
             re.findall(r"Functions\.heartbeat' \(Reason='Timer fired at ([^']+)'", stack.log_file("host").read_text())]
    assert len(fired) >= 2
    assert all(at.second % 2 == 0 and at.microsecond == 0 for at in fired)
    gaps = [(later - earlier) / timedelta(seconds=2) for earlier, later in itertools.pairwise(fired)]
    assert all(gap >= 1 and gap == int(gap) for gap in gaps), gaps


def test_blob_receipts_survive_a_host_restart(stack: LocalStack, storage: BlobServiceClient,
                                              http: requests.Session) -> None:
    host_log = stack.log_file("host")
    storage.get_blob_client("datasets", "backbone/restart.jsonl").upload_blob(b'{"a": 1}\n', overwrite=True)
    wait_for(lambda: read_json(storage, REPORTS, intake_report_name("backbone/restart.jsonl")), what="first handling")
    fired_before = host_log.read_text().count("New blob detected: backbone/")

    stack.stop("host")
    stack.start_host()  # a new process: only the receipts in storage can tell it what already fired
    storage.get_blob_client("datasets", "backbone/after-restart.jsonl").upload_blob(b'{"b": 2}\n', overwrite=True)
    wait_for(lambda: read_json(storage, REPORTS, intake_report_name("backbone/after-restart.jsonl")),
             what="the restarted host to handle a new upload")
    assert host_log.read_text().count("New blob detected: backbone/") == fired_before + 1
