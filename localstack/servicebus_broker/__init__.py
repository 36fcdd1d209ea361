"""Local Azure Service Bus compatible AMQP 1.0 broker, for development and tests.

Why this exists
---------------
The real Service Bus is not reachable from development and CI machines without internet access,
Microsoft's Service Bus emulator only ships as a Docker image (no Docker here), and general AMQP 1.0
brokers do not speak Service Bus's dialect (RabbitMQ's AMQP 1.0 plugin, for instance, rejects the
``$cbs`` token node the SDK talks to before anything else). This package is a small broker built on
python-qpid-proton that the official ``azure-servicebus`` SDK works against unchanged, using::

    Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=local-dev-key;UseDevelopmentEmulator=true

(``UseDevelopmentEmulator=true`` makes the SDK use plain AMQP on the given port, without TLS.)

Run it with ``python -m localstack.servicebus_broker --port 5672 --queues genaiops-events``, or in
process::

    from localstack.servicebus_broker import running_broker
    with running_broker(port=0, queues=("genaiops-events",)) as broker:
        client = ServiceBusClient.from_connection_string(broker.connection_string)

What it implements (queues only)
--------------------------------
* CBS ``put-token`` on ``$cbs``: answered 200; tokens are not validated and never logged.
* Sending single messages and ``ServiceBusMessageBatch`` (split into individual messages). Messages
  are stored byte for byte; the broker adds ``x-opt-enqueued-time``, ``x-opt-sequence-number``
  (monotonic per queue), ``x-opt-locked-until`` (peek-lock) and the header delivery-count.
* Receiving with link credit and drain, PEEK_LOCK and RECEIVE_AND_DELETE. Settlement outcomes are
  echoed back (the SDK waits for them): complete, abandon (delivery count + 1), dead-letter (to
  ``<queue>/$DeadLetterQueue`` with ``DeadLetterReason`` / ``DeadLetterErrorDescription``),
  release. Past ``max_delivery_count`` a message is dead-lettered with ``MaxDeliveryCountExceeded``.
* Lock expiry (message back with delivery count + 1; settling it afterwards raises
  ``MessageLockLostError``), and a detached receiver's unsettled messages go back (count + 1).
* Scheduled messages: a message carrying ``x-opt-scheduled-enqueue-time`` (the SDK's
  ``ServiceBusMessage(scheduled_enqueue_time_utc=...)``) gets its sequence number at once but stays
  invisible - not received, peeked or counted in ``message_count`` - until that time; it then becomes
  active with that time as its enqueued time (checked every ``lock_check_interval``, 0.1 s).
  ``schedule_messages`` (``schedule-message``) returns the sequence numbers; ``cancel_scheduled_messages``
  (``cancel-scheduled-message``) drops them, all or nothing (``message-not-found`` otherwise).
* ``<entity>/$management``: ``renew-lock``, ``peek-message``, ``update-disposition``,
  ``schedule-message``, ``cancel-scheduled-message``; any other operation gets
  ``amqp:not-implemented`` so the SDK raises instead of hanging.
* Optional persistence (``--data-dir``): an append-only journal, compacted at start and when it grows.
  Locks are not persisted: after a restart every stored message is available again, and scheduled
  messages stay scheduled until their time.

Not implemented: topics/subscriptions, sessions, defer/receive-deferred, message TTL expiry,
duplicate detection, transactions, authorization. Batches are recognised by their shape (every data
section is a complete AMQP message) because proton does not expose the transfer message-format.
"""

from .config import BrokerConfig, connection_string
from .server import Broker, running_broker

__all__ = ["Broker", "BrokerConfig", "connection_string", "running_broker"]
