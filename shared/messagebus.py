"""The message bus: one message (an event, or a command from a trigger) in, its handler run at most once, its
follow-up events out. Built once per process: `MessageBus` injects into each handler exactly the dependencies its
keyword-only parameters name (a name nobody provides fails then, not on the first message).

Order matters for at-least-once delivery: the handler's follow-ups are stored with the idempotency record
*before* they are published, so a redelivery after a failed publish re-sends the same events (same ids)
instead of running the handler again.

A handler failure a retry cannot fix (shared/failures.py) ends the run on its first delivery: its stage's failure
event (handlers.FAILURE_EVENTS) becomes the handler's result — stored, published and journaled like any follow-up —
or, for a stage without one, `dead_letter` records it. Either way the message is completed. So is a redelivered id
whose payload differs from the one handled (reported through `dead_letter`, never run).

Commands are keyed by their content (shared/events/commands.py), so a resubmitted form is answered from its record
instead of acting twice. Their caller is waiting: a command handler's error propagates as raised.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from shared.events import Event
from shared.events.codec import decode
from shared.events.commands import Command, Message
from shared.failures import permanent_reason
from shared.handlers import FAILURE_EVENTS, HANDLERS, FailureEvent, Handler
from shared.idempotency import DuplicateInProgress, IdempotencyStore, PayloadMismatch
from shared.ports import EventPublisher

log = logging.getLogger("genaiops.messagebus")

# (reason, description): keeps the message with why it can never be handled, journaled under its correlation id.
DeadLetterSink = Callable[[str, str], None]


T = TypeVar("T")


@dataclass(frozen=True)
class HandleResult:
    event: Message
    handler: str | None
    replayed: bool
    published: list[Event]
    failure: str | None = None  # why the run ended on this delivery (a permanent failure or a payload mismatch)


def inject(function: Callable[..., T], dependencies: Mapping[str, object]) -> Callable[..., T]:
    """`function` with its keyword-only parameters bound from `dependencies` (by name); TypeError when it names one
    that is not provided."""
    names = [parameter.name for parameter in inspect.signature(function).parameters.values()
             if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    missing = [name for name in names if name not in dependencies]
    if missing:
        raise TypeError(f"{function.__name__} needs {', '.join(missing)}, which the bootstrap does not provide")
    return functools.partial(function, **{name: dependencies[name] for name in names})


def payload_hash(message: Message) -> str:
    """What must not change between deliveries of one event id: its type, version and payload — not when it was
    made or is due (`occurred_at`, a re-check's `not_before`: a follow-up re-created by two racing deliveries keeps
    its id, not its clock readings). A command's is its content."""
    if isinstance(message, Command):
        return "sha256:" + message.content_hash()
    event = message
    payload = event.payload.model_dump(mode="json", exclude={"not_before"})
    canonical = json.dumps({"type": event.type, "version": event.version, "payload": payload}, sort_keys=True,
                           separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class MessageBus:
    def __init__(self, *, publisher: EventPublisher, idempotency: IdempotencyStore,
                 dependencies: Mapping[str, object]) -> None:
        """`dependencies`: every port a handler may name (the publisher is one of them)."""
        provided = {**dependencies, "publisher": publisher}
        self.publisher = publisher
        self.idempotency = idempotency
        self._handlers: dict[type[Message], tuple[str, Handler]] = {
            message_type: (handler.__name__, inject(handler, provided)) for message_type, handler in HANDLERS.items()}
        self._failures: dict[type[Event], FailureEvent] = {
            event_type: inject(failure, provided) for event_type, failure in FAILURE_EVENTS.items()}

    def handle(self, message: Message, *, dead_letter: DeadLetterSink | None = None,
               delivery_count: int | None = None, sequence_number: int | None = None) -> HandleResult:
        """`delivery_count` (1 for a first delivery) lets a redelivery take over a claim its predecessor left;
        `sequence_number` (the broker's, of this message) tells such a redelivery from a second message with the
        same id, which is dropped while the first is being handled. `dead_letter` is needed for events only: a
        command has a caller to answer instead."""
        if isinstance(message, Command):
            return self._run(message, message.idempotency_key(), None, None, None)
        if dead_letter is None:
            raise TypeError("an event needs a dead_letter sink")
        return self._run(message, message.id, dead_letter, delivery_count, sequence_number)

    def _run(self, message: Message, key: str, dead_letter: DeadLetterSink | None,
             delivery_count: int | None, sequence_number: int | None) -> HandleResult:
        kind = message.type if isinstance(message, Event) else type(message).__name__
        entry = self._handlers.get(type(message))
        if entry is None:
            # Terminal events (e.g. deployment.verified) are for pipelines reading the journal; nothing to run.
            log.info("%s %s has no handler; journaled only", kind, key)
            return HandleResult(message, None, replayed=False, published=[])
        name, handler = entry
        failures: list[str] = []

        def run() -> list[str]:
            try:
                follow_ups = list(handler(message))
            except Exception as error:
                reason = permanent_reason(error)
                if reason is None or dead_letter is None or not isinstance(message, Event):
                    raise  # transient (the claim is released, the broker retries), or a command's caller's to hear
                failures.append(reason)
                follow_ups = self._failed(message, error, reason, dead_letter)
            return [follow_up.model_dump_json() for follow_up in follow_ups]

        try:
            outcome = self.idempotency.run_once(name, key, run, delivery_count=delivery_count,
                                                payload_hash=payload_hash(message), sequence_number=sequence_number)
        except DuplicateInProgress as duplicate:
            log.info("%s %s: a copy, dropped: %s", kind, key, duplicate)
            return HandleResult(message, name, replayed=True, published=[])
        except PayloadMismatch as mismatch:
            if dead_letter is None:
                raise
            log.warning("%s %s not handled: %s", kind, key, mismatch)
            dead_letter("IdempotencyPayloadMismatch", str(mismatch))
            return HandleResult(message, name, replayed=False, published=[], failure=str(mismatch))
        follow_ups = [decode(body) for body in outcome.result]
        if outcome.replayed:
            log.info("%s %s was already handled by %s; re-sending its %d follow-up(s)", kind, key, name,
                     len(follow_ups))
        self.publisher.publish(follow_ups)
        return HandleResult(message, name, outcome.replayed, follow_ups, failures[0] if failures else None)

    def _failed(self, event: Event, error: Exception, reason: str, dead_letter: DeadLetterSink) -> list[Event]:
        failure_event = self._failures.get(type(event))
        if failure_event is None:
            log.warning("%s %s failed for good, dead-lettered: %s", event.type, event.id, reason)
            dead_letter(type(error).__name__, reason.removeprefix(f"{type(error).__name__}: "))
            return []
        ended = failure_event(event, reason)
        log.warning("%s %s failed for good, ends in %s: %s", event.type, event.id, ended.type, reason)
        return [ended]
