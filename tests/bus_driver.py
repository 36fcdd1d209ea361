"""Drive events through the real message bus in-process: handlers, idempotency records and the experiment store
on Azurite; only the transport is a queue in memory (the e2e tests use the real broker and host)."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence

from shared.bootstrap import build_deployments, handler_dependencies
from shared.events import EXPERIMENT_WORK_EVENTS, Event
from shared.idempotency import IdempotencyStore
from shared.messagebus import MessageBus
from shared.ports import BlobStore, Clock
from shared.registry.port import Registry
from shared.services.experiments import ExperimentWorkspace
from shared.settings import Settings

EXPERIMENT_EVENTS = frozenset({"experiment.requested", "experiment.item_requested", "experiment.stage_completed"})
INTERNAL_EVENTS = EXPERIMENT_WORK_EVENTS | {"experiment.progressed"}


class QueueBus:
    def __init__(self) -> None:
        self.queue: deque[Event] = deque()

    def publish(self, events: Sequence[Event]) -> None:
        self.queue.extend(events)


def dependencies(blobs: BlobStore, clock: Clock, workspace: ExperimentWorkspace, registry: Registry,
                 bus: QueueBus) -> MessageBus:
    """The message bus as the application builds it, publishing to `bus`."""
    settings = Settings()
    dependencies = handler_dependencies(settings, blobs, clock, workspace, registry,
                                        build_deployments(settings, blobs, clock))
    return MessageBus(publisher=bus, idempotency=IdempotencyStore(blobs, clock), dependencies=dependencies.by_name())


def drive(messages: MessageBus, first: Event, handle: Collection[str] = EXPERIMENT_EVENTS,
          limit: int = 10_000) -> list[Event]:
    """Handle `first` and every follow-up whose type is in `handle`, first in first out; return every event
    published, in order."""
    bus = messages.publisher
    assert isinstance(bus, QueueBus)
    bus.queue.append(first)
    published: list[Event] = []
    for _ in range(limit):
        if not bus.queue:
            return published
        event = bus.queue.popleft()
        if event is not first:
            published.append(event)
        if event.type in handle:
            messages.handle(event, delivery_count=1, dead_letter=_unexpected_dead_letter)
    raise AssertionError(f"still busy after {limit} events")


def _unexpected_dead_letter(reason: str, description: str) -> None:
    raise AssertionError(f"dead-lettered: {reason}: {description}")


def outcomes(events: Sequence[Event]) -> list[Event]:
    """What a pipeline sees: the events that are not the experiment's internal work."""
    return [event for event in events if event.type not in INTERNAL_EVENTS]
