"""The event journal: every event published is written to audit/{correlation_id}/ before it is sent,
so a pipeline can follow its run (`shared.cli wait`) and a person can audit what was decided and why."""

from __future__ import annotations

from collections.abc import Sequence

from shared.blob_layout import AUDIT, audit_name, safe_segment
from shared.events import Event
from shared.events.codec import decode
from shared.ports import BlobStore, EventPublisher


class EventJournal:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def record(self, event: Event) -> None:
        name = audit_name(event.correlation_id, event.occurred_at, event.type, event.id)
        self._blobs.write(AUDIT, name, event.model_dump_json(indent=2).encode())

    def events_for(self, correlation_id: str) -> list[Event]:
        """The run's events in the order they happened (names sort by time). Ids that make the same folder name
        ("a/b", "a_b") share a folder, so only the events of exactly this id are returned."""
        infos = sorted(self._blobs.list(AUDIT, prefix=f"{safe_segment(correlation_id)}/"), key=lambda i: i.name)
        events = (decode(self._blobs.read(AUDIT, info.name)[0]) for info in infos)
        return [event for event in events if event.correlation_id == correlation_id]


class JournalingPublisher:
    """Publisher decorator: journal first, then send — a journaled event that failed to send is re-sent
    on redelivery with the same id, so the journal never misses an event that reached the bus."""

    def __init__(self, inner: EventPublisher, journal: EventJournal) -> None:
        self._inner = inner
        self._journal = journal

    def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            self._journal.record(event)
        self._inner.publish(events)

