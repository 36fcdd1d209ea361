"""Event <-> bus message. The body is the JSON envelope; a few envelope fields are mirrored into broker
properties (message_id, correlation_id, subject) so Service Bus can de-duplicate and tools can filter, and an
event's `not_before()` becomes the scheduled enqueue time, so the bus holds it back until then."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.events.catalogue import ANY_EVENT_ADAPTER, EVENT_TYPES
from shared.events.envelope import Event

CONTENT_TYPE = "application/json"
SUPPORTED_VERSIONS: dict[str, frozenset[int]] = {event_type: frozenset({1}) for event_type in EVENT_TYPES}


class MalformedEvent(ValueError):
    """A message that can never be handled: it is dead-lettered with this reason, never retried."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description


class BusMessage(BaseModel):
    """What travels on the bus, independent of the transport SDK."""

    model_config = ConfigDict(frozen=True)

    body: bytes
    message_id: str
    correlation_id: str
    subject: str
    content_type: str = CONTENT_TYPE
    application_properties: dict[str, str | int] = {}
    scheduled_enqueue_time_utc: datetime | None = None  # not delivered before this time; None: at once


def encode(event: Event) -> BusMessage:
    not_before = event.not_before()
    if not_before is not None and not_before.tzinfo is None:
        not_before = not_before.replace(tzinfo=UTC)  # the catalogue's times are UTC; never read a naive one as local
    return BusMessage(
        body=event.model_dump_json().encode(),
        message_id=event.id,
        correlation_id=event.correlation_id,
        subject=event.type,
        application_properties={"event_type": event.type, "event_version": event.version},
        scheduled_enqueue_time_utc=not_before,
    )


def decode(body: bytes | str) -> Event:
    """Parse and validate a message body; any problem raises MalformedEvent with a precise reason."""
    try:
        raw: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent("InvalidJson", f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedEvent("InvalidEnvelope", "body must be a JSON object")
    event_type = raw.get("type")
    if event_type not in EVENT_TYPES:
        raise MalformedEvent("UnknownEventType", f"type {event_type!r} is not in the event catalogue")
    version = raw.get("version", 1)
    if version not in SUPPORTED_VERSIONS[event_type]:
        raise MalformedEvent("UnsupportedVersion", f"{event_type} version {version!r} is not supported")
    try:
        return ANY_EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'][1:])}: {err['msg']}" for err in exc.errors()
        )
        raise MalformedEvent("SchemaValidationFailed", problems) from None
