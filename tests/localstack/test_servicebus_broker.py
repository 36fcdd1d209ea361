"""The local Service Bus broker, exercised through the real azure-servicebus SDK over AMQP on 127.0.0.1."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError
from proton import Message

from localstack.servicebus_broker import Broker, connection_string, journal, running_broker
from localstack.servicebus_broker.codec import split_batch
from localstack.servicebus_broker.entities import Namespace
from localstack.servicebus_broker.management import RequestNodes

pytestmark = pytest.mark.timeout(30)

REPO_ROOT = Path(__file__).resolve().parents[2]
SLACK_SECONDS = 1.5  # SDK link set-up and polling overhead on top of max_wait_time



@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"



def send(sb_client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    # keep_alive=None: no idle keep-alive thread, whose 1 s sleep loop would make every close slower.
    with sb_client.get_queue_sender(queue, keep_alive=None) as sender:
        sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


def bodies(messages: list[ServiceBusReceivedMessage]) -> list[str]:
    return [str(message) for message in messages]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def repo_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


# -- sending ---------------------------------------------------------------------------------
def test_single_message_keeps_properties_gets_broker_annotations_and_complete_removes_it(
    broker: Broker, client: ServiceBusClient, queue: str
):
    sent = ServiceBusMessage(
        "payload-1",
        message_id="id-1",
        correlation_id="corr-1",
        subject="subject-1",
        content_type="application/json",
        application_properties={"kind": "run", "attempt": 3},
        time_to_live=datetime.timedelta(seconds=90),
    )
    send(client, queue, sent)
    before = datetime.datetime.now(datetime.UTC)

    with client.get_queue_receiver(queue) as receiver:
        [received] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        locked_until, lock_token = received.locked_until_utc, received.lock_token  # both None once settled
        receiver.complete_message(received)
        assert broker.queue(queue).message_count == 0

    assert str(received) == "payload-1"
    assert (received.message_id, received.correlation_id) == ("id-1", "corr-1")
    assert (received.subject, received.content_type) == ("subject-1", "application/json")
    assert received.application_properties == {b"kind": b"run", b"attempt": 3}
    assert received.time_to_live == datetime.timedelta(seconds=90)
    assert received.sequence_number == 1
    assert received.delivery_count == 0
    assert received.enqueued_time_utc is not None
    assert received.enqueued_time_utc <= before + datetime.timedelta(seconds=1)
    assert locked_until is not None
    assert locked_until > received.enqueued_time_utc
    assert isinstance(lock_token, uuid.UUID)


def test_batch_is_split_and_receive_returns_promptly(broker: Broker, client: ServiceBusClient, queue: str):
    with client.get_queue_sender(queue, keep_alive=None) as sender:
        batch = sender.create_message_batch()
        for index in range(3):
            batch.add_message(ServiceBusMessage(f"batched-{index}", application_properties={"i": index}))
        sender.send_messages(batch)
    assert broker.queue(queue).message_count == 3

    with client.get_queue_receiver(queue) as receiver:
        started = time.monotonic()
        received = receiver.receive_messages(max_message_count=10, max_wait_time=20)
        assert time.monotonic() - started < 2  # messages were there: no waiting for max_wait_time
        for message in received:
            receiver.complete_message(message)

    assert bodies(received) == ["batched-0", "batched-1", "batched-2"]
    assert [message.sequence_number for message in received] == [1, 2, 3]
    assert [message.application_properties[b"i"] for message in received] == [0, 1, 2]


# -- receiving -------------------------------------------------------------------------------
def test_empty_queue_returns_nothing_within_max_wait_time(client: ServiceBusClient, queue: str):
    with client.get_queue_receiver(queue) as receiver:
        started = time.monotonic()
        assert receiver.receive_messages(max_message_count=5, max_wait_time=1) == []
        assert time.monotonic() - started < 1 + SLACK_SECONDS


def test_two_concurrent_receivers_get_distinct_messages(broker: Broker, client: ServiceBusClient, queue: str):
    send(client, queue, *(ServiceBusMessage(f"m{i}") for i in range(10)))
    results: dict[int, list[int]] = {}
    start = threading.Barrier(2)

    def consume(slot: int) -> None:
        with client.get_queue_receiver(queue) as receiver:
            start.wait()
            received = receiver.receive_messages(max_message_count=5, max_wait_time=5)
            results[slot] = [message.sequence_number for message in received]
            for message in received:
                receiver.complete_message(message)

    workers = [threading.Thread(target=consume, args=(slot,)) for slot in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)

    assert results[0]
    assert results[1]
    assert not set(results[0]) & set(results[1])
    assert len(results[0]) + len(results[1]) == 10
    assert wait_for(lambda: broker.queue(queue).message_count == 0)


def test_receive_and_delete_removes_messages_on_delivery(
    broker: Broker, client: ServiceBusClient, queue: str
):
    send(client, queue, ServiceBusMessage("a"), ServiceBusMessage("b"))
    mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
    with client.get_queue_receiver(queue, receive_mode=mode) as receiver:
        received = receiver.receive_messages(max_message_count=2, max_wait_time=5)
        assert broker.queue(queue).message_count == 0
    assert bodies(received) == ["a", "b"]


# -- settlement ------------------------------------------------------------------------------
def test_locked_message_is_hidden_until_abandoned_then_redelivered_with_count(
    client: ServiceBusClient, queue: str
):
    send(client, queue, ServiceBusMessage("retry-me"))
    with client.get_queue_receiver(queue) as first, client.get_queue_receiver(queue) as second:
        [message] = first.receive_messages(max_message_count=1, max_wait_time=5)
        assert second.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        first.abandon_message(message)
        [again] = second.receive_messages(max_message_count=1, max_wait_time=5)
        second.complete_message(again)
    assert str(again) == "retry-me"
    assert (message.delivery_count, again.delivery_count) == (0, 1)
    assert again.sequence_number == message.sequence_number


def test_dead_letter_moves_message_with_reason_and_description(
    broker: Broker, client: ServiceBusClient, queue: str
):
    send(client, queue, ServiceBusMessage("poison", application_properties={"kept": "yes"}))
    with client.get_queue_receiver(queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(message, reason="BadInput", error_description="field x missing")
    assert broker.queue(queue).message_count == 0

    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead_letters:
        [peeked] = dead_letters.peek_messages(max_message_count=5)
        [dead] = dead_letters.receive_messages(max_message_count=1, max_wait_time=5)
        dead_letters.complete_message(dead)

    assert str(dead) == "poison"
    assert (dead.dead_letter_reason, dead.dead_letter_error_description) == ("BadInput", "field x missing")
    assert dead.application_properties[b"kept"] == b"yes"
    assert dead.sequence_number == message.sequence_number
    assert peeked.dead_letter_reason == "BadInput"


def test_max_delivery_count_dead_letters_with_azure_reason(queue: str):
    with (
        running_broker(port=0, max_delivery_count=2) as strict,
        ServiceBusClient.from_connection_string(strict.connection_string) as strict_client,
    ):
        send(strict_client, queue, ServiceBusMessage("flaky"))
        with strict_client.get_queue_receiver(queue) as receiver:
            for _ in range(2):
                [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                receiver.abandon_message(message)
            assert strict.queue(queue).message_count == 0
        dead_letter_queue = strict_client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        with dead_letter_queue as dead_letters:
            [dead] = dead_letters.receive_messages(max_message_count=1, max_wait_time=5)
            dead_letters.complete_message(dead)
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.dead_letter_error_description == "Message could not be consumed after 2 delivery attempts."


def test_defer_and_deferred_receive_are_refused_with_a_clear_error(
    broker: Broker, client: ServiceBusClient, queue: str
):
    send(client, queue, ServiceBusMessage("later"))
    with client.get_queue_receiver(queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        with pytest.raises(ServiceBusError, match="not supported"):
            receiver.defer_message(message)
        # The SDK closes its link after the error, which hands the message back (count + 1).
        [again] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(again)
        with pytest.raises(ServiceBusError, match="not supported"):
            receiver.receive_deferred_messages([message.sequence_number])
    assert again.delivery_count == 1
    assert broker.queue(queue).message_count == 0


# -- locks -----------------------------------------------------------------------------------
def test_expired_lock_redelivers_and_settling_raises_lock_lost(queue: str):
    with (
        running_broker(port=0, lock_duration=1) as short_locks,
        ServiceBusClient.from_connection_string(short_locks.connection_string) as sb_client,
    ):
        send(sb_client, queue, ServiceBusMessage("slow"))
        with sb_client.get_queue_receiver(queue) as receiver:
            [first] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            time.sleep(1.3)
            with pytest.raises(MessageLockLostError):  # the SDK sees locked_until has passed
                receiver.complete_message(first)
            [second] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert second.delivery_count == 1

            # Simulate clock skew: the client still believes the lock is valid, so the broker's
            # own answer (a rejected outcome with com.microsoft:message-lock-lost) is what raises.
            time.sleep(1.3)
            second._expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(second)
            [third] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            receiver.complete_message(third)
    assert third.delivery_count == 2


def test_renew_lock_and_auto_lock_renewer_keep_the_lock(queue: str):
    with (
        running_broker(port=0, lock_duration=1) as short_locks,
        ServiceBusClient.from_connection_string(short_locks.connection_string) as sb_client,
    ):
        send(sb_client, queue, ServiceBusMessage("long job"))
        renewer = AutoLockRenewer()
        with sb_client.get_queue_receiver(queue) as receiver:
            [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            first_lock = message.locked_until_utc
            time.sleep(0.2)
            assert receiver.renew_message_lock(message) > first_lock
            renewer.register(receiver, message, max_lock_renewal_duration=10)
            time.sleep(3)  # longer than the 2 s lock: only renewals keep it
            receiver.complete_message(message)
        renewer.close()
        assert short_locks.queue(queue).message_count == 0


def test_closing_a_receiver_returns_its_unsettled_messages(
    broker: Broker, client: ServiceBusClient, queue: str
):
    send(client, queue, ServiceBusMessage("unfinished"))
    with client.get_queue_receiver(queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
    assert wait_for(lambda: broker.queue(queue).available_count == 1)
    with client.get_queue_receiver(queue) as receiver:
        [again] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(again)
    assert again.sequence_number == message.sequence_number
    assert again.delivery_count == 1


def test_dropped_connection_returns_its_unsettled_messages(
    broker: Broker, client: ServiceBusClient, queue: str
):
    send(client, queue, ServiceBusMessage("orphan"))
    script = (
        "import sys, time\n"
        "from azure.servicebus import ServiceBusClient\n"
        "client = ServiceBusClient.from_connection_string(sys.argv[1])\n"
        "receiver = client.get_queue_receiver(sys.argv[2])\n"
        "[message] = receiver.receive_messages(max_message_count=1, max_wait_time=10)\n"
        "print(message.sequence_number, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, broker.connection_string, queue],
        stdout=subprocess.PIPE,
        text=True,
        env=repo_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "1"
        assert broker.queue(queue).locked_count == 1
    finally:
        child.kill()  # no detach, no close: the socket just goes away
        child.wait(10)
    assert wait_for(lambda: broker.queue(queue).available_count == 1)
    with client.get_queue_receiver(queue) as receiver:
        [again] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(again)
    assert again.delivery_count == 1


# -- management ------------------------------------------------------------------------------
def test_peek_shows_messages_without_locking_them(broker: Broker, client: ServiceBusClient, queue: str):
    send(client, queue, *(ServiceBusMessage(f"p{i}") for i in range(3)))
    with client.get_queue_receiver(queue) as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        assert bodies(peeked) == ["p0", "p1", "p2"]
        assert [message.sequence_number for message in peeked] == [1, 2, 3]
        assert all(message.enqueued_time_utc is not None for message in peeked)
        received = receiver.receive_messages(max_message_count=3, max_wait_time=5)
        for message in received:
            receiver.complete_message(message)
        assert receiver.peek_messages(max_message_count=10, sequence_number=1) == []
    assert bodies(received) == ["p0", "p1", "p2"]


def test_cbs_put_token_is_answered_with_status_200():
    nodes = RequestNodes(Namespace(lock_duration=30, max_delivery_count=10))
    request = Message(
        id=uuid.uuid4(),
        body="SharedAccessSignature sr=...&sig=...",
        properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": "sb://x/q"},
    )
    reply = nodes.handle("$cbs", request).reply
    assert reply.application_properties()["status-code"] == 200
    assert reply.application_properties()["status-description"] == "OK"


def test_unknown_management_operation_gets_an_error_status():
    nodes = RequestNodes(Namespace(lock_duration=30, max_delivery_count=10))
    request = Message(id=uuid.uuid4(), body={}, properties={"operation": "com.microsoft:receive-by-sequence-number"})
    reply = nodes.handle("q/$management", request).reply
    assert reply.status == 501
    assert reply.condition == "amqp:not-implemented"


def test_batch_detection_leaves_plain_binary_bodies_alone():
    plain = Message(body=b"not a batch")
    plain.inferred = True  # a data section, like an SDK bytes body
    payload = bytes(plain.encode())
    assert split_batch(payload) == [payload]


# -- logging ---------------------------------------------------------------------------------
def test_logs_connections_and_dead_letters_without_bodies_or_keys(
    broker: Broker, client: ServiceBusClient, queue: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="localstack.servicebus_broker")
    send(client, queue, ServiceBusMessage("top-secret-body"))
    with client.get_queue_receiver(queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(message, reason="Invalid", error_description="bad")

    def broker_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("localstack.servicebus_broker")]

    assert wait_for(lambda: sum("connection closed" in r.getMessage() for r in broker_lines()) >= 2)
    info = [r.getMessage() for r in broker_lines() if r.levelno >= logging.INFO]
    assert sum("connection opened" in line for line in info) >= 2
    assert any("dead-lettered" in line and "Invalid" in line for line in info)
    everything = "\n".join(r.getMessage() for r in broker_lines())
    assert "top-secret-body" not in everything
    assert "local-dev-key" not in everything
    assert "SharedAccessSignature" not in everything


# -- process and persistence ------------------------------------------------------------------
def test_cli_exits_at_once_when_the_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "localstack.servicebus_broker", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            env=repo_env(),
            check=False,
        )
    assert result.returncode != 0
    assert time.monotonic() - started < 10
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_serves_the_sdk_and_stops_on_sigterm(queue: str):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "localstack.servicebus_broker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--queues",
        queue,
        "--max-delivery-count",
        "10",
        "--lock-duration",
        "30",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=repo_env()
    )
    try:
        assert process.stdout is not None
        printed = process.stdout.readline()
        assert f"Endpoint=sb://127.0.0.1:{port};" in printed
        with ServiceBusClient.from_connection_string(connection_string("127.0.0.1", port)) as sb_client:
            send(sb_client, queue, ServiceBusMessage("via-cli"))
            with sb_client.get_queue_receiver(
                queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as rx:
                assert bodies(rx.receive_messages(max_message_count=1, max_wait_time=5)) == ["via-cli"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "connection opened" in stderr
    assert "local-dev-key" not in stderr


def test_data_dir_keeps_messages_across_restarts(tmp_path: Path, queue: str):
    with (
        running_broker(port=0, data_dir=str(tmp_path)) as first,
        ServiceBusClient.from_connection_string(first.connection_string) as sb_client,
    ):
        send(sb_client, queue, *(ServiceBusMessage(f"keep-{i}") for i in range(3)))
        with sb_client.get_queue_receiver(queue) as receiver:
            [one, two] = receiver.receive_messages(max_message_count=2, max_wait_time=5)
            receiver.complete_message(one)
            receiver.dead_letter_message(two, reason="Kept", error_description="in the DLQ")

    with (
        running_broker(port=0, data_dir=str(tmp_path)) as second,
        ServiceBusClient.from_connection_string(second.connection_string) as sb_client,
    ):
        assert second.queue(queue).next_sequence_number == 4  # numbering continues after a restart
        [dead] = second.queue(f"{queue}/$DeadLetterQueue").messages()
        with sb_client.get_queue_receiver(queue) as receiver:
            [remaining] = receiver.receive_messages(max_message_count=2, max_wait_time=5)
            receiver.complete_message(remaining)

    assert (str(remaining), remaining.sequence_number) == ("keep-2", 3)
    assert dead.sequence_number == 2
    assert b"Kept" in dead.payload


def test_journal_compacts_while_running_and_replays_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(journal, "COMPACT_AFTER_RECORDS", 10)
    log = journal.FileJournal(tmp_path)
    namespace = Namespace(lock_duration=30, max_delivery_count=10, journal=log)
    log.load(namespace)
    queue = namespace.queue("jobs")
    payload = bytes(Message(body="x").encode())
    for _ in range(30):
        queue.enqueue(payload)
    for _ in range(28):
        lock = queue.lock_next("owner")
        assert lock is not None
        queue.complete(lock.token)
    log.close()
    assert len(log.path.read_text().splitlines()) < 30  # compacted at least once, not 88 lines

    replayed = Namespace(lock_duration=30, max_delivery_count=10)
    journal.FileJournal(tmp_path).load(replayed)
    assert [message.sequence_number for message in replayed.queue("jobs").messages()] == [29, 30]
    assert replayed.queue("jobs").next_sequence_number == 31
