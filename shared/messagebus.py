"""The message bus: one event in, its handler run at most once, its follow-up events out.

Order matters for at-least-once delivery: the handler's follow-ups are stored with the idempotency record
*before* they are published, so a redelivery after a failed publish re-sends the same events (same ids)
instead of running the handler again.

A handler failure a retry cannot fix (shared/failures.py) ends the run on its first delivery: its stage's failure
event (handlers.FAILURE_EVENTS) becomes the handler's result — stored, published and journaled like any follow-up —
or, for a stage without one, `dead_letter` records it. Either way the message is completed. So is a redelivered id
whose payload differs from the one handled (reported through `dead_letter`, never run).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.events import Event
from shared.events.codec import decode
from shared.failures import permanent_reason
from shared.handlers import FAILURE_EVENTS, HANDLERS, Dependencies
from shared.idempotency import IdempotencyStore, PayloadMismatch

log = logging.getLogger("genaiops.messagebus")

# (reason, description): keeps the message with why it can never be handled, journaled under its correlation id.
DeadLetterSink = Callable[[str, str], None]


@dataclass(frozen=True)
class HandleResult:
    event: Event
    handler: str | None
    replayed: bool
    published: list[Event]
    failure: str | None = None  # why the run ended on this delivery (a permanent failure or a payload mismatch)


def payload_hash(event: Event) -> str:
    """What must not change between deliveries of one event id: its type, version and payload — not when it was
    made or is due (`occurred_at`, a re-check's `not_before`: a follow-up re-created by two racing deliveries keeps
    its id, not its clock readings)."""
    payload = event.payload.model_dump(mode="json", exclude={"not_before"})
    canonical = json.dumps({"type": event.type, "version": event.version, "payload": payload}, sort_keys=True,
                           separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def handle(event: Event, deps: Dependencies, idempotency: IdempotencyStore, *, dead_letter: DeadLetterSink,
           delivery_count: int | None = None) -> HandleResult:
    """`delivery_count` (1 for a first delivery) lets a redelivery take over a claim its predecessor left."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        # Terminal events (e.g. deployment.verified) are for pipelines reading the journal; nothing to run.
        log.info("%s %s has no handler; journaled only", event.type, event.id)
        return HandleResult(event, None, replayed=False, published=[])
    failures: list[str] = []

    def run() -> list[str]:
        try:
            follow_ups = list(handler(event, deps))
        except Exception as error:
            reason = permanent_reason(error)
            if reason is None:
                raise  # transient: the claim is released and the broker retries the message
            failures.append(reason)
            follow_ups = _failed(event, error, reason, deps, dead_letter)
        return [follow_up.model_dump_json() for follow_up in follow_ups]

    try:
        outcome = idempotency.run_once(handler.__name__, event.id, run, delivery_count=delivery_count,
                                       payload_hash=payload_hash(event))
    except PayloadMismatch as mismatch:
        log.warning("%s %s not handled: %s", event.type, event.id, mismatch)
        dead_letter("IdempotencyPayloadMismatch", str(mismatch))
        return HandleResult(event, handler.__name__, replayed=False, published=[], failure=str(mismatch))
    follow_ups = [decode(body) for body in outcome.result]
    if outcome.replayed:
        log.info("%s %s was already handled by %s; re-sending its %d follow-up(s)",
                 event.type, event.id, handler.__name__, len(follow_ups))
    deps.publisher.publish(follow_ups)
    return HandleResult(event, handler.__name__, outcome.replayed, follow_ups, failures[0] if failures else None)


def _failed(event: Event, error: Exception, reason: str, deps: Dependencies,
            dead_letter: DeadLetterSink) -> list[Event]:
    failure_event = FAILURE_EVENTS.get(type(event))
    if failure_event is None:
        log.warning("%s %s failed for good, dead-lettered: %s", event.type, event.id, reason)
        dead_letter(type(error).__name__, reason.removeprefix(f"{type(error).__name__}: "))
        return []
    ended = failure_event(event, reason, deps)
    log.warning("%s %s failed for good, ends in %s: %s", event.type, event.id, ended.type, reason)
    return [ended]
