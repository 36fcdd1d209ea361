"""Service Bus triggers through the real azure-servicebus SDK, against the local broker or Azure.

Peek-lock like the Functions extension: up to maxConcurrentCalls invocations run at once, each slot on its
own — as soon as one finishes, its message is settled and a new message is received for the free slot, so one
slow message (an experiment running for minutes) holds one slot, not all of them. Complete on success, abandon
on exception — the broker counts deliveries and moves a message to the dead-letter queue after the queue's
MaxDeliveryCount. Locks are renewed while a function runs, up to host.json's maxAutoLockRenewalDuration — on the
receiver's thread too: the SDK's AutoLockRenewer renews from its own thread over the receiver's connection, and
with the receiver receiving at the same time the shared AMQP connection broke (seen as lost locks and
redeliveries of messages still being handled).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
)

from localstack.host.invoke import invoke
from localstack.host.loader import FunctionSpec

log = logging.getLogger("localhost.servicebus")

RECEIVE_WAIT_SECONDS = 0.5  # how long one receive waits for messages; bounds how late a finished slot is settled
SLOT_WAIT_SECONDS = 0.5     # with every slot busy, how long to wait for one to finish before checking `stop`
RENEW_MARGIN = timedelta(seconds=5)  # renew a lock this long before it expires (the loop turns every ~0.5 s)

Finished = queue.Queue[tuple[ServiceBusReceivedMessage, bool]]  # (message, succeeded) from the worker threads


def parse_timespan(value: str) -> timedelta:
    hours, minutes, seconds = (float(part) for part in value.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def to_function_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The trigger object exactly as the worker builds it: the library's converter over trigger metadata."""
    properties = {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}

    def text(value: Any) -> Datum | None:
        return None if value is None else Datum(str(value), "string")

    metadata: dict[str, Datum | None] = {
        "MessageId": text(message.message_id),
        "CorrelationId": text(message.correlation_id),
        "ContentType": text(message.content_type),
        "Subject": text(message.subject),
        "Label": text(message.subject),
        # AMQP's header counts prior attempts (0 on first delivery); the Functions host reports 1-based.
        "DeliveryCount": Datum((message.delivery_count or 0) + 1, "int"),
        "SequenceNumber": Datum(message.sequence_number or 0, "int"),
        "EnqueuedTimeUtc": text(message.enqueued_time_utc.isoformat() if message.enqueued_time_utc else None),
        "LockedUntil": text(message.locked_until_utc.isoformat() if message.locked_until_utc else None),
        "LockToken": text(message.lock_token),
        "ApplicationProperties": Datum(json.dumps(properties, default=str), "json"),
        "UserProperties": Datum(json.dumps(properties, default=str), "json"),
    }
    present = {key: value for key, value in metadata.items() if value is not None}
    # One message per invocation (cardinality one): the local host never batches.
    return ServiceBusMessageInConverter.decode_single_message(Datum(b"".join(message.body), "bytes"),
                                                              trigger_metadata=present)


@dataclass
class _InFlight:
    message: ServiceBusReceivedMessage
    renew_until: float  # time.monotonic() past which the lock is left to expire (maxAutoLockRenewalDuration)


class ServiceBusTriggerListener:
    def __init__(self, spec: FunctionSpec, connect: Callable[[], ServiceBusClient],
                 host_config: dict[str, Any]) -> None:
        self._spec = spec
        self._connect = connect  # a new client per (re)connection
        self._queue = spec.trigger["queueName"]
        servicebus = host_config.get("extensions", {}).get("serviceBus", {})
        self._slots = int(servicebus.get("maxConcurrentCalls", 16))
        self._renew_for = parse_timespan(servicebus.get("maxAutoLockRenewalDuration", "00:05:00"))

    def run(self, stop: threading.Event) -> None:
        log.info("service bus trigger %s listening on queue %s (%d slots)", self._spec.name, self._queue, self._slots)
        while not stop.is_set():
            try:
                self._receive_until(stop)
            except Exception:
                log.exception("service bus trigger %s: connection failed; reconnecting", self._spec.name)
                stop.wait(2)

    def _receive_until(self, stop: threading.Event) -> None:
        finished: Finished = queue.Queue()
        in_flight: dict[str, _InFlight] = {}  # lock token -> message being handled
        with (self._connect() as client,
              client.get_queue_receiver(self._queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK) as receiver,
              ThreadPoolExecutor(max_workers=self._slots, thread_name_prefix=self._spec.name) as pool):
            try:
                while not stop.is_set():
                    self._settle_finished(receiver, finished, in_flight)
                    self._renew_due(receiver, in_flight)
                    free = self._slots - len(in_flight)
                    if free == 0:  # every slot busy: wait for one to finish, then receive for it at once
                        self._settle_finished(receiver, finished, in_flight, wait=SLOT_WAIT_SECONDS)
                        continue
                    messages = receiver.receive_messages(max_message_count=free, max_wait_time=RECEIVE_WAIT_SECONDS)
                    for message in messages:
                        in_flight[str(message.lock_token)] = _InFlight(
                            message, time.monotonic() + self._renew_for.total_seconds())
                        pool.submit(self._run_function, message, finished)
            finally:
                # Stopping (or the connection broke): let running invocations finish and settle what we can.
                while in_flight:
                    self._settle_finished(receiver, finished, in_flight, wait=None)

    def _renew_due(self, receiver: ServiceBusReceiver, in_flight: dict[str, _InFlight]) -> None:
        """Renew the locks about to expire of messages still being handled, up to maxAutoLockRenewalDuration."""
        now = datetime.now(UTC)
        for held in in_flight.values():
            locked_until = held.message.locked_until_utc
            if locked_until is None or locked_until - now > RENEW_MARGIN or time.monotonic() > held.renew_until:
                continue
            try:
                receiver.renew_message_lock(held.message)
            except Exception as error:  # noqa: BLE001 - the lock is lost: the broker will redeliver the message
                log.warning("service bus trigger %s: could not renew the lock of message %s: %s", self._spec.name,
                            held.message.message_id, error)
                held.renew_until = 0.0  # stop trying; the handler's idempotency record guards a redelivery

    def _settle_finished(self, receiver: ServiceBusReceiver, finished: Finished, in_flight: dict[str, _InFlight],
                         wait: float | None = 0.0) -> None:
        """Settle every finished invocation on this (the receiver's) thread: the SDK's receiver is not
        thread-safe. ``wait``: how long to wait for the first one (0: not at all, None: until one finishes)."""
        try:
            outcome = finished.get(block=wait != 0.0, timeout=wait or None)
            while True:
                in_flight.pop(str(outcome[0].lock_token), None)
                self._settle(receiver, *outcome)
                outcome = finished.get_nowait()
        except queue.Empty:
            return

    def _settle(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage, succeeded: bool) -> None:
        try:
            if succeeded:
                receiver.complete_message(message)
            else:
                receiver.abandon_message(message)
        except Exception as error:  # noqa: BLE001 - e.g. lock lost or link gone: the broker redelivers it
            log.warning("service bus trigger %s: could not %s message %s: %s", self._spec.name,
                        "complete" if succeeded else "abandon", message.message_id, error)

    def _run_function(self, message: ServiceBusReceivedMessage, finished: Finished) -> None:
        succeeded = False
        try:
            invoke(self._spec, to_function_message(message),
                   reason=f"New ServiceBus message detected on '{self._queue}' (delivery {message.delivery_count})")
            succeeded = True
        except Exception:  # noqa: BLE001 - logged by invoke; the message is abandoned and redelivered
            pass
        finally:
            finished.put((message, succeeded))  # always report, or the slot would stay taken forever
