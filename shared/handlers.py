"""Event type -> handler. Each handler is a few lines: unpack the event, call one service, return follow-ups.

This table is the one hop from an event type to the code that handles it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.events import DatasetUploaded, Event
from shared.ports import BlobStore, Clock, EventPublisher
from shared.services import intake
from shared.settings import Settings


@dataclass(frozen=True)
class Dependencies:
    """The ports a handler may pass on to its service."""

    settings: Settings
    blobs: BlobStore
    publisher: EventPublisher
    clock: Clock


Handler = Callable[[Event, Dependencies], Sequence[Event]]


def on_dataset_uploaded(event: DatasetUploaded, deps: Dependencies) -> Sequence[Event]:
    intake.check_dataset(event, deps.blobs, deps.clock)
    return []


HANDLERS: dict[type[Event], Handler] = {
    DatasetUploaded: on_dataset_uploaded,  # type: ignore[dict-item]  # narrowed by the key
}
