"""The pieces the broker's AMQP handler is built from: consumers and their locked deliveries, refused attaches,
link termini, and AMQP outcomes with Service Bus style error conditions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from proton import Condition, Delivery, Link, Sender, symbol

from .entities import Outcome, Queue, entity_path
from .management import LOCK_LOST, NOT_ALLOWED, NOT_IMPLEMENTED

INCOMING_CREDIT = 200
DECODE_ERROR = "amqp:decode-error"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
INVALID_FIELD = "amqp:invalid-field"

_T = TypeVar("_T")


def present(value: _T | None) -> _T:
    """An event's connection, session, link or delivery: proton types each as optional, and the events the
    handler takes always carry theirs."""
    if value is None:
        raise LookupError("the AMQP event carries no such endpoint")
    return value


def new_delivery(link: Sender, tag: bytes) -> Delivery:
    # proton annotates the tag as str, but pn_delivery takes bytes (cproton's py2bytes); the SDK reads lock tokens
    # from the raw 16 bytes, so a text tag would not do.
    return link.delivery(tag)  # pyright: ignore[reportArgumentType]


@dataclass
class Consumer:
    """A client receiver on a queue, and the peek-locked deliveries it has not settled yet."""

    link: Sender
    queue: Queue
    receive_and_delete: bool
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    _deliveries: dict[uuid.UUID, Delivery] = field(default_factory=dict)
    _tokens: dict[Delivery, uuid.UUID] = field(default_factory=dict)  # proton cannot read binary tags back

    def track(self, token: uuid.UUID, delivery: Delivery) -> None:
        self._deliveries[token] = delivery
        self._tokens[delivery] = token

    def untrack_delivery(self, delivery: Delivery) -> uuid.UUID | None:
        token = self._tokens.pop(delivery, None)
        if token is not None:
            self._deliveries.pop(token, None)
        return token

    def untrack_token(self, token: uuid.UUID) -> Delivery | None:
        delivery = self._deliveries.pop(token, None)
        if delivery is not None:
            self._tokens.pop(delivery, None)
        return delivery


class LinkRefused(Exception):
    """An attach the broker will not serve; carries the AMQP error condition to detach with."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition


def settle(delivery: Delivery, state: int, condition: Condition | None = None, mirror: Any = None) -> None:
    """Set the local outcome (optionally copying modified flags from the peer) and settle."""
    if condition is not None:
        delivery.local.condition = condition
    if mirror is not None and state == Delivery.MODIFIED:
        delivery.local.failed = mirror.failed
        delivery.local.undeliverable = mirror.undeliverable
    delivery.update(state)
    delivery.settle()


def error(condition: str, description: str) -> Condition:
    """An AMQP error with an info map: the SDK's send path indexes error[2], so info must be present."""
    return Condition(condition, description, {symbol("com.microsoft:tracking-id"): uuid.uuid4().hex})


def dead_letter_details(condition: Condition | None) -> tuple[str | None, str | None]:
    """DeadLetterReason / DeadLetterErrorDescription from a rejected outcome's error info."""
    if condition is None:
        return None, None
    info = condition.info if isinstance(condition.info, dict) else {}
    reason = info.get("DeadLetterReason")
    description = info.get("DeadLetterErrorDescription", condition.description)
    return (
        str(reason) if reason is not None else None,
        str(description) if description is not None else None,
    )


def mirror_terminus(link: Link) -> None:
    """Echo the client's addresses and settle modes: the SDK treats a missing source/target as refusal."""
    for local, remote in ((link.source, link.remote_source), (link.target, link.remote_target)):
        if remote.address is not None:  # none given: a new link's own address is unset already
            local.address = remote.address
    link.snd_settle_mode = link.remote_snd_settle_mode
    link.rcv_settle_mode = link.remote_rcv_settle_mode


def queue_path(address: str | None) -> str:
    """The queue an address names; refuses what this broker cannot serve rather than misrouting it."""
    path = entity_path(address)
    if not path:
        raise LinkRefused(INVALID_FIELD, "A queue address is required")
    if "/subscriptions/" in path:
        raise LinkRefused(NOT_IMPLEMENTED, "Topics and subscriptions are not supported by the local broker")
    return path


def has_filter(link: Link) -> bool:
    filters = link.remote_source.filter
    filters.rewind()
    return filters.next() is not None


def apply_outcome(
    queue: Queue, token: uuid.UUID, delivery: Delivery, state: int
) -> tuple[int, Condition | None]:
    """Apply the client's outcome; return the outcome to echo and the error, if any."""
    remote = delivery.remote
    if state == Delivery.ACCEPTED:
        outcome = queue.complete(token)
    elif state == Delivery.RELEASED:
        outcome = queue.release(token)
    elif state == Delivery.MODIFIED and remote.undeliverable:
        # Defer (modified + undeliverable-here) is not supported. The lock is kept; the SDK raises
        # and closes its link, which hands the message back like any other detach.
        return Delivery.REJECTED, error(NOT_IMPLEMENTED, "Defer is not supported by the local broker")
    elif state == Delivery.MODIFIED:
        outcome = queue.abandon(token) if remote.failed else queue.release(token)
    else:
        reason, description = dead_letter_details(remote.condition)
        outcome = queue.dead_letter(token, reason, description)
    if outcome is Outcome.LOCK_LOST:
        description = "The lock supplied is invalid. Either the lock expired, or the message was removed."
        return Delivery.REJECTED, error(LOCK_LOST, description)
    if outcome is Outcome.NOT_ALLOWED:
        return Delivery.REJECTED, error(NOT_ALLOWED, "Cannot dead-letter from a dead-letter queue")
    return state, None
