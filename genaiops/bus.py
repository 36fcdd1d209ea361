"""Posting one catalogue event from outside the app (`genaiops publish`): journaled first, so a `wait` on its
correlation id sees it, then sent to the events queue — with the app's own settings (managed identity in Azure,
AzurePipelinesCredential in a pipeline step)."""

from __future__ import annotations

import json

from shared.audit import EventJournal, JournalingPublisher
from shared.events import Event, event_class
from shared.events.envelope import new_event_id
from shared.settings import Settings


def publish(settings: Settings, journal: EventJournal, event_type: str, payload: str, correlation_id: str | None,
            source: str) -> Event:
    from shared.adapters.servicebus import ServiceBusPublisher, servicebus_client

    event = event_class(event_type).create(json.loads(payload), correlation_id=correlation_id or new_event_id(),
                                           source=source)
    bus = ServiceBusPublisher(servicebus_client(settings), settings.events_queue)
    try:
        JournalingPublisher(bus, journal).publish([event])
    finally:
        bus.close()
    return event
