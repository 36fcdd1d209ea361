"""The event journal: every event published is written to audit/{correlation_id}/ before it is sent,
so a pipeline can follow its run (`genaiops wait`) and a person can audit what was decided and why.

A message dead-lettered with a correlation id (it could not be read, or its run failed for good at a stage without
a failure event) is journaled there too, beside the events: `{time}-deadletter-{message key}-{sequence}.json` holds
a DeadLetterNote (why, and which record — the record itself, body and properties, stays in system/deadletter/), so
`wait` ends at once with the reason instead of timing out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from shared.blob_layout import AUDIT, AUDIT_DEAD_LETTER, audit_dead_letter_name, audit_name, audit_prefix
from shared.dead_letters import DeadLetter
from shared.events import Event
from shared.events.codec import decode
from shared.ports import BlobStore, EventPublisher


class DeadLetterNote(BaseModel):
    """A dead-lettered message of a run, as the journal keeps it; `DeadLetterStore.get(queue, message_id,
    sequence_number)` reads the whole record."""

    queue: str
    message_id: str
    message_key: str
    sequence_number: int | None
    delivery_count: int | None
    reason: str
    description: str
    dead_lettered_at: datetime


JournalEntry = Event | DeadLetterNote


class EventJournal:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def record(self, event: Event) -> None:
        name = audit_name(event.correlation_id, event.occurred_at, event.type, event.id)
        self._blobs.write(AUDIT, name, event.model_dump_json(indent=2).encode())

    def record_dead_letter(self, correlation_id: str, letter: DeadLetter) -> None:
        name = audit_dead_letter_name(correlation_id, letter.dead_lettered_at, letter.message_key,
                                      letter.sequence_number)
        note = DeadLetterNote.model_validate(letter.model_dump(include=set(DeadLetterNote.model_fields)))
        self._blobs.write(AUDIT, name, note.model_dump_json(indent=2).encode())

    def entries_for(self, correlation_id: str) -> list[JournalEntry]:
        """The run's events and dead letters in the order they happened (names sort by time). Ids that make the
        same folder name ("a/b", "a_b") share a folder, so events of another id found there are left out."""
        infos = sorted(self._blobs.list(AUDIT, prefix=audit_prefix(correlation_id)), key=lambda i: i.name)
        entries: list[JournalEntry] = []
        for info in infos:
            data = self._blobs.read(AUDIT, info.name)[0]
            kind = info.name.rsplit("/", 1)[-1].split("-", 2)[1]
            if kind == AUDIT_DEAD_LETTER:
                entries.append(DeadLetterNote.model_validate_json(data))
            elif (event := decode(data)).correlation_id == correlation_id:
                entries.append(event)
        return entries

    def events_for(self, correlation_id: str) -> list[Event]:
        """The run's events in the order they happened."""
        return [entry for entry in self.entries_for(correlation_id) if isinstance(entry, Event)]


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
