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
    """Parse and validate a message body; any problem raises MalformedEvent with a precise reason.

    Nothing else escapes, whatever the bytes: not UTF-8, integers past Python's int-string limit, nesting
    deeper than the parser's recursion limit, `type`/`version` of any JSON shape, strings with lone surrogates,
    or a value that validates but cannot be written back as JSON (the journal and the audit could not store it).
    """
    try:  # strict decoding: json.loads(bytes) would let encoded lone surrogates (ED A0 80) through
        text = body.decode(json.detect_encoding(body)) if isinstance(body, bytes | bytearray) else body
    except UnicodeError as exc:
        raise MalformedEvent("InvalidJson", f"body is not JSON: not valid Unicode text ({_short(str(exc))})") from None
    try:
        raw: Any = json.loads(text)
    except RecursionError:
        raise MalformedEvent("InvalidJson", "body is not JSON: nested too deeply") from None
    except (UnicodeError, ValueError) as exc:  # JSONDecodeError, and ValueError for ints past the digit limit
        raise MalformedEvent("InvalidJson", f"body is not JSON: {_short(str(exc))}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the parser throws, the message is not JSON we can read
        raise MalformedEvent("InvalidJson", f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise MalformedEvent("InvalidEnvelope", "body must be a JSON object")
    event_type = raw.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise MalformedEvent("UnknownEventType", f"type {_describe(event_type)} is not in the event catalogue")
    version = raw.get("version", 1)
    if not _is_number(version) or version not in SUPPORTED_VERSIONS[event_type]:
        raise MalformedEvent("UnsupportedVersion", f"{event_type} version {_describe(version)} is not supported")
    try:
        event = ANY_EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(_short(str(part), 80) for part in err['loc'][1:])}: {err['msg']}" for err in exc.errors()
        )
        raise MalformedEvent("SchemaValidationFailed", _short(problems, 4000)) from None
    except RecursionError:
        raise MalformedEvent("SchemaValidationFailed", "nested too deeply to validate") from None
    except Exception as exc:  # noqa: BLE001 - a validator failing in an unexpected way still means "invalid"
        raise MalformedEvent("SchemaValidationFailed", f"{type(exc).__name__}: {_short(str(exc))}") from None
    try:  # what the journal, the audit and the idempotency record write; an event they cannot store is bad input
        event.model_dump_json()
    except Exception as exc:  # noqa: BLE001 - PydanticSerializationError (lone surrogate, depth), RecursionError
        raise MalformedEvent("SchemaValidationFailed", f"event cannot be written as JSON: {_short(str(exc))}") from None
    return event


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(text: str, limit: int = 300) -> str:
    """Bounded, printable-as-UTF-8 text for a description (lone surrogates become escapes)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _describe(value: Any) -> str:
    """A short description of any JSON value; never repr() a container (it may be nested thousands deep)."""
    if isinstance(value, str) or _is_number(value) or value is None or isinstance(value, bool):
        try:
            return _short(repr(value), 100)
        except ValueError:  # an int past the digit limit cannot be printed
            return "a very large integer"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)
