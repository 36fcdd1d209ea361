"""The proton event handler: AMQP connections, links, credit and deliveries mapped onto the queues.

Link roles, seen from the broker:

* producer  - client sender attached to a queue; every transfer is enqueued (batches split).
* consumer  - client receiver attached to a queue (or its ``/$DeadLetterQueue``); gets messages
  as its credit allows, peek-locked unless the client attached pre-settled (receive-and-delete).
* request / reply - the link pair of a ``$cbs`` or ``<entity>/$management`` node.

Every handler method runs on the reactor thread, so the queues need no locking of their own.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from proton import (
    Connection,
    DataException,
    Delivery,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    MessageException,
    Receiver,
    Sender,
)

from . import codec
from .amqp_links import (
    DECODE_ERROR,
    INCOMING_CREDIT,
    MESSAGE_SIZE_EXCEEDED,
    Consumer,
    LinkRefused,
    apply_outcome,
    error,
    has_filter,
    mirror_terminus,
    new_delivery,
    present,
    queue_path,
    settle,
)
from .entities import DEAD_LETTER_SUFFIX, Namespace, Queue, entity_path
from .management import NOT_ALLOWED, NOT_IMPLEMENTED, RequestNodes, is_request_node

_LOG = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., None])


def _guarded(method: _F) -> _F:
    """Log instead of raising: one bad frame must not take the whole broker's reactor down."""

    @functools.wraps(method)
    def wrapper(self: BrokerHandler, event: Event) -> None:
        try:
            method(self, event)
        except Exception:  # noqa: BLE001 - deliberate catch-all at the event boundary
            _LOG.exception("error handling %s", event.type)

    return wrapper  # type: ignore[return-value]


class BrokerHandler(Handler):
    """Serves Service Bus style AMQP traffic for the queues of one :class:`Namespace`."""

    def __init__(self, namespace: Namespace, max_message_size: int) -> None:
        super().__init__()
        self.namespace = namespace
        self._nodes = RequestNodes(namespace)
        self._max_message_size = max_message_size
        self._connections: dict[Connection, str] = {}
        self._consumers: dict[Sender, Consumer] = {}
        self._queue_consumers: dict[str, list[Consumer]] = {}
        self._producers: dict[Receiver, Queue] = {}
        self._request_links: set[Receiver] = set()
        self._reply_links: dict[tuple[Connection, str], Sender] = {}
        self._reply_backlog: dict[Sender, deque[bytes]] = {}
        self._partial: dict[Delivery, bytearray] = {}

    # -- connections and sessions -------------------------------------------------------
    @_guarded
    def on_connection_remote_open(self, event: Event) -> None:
        connection = present(event.connection)
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()
        peer = f"{getattr(connection, 'url', '?')} container={connection.remote_container}"
        self._connections[connection] = peer
        _LOG.info("connection opened: %s", peer)

    @_guarded
    def on_connection_remote_close(self, event: Event) -> None:
        connection = present(event.connection)
        self._drop_connection(connection)
        if connection.state & Endpoint.LOCAL_ACTIVE:
            connection.close()

    @_guarded
    def on_transport_closed(self, event: Event) -> None:
        if event.connection is not None:
            self._drop_connection(event.connection)

    def _drop_connection(self, connection: Connection) -> None:
        for link in self._links_of(lambda link: link.connection == connection):
            self._forget_link(link)
        peer = self._connections.pop(connection, None)
        if peer is not None:
            _LOG.info("connection closed: %s", peer)

    def has_connections(self) -> bool:
        return bool(self._connections)

    def close_all(self) -> None:
        """Close every client connection (broker shutdown)."""
        for connection in list(self._connections):
            if connection.state & Endpoint.LOCAL_ACTIVE:
                connection.close()

    def abort_all(self) -> None:
        """Drop every client transport without waiting for the close handshake (stuck shutdown)."""
        for connection in list(self._connections):
            transport = connection.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()

    @_guarded
    def on_session_remote_open(self, event: Event) -> None:
        session = present(event.session)
        if session.state & Endpoint.LOCAL_UNINIT:
            session.open()

    @_guarded
    def on_session_remote_close(self, event: Event) -> None:
        session = present(event.session)
        for link in self._links_of(lambda link: link.session == session):
            self._forget_link(link)
        if session.state & Endpoint.LOCAL_ACTIVE:
            session.close()

    # -- links --------------------------------------------------------------------------
    @_guarded
    def on_link_remote_open(self, event: Event) -> None:
        link = present(event.link)
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        mirror_terminus(link)
        try:
            if isinstance(link, Sender):
                self._attach_outgoing(link)
            else:
                self._attach_incoming(link)
        except LinkRefused as refused:
            _LOG.info("refused link %s: %s", link.name, refused)
            link.open()
            link.condition = error(refused.condition, str(refused))
            link.close()

    def _attach_outgoing(self, link: Sender) -> None:
        address = link.remote_source.address
        if is_request_node(address):
            self._reply_links[(link.connection, entity_path(address))] = link
            self._reply_backlog[link] = deque()
            link.open()
            return
        if has_filter(link):
            raise LinkRefused(NOT_IMPLEMENTED, "Sessions and filters are not supported by the local broker")
        queue = self.namespace.queue(queue_path(address))
        consumer = Consumer(link, queue, receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED)
        self._consumers[link] = consumer
        self._queue_consumers.setdefault(queue.name, []).append(consumer)
        link.open()
        _LOG.debug("consumer attached to %s (receive_and_delete=%s)", queue.name, consumer.receive_and_delete)

    def _attach_incoming(self, link: Receiver) -> None:
        address = link.remote_target.address
        if is_request_node(address):
            self._request_links.add(link)
        elif entity_path(address).endswith(DEAD_LETTER_SUFFIX):
            raise LinkRefused(NOT_ALLOWED, "Messages cannot be sent to a dead-letter queue")
        else:
            self._producers[link] = self.namespace.queue(queue_path(address))
            link.max_message_size = self._max_message_size
        link.open()
        link.flow(INCOMING_CREDIT)

    @_guarded
    def on_link_remote_close(self, event: Event) -> None:
        link = present(event.link)
        self._forget_link(link)
        if link.state & Endpoint.LOCAL_ACTIVE:
            link.close()

    def _links_of(self, predicate: Callable[[Link], bool]) -> list[Link]:
        links: list[Link] = [*self._consumers, *self._producers, *self._request_links, *self._reply_backlog]
        return [link for link in links if predicate(link)]

    def _forget_link(self, link: Link) -> None:
        """Drop a link's state; a consumer's unsettled messages go back to its queue (count + 1)."""
        if isinstance(link, Receiver):  # the client's sender: a producer or a request link
            self._producers.pop(link, None)
            self._request_links.discard(link)
        elif isinstance(link, Sender) and (consumer := self._consumers.pop(link, None)) is not None:
            self._queue_consumers.get(consumer.queue.name, []).remove(consumer)
            returned = consumer.queue.abandon_owner(consumer.owner)
            if returned:
                _LOG.debug("%d locked message(s) returned to %s on detach", returned, consumer.queue.name)
            self.dispatch_related(consumer.queue)
        elif isinstance(link, Sender) and self._reply_backlog.pop(link, None) is not None:
            self._reply_links = {key: value for key, value in self._reply_links.items() if value != link}
        for delivery in [d for d in self._partial if d.link == link]:
            del self._partial[delivery]

    @_guarded
    def on_link_flow(self, event: Event) -> None:
        link = present(event.link)
        if not isinstance(link, Sender):  # credit for the broker's own receivers: it grants that itself
            return
        if link in self._consumers:
            self.dispatch(self._consumers[link].queue)
        elif link in self._reply_backlog:
            self._flush_replies(link)

    # -- deliveries ---------------------------------------------------------------------
    @_guarded
    def on_delivery(self, event: Event) -> None:
        delivery = present(event.delivery)
        link = delivery.link
        if isinstance(link, Receiver):
            self._on_transfer(delivery, link)
        else:
            self._on_disposition(delivery, link)

    def _on_transfer(self, delivery: Delivery, link: Receiver) -> None:
        if not delivery.readable and not delivery.aborted:
            return
        buffer = self._partial.setdefault(delivery, bytearray())
        chunk = link.recv(delivery.pending) if delivery.pending else b""
        buffer.extend(chunk or b"")
        if delivery.partial and not delivery.aborted:
            return
        payload = bytes(self._partial.pop(delivery))
        link.advance()
        if delivery.aborted:
            delivery.settle()
            return
        if link in self._producers:
            self._enqueue(delivery, self._producers[link], payload)
        elif link in self._request_links:
            self._answer(delivery, payload)
        else:
            settle(delivery, Delivery.REJECTED, error(NOT_ALLOWED, "Link is not attached to an entity"))
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)

    def _enqueue(self, delivery: Delivery, queue: Queue, payload: bytes) -> None:
        if len(payload) > self._max_message_size:
            condition = error(MESSAGE_SIZE_EXCEEDED, f"Message of {len(payload)} bytes exceeds the limit")
            settle(delivery, Delivery.REJECTED, condition)
            return
        try:
            messages = codec.split_batch(payload)
        except codec.MessageDecodeError as exc:
            settle(delivery, Delivery.REJECTED, error(DECODE_ERROR, str(exc)))
            return
        for message in messages:
            queue.enqueue(message)
        settle(delivery, Delivery.ACCEPTED)
        _LOG.debug("enqueued %d message(s) on %s", len(messages), queue.name)
        self.dispatch(queue)

    def _answer(self, delivery: Delivery, payload: bytes) -> None:
        link = delivery.link
        request = Message()
        try:
            request.decode(payload)
        except (MessageException, DataException, ValueError) as exc:
            settle(delivery, Delivery.REJECTED, error(DECODE_ERROR, f"Undecodable request: {exc}"))
            return
        node = link.remote_target.address or ""  # no address: answered as an unknown node
        result = self._nodes.handle(node, request)
        response = Message(
            correlation_id=request.id,
            properties=result.reply.application_properties(),
            body=result.reply.body,
        )
        settle(delivery, Delivery.ACCEPTED)
        self._send_reply(link, entity_path(request.reply_to or node), bytes(response.encode()))
        for token in result.resolved_tokens:
            self._settle_resolved_delivery(token)
        if result.queue is not None:
            self.dispatch_related(result.queue)

    def _send_reply(self, request_link: Link, address: str, payload: bytes) -> None:
        reply_link = self._reply_links.get((request_link.connection, address))
        if reply_link is None:
            _LOG.warning("no reply link attached for %s; dropping the response", address)
            return
        self._reply_backlog[reply_link].append(payload)
        self._flush_replies(reply_link)

    def _flush_replies(self, link: Sender) -> None:
        backlog = self._reply_backlog[link]
        while backlog and link.credit > 0:
            delivery = new_delivery(link, uuid.uuid4().bytes)
            link.send(backlog.popleft())
            link.advance()
            delivery.settle()  # replies are pre-settled: the SDK never acknowledges them

    def _settle_resolved_delivery(self, token: uuid.UUID) -> None:
        """A lock settled over $management: settle the matching link delivery too."""
        for consumer in self._consumers.values():
            delivery = consumer.untrack_token(token)
            if delivery is not None:
                delivery.settle()
                return

    # -- settlement of what the broker delivered ---------------------------------------------
    def _on_disposition(self, delivery: Delivery, link: Sender) -> None:
        consumer = self._consumers.get(link)
        if consumer is None or consumer.receive_and_delete:
            if delivery.settled:
                delivery.settle()
            return
        state = delivery.remote_state
        if state not in (Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED):
            if delivery.settled:  # settled without an outcome: treat like released
                state = Delivery.RELEASED
            else:
                return
        token = consumer.untrack_delivery(delivery)
        if token is None:  # already resolved over $management
            delivery.settle()
            return
        echo, condition = apply_outcome(consumer.queue, token, delivery, state)
        if delivery.settled:
            delivery.settle()  # the client settled first (e.g. released): nothing to confirm
        else:
            settle(delivery, echo, condition, mirror=delivery.remote)
        self.dispatch_related(consumer.queue)

    # -- dispatch -----------------------------------------------------------------------
    def dispatch_related(self, queue: Queue) -> None:
        """Dispatch a queue and its dead-letter queue (either may just have gained messages)."""
        self.dispatch(queue)
        if queue.dead_letter_queue is not None:
            self.dispatch(queue.dead_letter_queue)

    def dispatch(self, queue: Queue) -> None:
        """Hand available messages to the queue's consumers, round-robin, as far as their credit goes."""
        consumers = self._queue_consumers.get(queue.name, [])
        progress = True
        while progress and queue.has_available():
            progress = False
            for consumer in list(consumers):
                if consumer.link.credit > 0 and queue.has_available():
                    self._deliver_one(consumer)
                    progress = True
            if consumers:
                consumers.append(consumers.pop(0))  # next round starts with another consumer
        for consumer in consumers:
            if consumer.link.drain_mode and consumer.link.credit > 0:
                consumer.link.drained()

    def _deliver_one(self, consumer: Consumer) -> None:
        link = consumer.link
        if consumer.receive_and_delete:
            message = consumer.queue.take_next()
            if message is None:
                return
            delivery = new_delivery(link, uuid.uuid4().bytes_le)
            link.send(message.stamped())
            link.advance()
            delivery.settle()
            return
        lock = consumer.queue.lock_next(consumer.owner)
        if lock is None:
            return
        # The SDK reads the lock token from the 16-byte delivery tag (uuid bytes_le).
        delivery = new_delivery(link, lock.token.bytes_le)
        link.send(lock.message.stamped(lock.locked_until))
        link.advance()
        consumer.track(lock.token, delivery)

    def expire_locks(self) -> None:
        """Timer hook: expired locks go back to their queue, then waiting consumers get them."""
        for queue in self.namespace.queues():
            if queue.expire_locks():
                self.dispatch_related(queue)
