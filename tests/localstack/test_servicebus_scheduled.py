"""Scheduled messages in the local broker, through the real azure-servicebus SDK over AMQP on 127.0.0.1."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import MessageNotFoundError

from localstack.servicebus_broker import Broker, running_broker

pytestmark = pytest.mark.timeout(30)

DELAY = 3.0  # seconds a message is scheduled ahead
EARLY = 1.0  # when we look for it before it is due



@pytest.fixture
def queue() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"



def receive_all(sb_client: ServiceBusClient, queue: str, max_wait_time: float) -> list[ServiceBusReceivedMessage]:
    with sb_client.get_queue_receiver(queue) as receiver:
        messages = receiver.receive_messages(max_message_count=10, max_wait_time=max_wait_time)
        for message in messages:
            receiver.complete_message(message)
    return messages


def receive_one_timed(sb_client: ServiceBusClient, queue: str) -> tuple[ServiceBusReceivedMessage, float]:
    """The first message and the wall-clock time it arrived (the receiver waits on one open link)."""
    with sb_client.get_queue_receiver(queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=DELAY + 5)
        arrived = time.time()
        receiver.complete_message(message)
    return message, arrived


def sleep_until(epoch: float) -> None:
    time.sleep(max(0.0, epoch - time.time()))


def test_message_with_scheduled_enqueue_time_is_hidden_until_due(
    broker: Broker, client: ServiceBusClient, queue: str
):
    sent_at = time.time()
    due = datetime.fromtimestamp(sent_at, UTC) + timedelta(seconds=DELAY)
    with client.get_queue_sender(queue, keep_alive=None) as sender:
        sender.send_messages(ServiceBusMessage("later", scheduled_enqueue_time_utc=due))
    assert (broker.queue(queue).message_count, broker.queue(queue).scheduled_count) == (0, 1)

    with client.get_queue_receiver(queue) as receiver:  # one open link: timings are not set-up costs
        assert receiver.peek_messages(max_message_count=5) == []  # scheduled messages count toward nothing
        sleep_until(sent_at + EARLY)
        assert receiver.receive_messages(max_message_count=5, max_wait_time=0.5) == []  # not at +1..1.5 s
        looked_until = time.time()
        [message] = receiver.receive_messages(max_message_count=5, max_wait_time=DELAY + 5)
        arrived = time.time()
        receiver.complete_message(message)

    assert looked_until < due.timestamp()
    assert str(message) == "later"
    assert arrived >= due.timestamp()
    assert arrived - due.timestamp() < 1.0  # delivered promptly once due (timer every 0.1 s)
    assert message.scheduled_enqueue_time_utc is not None
    assert abs((message.scheduled_enqueue_time_utc - due).total_seconds()) < 0.01
    assert message.enqueued_time_utc is not None
    assert message.enqueued_time_utc >= due - timedelta(milliseconds=1)  # enqueued when it became active
    assert broker.queue(queue).scheduled_count == 0


def test_schedule_messages_returns_sequence_numbers_and_delivers_on_time(
    broker: Broker, client: ServiceBusClient, queue: str
):
    with client.get_queue_sender(queue, keep_alive=None) as sender:
        sender.send_messages(ServiceBusMessage("now"))
        due = datetime.now(UTC) + timedelta(seconds=DELAY)
        numbers = sender.schedule_messages([ServiceBusMessage("a"), ServiceBusMessage("b")], due)
        [single] = sender.schedule_messages(ServiceBusMessage("c"), due)

    assert list(numbers) == [2, 3]
    assert single == 4
    assert broker.queue(queue).scheduled_count == 3
    assert [str(m) for m in receive_all(client, queue, max_wait_time=0.5)] == ["now"]

    with client.get_queue_receiver(queue) as receiver:
        received: list[ServiceBusReceivedMessage] = []
        deadline = time.monotonic() + DELAY + 5
        while len(received) < 3 and time.monotonic() < deadline:
            batch = receiver.receive_messages(max_message_count=3, max_wait_time=DELAY + 5)
            for message in batch:
                receiver.complete_message(message)
            received += batch
        arrived = time.time()

    assert sorted((str(m), m.sequence_number) for m in received) == [("a", 2), ("b", 3), ("c", 4)]
    assert arrived >= due.timestamp()
    assert broker.queue(queue).message_count == 0


def test_cancel_scheduled_messages_prevents_delivery(broker: Broker, client: ServiceBusClient, queue: str):
    due = datetime.now(UTC) + timedelta(seconds=2)
    with client.get_queue_sender(queue, keep_alive=None) as sender:
        keep, drop_one, drop_two = sender.schedule_messages(
            [ServiceBusMessage("keep"), ServiceBusMessage("drop-1"), ServiceBusMessage("drop-2")], due
        )
        sender.cancel_scheduled_messages([drop_one, drop_two])
        assert broker.queue(queue).scheduled_count == 1

    sleep_until(due.timestamp() + 0.5)
    received = receive_all(client, queue, max_wait_time=1)
    assert [(str(m), m.sequence_number) for m in received] == [("keep", keep)]
    assert broker.queue(queue).scheduled_count == 0


def test_cancelling_an_unknown_sequence_number_fails_and_cancels_nothing(broker: Broker, queue: str):
    # retry_total=0: the SDK retries MessageNotFoundError from management calls, as against Azure.
    with (
        ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as sb_client,
        sb_client.get_queue_sender(queue, keep_alive=None) as sender,
    ):
        [number] = sender.schedule_messages(ServiceBusMessage("x"), datetime.now(UTC) + timedelta(minutes=5))
        with pytest.raises(MessageNotFoundError, match="Missing sequence numbers: 999"):
            sender.cancel_scheduled_messages([number, 999])
        assert broker.queue(queue).scheduled_count == 1  # all or nothing
        sender.cancel_scheduled_messages(number)
        assert broker.queue(queue).scheduled_count == 0


def test_scheduled_time_in_the_past_delivers_at_once(client: ServiceBusClient, queue: str):
    with client.get_queue_sender(queue, keep_alive=None) as sender:
        sender.send_messages(
            ServiceBusMessage("overdue", scheduled_enqueue_time_utc=datetime.now(UTC) - timedelta(minutes=1))
        )
    assert [str(m) for m in receive_all(client, queue, max_wait_time=2)] == ["overdue"]


def test_scheduled_messages_survive_a_restart(tmp_path: Path, queue: str):
    with (
        running_broker(port=0, data_dir=str(tmp_path)) as first,
        ServiceBusClient.from_connection_string(first.connection_string) as sb_client,
    ):
        due = datetime.now(UTC) + timedelta(seconds=DELAY)
        with sb_client.get_queue_sender(queue, keep_alive=None) as sender:
            [kept, cancelled] = sender.schedule_messages([ServiceBusMessage("kept"), ServiceBusMessage("x")], due)
            sender.cancel_scheduled_messages(cancelled)

    with (
        running_broker(port=0, data_dir=str(tmp_path)) as second,
        ServiceBusClient.from_connection_string(second.connection_string) as sb_client,
    ):
        restored = second.queue(queue)
        assert (restored.scheduled_count, restored.message_count) == (1, 0)  # still scheduled, not active
        assert restored.next_sequence_number == 3
        assert receive_all(sb_client, queue, max_wait_time=0.5) == []
        message, arrived = receive_one_timed(sb_client, queue)

    assert (str(message), message.sequence_number) == ("kept", kept)
    assert arrived >= due.timestamp()
