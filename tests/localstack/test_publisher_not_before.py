"""An event's not_before() reaches the bus as the scheduled enqueue time: published through ServiceBusPublisher
to the real local broker, it is delivered only then. No storage involved."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from azure.servicebus import ServiceBusClient

from localstack.servicebus_broker import Broker
from shared.adapters.servicebus import ServiceBusPublisher, to_servicebus_message
from shared.events.codec import encode
from shared.events.envelope import Event, Payload

pytestmark = pytest.mark.timeout(30)

DELAY = 3.0


class RecheckPayload(Payload):
    not_before: datetime


class RecheckRequested(Event):
    """A test-only event that asks to be looked at again later (not in the catalogue)."""

    type: Literal["test.recheck"] = "test.recheck"
    payload: RecheckPayload


class PlainPayload(Payload):
    note: str


class PlainHappened(Event):
    type: Literal["test.plain"] = "test.plain"
    payload: PlainPayload



def recheck(not_before: datetime, key: str) -> RecheckRequested:
    return RecheckRequested.create({"not_before": not_before}, correlation_id=f"corr-{key}")


def test_encode_carries_not_before_as_the_scheduled_enqueue_time():
    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert encode(recheck(due, "a")).scheduled_enqueue_time_utc == due
    assert encode(recheck(due.replace(tzinfo=None), "b")).scheduled_enqueue_time_utc == due  # naive is UTC
    plain = PlainHappened.create({"note": "now"}, correlation_id="corr-c")
    assert encode(plain).scheduled_enqueue_time_utc is None
    assert to_servicebus_message(encode(plain)).scheduled_enqueue_time_utc is None
    assert to_servicebus_message(encode(recheck(due, "d"))).scheduled_enqueue_time_utc == due


def test_published_event_with_not_before_arrives_only_then(broker: Broker):
    queue = f"nb-{uuid.uuid4().hex[:8]}"
    sent_at = time.time()
    due = datetime.fromtimestamp(sent_at, UTC) + timedelta(seconds=DELAY)
    later = recheck(due, "later")
    now = PlainHappened.create({"note": "at once"}, correlation_id="corr-now")

    publisher = ServiceBusPublisher(ServiceBusClient.from_connection_string(broker.connection_string), queue)
    try:
        publisher.publish([later, now])  # one batch: each message keeps its own schedule
    finally:
        publisher.close()
    assert broker.queue(queue).scheduled_count == 1

    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        [first] = receiver.receive_messages(max_message_count=5, max_wait_time=2)
        receiver.complete_message(first)
        time.sleep(max(0.0, sent_at + 1.0 - time.time()))
        assert receiver.receive_messages(max_message_count=5, max_wait_time=0.5) == []  # at +1 s: not yet
        looked_until = time.time()
        [second] = receiver.receive_messages(max_message_count=5, max_wait_time=DELAY + 5)
        arrived = time.time()
        receiver.complete_message(second)

    assert json.loads(b"".join(first.body))["id"] == now.id
    assert json.loads(b"".join(second.body))["id"] == later.id
    assert second.message_id == later.id
    assert looked_until < due.timestamp() <= arrived
    assert arrived - due.timestamp() < 1.0
    assert broker.queue(queue).message_count == 0
    print(f"\nnot_before event arrived {arrived - due.timestamp():.2f}s after its due time")
