"""Request/response nodes: ``$cbs`` (token put) and ``<entity>/$management`` (lock renewal, peek,
scheduling, ...).

Both nodes take an AMQP request message and produce a :class:`Reply`; the AMQP handler routes it
back on the client's reply link. Anything this broker does not implement is answered with
``amqp:not-implemented`` so the SDK raises at once instead of waiting for a reply that never comes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from proton import UNDESCRIBED, Array, Data, Message, symbol

from . import codec
from .entities import MANAGEMENT_SUFFIX, Namespace, Outcome, Queue, entity_path

_LOG = logging.getLogger(__name__)

CBS_NODE = "$cbs"
LOCK_LOST = "com.microsoft:message-lock-lost"
NOT_IMPLEMENTED = "amqp:not-implemented"
NOT_ALLOWED = "amqp:not-allowed"
BAD_REQUEST = "com.microsoft:argument-error"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"

_RENEW_LOCK = "com.microsoft:renew-lock"
_PEEK = "com.microsoft:peek-message"
_UPDATE_DISPOSITION = "com.microsoft:update-disposition"
_SCHEDULE = "com.microsoft:schedule-message"
_CANCEL_SCHEDULED = "com.microsoft:cancel-scheduled-message"


@dataclass
class Reply:
    """A management response: status code, description, optional error condition and body."""

    status: int
    description: str
    body: Any = None
    condition: str | None = None

    def application_properties(self) -> dict[str, Any]:
        # $cbs uses dashed names and $management camelCase ones; send both so either reader is happy.
        properties: dict[str, Any] = {
            "statusCode": self.status,
            "statusDescription": self.description,
            "status-code": self.status,
            "status-description": self.description,
        }
        if self.condition:
            properties["errorCondition"] = symbol(self.condition)
            properties["error-condition"] = symbol(self.condition)
        return properties


@dataclass
class Result:
    """A reply plus what the broker must act on afterwards (settled locks, queues to re-dispatch)."""

    reply: Reply
    resolved_tokens: list[uuid.UUID] = field(default_factory=list)
    queue: Queue | None = None


def is_request_node(address: str | None) -> bool:
    path = entity_path(address)
    return path == CBS_NODE or path.endswith(MANAGEMENT_SUFFIX) or path == "$management"


class RequestNodes:
    """Answers requests sent to ``$cbs`` and ``<entity>/$management``."""

    def __init__(self, namespace: Namespace) -> None:
        self._namespace = namespace

    def handle(self, node: str, request: Message) -> Result:
        path = entity_path(node)
        operation = str((request.properties or {}).get("operation", ""))
        if path == CBS_NODE:
            return Result(self._cbs(operation, request))
        if not path.endswith(MANAGEMENT_SUFFIX):
            return Result(_not_implemented(f"management node '{node}'"))
        queue = self._namespace.queue(path[: -len(MANAGEMENT_SUFFIX)])
        body = request.body if isinstance(request.body, dict) else {}
        try:
            return self._management(queue, operation, body)
        except (KeyError, TypeError, ValueError) as exc:
            return Result(Reply(400, f"Malformed {operation} request: {exc}", condition=BAD_REQUEST))

    def _cbs(self, operation: str, request: Message) -> Reply:
        if operation != "put-token":
            return _not_implemented(f"$cbs operation '{operation}'")
        # Dev broker: any token is accepted. Log the audience only, never the token (a SAS key hash).
        _LOG.debug("cbs put-token for %s", (request.properties or {}).get("name"))
        return Reply(200, "OK")

    def _management(self, queue: Queue, operation: str, body: dict[str, Any]) -> Result:
        if operation == _RENEW_LOCK:
            return Result(_renew(queue, _tokens(body)))
        if operation == _PEEK:
            return Result(
                _peek(queue, int(body.get("from-sequence-number", 1)), int(body.get("message-count", 1)))
            )
        if operation == _UPDATE_DISPOSITION:
            return self._update_disposition(queue, body)
        if operation == _SCHEDULE:
            # queue=...: a schedule time already past makes the message available at once, so dispatch.
            return Result(_schedule(queue, body), queue=queue)
        if operation == _CANCEL_SCHEDULED:
            return Result(_cancel_scheduled(queue, body))
        return Result(_not_implemented(f"management operation '{operation}'"))

    def _update_disposition(self, queue: Queue, body: dict[str, Any]) -> Result:
        status, tokens = str(body["disposition-status"]), _tokens(body)
        if status == "defered":  # sic: the SDK's spelling
            return Result(_not_implemented("defer"))
        resolved: list[uuid.UUID] = []
        for token in tokens:
            outcome = _settle(queue, status, token, body)
            if outcome is Outcome.LOCK_LOST:
                return Result(_lock_lost(token), resolved, queue)
            if outcome is Outcome.NOT_ALLOWED:
                return Result(Reply(400, f"Cannot {status} here", condition=NOT_ALLOWED), resolved, queue)
            resolved.append(token)
        return Result(Reply(200, "OK", body={}), resolved, queue)


def _settle(queue: Queue, status: str, token: uuid.UUID, body: dict[str, Any]) -> Outcome:
    if status == "completed":
        return queue.complete(token)
    if status == "abandoned":
        return queue.abandon(token)
    if status == "suspended":
        return queue.dead_letter(token, body.get("deadletter-reason"), body.get("deadletter-description"))
    raise ValueError(f"unknown disposition-status '{status}'")


def _renew(queue: Queue, tokens: list[uuid.UUID]) -> Reply:
    expirations = []
    for token in tokens:
        locked_until = queue.renew(token)
        if locked_until is None:
            return _lock_lost(token)
        expirations.append(codec.epoch_ms(locked_until))
    return Reply(200, "OK", body={"expirations": expirations})


def _peek(queue: Queue, from_sequence_number: int, count: int) -> Reply:
    messages = queue.peek(from_sequence_number, count)
    if not messages:
        return Reply(204, "No messages to peek")
    return Reply(200, "OK", body={"messages": [{"message": message.stamped()} for message in messages]})


def _schedule(queue: Queue, body: dict[str, Any]) -> Reply:
    """``schedule-message``: each entry's ``message`` is the encoded message, already annotated by the SDK
    with ``x-opt-scheduled-enqueue-time``; the reply gives the sequence numbers assigned."""
    payloads = [bytes(entry["message"]) for entry in _elements(body["messages"])]
    if any(codec.scheduled_enqueue_time(payload) is None for payload in payloads):
        return Reply(400, "Every scheduled message needs x-opt-scheduled-enqueue-time", condition=BAD_REQUEST)
    numbers = [queue.enqueue(payload).sequence_number for payload in payloads]
    _LOG.debug("scheduled %d message(s) on %s", len(numbers), queue.name)
    # proton's annotation leaves out UNDESCRIBED, the descriptor its own docs give an array without one.
    numbers_array = Array(UNDESCRIBED, Data.LONG, *numbers)  # pyright: ignore[reportArgumentType]
    return Reply(200, "OK", body={"sequence-numbers": numbers_array})


def _cancel_scheduled(queue: Queue, body: dict[str, Any]) -> Reply:
    """``cancel-scheduled-message``: every number must name a message that is still scheduled."""
    numbers = [int(number) for number in _elements(body["sequence-numbers"])]
    missing = [number for number in numbers if not queue.is_scheduled(number)]
    if missing:  # all or nothing, with Service Bus's wording
        text = ", ".join(map(str, missing))
        return Reply(404, f"Messages not found. Missing sequence numbers: {text}", condition=MESSAGE_NOT_FOUND)
    for number in numbers:
        queue.cancel_scheduled(number)
    return Reply(200, "OK", body={})


def _elements(raw: Any) -> list[Any]:
    return list(getattr(raw, "elements", raw))  # proton decodes AMQP arrays as Array


def _tokens(body: dict[str, Any]) -> list[uuid.UUID]:
    items: Iterable[Any] = _elements(body["lock-tokens"])
    return [token if isinstance(token, uuid.UUID) else uuid.UUID(str(token)) for token in items]


def _lock_lost(token: uuid.UUID) -> Reply:
    return Reply(
        410,
        f"The lock supplied is invalid. Either the lock expired, or the message has already been removed "
        f"from the queue. Reference lock token: {token}",
        condition=LOCK_LOST,
    )


def _not_implemented(what: str) -> Reply:
    return Reply(501, f"{what} is not supported by the local Service Bus broker", condition=NOT_IMPLEMENTED)
