"""EventPublisher on azure-servicebus: Azure Service Bus in production, the local AMQP broker locally."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.events import Event
from shared.events.codec import BusMessage, encode
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient, ServiceBusMessage


def servicebus_client(settings: Settings) -> ServiceBusClient:
    from azure.servicebus import ServiceBusClient

    settings.require_servicebus()
    if settings.servicebus_connection_string:
        return ServiceBusClient.from_connection_string(settings.servicebus_connection_string.get_secret_value())
    from shared.adapters.credentials import azure_credential

    return ServiceBusClient(str(settings.servicebus_namespace), credential=azure_credential())


def to_servicebus_message(message: BusMessage) -> ServiceBusMessage:
    from azure.servicebus import ServiceBusMessage

    # The SDK types the keys as str | bytes; a dict of str keys is not one of those to a type checker (invariance).
    properties: dict[str | bytes, Any] = dict(message.application_properties.items())
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        subject=message.subject,
        content_type=message.content_type,
        application_properties=properties,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,  # Service Bus holds it back until then
    )


class ServiceBusPublisher:
    """Sends events in as few batches as fit; one sender reused under a lock (senders are not thread-safe)."""

    def __init__(self, client: ServiceBusClient, queue: str) -> None:
        self._client = client
        self._queue = queue
        self._lock = threading.Lock()
        self._sender = None

    def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._lock:
            sender = self._sender or self._client.get_queue_sender(self._queue)
            self._sender = sender
            try:
                self._send(sender, [to_servicebus_message(encode(event)) for event in events])
            except Exception:
                # A broken link must not poison later sends: drop it, the next publish reconnects.
                self._sender = None
                sender.close()
                raise

    @staticmethod
    def _send(sender, messages: list[ServiceBusMessage]) -> None:
        batch = sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except ValueError:  # batch full: ship it and start another
                sender.send_messages(batch)
                batch = sender.create_message_batch()
                batch.add_message(message)
        sender.send_messages(batch)

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
            self._client.close()
