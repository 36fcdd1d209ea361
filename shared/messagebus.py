"""The message bus: one event in, its handler run at most once, its follow-up events out.

Order matters for at-least-once delivery: the handler's follow-ups are stored with the idempotency record
*before* they are published, so a redelivery after a failed publish re-sends the same events (same ids)
instead of running the handler again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.events import Event
from shared.events.codec import decode
from shared.handlers import HANDLERS, Dependencies
from shared.idempotency import IdempotencyStore

log = logging.getLogger("genaiops.messagebus")


@dataclass(frozen=True)
class HandleResult:
    event: Event
    handler: str | None
    replayed: bool
    published: list[Event]


def handle(event: Event, deps: Dependencies, idempotency: IdempotencyStore, *,
           delivery_count: int | None = None) -> HandleResult:
    """`delivery_count` (1 for a first delivery) lets a redelivery take over a claim its predecessor left."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        # Terminal events (e.g. deployment.verified) are for pipelines reading the journal; nothing to run.
        log.info("%s %s has no handler; journaled only", event.type, event.id)
        return HandleResult(event, None, replayed=False, published=[])

    def run() -> list[str]:
        return [follow_up.model_dump_json() for follow_up in handler(event, deps)]

    outcome = idempotency.run_once(handler.__name__, event.id, run, delivery_count=delivery_count)
    follow_ups = [decode(body) for body in outcome.result]
    if outcome.replayed:
        log.info("%s %s was already handled by %s; re-sending its %d follow-up(s)",
                 event.type, event.id, handler.__name__, len(follow_ups))
    deps.publisher.publish(follow_ups)
    return HandleResult(event, handler.__name__, outcome.replayed, follow_ups)
